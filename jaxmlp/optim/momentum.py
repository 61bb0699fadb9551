r"""Momentum in its three common forms: DNN Maths (2020-01-12)'s moving average, heavy ball, Nesterov.

Known differences from other libraries:

* DNN Maths (2020-01-12) / Andrew Ng: :math:`v \leftarrow \beta v + (1-\beta)g` (a moving
  average, "dampening" :math:`1-\beta`), :math:`\theta \leftarrow \theta - \alpha v`.
* heavy ball = Optax's ``sgd(momentum=)`` = PyTorch's ``SGD(momentum, dampening=0)``:
  :math:`v \leftarrow \beta v + g`.  So EMA momentum :math:`(\alpha,\beta)` equals
  heavy ball with :math:`(\alpha(1-\beta), \beta)`; PyTorch's ``dampening=β``
  gives the EMA form directly.
* Keras's SGD puts the learning rate *inside* the buffer,
  :math:`v \leftarrow \beta v - \alpha g,\ \theta \leftarrow \theta + v`;
  with a constant :math:`\alpha` that is the heavy ball again.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import optax

from jaxmlp.optim import validation


class MomentumState(NamedTuple):
    """The velocity :math:`v`, one leaf per parameter leaf."""

    velocity: optax.Params


def _momentum(lr, beta, direction):
    lr = validation.positive("lr", lr)
    beta = validation.decay("beta", beta)

    def init(params):
        return MomentumState(validation.zeros_like(params))

    def update(grads, state, params=None):
        del params
        v, step = direction(grads, state.velocity, beta)
        return jax.tree.map(lambda s: -lr * s, step), MomentumState(v)

    return optax.GradientTransformation(init, update)


def _ema(g, v, beta):
    v = jax.tree.map(lambda g, v: (1 - beta) * g + beta * v, g, v)
    return v, v


def _heavy_ball(g, v, beta):
    v = jax.tree.map(lambda g, v: g + beta * v, g, v)
    return v, v


def _nesterov(g, v, beta):
    v = jax.tree.map(lambda g, v: g + beta * v, g, v)
    return v, jax.tree.map(lambda g, v: g + beta * v, g, v)


def momentum(lr: float, beta: float = 0.9) -> optax.GradientTransformation:
    r"""DNN Maths (2020-01-12)'s momentum, an exponential moving average of the gradients.

    .. math::  v \leftarrow \beta v + (1-\beta) g,\qquad \theta \leftarrow \theta - \alpha v

    for weights *and* biases, each with its own velocity (DNN Maths (2020-01-12) prints the
    bias update with :math:`v^{dW}`; the correct one is :math:`v^{db}`).
    Optax equivalent, proved in the verification:
    ``optax.sgd(lr * (1 - beta), momentum=beta)``.
    """
    return _momentum(lr, beta, _ema)


def heavy_ball(lr: float, beta: float = 0.9) -> optax.GradientTransformation:
    r"""Polyak's heavy ball: :math:`v \leftarrow \beta v + g,\ \theta \leftarrow \theta - \alpha v`.

    Optax baseline: ``optax.sgd(lr, momentum=beta)``.
    """
    return _momentum(lr, beta, _heavy_ball)


def nesterov(lr: float, beta: float = 0.9) -> optax.GradientTransformation:
    r"""Nesterov momentum in the Sutskever et al. form used by Optax and PyTorch.

    .. math::  v \leftarrow \beta v + g,\qquad \theta \leftarrow \theta - \alpha\,(g + \beta v)

    Optax baseline: ``optax.sgd(lr, momentum=beta, nesterov=True)``.
    """
    return _momentum(lr, beta, _nesterov)
