"""Per-layer checks: every hand-written backward against ``jax.vjp`` / ``jax.grad`` of its own forward."""
from __future__ import annotations

import jax
import jax.numpy as jnp

import jaxmlp
from jaxmlp.dense import Dense, dense_backward, dense_forward
from verification.suite.comparison import compare_trees
from verification.suite.rows import Row
from verification.checker.base.tolerances import F32_RTOL, F64_RTOL

F64 = jnp.float64


def _keys(n, seed=0):
    return jax.random.split(jax.random.key(seed), n)


def dense_layer():
    k = _keys(4)
    for use_bias in (True, False):
        p = Dense(jax.random.normal(k[0], (5, 3), F64), jax.random.normal(k[1], (3,), F64) if use_bias else None)
        a = jax.random.normal(k[2], (7, 5), F64)
        ct = jax.random.normal(k[3], (7, 3), F64)
        _, vjp = jax.vjp(dense_forward, p, a)
        ref = vjp(ct)
        got = dense_backward(p, a, ct)
        yield Row.from_comparison(
            f"layer/dense{'' if use_bias else '_nobias'}", "dW=A^T d, db=sum d, dA=d W^T (Batch Backprop (2019-05-06), summary; Matrix Backprop (2019-05-15) trace)",
            compare_trees(got, ref, F64_RTOL), F64_RTOL)


def activations():
    k = _keys(2, 1)
    for name, act in jaxmlp.ACTIVATIONS.items():
        z = 3 * jax.random.normal(k[0], (6, 5), F64)
        z = z.at[0, :3].set(0.0)  # exact zeros: the relu / leaky_relu convention at 0
        ct = jax.random.normal(k[1], (6, 5), F64)
        a, vjp = jax.vjp(act.forward, z)
        (ref,) = vjp(ct)
        got = ct * act.derivative(z, a)
        yield Row.from_comparison(f"layer/activation/{name}", f"{name}' closed form (Higham & Higham notes (2024-09-10) sigma'=sigma(1-sigma); relu'(0)=0)",
                                  compare_trees(got, ref, F64_RTOL), F64_RTOL)


def _targets(head, key, shape, dtype):
    if head.classes:
        return jax.nn.one_hot(jax.random.randint(key, shape[:1], 0, shape[1]), shape[1], dtype=dtype)
    return jax.random.uniform(key, shape, dtype)


HEAD_SOURCES = {
    "softmax_cross_entropy": "dZ=(P-Y)/m (DNN Maths (2020-01-12) trace trick, Batch Backprop (2019-05-06))",
    "sigmoid_quadratic": "delta^L=sigma'(z)(a-y)/N (Higham & Higham notes (2024-09-10) Lemma 1 (1.1), cost eq. (6))",
    "sum_squares": "grad_y_pred=2(Y^-Y) (the PyTorch tutorial program in Matrix Backprop (2019-05-15))",
    "mse": "2(Y^-Y)/(m n_L)",
    "sigmoid_bce": "(sigma(Z)-Y)/m",
}


def heads():
    k = _keys(2, 2)
    for name, head in jaxmlp.HEADS.items():
        for dtype, tol, scale, tag in ((F64, F64_RTOL, 2.0, "f64"), (jnp.float32, F32_RTOL, 1e4, "f32_logits_1e4")):
            z = scale * jax.random.normal(k[0], (8, 4), dtype)
            y = _targets(head, k[1], (8, 4), dtype)
            ref = jax.grad(head.loss)(z, y)
            cmp = compare_trees(head.delta(z, y), ref, tol)
            if not bool(jnp.isfinite(head.loss(z, y))):
                cmp.ok, cmp.where = False, "loss not finite"
            yield Row.from_comparison(f"head/{name}/{tag}", HEAD_SOURCES[name], cmp, tol)


def regularizers():
    k = _keys(2, 3)
    p = Dense(jax.random.normal(k[0], (4, 3), F64).at[0, 0].set(0.0), jax.random.normal(k[1], (3,), F64))
    for l1, l2, tag in ((0.0, 0.3, "l2"), (0.2, 0.0, "l1"), (0.2, 0.3, "l1+l2")):
        ref = jax.grad(lambda q: jaxmlp.penalty((q,), l1, l2))(p)
        got = Dense(jaxmlp.penalty_grad(p, l1, l2), jnp.zeros_like(p.b))
        yield Row.from_comparison(f"layer/penalty/{tag}", "L2: lambda W; L1: lambda sign(W) (DNN Maths (2020-01-12), corrected)",
                                  compare_trees(got, ref, F64_RTOL), F64_RTOL)
