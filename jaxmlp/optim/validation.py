"""Hyperparameter checks shared by the optimizers.

A hyperparameter may be a Python number or a JAX/numpy scalar (as
``optax.inject_hyperparams`` passes them, so that a population can vmap over
learning rates).  Concrete values are checked; traced ones cannot be and pass.
"""
from __future__ import annotations

import math

import jax
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


def zeros_like(params):
    import jax.numpy as jnp

    return jax.tree.map(jnp.zeros_like, params)
