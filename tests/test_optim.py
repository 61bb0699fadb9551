"""Hand-written optimizers: pure jitted updates, the source documents' forms, clear hyperparameter errors, the same loop as Optax.

The 1000-step trajectories against Optax are the verification rows optim/* (tests/test_verification.py).
"""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmlp
from jaxmlp import optim

def test_state_is_a_namedtuple_and_update_is_pure():
    params = (jaxmlp.Dense(jnp.ones((2, 2)), jnp.zeros(2)),)
    g = jax.tree.map(lambda p: 0.5 * jnp.ones_like(p), params)
    opt = optim.adam(0.1)
    s0 = opt.init(params)
    assert isinstance(s0, optim.AdamState) and isinstance(s0, tuple)
    u1, s1 = jax.jit(opt.update)(g, s0, params)
    u2, _ = jax.jit(opt.update)(g, s0, params)
    chex.assert_trees_all_equal(u1, u2)
    assert int(s1.count) == 1 and int(s0.count) == 0


def test_adamw_mask_leaves_biases_undecayed():
    params = (jaxmlp.Dense(jnp.ones((2, 2)), jnp.ones(2)),)
    zero = jax.tree.map(jnp.zeros_like, params)
    opt = optim.adamw(0.1, weight_decay=0.5, mask=optim.weights_only)
    u, _ = opt.update(zero, opt.init(params), params)
    assert jnp.allclose(u[0].W, -0.05) and jnp.all(u[0].b == 0)


def test_dnn_maths_adam_differs_from_kingma_ba_at_first_step():
    params = {"w": jnp.array([1.0])}
    g = {"w": jnp.array([0.1])}
    u_bc, _ = optim.adam(0.1).update(g, optim.adam(0.1).init(params))
    u_seed, _ = optim.adam(0.1, bias_correction=False).update(g, optim.adam(0.1).init(params))
    # Kingma & Ba's first step is ~lr; DNN Maths (2020-01-12)'s is lr (1-b1)/sqrt(1-b2) ~ 3.16 lr
    assert abs(float(u_bc["w"][0]) + 0.1) < 1e-6
    assert abs(float(u_seed["w"][0]) + 0.1 * 0.1 / np.sqrt(0.001)) < 1e-5


def test_rmsprop_eps_keeps_zero_gradient_finite():
    params = {"w": jnp.zeros(3)}
    opt = optim.rmsprop(0.1)
    u, _ = opt.update({"w": jnp.zeros(3)}, opt.init(params))
    assert jnp.all(jnp.isfinite(u["w"]))


@pytest.mark.parametrize("make, kwargs, msg", [
    (optim.sgd, {"learning_rate": 0.0}, "learning_rate: expected a finite number > 0, got 0.0"),
    (optim.sgd, {"learning_rate": -1}, "learning_rate: expected a finite number > 0, got -1"),
    (optim.momentum, {"learning_rate": 0.1, "momentum": 1.0}, r"momentum: expected a number in \[0, 1\), got 1.0"),
    (optim.rmsprop, {"learning_rate": 0.1, "eps": -1e-8}, "eps: expected a finite number >= 0, got -1e-08"),
    (optim.adam, {"learning_rate": 0.1, "b2": -0.1}, r"b2: expected a number in \[0, 1\)"),
    (optim.adamw, {"learning_rate": 0.1, "weight_decay": -1.0}, "weight_decay: expected a finite number >= 0"),
])
def test_bad_hyperparameters(make, kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        make(**kwargs)


@pytest.mark.parametrize("opt", [optim.adam(0.01), optax.adam(0.01)], ids=["jaxmlp", "optax"])
def test_either_optimizer_fits_the_same_loop(opt):
    model = jaxmlp.MLP((2, 8, 2), "tanh")
    params = jaxmlp.init(model, jax.random.key(0), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (32, 2), jnp.float64)
    y = (x[:, 0] > 0).astype(jnp.int32)
    with jax.numpy_dtype_promotion("standard"):  # Optax's step count is int32
        r = jaxmlp.train.train(jaxmlp.train.manual_grad(model), opt, params, x, y, key=jax.random.key(2), steps=50,
                               log_every=10, progress=False)
    assert r.losses[-1] < r.losses[0]
