r"""Adam (Kingma & Ba 2015; DNN Maths (2020-01-12)) and AdamW (Loshchilov & Hutter 2019)."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from jaxmlp.dense import Dense
from jaxmlp.values import is_static_zero
from jaxmlp.optim import validation


class AdamState(NamedTuple):
    """Step count and the two moving averages."""

    count: jax.Array  # int32 scalar, 0 before the first update
    mu: optax.Params  # first moment v
    nu: optax.Params  # second moment S


def _adam(lr, b1, b2, eps, bias_correction, weight_decay, mask):
    lr = validation.learning_rate(lr)
    b1, b2 = validation.decay("b1", b1), validation.decay("b2", b2)
    eps = validation.non_negative("eps", eps)
    weight_decay = validation.non_negative("weight_decay", weight_decay)

    def init(params):
        zeros = validation.zeros_like(params)
        return AdamState(jnp.zeros([], jnp.int32), zeros, zeros)

    def update(grads, state, params=None):
        mu = jax.tree.map(lambda g, m: (1 - b1) * g + b1 * m, grads, state.mu)
        nu = jax.tree.map(lambda g, n: (1 - b2) * g**2 + b2 * n, grads, state.nu)
        count = state.count + 1
        if bias_correction:
            # 1 - b^t in the default float dtype (float64 under x64) before the cast, as
            # Optax does: in float32, 1 - 0.999^t loses ~5 digits for small t.
            t = count.astype(jax.dtypes.canonicalize_dtype(jnp.float64))
            c1, c2 = 1 - b1**t, 1 - b2**t
            mu_hat = jax.tree.map(lambda m: m / c1.astype(m.dtype), mu)
            nu_hat = jax.tree.map(lambda n: n / c2.astype(n.dtype), nu)
        else:
            mu_hat, nu_hat = mu, nu
        step = jax.tree.map(lambda m, n: m / (jnp.sqrt(n) + eps), mu_hat, nu_hat)
        if not is_static_zero(weight_decay):
            if params is None:
                raise ValueError("params: adamw needs the params passed to update")
            m = mask(params) if callable(mask) else mask
            if m is None:
                step = jax.tree.map(lambda s, p: s + weight_decay * p, step, params)
            else:
                step = jax.tree.map(lambda s, p, keep: s + weight_decay * p if keep else s, step, params, m)
        return validation.descend(lr, state.count, step), AdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


def adam(learning_rate: optax.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, *,
         bias_correction: bool = True) -> optax.GradientTransformation:
    r"""Adam (Kingma & Ba, 2015).

    .. math::
       v &\leftarrow \beta_1 v + (1-\beta_1) g, \qquad S \leftarrow \beta_2 S + (1-\beta_2) g^2\\
       \hat v &= v/(1-\beta_1^t),\qquad \hat S = S/(1-\beta_2^t)\\
       \theta &\leftarrow \theta - \alpha_t\,\hat v/(\sqrt{\hat S} + \epsilon)

    The seed's :math:`\alpha, \beta_1, \beta_2, \epsilon` are ``learning_rate``, ``b1``, ``b2``, ``eps``
    (Optax's names); :math:`v, S` are the state's ``mu``, ``nu``; ``learning_rate`` may be an Optax
    schedule, evaluated at ``count`` (0 at the first update, while :math:`t` = ``count + 1``).
    ``bias_correction=False`` drops the hats: DNN Maths (2020-01-12)'s printed form, which
    differs from Kingma & Ba (and Optax) in the first steps.  Optax baseline:
    ``optax.adam``; without bias correction the verification proves the
    mapping to ``optax.inject_hyperparams(optax.adam)`` with
    :math:`\alpha_t = \alpha(1-\beta_1^t)/\sqrt{1-\beta_2^t}` and
    :math:`\epsilon_t = \epsilon/\sqrt{1-\beta_2^t}`.

    >>> import jax.numpy as jnp, optax
    >>> opt = adam(optax.warmup_cosine_decay_schedule(0.0, 1e-3, 10, 100))
    >>> u, s = opt.update(jnp.ones(2), opt.init(jnp.zeros(2)))
    >>> u.tolist(), int(optax.tree_utils.tree_get(s, "count"))  # the warm-up starts at 0
    ([-0.0, -0.0], 1)
    """
    return _adam(learning_rate, b1, b2, eps, bias_correction, 0.0, None)


def adamw(learning_rate: optax.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 1e-4,
          mask: Optional[Union[Any, Callable[[Any], Any]]] = None) -> optax.GradientTransformation:
    r"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    .. math::  \theta \leftarrow \theta - \alpha_t\big(\hat v/(\sqrt{\hat S}+\epsilon) + \lambda\,m\odot\theta\big)

    ``mask`` is a pytree of bools like the params (or a function of the params
    returning one); ``False`` leaves get no decay.  :func:`weights_only` leaves
    the biases out.  Optax baseline: ``optax.adamw(..., mask=mask)``.

    >>> import jax.numpy as jnp
    >>> opt = adamw(0.1, weight_decay=0.5)
    >>> p = jnp.ones(1)
    >>> opt.update(jnp.zeros(1), opt.init(p), p)[0].tolist()  # decay only: -0.1 * 0.5 * 1
    [-0.05]
    """
    return _adam(learning_rate, b1, b2, eps, True, weight_decay, mask)


def weights_only(params):
    """A decay mask for jaxmlp params: ``True`` for every ``W``; ``False`` for biases and batch norm's gamma, beta."""
    off = lambda t: None if t is None else False  # noqa: E731
    return tuple(Dense(True, off(p.b), off(p.gamma), off(p.beta)) for p in params)
