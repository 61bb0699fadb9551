"""Population training: each member follows its own train() trajectory; per-member learning rates; NaN isolation."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmlp
from jaxmlp import optim
from jaxmlp import train
from jaxmlp.population import train_population

MODEL = jaxmlp.MLP((2, 2, 3, 2), "sigmoid", "sigmoid_quadratic")
X, Y = jaxmlp.data.higham_points(dtype=np.float64)
P = 4
PARAMS = jax.vmap(lambda k: jaxmlp.init(MODEL, k, "higham", jnp.float64))(jax.random.split(jax.random.key(0), P))
KEYS = jax.random.split(jax.random.key(1), P)
GRAD = train.manual_grad(MODEL)
KW = dict(steps=300, scheme="sgd_replacement", log_every=100)


def _member(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def test_each_member_is_its_own_train_run():
    r = train_population(GRAD, optim.sgd(0.05), PARAMS, X, Y, keys=KEYS, **KW)
    assert r.losses.shape == (P, 4) and list(r.steps) == [0, 100, 200, 300] and np.all(r.non_finite_step == -1)
    for i in range(P):
        one = train.train(GRAD, optim.sgd(0.05), _member(PARAMS, i), X, Y, key=KEYS[i], progress=False, **KW)
        chex.assert_trees_all_equal(_member(r.params, i), one.params)
        np.testing.assert_allclose(r.losses[i], one.losses, rtol=1e-13)


def test_per_member_learning_rates_and_a_diverging_member_is_isolated():
    lrs = jnp.array([0.01, 0.05, 0.5, jnp.inf])  # the last member's first update makes its params infinite
    opt = optax.inject_hyperparams(optim.sgd)(learning_rate=0.1)
    with jax.numpy_dtype_promotion("standard"):
        r = train_population(GRAD, opt, PARAMS, X * 1e3, Y, keys=KEYS, hyperparams={"learning_rate": lrs}, **KW)
        for i in range(3):
            one = train.train(GRAD, optim.sgd(float(lrs[i])), _member(PARAMS, i), X * 1e3, Y, key=KEYS[i],
                          progress=False, **KW)
            np.testing.assert_allclose(r.losses[i], one.losses, rtol=1e-12)
    assert list(r.non_finite_step) == [-1, -1, -1, 0]
    assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(r.params))  # the diverged member kept its last good params


def test_bad_population_arguments():
    with pytest.raises(TypeError, match=r"keys: expected \(4,\) PRNG keys"):
        train_population(GRAD, optim.sgd(0.05), PARAMS, X, Y, keys=KEYS[:3], **KW)
    with pytest.raises(TypeError, match="hyperparams: the optimizer must come from optax.inject_hyperparams"):
        train_population(GRAD, optim.sgd(0.05), PARAMS, X, Y, keys=KEYS, hyperparams={"lr": jnp.ones(P)}, **KW)
    with pytest.raises(ValueError, match="params: expected every leaf to share a leading population axis"):
        train_population(GRAD, optim.sgd(0.05), jaxmlp.init(MODEL, jax.random.key(0)), X, Y, keys=KEYS, **KW)
