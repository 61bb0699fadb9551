"""Batch norm: modes, running statistics, state threading, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmlp
from jaxmlp import optim
from jaxmlp import train

MODEL = jaxmlp.MLP((3, 5, 4, 2), "tanh", use_bias=False, batchnorm=True)
PARAMS = jaxmlp.init(MODEL, jax.random.key(0), dtype=jnp.float64)
STATE = jaxmlp.init_state(MODEL, jnp.float64)
X = 2 + 3 * jax.random.normal(jax.random.key(1), (8, 3), jnp.float64)
Y = jnp.array([0, 1, 1, 0, 1, 0, 0, 1])


def test_params_and_state_layout():
    assert PARAMS[0].gamma.shape == (5,) and PARAMS[1].beta.shape == (4,) and PARAMS[2].gamma is None
    assert STATE[2] is None and STATE[0].var.shape == (5,)
    assert MODEL.num_params == 3 * 5 + 5 * 4 + 4 * 2 + 2 * (5 + 4)


def test_running_statistics_follow_the_flax_convention():
    _, _, new = jaxmlp.value_grad_and_state(MODEL, PARAMS, X, Y, STATE)
    z1 = X @ PARAMS[0].W
    np.testing.assert_allclose(new[0].mean, 0.01 * z1.mean(0), rtol=1e-12)
    np.testing.assert_allclose(new[0].var, 0.99 + 0.01 * z1.var(0), rtol=1e-12)
    torch_like = jaxmlp.MLP(MODEL.sizes, "tanh", use_bias=False, batchnorm=True, bn_momentum=0.9, bn_unbiased=True)
    _, _, new = jaxmlp.value_grad_and_state(torch_like, PARAMS, X, Y, STATE)
    np.testing.assert_allclose(new[0].var, 0.9 + 0.1 * z1.var(0, ddof=1), rtol=1e-12)


def test_eval_mode_uses_running_statistics_and_any_batch_size():
    state = jax.tree.map(lambda t: t, STATE)
    p1 = jaxmlp.predict(MODEL, PARAMS, X[:1], state=state)
    p8 = jaxmlp.predict(MODEL, PARAMS, X, state=state)
    np.testing.assert_allclose(p1[0], p8[0], rtol=1e-12)  # eval mode: rows are independent


def test_train_mode_batch_of_one_is_an_error():
    with pytest.raises(ValueError, match=r"x: batch norm in train mode needs m >= 2 rows.*\(1, 3\)"):
        jaxmlp.value_and_grad(MODEL, PARAMS, X[:1], Y[:1])
    with pytest.raises(ValueError, match="batch_size: batch norm in train mode needs batches of >= 2 rows"):
        train.train(train.manual_grad(MODEL), optim.sgd(0.1), PARAMS, X, Y, key=jax.random.key(0), steps=2,
                scheme="sgd_replacement", state=STATE)
    with pytest.raises(ValueError, match="state: a batchnorm model predicts with its running statistics"):
        jaxmlp.predict(MODEL, PARAMS, X)


def test_bias_before_bn_is_redundant():
    with_bias = jaxmlp.MLP((3, 5, 4, 2), "tanh", batchnorm=True)
    params = jax.tree.map(lambda t: t + 0.1, jaxmlp.init(with_bias, jax.random.key(0), "higham", dtype=jnp.float64))
    _, g = jaxmlp.value_and_grad(with_bias, params, X, Y)
    ref = jax.grad(lambda p: jaxmlp.loss(with_bias, p, X, Y))(params)
    scale = max(float(jnp.max(jnp.abs(t))) for t in jax.tree.leaves(ref))
    for l in (0, 1):
        assert float(jnp.max(jnp.abs(g[l].b))) <= 1e-14 * scale and float(jnp.max(jnp.abs(ref[l].b))) <= 1e-14 * scale


@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_training_loop_threads_the_state(grad):
    make = train.manual_grad if grad == "manual" else train.autodiff_grad
    r = train.train(make(MODEL), optim.sgd(0.1), PARAMS, X, Y, key=jax.random.key(0), steps=30, scheme="minibatch",
                batch_size=4, log_every=10, state=STATE, progress=False)
    assert r.losses[-1] < r.losses[0]
    assert not np.allclose(r.state[0].mean, 0) and r.state[2] is None
    if grad == "autodiff":
        m = train.train(train.manual_grad(MODEL), optim.sgd(0.1), PARAMS, X, Y, key=jax.random.key(0), steps=30,
                    scheme="minibatch", batch_size=4, log_every=10, state=STATE, progress=False)
        np.testing.assert_allclose(r.losses, m.losses, rtol=1e-10)
        np.testing.assert_allclose(r.state[1].var, m.state[1].var, rtol=1e-10)


def test_paths_that_need_per_example_independence_refuse_bn():
    with pytest.raises(ValueError, match="model.batchnorm: Lemma 1 is per example"):
        jaxmlp.lemma1_grad(MODEL, PARAMS, X, Y)
    ls = jaxmlp.MLP((3, 4, 2), "tanh", "mse", use_bias=False, batchnorm=True)
    with pytest.raises(ValueError, match="model.batchnorm: the residual Jacobian is per example"):
        jaxmlp.residual_jacobian(ls, jaxmlp.init(ls, jax.random.key(0)), X)


def test_bad_bn_params_and_state():
    broken = (PARAMS[0]._replace(gamma=None),) + PARAMS[1:]
    with pytest.raises(ValueError, match=r"params\[0\].gamma \(layer 1\): expected an array of shape \(5,\), got None"):
        jaxmlp.loss(MODEL, broken, X, Y)
    with pytest.raises(ValueError, match=r"state\[1\] \(layer 2\): expected BNState"):
        jaxmlp.predict(MODEL, PARAMS, X, state=(STATE[0], None, None))
    with pytest.raises(ValueError, match="batchnorm: needs at least one hidden layer"):
        jaxmlp.MLP((3, 2), batchnorm=True)
