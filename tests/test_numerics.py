"""Numerical robustness: half precision, extreme logits and pre-activations, relu at exactly 0, determinism."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmlp
from verification.suite.comparison import compare_trees
from verification.checker.base.tolerances import BF16_RTOL, F16_RTOL, F64_RTOL

CASES = [("relu", "softmax_cross_entropy"), ("sigmoid", "sigmoid_quadratic"), ("tanh", "mse")]


def _problem(act, head, dtype, scale=1.0, seed=0):
    model = jaxmlp.MLP((4, 8, 3), act, head)
    params = jaxmlp.init(model, jax.random.key(seed), dtype=dtype)
    x = scale * jax.random.normal(jax.random.key(seed + 1), (16, 4), dtype)
    labels = jnp.arange(16) % 3
    y = labels if head == "softmax_cross_entropy" else jax.nn.one_hot(labels, 3, dtype=dtype)
    return model, params, x, y


def max_rel_error(a, b):
    return compare_trees(a, b, rtol=np.inf).max_rel


@functools.partial(jax.jit, static_argnums=0)
def _grads(model, params, x, y):
    """(J, manual grads, jax.grad) in one compiled call: eager per-op dispatch would dominate the test time."""
    J, grads = jaxmlp.value_and_grad(model, params, x, y)
    return J, grads, jax.grad(lambda p: jaxmlp.loss(model, p, x, y))(params)


def _cast(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype), tree)


@pytest.mark.parametrize("dtype, rtol", [(jnp.float16, F16_RTOL), (jnp.bfloat16, BF16_RTOL)], ids=["f16", "bf16"])
@pytest.mark.parametrize("act, head", CASES)
def test_half_precision_runs_in_its_own_dtype_and_matches_float32(act, head, dtype, rtol):
    with jax.numpy_dtype_promotion("standard"):
        model, params, x, y = _problem(act, head, dtype)
        J, grads, auto = _grads(model, params, x, y)
        assert J.dtype == dtype and {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(dtype)}
        y32 = y if jnp.issubdtype(y.dtype, jnp.integer) else y.astype(jnp.float32)
        _, g32, _ = _grads(model, _cast(params, jnp.float32), x.astype(jnp.float32), y32)
    assert max_rel_error(_cast(grads, jnp.float32), g32) < rtol
    assert max_rel_error(_cast(grads, jnp.float32), _cast(auto, jnp.float32)) < rtol


def test_half_precision_data_is_cast_to_the_params_dtype():
    model, params, x, y = _problem("tanh", "mse", jnp.float32)
    _, g, _ = _grads(model, params, x.astype(jnp.bfloat16), y.astype(jnp.bfloat16))
    assert {a.dtype for a in jax.tree.leaves(g)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("act, head, scale", [("identity", "softmax_cross_entropy", 1e4),
                                              ("identity", "sigmoid_bce", 1e4),
                                              ("sigmoid", "sigmoid_quadratic", 1e3),
                                              ("sigmoid", "mse", 1e3)])
def test_extreme_inputs_give_finite_verified_gradients(act, head, scale):
    model = jaxmlp.MLP((4, 8, 3), act, head)
    params = jaxmlp.init(model, jax.random.key(2), dtype=jnp.float64)
    x = scale * jax.random.normal(jax.random.key(3), (16, 4), jnp.float64)
    labels = jnp.arange(16) % 3
    y = labels if head == "softmax_cross_entropy" else jax.nn.one_hot(labels, 3, dtype=jnp.float64)
    z = jaxmlp.forward(model, params, x)[0][-1 if act == "identity" else 0]
    assert float(jnp.max(jnp.abs(z))) > scale / 10  # the regime is really reached
    J, grads, auto = _grads(model, params, x, y)
    assert np.isfinite(float(J)) and all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert max_rel_error(grads, auto) < F64_RTOL


def test_relu_at_exactly_zero_follows_jax_convention():
    model = jaxmlp.MLP((2, 3, 2), "relu", "mse")
    params = (jaxmlp.Dense(jnp.zeros((2, 3)), jnp.zeros(3)), jaxmlp.Dense(jnp.ones((3, 2)), jnp.zeros(2)))
    x, y = jnp.ones((4, 2)), jnp.ones((4, 2))
    _, grads, auto = _grads(model, params, x, y)  # every hidden pre-activation is exactly 0
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    chex.assert_trees_all_equal(grads, auto)
    assert float(jnp.max(jnp.abs(grads[0].W))) == 0.0  # relu'(0) = 0, as jax.nn.relu
