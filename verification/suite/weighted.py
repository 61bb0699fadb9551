"""Weighted (padded) batches: value_and_grad with ``weights`` against jax.grad of the weighted loss.

The rows of weight 0 are padding (multi-process data); no other row passes ``weights``, so without these a
wrong weighted loss or delta (:func:`jaxmlp.heads.weighted_loss_and_delta`) survives the suite
(docs/mutation.md: the mutation run's survivors).

``padding_rows``: the padded batch against the same batch with its padding removed, unweighted (the contract
of ``weights``: exactly as if the padding were not there).  jax.grad of the weighted loss cannot see a wrong
normalisation that the loss and its delta share (``n = -sum(w)`` negates both); the unpadded batch can.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxmlp
from verification.checker.base.tolerances import F64_RTOL
from verification.suite.comparison import compare_trees
from verification.suite.problems import grid_problem
from verification.suite.rows import Row

WEIGHTED = "J = sum w_i C_i / sum w_i (mean heads), sum w_i C_i (sum heads); delta_i = w_i (m/n) delta_i"
PADDING = "weights of 0 and 1: value_and_grad equal to the unweighted batch of the rows of weight 1"
_W = (1.0, 0.0, 1.0, 1.0, 0.0, 1.0)


def weighted_rows():
    """Every head, one activation each, 6 rows of which 2 weigh 0, with L1 and L2."""
    acts = list(jaxmlp.ACTIVATIONS)
    for i, head in enumerate(jaxmlp.HEADS):
        model, params, x, y = grid_problem(acts[i % len(acts)], head, 3, 3, 6, seed=80 + i)
        w = jnp.asarray(_W, jnp.float64)
        ref = jax.value_and_grad(lambda p, model=model, x=x, y=y, w=w: jaxmlp.loss(
            model, p, x, y, l1=0.01, l2=0.1, weights=w))(params)
        got = jaxmlp.value_and_grad(model, params, x, y, l1=0.01, l2=0.1, weights=w)
        yield Row.from_comparison(f"net/weighted/{head}", WEIGHTED, compare_trees(got, ref, F64_RTOL), F64_RTOL)


def padding_rows():
    """Every head, one activation each (not weighted_rows' pairing): the padded batch of 6 rows (2 of weight
    0) against its 4 rows of weight 1, unweighted, with L1 and L2."""
    acts = list(jaxmlp.ACTIVATIONS)
    keep = np.asarray(_W) == 1.0
    for i, head in enumerate(jaxmlp.HEADS):
        model, params, x, y = grid_problem(acts[(i + 1) % len(acts)], head, 3, 3, 6, seed=90 + i)
        got = jaxmlp.value_and_grad(model, params, x, y, l1=0.01, l2=0.1, weights=jnp.asarray(_W, jnp.float64))
        ref = jaxmlp.value_and_grad(model, params, x[keep], y[keep], l1=0.01, l2=0.1)
        yield Row.from_comparison(f"net/padding/{head}", PADDING, compare_trees(got, ref, F64_RTOL), F64_RTOL)
