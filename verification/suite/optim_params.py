"""Optimizers without weight decay called as their docstrings call them: ``update(grads, state)``, no params.

The trajectories always pass ``params``, so without these an optimizer that needs the params where it does
not (a weight-decay branch taken for every optimizer) survives the suite (docs/mutation.md).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import optim
from verification.suite.comparison import Comparison, compare_trees
from verification.suite.rows import Row

NO_PARAMS = "update(g, s) without params equal to update(g, s, params) (no weight decay: params unused)"
OPTIMIZERS = {"sgd": lambda: optim.sgd(0.1), "heavy_ball": lambda: optim.heavy_ball(0.1, 0.9),
              "nesterov": lambda: optim.nesterov(0.1, 0.9), "momentum_ema": lambda: optim.momentum(0.1, 0.9),
              "rmsprop": lambda: optim.rmsprop(0.1), "adam": lambda: optim.adam(0.1),
              "adam_no_bias_correction": lambda: optim.adam(0.1, bias_correction=False)}


def no_params_rows():
    """Each optimizer without weight decay: two updates without params against two with them."""
    k = jax.random.split(jax.random.key(5), 3)
    params = {"w": jax.random.normal(k[0], (3, 2), jnp.float64), "b": jax.random.normal(k[1], (2,), jnp.float64)}
    grads = jax.tree.map(lambda t: 2.0 * t + 1.0, params)
    for name, make in OPTIMIZERS.items():
        opt = make()
        s0 = opt.init(params)
        try:
            u1, s1 = opt.update(grads, s0)
            got = (u1, opt.update(grads, s1)[0])
        except Exception as e:  # noqa: BLE001 -- a raising update is this row's failure
            yield Row.from_comparison(f"optim/no_params/{name}", NO_PARAMS, _raised(e), 0.0)
            continue
        r1, t1 = opt.update(grads, s0, params)
        ref = (r1, opt.update(grads, t1, params)[0])
        yield Row.from_comparison(f"optim/no_params/{name}", NO_PARAMS, compare_trees(got, ref, 0.0), 0.0)


def _raised(e):
    return Comparison(np.inf, np.inf, False, f"raises {type(e).__name__}: {e}"[:160])
