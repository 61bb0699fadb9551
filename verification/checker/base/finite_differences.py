r"""The one finite-difference module of the checker: every numerical derivative a check takes comes from here.

* :func:`gradient`: central differences of a scalar loss, one coordinate at a time,
  :math:`\partial_i J \approx (J(\theta + h e_i) - J(\theta - h e_i)) / 2h`, mapped in chunks of
  ``CHUNK`` coordinates (never an n-by-n identity in memory);
* :func:`one_sided`: the forward and backward differences of chosen coordinates (the two sides of a kink);
* :func:`directional`: the central difference along a direction, :math:`(f(x + h t) - f(x - h t)) / 2h`,
  for any pytree-valued ``f`` (a JVP's reference);
* :func:`jacobian`: the dense Jacobian of a small vector map (a VJP's reference when the primal cannot be
  reverse-differentiated).

Every step comes from one rule, :func:`step_for` (the dtype and the scheme), unless given.

>>> import jax.numpy as jnp
>>> g = gradient(lambda w: jnp.sum(w ** 3), jnp.array([1.0, 2.0]))
>>> [round(float(v), 6) for v in g]
[3.0, 12.0]
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from verification.checker.base.tolerances import DIRECTION_STEP, FD_STEP, FD_STEP_BY_DTYPE

CHUNK = 256  # coordinates evaluated at once: bounds the memory to CHUNK copies of the parameters ...
COPY_BUDGET = 2 ** 24  # ... and to this many parameter entries in all (128 MiB of float64 copies at 1e6 parameters)


SCHEMES = ("central", "direction", "one_sided")


def step_for(dtype, scheme: str = "central") -> float:
    """The one step rule of every finite difference the checker takes.

    * ``central``, along a coordinate: :data:`~verification.checker.base.tolerances.FD_STEP_BY_DTYPE`
      (float64 unless float32 is all the machine has);
    * ``direction``, a central difference along a random unit direction in float64:
      :data:`~verification.checker.base.tolerances.DIRECTION_STEP`;
    * ``one_sided``, the two sides of a kink: ``FD_STEP`` in float64, :math:`\\sqrt{\\epsilon}` of a lower
      precision.
    """
    if scheme == "central":
        return FD_STEP_BY_DTYPE["float32" if jnp.dtype(dtype) == jnp.float32 else "float64"]
    if scheme == "direction":
        return DIRECTION_STEP
    if scheme == "one_sided":
        return FD_STEP if jnp.dtype(dtype) == jnp.float64 else float(np.sqrt(np.finfo(jnp.dtype(dtype)).eps))
    raise ValueError(f"scheme: expected one of {SCHEMES}, got {scheme!r}")


def _coordinate_map(f, idx, n_params: int):
    """``f(i)`` for every ``i`` in ``idx``: a ``vmap`` over at most ``CHUNK`` coordinates and at most
    ``COPY_BUDGET`` parameter entries at once (``lax.map`` with that batch size beyond)."""
    idx = jnp.asarray(idx)
    batch = int(max(1, min(CHUNK, COPY_BUDGET // max(n_params, 1))))
    if idx.size <= batch:
        return jax.vmap(f)(idx)
    return jax.lax.map(f, idx, batch_size=batch)


def gradient(loss: Callable, params, h: float | None = None):
    """Central differences of the scalar ``loss`` at ``params`` in float64, as a pytree like ``params``."""
    flat, unravel = ravel_pytree(params)
    dtype = flat.dtype
    flat = flat.astype(jnp.float64)
    h = step_for(jnp.float64) if h is None else h
    f = lambda v: loss(unravel(v.astype(dtype)))  # noqa: E731
    if flat.size == 0:
        return unravel(flat)
    diff = _coordinate_map(lambda i: (f(flat.at[i].add(h)) - f(flat.at[i].add(-h))) / (2 * h), jnp.arange(flat.size),
                          flat.size)
    return unravel(diff)


def one_sided(loss: Callable, params, indices, h: float) -> Tuple[np.ndarray, np.ndarray]:
    """``(forward, backward)`` differences of ``loss`` at the flat coordinates ``indices`` of ``params``:
    :math:`(J(\\theta + h e_i) - J(\\theta)) / h` and :math:`(J(\\theta) - J(\\theta - h e_i)) / h`."""
    flat, unravel = ravel_pytree(params)
    f0 = loss(params)
    step = lambda s: _coordinate_map(lambda i: loss(unravel(flat.at[i].add(s * h))), indices, flat.size)  # noqa: E731
    up, down = (step(1.0) - f0) / h, (f0 - step(-1.0)) / h
    return np.asarray(up, np.float64), np.asarray(down, np.float64)


def directional(fn: Callable, leaves: Sequence[Any], tangents: Sequence[Any], h: float | None = None) -> list:
    """The central difference of ``fn(*leaves)`` along ``tangents``: a list of its output leaves."""
    h = step_for(jnp.result_type(*leaves)) if h is None else h
    up = fn(*[l + h * t for l, t in zip(leaves, tangents)])
    down = fn(*[l - h * t for l, t in zip(leaves, tangents)])
    return [(u - d) / (2 * h) for u, d in zip(jax.tree.leaves(up), jax.tree.leaves(down))]


def jacobian(fn: Callable, leaves: Sequence[Any]) -> Tuple[np.ndarray, Any]:
    """Central differences of ``fn(*leaves)`` (flattened) in the leaves' dtype: ``(J (n_out, n_in), out)``."""
    flat, unravel = ravel_pytree(list(leaves))
    h = step_for(flat.dtype)
    g = lambda v: ravel_pytree(fn(*unravel(v)))[0]  # noqa: E731
    jac = _coordinate_map(lambda i: (g(flat.at[i].add(h)) - g(flat.at[i].add(-h))) / (2 * h), jnp.arange(flat.size),
                         flat.size)
    return np.asarray(jac, np.float64).T, fn(*leaves)
