"""Hyperparameter checks shared by the optimizers, and the learning rate at a step.

A hyperparameter may be a Python number or a JAX/numpy scalar (as
``optax.inject_hyperparams`` passes them, so that a population can vmap over
learning rates).  Concrete values are checked; traced ones cannot be and pass.
A learning rate may also be an Optax schedule (``optax.ScalarOrSchedule``): it is
checked by calling it at step 0, and evaluated at the state's ``count``, which
starts at 0 (Optax's convention).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def _check(name, v, ok, expected):
    if isinstance(v, jax.core.Tracer):
        return v
    if isinstance(v, (jax.Array, np.ndarray, np.generic)) and np.ndim(v) == 0 and np.issubdtype(np.asarray(v).dtype, np.floating):
        if not ok(float(v)):
            raise ValueError(f"{name}: expected {expected}, got {float(v)!r}")
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not ok(v):
        raise ValueError(f"{name}: expected {expected}, got {v!r}")
    return float(v)


def positive(name, v):
    return _check(name, v, lambda u: math.isfinite(u) and u > 0, "a finite number > 0")


def non_negative(name, v):
    return _check(name, v, lambda u: math.isfinite(u) and u >= 0, "a finite number >= 0")


def decay(name, v):
    return _check(name, v, lambda u: 0 <= u < 1, "a number in [0, 1)")


def learning_rate(v):
    """A float or scalar array > 0, or a schedule ``count -> rate`` whose value at step 0 is finite and >= 0
    (a warm-up may start at 0)."""
    if callable(v):
        try:
            with jax.numpy_dtype_promotion("standard"):  # Optax's schedules mix int32 counts with floats
                first = v(jnp.zeros([], jnp.int32))
        except Exception as e:  # noqa: BLE001 -- report any failure of the user's schedule
            raise ValueError(f"learning_rate: expected a schedule that accepts the step count (an int32 scalar), "
                             f"got one that raised {type(e).__name__} at step 0: {e}") from None
        if np.ndim(first) != 0:
            raise ValueError(f"learning_rate: expected a schedule that returns a scalar, got shape {np.shape(first)} "
                             "at step 0")
        if not isinstance(first, jax.core.Tracer):
            non_negative("learning_rate (the schedule at step 0)", np.asarray(first).astype(np.float64)[()])
        return v
    return positive("learning_rate", v)


def descend(lr, count, step):
    """``-lr_t * step`` leaf by leaf, with ``lr_t = lr(count)`` for a schedule (``count`` 0-based) and the rate
    cast to each leaf's dtype, as Optax's ``scale_by_learning_rate`` does."""
    if callable(lr):
        with jax.numpy_dtype_promotion("standard"):  # Optax's schedules mix the int32 count with floats
            rate = lr(count)
    else:
        rate = lr
    return jax.tree.map(lambda s: -jnp.asarray(rate, s.dtype) * s, step)


def zeros_like(params):
    return jax.tree.map(jnp.zeros_like, params)


def new_count():
    return jnp.zeros([], jnp.int32)
