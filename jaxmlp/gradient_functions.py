"""Gradient functions for the training loops, each carrying its model explicitly.

:func:`manual_grad` (jaxmlp's hand-derived backward) and :func:`autodiff_grad` (``jax.grad`` of
:func:`jaxmlp.loss`) return a :class:`ModelGrad`: called as ``(params, x, y)`` it gives ``(J, grads)``,
and :meth:`ModelGrad.with_state` gives ``(J, grads, new_state)`` for batch norm.  Any
``(params, x, y) -> (J, grads)`` of your own works in the loops too; a :class:`ModelGrad` also lets them
run the model's entry checks, found through ``jax.jit`` and ``functools.wraps`` wrappers
(:func:`model_of`), never by recognising a function's identity.

>>> import jax, jax.numpy as jnp, jaxmlp
>>> model = jaxmlp.MLP((2, 3, 1), "tanh", "mse")
>>> g = manual_grad(model, l2=0.1)
>>> model_of(jax.jit(g)) is model
True
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp

from jaxmlp import checks
from jaxmlp.dense import Dense
from jaxmlp.model import MLP
from jaxmlp.network import batch_stats_update, loss, value_and_grad, value_grad_and_state

METHODS = ("manual", "autodiff")


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity, like the function it stands for (jit's static arg)
class ModelGrad:
    """``(params, x, y) -> (J, grads)`` for ``model`` with penalties ``l1``, ``l2``, by ``method``."""

    model: MLP
    l1: Any = 0.0
    l2: Any = 0.0
    method: str = "manual"  # "manual" (the hand-derived backward) or "autodiff" (jax.grad)

    def __post_init__(self):
        checks.check_model(self.model)
        checks.check_reg(self.l1, self.l2)
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {list(METHODS)}, got {self.method!r}")

    def __call__(self, params, x, y, weights=None):
        """``(J, grads)``; ``weights`` (m,) of 0 and 1 leaves padding rows out (:func:`jaxmlp.value_and_grad`)."""
        kw = dict(l1=self.l1, l2=self.l2, check=False, weights=weights)
        if self.method == "manual":
            return value_and_grad(self.model, params, x, y, **kw)
        return jax.value_and_grad(lambda p: loss(self.model, p, x, y, **kw))(params)

    def with_state(self, params, x, y, state):
        """``(J, grads, new_state)``: the step of a batch-norm model, with its running statistics updated."""
        if self.method == "manual":
            return value_grad_and_state(self.model, params, x, y, state, l1=self.l1, l2=self.l2, check=False)
        value, grads = self(params, x, y)
        return value, grads, batch_stats_update(self.model, params, x, state)


def manual_grad(model, *, l1=0.0, l2=0.0) -> ModelGrad:
    """``(params, x, y) -> (J, grads)`` by jaxmlp's hand-derived backward (a :class:`ModelGrad`)."""
    return ModelGrad(model, l1, l2, "manual")


def autodiff_grad(model, *, l1=0.0, l2=0.0) -> ModelGrad:
    """``(params, x, y) -> (J, grads)`` by ``jax.value_and_grad(jaxmlp.loss)``; the same signature."""
    return ModelGrad(model, l1, l2, "autodiff")


def as_model_grad(grad_fn) -> Optional[ModelGrad]:
    """The :class:`ModelGrad` behind ``grad_fn``, through ``jax.jit`` and ``functools.wraps`` (``__wrapped__``)."""
    seen = 0
    while not isinstance(grad_fn, ModelGrad) and hasattr(grad_fn, "__wrapped__") and seen < 16:
        grad_fn, seen = grad_fn.__wrapped__, seen + 1
    return grad_fn if isinstance(grad_fn, ModelGrad) else None


def model_of(grad_fn) -> Optional[MLP]:
    """The model a gradient function carries, else ``None``."""
    g = as_model_grad(grad_fn)
    return None if g is None else g.model


def check_data(grad_fn, params, x, y, *, check=True, state=None):
    """The entry checks of :func:`jaxmlp.train.train` and :func:`jaxmlp.population.train_population`
    (``params`` of one member): the model's own (:func:`jaxmlp.checks.check_all`) when ``grad_fn``
    carries one; for any other gradient function, integer labels must lie in ``[0, n_out)`` with ``n_out``
    the last layer's width when the params are jaxmlp layers (else >= 0).  Batch norm's ``state`` needs a
    gradient function with ``with_state``."""
    g = as_model_grad(grad_fn)
    if state is not None and not hasattr(grad_fn, "with_state"):
        raise TypeError(f"grad_fn: batch norm's state needs a grad_fn with .with_state (train.manual_grad or "
                        f"train.autodiff_grad, not wrapped), got {type(grad_fn).__name__}")
    if g is not None:
        checks.check_all(g.model, params, x, y, g.l1, g.l2, check, state=state)
    elif check:
        last = params[-1] if isinstance(params, (tuple, list)) and params else None
        n_out = int(jnp.shape(last.W)[-1]) if isinstance(last, Dense) else None
        checks.check_labels(y, n_out)
