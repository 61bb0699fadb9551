r"""Plain gradient descent, optionally with DNN Maths (2020-01-12)'s L2 weight decay."""
from __future__ import annotations

from typing import NamedTuple

import jax
import optax

from jaxmlp.checks import is_static_zero
from jaxmlp.optim import validation


class SgdState(NamedTuple):
    """Gradient descent keeps no state."""


def sgd(lr: float, weight_decay: float = 0.0) -> optax.GradientTransformation:
    r"""Gradient descent (DNN Maths (2020-01-12) "batch gradient descent"; Higham & Higham notes (2024-09-10) with the sign corrected).

    .. math::  \theta \leftarrow \theta - \alpha\,(g + \lambda\theta) = (1-\alpha\lambda)\theta - \alpha g

    With ``weight_decay`` :math:`\lambda > 0` this is DNN Maths (2020-01-12)'s L2 regularisation
    written as weight decay.  Higham & Higham notes (2024-09-10) prints :math:`p \to t\nabla C(p)` (the
    ``p -`` is missing); the update here is the corrected one.

    Optax baseline: ``optax.sgd(lr)``, and
    ``optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr))`` with decay.
    """
    lr = validation.positive("lr", lr)
    weight_decay = validation.non_negative("weight_decay", weight_decay)

    def init(params):
        del params
        return SgdState()

    def update(grads, state, params=None):
        if not is_static_zero(weight_decay):
            if params is None:
                raise ValueError("params: sgd(weight_decay > 0) needs the params passed to update")
            grads = jax.tree.map(lambda g, p: g + weight_decay * p, grads, params)
        return jax.tree.map(lambda g: -lr * g, grads), state

    return optax.GradientTransformation(init, update)
