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

Names: the seeds' :math:`\alpha` is ``learning_rate`` and :math:`\beta` is ``momentum`` (Optax's names).
Heavy ball and Nesterov are :func:`jaxmlp.optim.sgd` with ``momentum`` (and ``nesterov=True``).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import optax

from jaxmlp.optim import validation
from jaxmlp.optim.sgd import sgd


class MomentumState(NamedTuple):
    """The step count and the velocity :math:`v`, one leaf per parameter leaf."""

    count: jax.Array  # int32 scalar
    velocity: optax.Params


def momentum(learning_rate: optax.ScalarOrSchedule, momentum: float = 0.9) -> optax.GradientTransformation:
    r"""DNN Maths (2020-01-12)'s momentum, an exponential moving average of the gradients.

    .. math::  v \leftarrow \beta v + (1-\beta) g,\qquad \theta \leftarrow \theta - \alpha_t v

    for weights *and* biases, each with its own velocity (DNN Maths (2020-01-12) prints the
    bias update with :math:`v^{dW}`; the correct one is :math:`v^{db}`).  :math:`\beta` is
    ``momentum``.  Optax equivalent, proved in the verification:
    ``optax.sgd(learning_rate * (1 - momentum), momentum=momentum)``.

    >>> import jax.numpy as jnp
    >>> opt = momentum(0.1, 0.5)
    >>> u, s = opt.update(jnp.ones(1), opt.init(jnp.zeros(1)))
    >>> u.tolist()
    [-0.05]
    """
    lr = validation.learning_rate(learning_rate)
    beta = validation.decay("momentum", momentum)

    def init(params):
        return MomentumState(validation.new_count(), validation.zeros_like(params))

    def update(grads, state, params=None):
        del params
        v = jax.tree.map(lambda g, v: (1 - beta) * g + beta * v, grads, state.velocity)
        return validation.descend(lr, state.count, v), MomentumState(state.count + 1, v)

    return optax.GradientTransformation(init, update)


def heavy_ball(learning_rate: optax.ScalarOrSchedule, momentum: float = 0.9) -> optax.GradientTransformation:
    r"""Polyak's heavy ball: :math:`v \leftarrow \beta v + g,\ \theta \leftarrow \theta - \alpha_t v`.

    ``sgd(learning_rate, momentum)``.  Optax baseline: ``optax.sgd(learning_rate, momentum=momentum)``.

    >>> import jax.numpy as jnp
    >>> heavy_ball(0.1).update(jnp.ones(1), heavy_ball(0.1).init(jnp.zeros(1)))[0].tolist()
    [-0.1]
    """
    return sgd(learning_rate, momentum=momentum)


def nesterov(learning_rate: optax.ScalarOrSchedule, momentum: float = 0.9) -> optax.GradientTransformation:
    r"""Nesterov momentum in the Sutskever et al. form used by Optax and PyTorch.

    .. math::  v \leftarrow \beta v + g,\qquad \theta \leftarrow \theta - \alpha_t\,(g + \beta v)

    ``sgd(learning_rate, momentum, nesterov=True)``.  Optax baseline:
    ``optax.sgd(learning_rate, momentum=momentum, nesterov=True)``.

    >>> import jax.numpy as jnp
    >>> nesterov(0.1, 0.5).update(jnp.ones(1), nesterov(0.1, 0.5).init(jnp.zeros(1)))[0].tolist()
    [-0.15000000000000002]
    """
    return sgd(learning_rate, momentum=momentum, nesterov=True)
