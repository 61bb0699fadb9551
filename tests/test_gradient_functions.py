"""Gradient functions: one protocol (GradFn) for the loops, one home for each name, no method strings."""
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmlp
from jaxmlp import gradient_functions as gf
from jaxmlp import loop, optim, population, train

MODEL = jaxmlp.MLP((2, 5, 3), "tanh", "softmax_cross_entropy")
BN = jaxmlp.MLP((2, 5, 3), "tanh", "softmax_cross_entropy", use_bias=False, batchnorm=True)
X = jax.random.normal(jax.random.key(0), (12, 2), jnp.float64)
Y = jnp.arange(12, dtype=jnp.int32) % 3
P0 = jaxmlp.init(MODEL, jax.random.key(1), dtype=jnp.float64)
PB = jaxmlp.init(BN, jax.random.key(1), dtype=jnp.float64)
S0 = jaxmlp.init_state(BN, jnp.float64)


def _close(a, b, rtol=1e-12):
    return all(np.allclose(u, v, rtol=rtol, atol=1e-14) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("make, kind", [(train.manual_grad, gf.ManualGrad), (train.autodiff_grad, gf.AutodiffGrad)])
def test_model_grads_satisfy_the_protocol(make, kind):
    g = make(MODEL, l1=1e-3, l2=1e-2)
    assert isinstance(g, kind) and isinstance(g, gf.ModelGrad) and isinstance(g, gf.GradFn)
    assert not hasattr(g, "method")  # the kind is the class, not a string looked up at call time
    value, grads = g(P0, X, Y)
    expect = jaxmlp.value_and_grad(MODEL, P0, X, Y, l1=1e-3, l2=1e-2)
    assert np.isclose(value, expect[0], rtol=1e-12) and _close(grads, expect[1])
    w = (jnp.arange(12) < 9).astype(X.dtype)
    assert np.isclose(g(P0, X, Y, w)[0], jaxmlp.loss(MODEL, P0, X[:9], Y[:9], l1=1e-3, l2=1e-2), rtol=1e-12)


def test_with_state_agrees_between_the_two_kinds():
    m = train.manual_grad(BN).with_state(PB, X, Y, S0)
    a = train.autodiff_grad(BN).with_state(PB, X, Y, S0)
    assert np.isclose(m[0], a[0], rtol=1e-12) and _close(m[1], a[1], rtol=1e-9) and _close(m[2], a[2])


def test_model_grad_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        gf.ModelGrad(MODEL)


def test_own_function_becomes_a_function_grad():
    def own(params, x, y):
        return jaxmlp.value_and_grad(MODEL, params, x, y, check=False)

    g = gf.as_grad_fn(own)
    assert isinstance(g, gf.FunctionGrad) and isinstance(g, gf.GradFn)
    assert g == gf.as_grad_fn(own) and hash(g) == hash(gf.as_grad_fn(own))  # the same function: one compile
    assert gf.as_grad_fn(g) is g and gf.as_grad_fn(train.manual_grad(MODEL)).model is MODEL
    assert _close(g(P0, X, Y), own(P0, X, Y))
    with pytest.raises(TypeError, match="grad_fn: batch norm's state needs a grad_fn with .with_state.*function"):
        g.with_state(P0, X, Y, S0)
    with pytest.raises(TypeError, match="grad_fn: expected a callable .* got str"):
        gf.as_grad_fn("manual")


def test_jitted_model_grad_still_weighs_rows():
    g = gf.as_grad_fn(jax.jit(train.manual_grad(MODEL)))
    assert isinstance(g, gf.FunctionGrad) and gf.model_of(g.fn) is MODEL
    w = (jnp.arange(12) < 9).astype(X.dtype)
    assert np.isclose(g(P0, X, Y, w)[0], jaxmlp.loss(MODEL, P0, X[:9], Y[:9]), rtol=1e-12)


def test_train_refuses_state_without_with_state():
    with pytest.raises(TypeError, match=r"grad_fn: batch norm's state needs a grad_fn with \.with_state.*PjitFunction"):
        train.train(jax.jit(train.manual_grad(BN)), optim.sgd(0.1), PB, X, Y, key=jax.random.key(0), steps=1,
                    state=S0, progress=False)


class Counting:
    """A GradFn of one's own: the loop calls ``__call__`` or ``with_state`` and asks nothing else."""

    def __init__(self, model):
        self.inner, self.calls = train.manual_grad(model), []

    def __call__(self, params, x, y, weights=None):
        self.calls.append("call")
        return self.inner(params, x, y, weights)

    def with_state(self, params, x, y, state):
        self.calls.append("with_state")
        return self.inner.with_state(params, x, y, state)


def test_own_grad_fn_class_is_used_as_it_is():
    own = Counting(BN)
    assert gf.as_grad_fn(own) is own
    r = train.train(own, optim.sgd(0.1), PB, X, Y, key=jax.random.key(0), steps=4, log_every=2, state=S0,
                    progress=False)
    ref = train.train(train.manual_grad(BN), optim.sgd(0.1), PB, X, Y, key=jax.random.key(0), steps=4, log_every=2,
                      state=S0, progress=False)
    assert "with_state" in own.calls and _close(r.params, ref.params) and _close(r.state, ref.state)


def test_one_home_for_each_name():
    assert train.manual_grad.__module__ == train.autodiff_grad.__module__ == "jaxmlp.train"
    assert not hasattr(gf, "manual_grad") and not hasattr(gf, "autodiff_grad")
    assert loop.check_loop_args.__module__ == "jaxmlp.loop"
    assert not hasattr(train, "check_loop_args") and not hasattr(population, "check_loop_args")
    assert not hasattr(loop, "full_data")


def test_package_all_names_two_submodules():
    modules = {n for n in jaxmlp.__all__ if isinstance(getattr(jaxmlp, n), types.ModuleType)}
    assert modules == {"optim", "train"}
    assert jaxmlp.data.higham_points()[0].shape == (10, 2)  # the other submodules still load with the package
    for mod in (gf, loop, train, population):
        assert all(hasattr(mod, n) for n in mod.__all__), mod.__name__


@pytest.mark.parametrize("wrap", [lambda g: g, jax.jit])
def test_padding_rows_weigh_nothing_in_the_loop(wrap):
    """``rows=9`` of 12: every step and every logged loss weighs the 3 padding rows 0 (GradFn's ``weights``)."""
    kw = dict(key=jax.random.key(0), steps=6, log_every=3, progress=False)
    padded = train.train(wrap(train.manual_grad(MODEL)), optim.sgd(0.5), P0, X, Y, rows=9, **kw)
    real = train.train(train.manual_grad(MODEL), optim.sgd(0.5), P0, X[:9], Y[:9], **kw)
    np.testing.assert_allclose(padded.losses, real.losses, rtol=1e-12)
    assert _close(padded.params, real.params)


def test_padding_rows_need_a_grad_fn_that_weighs_rows():
    def own(params, x, y):
        return jaxmlp.value_and_grad(MODEL, params, x, y, check=False)

    with pytest.raises(TypeError, match=r"grad_fn: padded data \(rows=9 of 12\) needs a grad_fn that weighs rows"):
        train.train(own, optim.sgd(0.5), P0, X, Y, key=jax.random.key(0), steps=1, rows=9, progress=False)
