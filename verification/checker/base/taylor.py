r"""The Taylor-remainder test: a second opinion on a gradient that needs no step size and no autodiff.

For a direction :math:`d`, the first-order model's error

.. math:: r(h) = \big|J(\theta + h d) - J(\theta) - h\,\langle g, d\rangle\big|

falls like :math:`h^2` when :math:`g` is the gradient and only like :math:`h` when it is not (its
leading term is then :math:`h\,|\langle g - \nabla J, d\rangle|`).  The slope of :math:`\log r` against
:math:`\log h` over a ladder of halving steps says which: about 2 or about 1, whatever the scale of the
problem.  (Farrell et al., "Automated derivation of the adjoint of high-level transient finite element
programs", SIAM J. Sci. Comput. 35(4), 2013, use it to verify adjoints.)

>>> import jax.numpy as jnp
>>> loss = lambda w: jnp.sum(jnp.sin(w) ** 2)
>>> w = jnp.array([0.3, -1.2, 2.0])
>>> taylor_test(loss, w, jnp.sin(2 * w)).passed       # d/dw sin^2 = sin 2w
True
>>> round(taylor_test(loss, w, jnp.sin(w)).slope)     # a wrong gradient: slope 1
1
"""
from __future__ import annotations

import dataclasses
from typing import Callable, List

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

# A remainder at or below this multiple of eps * |J| is rounding, not signal: steps that reach it are
# left out of the fit (a loss that is linear along d has a zero remainder at every step).
NOISE_FLOOR_EPS = 1e3

# The slope that separates right (2) from wrong (1): halfway, so either side has a margin of 0.5.
SLOPE_PASS = 1.5


@dataclasses.dataclass
class TaylorResult:
    steps: List[float]  # h, halving
    remainders: List[float]  # r(h)
    slope: float  # least-squares slope of log r against log h over the steps above the noise floor
    passed: bool  # slope >= SLOPE_PASS, or every remainder at the noise floor

    def __str__(self):
        verdict = "PASS (slope ~2: the gradient is right)" if self.passed else "FAIL (slope ~1: the gradient is wrong)"
        return f"Taylor remainder slope {self.slope:.2f} over {len(self.steps)} steps: {verdict}"


def taylor_test(loss: Callable, params, grad, *, h0: float = 0.1, n_steps: int = 8, seed: int = 0) -> TaylorResult:
    """The Taylor-remainder slope of ``loss(params)`` with the claimed gradient ``grad`` (same pytree),
    along a random unit direction, over steps ``h0 / 2**k``.  The loss runs in the params' dtype, so the
    test is sharpest in float64."""
    if not callable(loss):
        raise TypeError(f"loss: expected a callable, got {type(loss).__name__}")
    if not (isinstance(n_steps, int) and n_steps >= 3):
        raise ValueError(f"n_steps: expected an int >= 3, got {n_steps!r}")
    flat, unravel = ravel_pytree(params)
    g, _ = ravel_pytree(grad)
    if g.shape != flat.shape:
        raise ValueError(f"grad: expected {flat.shape[0]} entries like params, got {g.shape[0]}")
    flat, g = flat.astype(jnp.float64), g.astype(jnp.float64)
    d = jax.random.normal(jax.random.key(seed), flat.shape, jnp.float64)
    d = d / jnp.linalg.norm(d)
    f = lambda v: float(loss(unravel(v.astype(ravel_pytree(params)[0].dtype))))  # noqa: E731
    f0, slope_term = f(flat), float(g @ d)
    steps = [h0 / 2 ** k for k in range(n_steps)]
    rem = [abs(f(flat + h * d) - f0 - h * slope_term) for h in steps]
    eps = np.finfo(np.dtype(ravel_pytree(params)[0].dtype)).eps  # the loss is computed in the params' dtype
    floor = NOISE_FLOOR_EPS * eps * max(abs(f0), 1.0)
    keep = [(h, r) for h, r in zip(steps, rem) if r > floor]
    if len(keep) < 2:
        return TaylorResult(steps, rem, float("nan"), True)
    lh, lr = np.log([h for h, _ in keep]), np.log([r for _, r in keep])
    slope = float(np.polyfit(lh, lr, 1)[0])
    return TaylorResult(steps, rem, slope, slope >= SLOPE_PASS)
