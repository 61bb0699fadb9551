"""Standard test problems: the one builder of random networks and data for the checks, the catalogue and the tests.

>>> p = mlp_problem((3, 4, 2), "tanh", "softmax_cross_entropy", m=5)
>>> p.x.shape, p.y.shape, p.model.sizes
((5, 3), (5,), (3, 4, 2))
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax

import jaxmlp
from verification.catalogue.data import F64

class Problem(NamedTuple):
    model: jaxmlp.MLP
    params: Any
    x: jax.Array  # (m, n_0)
    y: jax.Array  # (m,) integer labels for classification heads, else (m, n_L) targets in [0, 1)


def mlp_problem(sizes, activation, head, *, m, dtype=F64, seed=0, init="higham", x_scale=1.0, zero_rows=0,
                use_bias=True, batchnorm=False, integer_labels=None) -> Problem:
    """A random model, params, x and y from one key: ``split(key(seed), 3)`` for params, x and y.

    ``zero_rows`` sets the first rows of ``x`` to 0: with zero biases (any ``init`` but ``"higham"``) the
    first layer's pre-activations are then exactly 0, the kink of relu.  ``integer_labels`` (default: the
    head takes classes) draws integer labels in ``[0, n_L)`` instead of targets.
    """
    model = jaxmlp.MLP(tuple(sizes), activation, head, use_bias=use_bias, batchnorm=batchnorm)
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = jaxmlp.init(model, k1, init, dtype=dtype)
    x = x_scale * jax.random.normal(k2, (m, sizes[0]), dtype)
    if zero_rows:
        x = x.at[:zero_rows].set(0.0)
    if jaxmlp.get_head(head).classes if integer_labels is None else integer_labels:
        y = jax.random.randint(k3, (m,), 0, sizes[-1])
    else:
        y = jax.random.uniform(k3, (m, sizes[-1]), dtype)
    return Problem(model, params, x, y)


def grid_problem(activation, head, depth, width, batch, dtype=F64, seed=0, n_in=3, n_out=4, x_scale=1.0) -> Problem:
    """:func:`mlp_problem` with ``depth`` layers: ``n_in``, ``depth - 1`` hidden layers of ``width``, ``n_out``."""
    sizes = (n_in,) + (width,) * (depth - 1) + (n_out,)
    return mlp_problem(sizes, activation, head, m=batch, dtype=dtype, seed=seed, x_scale=x_scale)
