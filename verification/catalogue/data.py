"""The catalogue's random parameters and data: plain pytrees of arrays, no model library.

>>> x, y = random_data(0, 4, 3, 2)
>>> x.shape, y.shape
((4, 3), (4, 2))
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

F64 = jnp.float64


def random_tree(shapes, *, seed=0, dtype=F64, scale=1.0):
    """A dict of standard-normal arrays (times ``scale``), one per ``name: shape``, from ``key(seed)``.

    >>> {k: v.shape for k, v in random_tree({"W": (2, 3), "b": (3,)}).items()}
    {'W': (2, 3), 'b': (3,)}
    """
    keys = jax.random.split(jax.random.key(seed), len(shapes))
    return {name: scale * jax.random.normal(k, shape, dtype) for k, (name, shape) in zip(keys, shapes.items())}


def random_data(seed, m, n_in, n_out, *, classes=False, x_scale=1.0, dtype=F64, steps=None):
    """``x`` (m, n_in) standard normal times ``x_scale``, and ``y``: one-hot rows over ``n_out`` classes, or
    (m, n_out) standard normal targets; from ``key(seed + 100)`` (apart from :func:`random_tree`'s keys).
    With ``steps``, a sequence: ``x`` (steps, m, n_in) and ``y`` (steps, m, n_out) (regression only).

    >>> x, y = random_data(0, 4, 3, 2, classes=True)
    >>> x.shape, y.shape, [float(v) for v in y.sum(1)]
    ((4, 3), (4, 2), [1.0, 1.0, 1.0, 1.0])
    """
    k1, k2 = jax.random.split(jax.random.key(seed + 100))
    if steps is not None:
        return (x_scale * jax.random.normal(k1, (steps, m, n_in), dtype),
                jax.random.normal(k2, (steps, m, n_out), dtype))
    x = x_scale * jax.random.normal(k1, (m, n_in), dtype)
    if classes:
        return x, jax.nn.one_hot(jax.random.randint(k2, (m,), 0, n_out), n_out, dtype=dtype)
    return x, jax.random.normal(k2, (m, n_out), dtype)
