r"""RMSprop (DNN Maths (2020-01-12), with the missing epsilon added)."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmlp.optim import validation


class RmspropState(NamedTuple):
    """The moving average :math:`S` of the squared gradients."""

    s: optax.Params


def rmsprop(lr: float, beta: float = 0.9, eps: float = 1e-8, eps_in_sqrt: bool = False) -> optax.GradientTransformation:
    r"""RMSprop.

    .. math::
       S \leftarrow \beta S + (1-\beta) g^2,\qquad
       \theta \leftarrow \theta - \alpha\,\frac{g}{\sqrt S + \epsilon}

    DNN Maths (2020-01-12) prints :math:`g/\sqrt S` with no :math:`\epsilon`, which divides
    by zero wherever :math:`S = 0` (e.g. at the first step for a zero
    gradient).  With ``eps_in_sqrt=True`` the denominator is
    :math:`\sqrt{S+\epsilon}`, Optax's default; PyTorch and Keras put
    :math:`\epsilon` outside (the default here).

    Optax baseline: ``optax.rmsprop(lr, decay=beta, eps=eps, eps_in_sqrt=eps_in_sqrt)``.
    """
    lr = validation.positive("lr", lr)
    beta = validation.decay("beta", beta)
    eps = validation.non_negative("eps", eps)

    def init(params):
        return RmspropState(validation.zeros_like(params))

    def update(grads, state, params=None):
        del params
        s = jax.tree.map(lambda g, s: (1 - beta) * g**2 + beta * s, grads, state.s)
        if eps_in_sqrt:
            scale = jax.tree.map(lambda s: jax.lax.rsqrt(s + eps), s)
        else:
            scale = jax.tree.map(lambda s: 1 / (jnp.sqrt(s) + eps), s)
        updates = jax.tree.map(lambda c, g: -lr * (c * g), scale, grads)
        return updates, RmspropState(s)

    return optax.GradientTransformation(init, update)
