r"""Gradient descent, with optional L2 weight decay, heavy-ball or Nesterov momentum (``optax.sgd``'s arguments)."""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import optax

from jaxmlp.values import is_static_zero
from jaxmlp.optim import validation


class SgdState(NamedTuple):
    """The step count (for a schedule) and, with momentum, the velocity (Optax's ``trace``)."""

    count: jax.Array  # int32 scalar, 0 before the first update
    trace: optax.Params  # () without momentum


def sgd(learning_rate: optax.ScalarOrSchedule, momentum: Optional[float] = None, nesterov: bool = False,
        weight_decay: float = 0.0) -> optax.GradientTransformation:
    r"""Gradient descent (DNN Maths (2020-01-12) "batch gradient descent"; Higham & Higham notes (2024-09-10) with the sign corrected).

    .. math::
       v \leftarrow \beta v + (g + \lambda\theta),\qquad
       \theta \leftarrow \theta - \alpha_t\,v\quad(\text{Nesterov: } \theta - \alpha_t(g + \lambda\theta + \beta v))

    With ``momentum=None`` there is no velocity: :math:`\theta \leftarrow \theta - \alpha_t(g + \lambda\theta)`,
    DNN Maths (2020-01-12)'s L2 regularisation written as weight decay (:math:`\lambda` = ``weight_decay``).
    Higham & Higham notes (2024-09-10) prints :math:`p \to t\nabla C(p)` (the ``p -`` is missing); the
    update here is the corrected one.  ``learning_rate`` :math:`\alpha_t` is a float or an Optax schedule
    evaluated at the step count (from 0).

    Optax baseline: ``optax.sgd(learning_rate, momentum, nesterov)``; with decay,
    ``optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(...))``.

    >>> import jax.numpy as jnp, optax
    >>> opt = sgd(optax.exponential_decay(0.1, 10, 0.5), momentum=0.9)
    >>> state = opt.init(jnp.zeros(2))
    >>> updates, state = opt.update(jnp.ones(2), state)
    >>> [round(u, 6) for u in updates.tolist()], int(state.count)
    ([-0.1, -0.1], 1)
    """
    lr = validation.learning_rate(learning_rate)
    beta = None if momentum is None else validation.decay("momentum", momentum)
    weight_decay = validation.non_negative("weight_decay", weight_decay)
    if nesterov and beta is None:
        raise ValueError("nesterov: expected momentum to be set (a number in [0, 1)) with nesterov=True, got momentum=None")

    def init(params):
        return SgdState(validation.new_count(), () if beta is None else validation.zeros_like(params))

    def update(grads, state, params=None):
        if not is_static_zero(weight_decay):
            if params is None:
                raise ValueError("params: sgd(weight_decay > 0) needs the params passed to update")
            grads = jax.tree.map(lambda g, p: g + weight_decay * p, grads, params)
        step, trace = grads, state.trace
        if beta is not None:
            trace = jax.tree.map(lambda g, v: g + beta * v, grads, state.trace)
            step = jax.tree.map(lambda g, v: g + beta * v, grads, trace) if nesterov else trace
        return validation.descend(lr, state.count, step), SgdState(state.count + 1, trace)

    return optax.GradientTransformation(init, update)
