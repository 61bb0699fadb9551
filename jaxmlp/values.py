"""What a value is, before any model exists: a leaf module that every other jaxmlp module may import.

* :func:`is_concrete`, :func:`is_static_zero`: whether a value is known now, and known to be 0;
* :func:`host`: an array on this host, also when it spans several processes;
* :func:`check_int`: the one validator of integer arguments (``steps``, ``keep``, ``process_id``, ...);
* :func:`as_key`: the one validator of PRNG keys, used by ``init``, ``train``, ``train_population`` and
  ``checkpoint`` alike: a typed key as it is, a raw ``PRNGKey`` wrapped (the same random bits).

>>> check_int("steps", 3, lo=1)
3
>>> check_int("steps", True, lo=1)
Traceback (most recent call last):
...
ValueError: steps: expected an int >= 1, got True
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """Whether ``x`` has a value now (is not a tracer inside ``jit``/``vmap``/``grad``)."""
    return not isinstance(x, jax.core.Tracer)


def is_static_zero(v) -> bool:
    """Whether ``v`` is a Python or NumPy number equal to 0, known before tracing.

    A term scaled by such a coefficient is skipped, not multiplied by 0: XLA
    may not fold ``0 * x`` away, since ``0 * inf`` is NaN.  A JAX array (e.g.
    a hyperparameter injected by ``optax.inject_hyperparams``) never counts,
    because it may be traced or change between calls.
    """
    return isinstance(v, (int, float, np.number)) and v == 0


def host(a) -> np.ndarray:
    """``a`` as a NumPy array on this host, also when it spans the devices of several processes (a global
    array of multi-process training): every process then gathers the same whole array, so every process
    reaches the same verdict (``jax.experimental.multihost_utils.process_allgather``)."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        if a.is_fully_replicated:
            return np.asarray(a.addressable_data(0))
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(a)


def check_int(name: str, v, lo: int = 0, hi: Optional[int] = None) -> int:
    """``v`` as an ``int`` in ``[lo, hi]`` (no upper bound when ``hi`` is None); a bool is not an int here."""
    ok = not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, np.integer)) and v >= lo
    ok = ok and (hi is None or v <= hi)
    if not ok:
        span = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name}: expected an int {span}, got {v!r}")
    return int(v)


def as_key(name: str, key, shape: tuple = ()):
    """``key`` as typed PRNG keys of ``shape``: typed keys (``jax.random.key``, ``jax.random.split``) as they
    are, raw uint32 keys of shape ``shape + (2,)`` (``jax.random.PRNGKey``) wrapped with the default
    implementation (the same random bits)."""
    dtype = getattr(key, "dtype", None)
    got_shape = tuple(jnp.shape(key)) if dtype is not None else None
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and got_shape == tuple(shape):
        return key
    if dtype == jnp.uint32 and got_shape == tuple(shape) + (2,):
        return jax.random.wrap_key_data(key)
    got = f"{dtype} of shape {got_shape}" if dtype is not None else f"{type(key).__name__} {key!r:.40}"
    what = "a PRNG key (jax.random.key(seed))" if shape == () else \
        f"{shape} PRNG keys (jax.random.split(key, {shape[0]}))"
    raise TypeError(f"{name}: expected {what}, got {got}")
