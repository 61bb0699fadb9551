"""Hyperparameter checks shared by the optimizers (private)."""
from __future__ import annotations

import math


def positive(name, v):
    if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
        raise ValueError(f"{name}: expected a finite number > 0, got {v!r}")
    return float(v)


def non_negative(name, v):
    if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0):
        raise ValueError(f"{name}: expected a finite number >= 0, got {v!r}")
    return float(v)


def decay(name, v):
    if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1):
        raise ValueError(f"{name}: expected a number in [0, 1), got {v!r}")
    return float(v)


def zeros_like(params):
    import jax
    import jax.numpy as jnp

    return jax.tree.map(jnp.zeros_like, params)
