r"""RMSprop (DNN Maths (2020-01-12), with the missing epsilon added)."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmlp.optim import validation


class RmspropState(NamedTuple):
    """The step count and the moving average :math:`S` of the squared gradients (Optax's ``nu``)."""

    count: jax.Array  # int32 scalar
    nu: optax.Params


def rmsprop(learning_rate: optax.ScalarOrSchedule, decay: float = 0.9, eps: float = 1e-8,
            eps_in_sqrt: bool = True) -> optax.GradientTransformation:
    r"""RMSprop.

    .. math::
       S \leftarrow \rho S + (1-\rho) g^2,\qquad
       \theta \leftarrow \theta - \alpha_t\,\frac{g}{\sqrt{S + \epsilon}}
       \quad\Big(\texttt{eps\_in\_sqrt=False}:\ \frac{g}{\sqrt S + \epsilon}\Big)

    The seed's :math:`\beta` is ``decay`` (:math:`\rho`, Optax's name).  DNN Maths (2020-01-12)
    prints :math:`g/\sqrt S` with no :math:`\epsilon`, which divides by zero wherever :math:`S = 0`
    (e.g. at the first step for a zero gradient).  The default puts :math:`\epsilon` inside the root,
    as Optax does; PyTorch and Keras put it outside (``eps_in_sqrt=False``).

    Optax baseline: ``optax.rmsprop(learning_rate, decay, eps, eps_in_sqrt=eps_in_sqrt)``.

    >>> import jax.numpy as jnp
    >>> opt = rmsprop(0.1, eps=0.0)
    >>> round(float(opt.update(jnp.full(1, 2.0), opt.init(jnp.zeros(1)))[0][0]), 6)  # -0.1 g / sqrt(0.1 g^2)
    -0.316228
    """
    lr = validation.learning_rate(learning_rate)
    rho = validation.decay("decay", decay)
    eps = validation.non_negative("eps", eps)

    def init(params):
        return RmspropState(validation.new_count(), validation.zeros_like(params))

    def update(grads, state, params=None):
        del params
        nu = jax.tree.map(lambda g, s: (1 - rho) * g**2 + rho * s, grads, state.nu)
        if eps_in_sqrt:
            scale = jax.tree.map(lambda s: jax.lax.rsqrt(s + eps), nu)
        else:
            scale = jax.tree.map(lambda s: 1 / (jnp.sqrt(s) + eps), nu)
        step = jax.tree.map(lambda c, g: c * g, scale, grads)
        return validation.descend(lr, state.count, step), RmspropState(state.count + 1, nu)

    return optax.GradientTransformation(init, update)
