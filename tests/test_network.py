"""The public API: jit and eager, no recompilation, random architectures against jax.grad."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import jaxmlp
from verification.suite.comparison import compare_trees
from verification.suite.problems import grid_problem as problem
from verification.checker.base.tolerances import F32_RTOL, F64_RTOL


def _autodiff(model, params, x, y, **reg):
    return jax.grad(lambda p: jaxmlp.loss(model, p, x, y, **reg))(params)


@pytest.mark.parametrize("jit", [False, True])
def test_public_functions_jit_and_eager(jit):
    model, params, x, y = problem("tanh", "softmax_cross_entropy", 3, 5, 6)
    wrap = (lambda f: jax.jit(f)) if jit else (lambda f: f)
    v, g = wrap(lambda p, x, y: jaxmlp.value_and_grad(model, p, x, y, l2=0.1))(params, x, y)
    J = wrap(lambda p, x, y: jaxmlp.loss(model, p, x, y, l2=0.1))(params, x, y)
    P = wrap(lambda p, x: jaxmlp.predict(model, p, x))(params, x)
    g1 = wrap(lambda p, x, y: jaxmlp.lemma1_grad(model, p, x, y, l2=0.1))(params, x, y)
    p0 = wrap(lambda k: jaxmlp.init(model, k, "he"))(jax.random.key(0))
    assert float(abs(v - J)) <= F64_RTOL * float(abs(J))
    assert compare_trees(g, _autodiff(model, params, x, y, l2=0.1), F64_RTOL).ok
    assert compare_trees(g1, g, F64_RTOL).ok
    np.testing.assert_allclose(np.asarray(P).sum(axis=1), 1.0, rtol=1e-12)
    assert jax.tree.structure(p0) == jax.tree.structure(params)


def test_jitted_value_and_grad_does_not_recompile():
    model, params, x, y = problem("relu", "softmax_cross_entropy", 2, 8, 16, dtype=jnp.float32)
    traces = []

    def step(p, x, y):
        traces.append(1)
        return jaxmlp.value_and_grad(model, p, x, y)

    f = jax.jit(step)
    jax.block_until_ready(f(params, x, y))
    params2 = jax.tree.map(lambda t: t + 1, params)
    jax.block_until_ready(f(params2, 2 * x, y))
    assert len(traces) == 1


def test_model_is_a_static_argument():
    model, params, x, y = problem("sigmoid", "mse", 2, 4, 3)
    f = jax.jit(jaxmlp.value_and_grad, static_argnums=0)
    v, g = f(model, params, x, y)
    assert compare_trees(g, _autodiff(model, params, x, y), F64_RTOL).ok
    assert hash(model) == hash(jaxmlp.MLP(model.sizes, model.activation, model.head))


def test_vmap_over_params():
    model, params, x, y = problem("softplus", "sigmoid_bce", 2, 4, 5)

    @jax.jit  # one program: eager vmap would compile each operation on its own
    def run(keys):
        stacked = jax.vmap(lambda k: jaxmlp.init(model, k, "higham", dtype=jnp.float64))(keys)
        return jax.vmap(lambda p: jaxmlp.value_and_grad(model, p, x, y))(stacked), jax.vmap(
            lambda p: _autodiff(model, p, x, y))(stacked)

    vg, ref = run(jax.random.split(jax.random.key(3), 4))
    assert compare_trees(vg[1], ref, F64_RTOL).ok


def test_float32_is_default_and_x64_works():
    model = jaxmlp.MLP((2, 3, 2), "sigmoid", "sigmoid_quadratic")
    p32 = jaxmlp.init(model, jax.random.key(0), "higham")
    p64 = jaxmlp.init(model, jax.random.key(0), "higham", dtype=jnp.float64)
    assert p32[0].W.dtype == jnp.float32 and p64[0].W.dtype == jnp.float64
    x = np.random.default_rng(0).random((4, 2))  # numpy float64 data is cast to the params dtype
    y = np.random.default_rng(1).random((4, 2))
    v, g = jaxmlp.value_and_grad(model, p32, x, y)
    assert v.dtype == jnp.float32 and g[0].W.dtype == jnp.float32


def test_no_bias_model():
    model = jaxmlp.MLP((5, 4, 3), "relu", "sum_squares", use_bias=False)
    params = jaxmlp.init(model, jax.random.key(0), "normal", dtype=jnp.float64)
    assert params[0].b is None
    x = jax.random.normal(jax.random.key(1), (6, 5), jnp.float64)
    y = jax.random.normal(jax.random.key(2), (6, 3), jnp.float64)
    _, g = jaxmlp.value_and_grad(model, params, x, y)
    assert compare_trees(g, _autodiff(model, params, x, y), F64_RTOL).ok


def test_one_hot_and_integer_labels_agree():
    model, params, x, y = problem("relu", "softmax_cross_entropy", 2, 4, 6)
    a = jaxmlp.value_and_grad(model, params, x, y)
    b = jaxmlp.value_and_grad(model, params, x, jax.nn.one_hot(y, 4, dtype=jnp.float64))
    assert compare_trees(a, b, 0.0).ok


def test_init_schemes_statistics():
    model = jaxmlp.MLP((400, 300, 10), "relu")
    for scheme, std0 in [("higham", 0.5), ("cs231n", 0.01), ("normal", 1.0),
                         ("xavier", np.sqrt(2 / 700)), ("glorot", np.sqrt(2 / 700)), ("he", np.sqrt(2 / 400))]:
        p = jaxmlp.init(model, jax.random.key(1), scheme)
        assert abs(float(jnp.std(p[0].W)) / std0 - 1) < 0.02, scheme
        assert (scheme == "higham") == bool(jnp.any(p[0].b != 0))


def test_relu_derivative_at_zero_follows_jax_nn_relu():
    z = jnp.array([-1.0, 0.0, 2.0])
    act = jaxmlp.get_activation("relu")
    assert jnp.array_equal(act.derivative(z, act.forward(z)), jax.grad(lambda t: jnp.sum(jax.nn.relu(t)))(z))
    assert act.derivative(z, act.forward(z))[1] == 0


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _jitted_grads(model, params, x, y, l1, l2):
    """(value_and_grad's gradient, Lemma 1's, jax.grad's) in one compiled call: eager dispatch would compile
    every operation again for every new shape (the eager calls: the tests above)."""
    g = jaxmlp.value_and_grad(model, params, x, y, l1=l1, l2=l2)[1]
    return g, jaxmlp.lemma1_grad(model, params, x, y, l1=l1, l2=l2), _autodiff(model, params, x, y, l1=l1, l2=l2)


@settings(max_examples=8, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=2, max_size=5),
    act=st.sampled_from(sorted(jaxmlp.ACTIVATIONS)),
    head=st.sampled_from(sorted(jaxmlp.HEADS)),
    m=st.integers(1, 6),
    l1=st.sampled_from([0.0, 0.03]),
    l2=st.sampled_from([0.0, 0.2]),
    seed=st.integers(0, 2**16),
)
def test_random_architectures_match_autodiff(sizes, act, head, m, l1, l2, seed):
    model = jaxmlp.MLP(tuple(sizes), act, head)
    rng = np.random.default_rng(seed)  # numpy draws: jax.random would compile its sampler for every new shape
    params = tuple(jaxmlp.Dense(jnp.asarray(0.5 * rng.standard_normal((a, b))),  # jaxmlp.init's "higham" scheme
                                jnp.asarray(0.5 * rng.standard_normal(b))) for a, b in zip(sizes[:-1], sizes[1:]))
    x = jnp.asarray(rng.standard_normal((m, sizes[0])))
    if jaxmlp.get_head(head).classes:
        y = jnp.asarray(rng.integers(0, sizes[-1], m))
    else:
        y = jnp.asarray(rng.random((m, sizes[-1])))
    g, g1, ref = _jitted_grads(model, params, x, y, l1, l2)
    cmp = compare_trees(g, ref, F64_RTOL)
    assert cmp.ok, cmp
    assert compare_trees(g1, ref, F64_RTOL).ok


def test_float32_matches_autodiff_within_f32_tolerance():
    model, params, x, y = problem("tanh", "softmax_cross_entropy", 4, 16, 32, dtype=jnp.float32)
    _, g = jax.jit(lambda p: jaxmlp.value_and_grad(model, p, x, y, l2=1e-3))(params)
    assert compare_trees(g, jax.jit(lambda p: _autodiff(model, p, x, y, l2=1e-3))(params), F32_RTOL).ok
