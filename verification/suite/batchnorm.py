"""Batch-norm checks: the compact backward against jax.vjp, and whole networks with BN against jax.grad."""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

import jaxmlp
from jaxmlp.batchnorm import BatchNorm, bn_backward, bn_forward
from verification.suite.comparison import compare_trees
from verification.suite.rows import Row
from verification.checker.base.tolerances import F32_RTOL, F64_RTOL

BN_BACKWARD = "dz = gamma/(m sqrt(var+eps)) (m dy - sum dy - xhat sum dy xhat); dgamma = sum dy xhat; dbeta = sum dy"
# Identity hidden activations are left out of the network rows, and the models have no dense bias: a shift
# before batch norm is removed by that (or the next) batch norm, so such a gradient is exactly 0 and its
# relative error undefined (tests/test_batchnorm.py checks that it is 0).
ACTS = [a for a in jaxmlp.ACTIVATIONS if a != "identity"]


def bn_layer():
    for dtype, tol in ((jnp.float64, F64_RTOL), (jnp.float32, F32_RTOL)):
        k = jax.random.split(jax.random.key(50), 4)
        p = BatchNorm(1 + 0.3 * jax.random.normal(k[0], (5,), dtype), jax.random.normal(k[1], (5,), dtype))
        z = 2 + 3 * jax.random.normal(k[2], (9, 5), dtype)
        dy = jax.random.normal(k[3], (9, 5), dtype)
        _, vjp = jax.vjp(lambda p, z: bn_forward(p, z, 1e-5)[0], p, z)
        _, cache, _ = bn_forward(p, z, 1e-5)
        yield Row.from_comparison(f"bn/layer/{jnp.dtype(dtype).name}", BN_BACKWARD,
                                  compare_trees(bn_backward(p, cache, dy), vjp(dy), tol), tol)


def bn_network(select=None):
    """Every activation but identity x head in float64, one activation per head in float32 too; with ``select``
    (``select(act, head) -> bool``; the test suite's sample), the pairs it keeps."""
    for i, (act, head) in enumerate(itertools.product(ACTS, jaxmlp.HEADS)):
        if select is not None and not select(act, head):
            continue
        f32 = [(jnp.float32, F32_RTOL)] if act == ACTS[i % len(ACTS)] else []  # float32: one activation per head
        for dtype, tol in [(jnp.float64, F64_RTOL)] + f32:
            model = jaxmlp.MLP((3, 6, 5, 4), act, head, use_bias=False, batchnorm=True)
            k = jax.random.split(jax.random.key(60 + i), 4)
            params = jaxmlp.init(model, k[0], "higham", dtype=dtype)
            params = jax.tree.map(lambda t: t + 0.3 * jax.random.normal(k[3], t.shape, t.dtype), params)
            x = jax.random.normal(k[1], (8, 3), dtype)
            y = (jax.random.randint(k[2], (8,), 0, 4) if jaxmlp.get_head(head).classes
                 else jax.random.uniform(k[2], (8, 4), dtype))
            ref = jax.value_and_grad(lambda p: jaxmlp.loss(model, p, x, y, l2=0.05))(params)
            got = jaxmlp.value_and_grad(model, params, x, y, l2=0.05)
            yield Row.from_comparison(f"bn/net/{act}/{head}/{jnp.dtype(dtype).name}",
                                      "BN backward inside the delta recursion", compare_trees(got, ref, tol), tol)
