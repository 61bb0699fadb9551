r"""Gradient functions for the training loops: one protocol, :class:`GradFn`, that every one satisfies.

A :class:`GradFn` gives the objective and its gradient on a batch, and, for batch norm, the
running statistics updated by the same train-mode pass:

.. math::  \mathrm{grad\_fn}(\theta, X, Y, w) = \Big(J,\ \frac{\partial J}{\partial\theta}\Big),\qquad
           \mathrm{grad\_fn.with\_state}(\theta, X, Y, s) = \Big(J,\ \frac{\partial J}{\partial\theta},\ s'\Big)

with :math:`w` (m,) row weights of 0 and 1 (``None``: every row counts) and :math:`s' = \rho s + (1-\rho)\,
\mathrm{batch}` (:func:`jaxmlp.value_grad_and_state`).  The loops of :mod:`jaxmlp.loop` call only these
two methods and never ask which kind of gradient function they hold.

* :class:`ManualGrad` (jaxmlp's hand-derived backward) and :class:`AutodiffGrad` (``jax.grad`` of
  :func:`jaxmlp.loss`) are the two :class:`ModelGrad`\ s; :func:`jaxmlp.train.manual_grad` and
  :func:`jaxmlp.train.autodiff_grad` make them.  A :class:`ModelGrad` carries its model, so the loops
  run the model's entry checks (:func:`check_data`), found through ``jax.jit`` and ``functools.wraps``
  wrappers (:func:`model_of`), never by recognising a function's identity.
* Any ``(params, x, y) -> (J, grads)`` of your own works too: :func:`as_grad_fn` makes it a
  :class:`FunctionGrad`, which has no ``with_state`` (it refuses batch norm's state).

>>> import jax, jaxmlp
>>> model = jaxmlp.MLP((2, 3, 1), "tanh", "mse")
>>> g = ManualGrad(model, l2=0.1)
>>> isinstance(g, GradFn), model_of(jax.jit(g)) is model
(True, True)
>>> isinstance(as_grad_fn(lambda p, x, y: (0.0, p)), FunctionGrad)
True
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, Optional, Protocol, Tuple, runtime_checkable

import jax
import jax.numpy as jnp

from jaxmlp import checks
from jaxmlp.dense import Dense
from jaxmlp.model import MLP
from jaxmlp.network import batch_stats_update, loss, value_and_grad, value_grad_and_state

__all__ = ["AutodiffGrad", "FunctionGrad", "GradFn", "ManualGrad", "ModelGrad", "as_grad_fn", "as_model_grad",
           "check_data", "model_of"]


@runtime_checkable
class GradFn(Protocol):
    """What :func:`jaxmlp.train.train` and :func:`jaxmlp.population.train_population` call each step.

    Shapes: ``params`` a tuple of :class:`~jaxmlp.dense.Dense`, ``x`` (m, n_0), ``y`` (m,) labels or
    (m, n_L) targets, ``weights`` (m,) of 0 and 1 or ``None``, ``state`` batch norm's running statistics
    (:func:`jaxmlp.init_state`).  The loops pass ``weights`` only for the full data set with padding
    rows (``rows=`` of :func:`jaxmlp.train.train`).
    """

    def __call__(self, params, x, y, weights=None) -> Tuple[jax.Array, Any]:
        """``(J, grads)``, grads mirroring ``params``; rows of weight 0 left out."""

    def with_state(self, params, x, y, state) -> Tuple[jax.Array, Any, Any]:
        """``(J, grads, new_state)``: the step of a batch-norm model, its running statistics updated."""


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity, like the function it stands for (jit's static arg)
class ModelGrad(abc.ABC):
    """A :class:`GradFn` for ``model`` with weight penalties ``l1``, ``l2`` (:func:`jaxmlp.penalty`).

    The two kinds differ only in how they differentiate: :class:`ManualGrad` and :class:`AutodiffGrad`.
    """

    model: MLP
    l1: Any = 0.0
    l2: Any = 0.0

    def __post_init__(self):
        checks.check_model(self.model)
        checks.check_reg(self.l1, self.l2)

    @abc.abstractmethod
    def __call__(self, params, x, y, weights=None):
        """``(J, grads)`` (:meth:`GradFn.__call__`)."""

    @abc.abstractmethod
    def with_state(self, params, x, y, state):
        """``(J, grads, new_state)`` (:meth:`GradFn.with_state`)."""


class ManualGrad(ModelGrad):
    """``(J, grads)`` by jaxmlp's hand-derived backward pass (:func:`jaxmlp.value_and_grad`)."""

    def __call__(self, params, x, y, weights=None):
        return value_and_grad(self.model, params, x, y, l1=self.l1, l2=self.l2, check=False, weights=weights)

    def with_state(self, params, x, y, state):
        return value_grad_and_state(self.model, params, x, y, state, l1=self.l1, l2=self.l2, check=False)


class AutodiffGrad(ModelGrad):
    """``(J, grads)`` by ``jax.value_and_grad(jaxmlp.loss)``: the reference for :class:`ManualGrad`."""

    def __call__(self, params, x, y, weights=None):
        kw = dict(l1=self.l1, l2=self.l2, check=False, weights=weights)
        return jax.value_and_grad(lambda p: loss(self.model, p, x, y, **kw))(params)

    def with_state(self, params, x, y, state):
        value, grads = self(params, x, y)
        return value, grads, batch_stats_update(self.model, params, x, state)


@dataclasses.dataclass(frozen=True)  # equal (and hashed) by ``fn``: the same function reuses the compiled loop
class FunctionGrad:
    """A :class:`GradFn` around a function of your own, ``fn(params, x, y) -> (J, grads)``.

    ``weights`` reach ``fn`` as a fourth argument when given, so a :class:`ModelGrad` wrapped in
    ``jax.jit`` still weighs rows; batch norm's state needs a :class:`ModelGrad`.
    """

    fn: Callable

    def __call__(self, params, x, y, weights=None):
        return self.fn(params, x, y) if weights is None else self.fn(params, x, y, weights)

    def with_state(self, params, x, y, state):
        raise TypeError(f"grad_fn: batch norm's state needs a grad_fn with .with_state (train.manual_grad or "
                        f"train.autodiff_grad, not wrapped), got {_name(self.fn)}")


def as_grad_fn(grad_fn) -> GradFn:
    """``grad_fn`` itself when it is a :class:`GradFn`, else a :class:`FunctionGrad` around it."""
    if isinstance(grad_fn, GradFn):
        return grad_fn
    if not callable(grad_fn):
        raise TypeError(f"grad_fn: expected a callable (params, x, y) -> (J, grads), got {_name(grad_fn)}")
    return FunctionGrad(grad_fn)


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
    :class:`GradFn` (one with ``with_state``)."""
    g = as_model_grad(grad_fn)
    if state is not None and not isinstance(grad_fn, GradFn):
        raise TypeError(f"grad_fn: batch norm's state needs a grad_fn with .with_state (train.manual_grad or "
                        f"train.autodiff_grad, not wrapped), got {_name(grad_fn)}")
    if g is not None:
        checks.check_all(g.model, params, x, y, g.l1, g.l2, check, state=state)
    elif check:
        last = params[-1] if isinstance(params, (tuple, list)) and params else None
        n_out = int(jnp.shape(last.W)[-1]) if isinstance(last, Dense) else None
        checks.check_labels(y, n_out)


def _name(fn) -> str:
    return type(fn).__name__
