"""Training loops: every sampling scheme, jitted, deterministic, pluggable gradients, no recompiles."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmlp
from jaxmlp import optim, samplers
from jaxmlp import train

MODEL = jaxmlp.MLP((2, 6, 3), "tanh", "softmax_cross_entropy")
X = jax.random.normal(jax.random.key(0), (24, 2), jnp.float64)
Y = jnp.argmax(X @ jnp.array([[1.0, -1.0, 0.2], [0.5, 0.3, -1.0]]), axis=1).astype(jnp.int32)
P0 = jaxmlp.init(MODEL, jax.random.key(1), dtype=jnp.float64)
SCHEMES = [("full_batch", None), ("sgd_replacement", None), ("sgd_replacement", 4), ("sgd_shuffle", None),
           ("minibatch", 8), ("minibatch", 5)]
GRAD = train.manual_grad(MODEL, l2=1e-3)
OPT = optim.momentum(0.5, 0.9)


def _run(scheme, b, key=3, steps=240, log_every=40, **kw):
    return train.train(GRAD, OPT, P0, X, Y, key=jax.random.key(key), steps=steps, scheme=scheme, batch_size=b,
                   log_every=log_every, progress=False, **kw)


@pytest.mark.parametrize("scheme, b", SCHEMES)
def test_scheme_trains_and_is_deterministic(scheme, b):
    r1, r2 = _run(scheme, b), _run(scheme, b)
    assert r1.losses[-1] < 0.8 * r1.losses[0]
    assert list(r1.steps) == [0, 40, 80, 120, 160, 200, 240]
    assert all(np.array_equal(a, c) for a, c in zip(jax.tree.leaves(r1.params), jax.tree.leaves(r2.params)))
    r3 = _run(scheme, b, key=4)
    if scheme != "full_batch":
        assert not np.array_equal(r1.losses, r3.losses)


@pytest.mark.parametrize("scheme, b", SCHEMES)
def test_manual_and_autodiff_gradients_give_the_same_run(scheme, b):
    auto = train.autodiff_grad(MODEL, l2=1e-3)
    r1 = _run(scheme, b)
    r2 = train.train(auto, OPT, P0, X, Y, key=jax.random.key(3), steps=240, scheme=scheme, batch_size=b, log_every=40,
                 progress=False)
    np.testing.assert_allclose(r1.losses, r2.losses, rtol=1e-10)


def test_full_batch_step_is_gradient_descent():
    r = train.train(GRAD, optim.sgd(0.1), P0, X, Y, key=jax.random.key(0), steps=1, log_every=1, progress=False)
    _, g = jaxmlp.value_and_grad(MODEL, P0, X, Y, l2=1e-3)
    expect = jax.tree.map(lambda p, d: p - 0.1 * d, P0, g)
    assert all(np.allclose(a, e, rtol=1e-14) for a, e in zip(jax.tree.leaves(r.params), jax.tree.leaves(expect)))


def test_shuffle_visits_every_example_once_per_epoch():
    step = jax.jit(lambda s, perm: samplers.epoch_indices(jax.random.key(0), s, perm, 24, 1))
    idx = []
    perm = jnp.zeros(24, jnp.int32)
    for s in range(48):
        i, perm = step(jnp.int32(s), perm)
        idx.append(int(i[0]))
    assert sorted(idx[:24]) == list(range(24)) and sorted(idx[24:]) == list(range(24)) and idx[:24] != idx[24:]


def test_resume_in_two_parts_equals_one_run():
    whole = _run("minibatch", 5)
    half = _run("minibatch", 5, steps=120)
    rest = train.train(GRAD, OPT, half.params, X, Y, key=jax.random.key(3), steps=120, scheme="minibatch", batch_size=5,
                   log_every=40, progress=False, opt_state=half.opt_state, start_step=120)
    assert all(np.array_equal(a, c) for a, c in zip(jax.tree.leaves(whole.params), jax.tree.leaves(rest.params)))


def test_replacement_draws_depend_only_on_key_and_step():
    """Any window of steps, aligned to the 256-step pages or not, sees the same draws; they are uniform."""
    key = jax.random.key(3)
    draw = jax.jit(samplers.replacement_indices, static_argnums=(2, 3, 4))
    full = np.asarray(draw(key, jnp.int32(0), 2048, 10, 2))  # (2048, 2)
    for start, count in [(0, 1), (255, 2), (256, 300), (1000, 777), (1700, 348)]:
        np.testing.assert_array_equal(draw(key, jnp.int32(start), count, 10, 2), full[start:start + count])
    counts = np.bincount(full.ravel(), minlength=10)
    chi2 = float(np.sum((counts - full.size / 10) ** 2 / (full.size / 10)))
    assert full.min() >= 0 and full.max() <= 9 and chi2 < 27.9  # chi-square, 9 dof, p = 0.001
    assert not np.array_equal(full, np.asarray(draw(jax.random.key(4), jnp.int32(0), 2048, 10, 2)))


def test_resume_mid_page_with_replacement_equals_one_run():
    whole = _run("sgd_replacement", 4, log_every=30, steps=390)
    half = _run("sgd_replacement", 4, log_every=30, steps=270)  # 270 is not a multiple of the 256-step page
    rest = train.train(GRAD, OPT, half.params, X, Y, key=jax.random.key(3), steps=120, scheme="sgd_replacement",
                   batch_size=4, log_every=40, progress=False, opt_state=half.opt_state, start_step=270)  # other blocks
    assert all(np.array_equal(a, c) for a, c in zip(jax.tree.leaves(whole.params), jax.tree.leaves(rest.params)))


def test_second_call_does_not_recompile():
    traces = []

    def counting_grad(params, x, y):
        if isinstance(params[0].W, jax.core.Tracer):  # a trace, not the eager first-loss call
            traces.append(1)
        return GRAD(params, x, y)

    def run(key):
        return train.train(counting_grad, OPT, P0, X, Y, key=jax.random.key(key), steps=80, scheme="minibatch",
                           batch_size=8, log_every=40, progress=False)

    run(3)
    before = len(traces)
    run(9)
    assert before > 0 and len(traces) == before


def test_ragged_steps_and_chunks():
    r = train.train(GRAD, OPT, P0, X, Y, key=jax.random.key(0), steps=130, log_every=40, chunk_steps=80, progress=False)
    assert list(r.steps) == [0, 40, 80, 120, 130] and len(r.losses) == 5


def test_progress_bar_runs(capsys):
    r = train.train(GRAD, OPT, P0, X, Y, key=jax.random.key(0), steps=100, log_every=10, chunk_steps=50, progress=True)
    assert len(r.losses) == 11
    assert "100/100" in capsys.readouterr().err


@pytest.mark.parametrize("kw, err, msg", [
    ({"steps": 0}, ValueError, "steps: expected an int >= 1, got 0"),
    ({"scheme": "online"}, ValueError, "scheme: expected one of"),
    ({"scheme": "minibatch", "batch_size": 25}, ValueError, r"batch_size: expected an int in \[1, 24\]"),
    ({"scheme": "sgd_shuffle", "batch_size": 4}, ValueError, "sgd_shuffle uses one example per step"),
    ({"log_every": 0}, ValueError, "log_every: expected an int >= 1"),
])
def test_bad_arguments(kw, err, msg):
    args = {"key": jax.random.key(0), "steps": 10, **kw}
    with pytest.raises(err, match=msg):
        train.train(GRAD, OPT, P0, X, Y, **args)


def test_bad_data_and_optimizer():
    with pytest.raises(ValueError, match=r"y: expected 24 rows to match x, got shape \(23,\)"):
        train.train(GRAD, OPT, P0, X, Y[:23], key=jax.random.key(0), steps=1)
    with pytest.raises(ValueError, match="x: expected at least one example"):
        train.train(GRAD, OPT, P0, X[:0], Y[:0], key=jax.random.key(0), steps=1)
    with pytest.raises(TypeError, match="optimizer: expected an optax.GradientTransformation"):
        train.train(GRAD, "adam", P0, X, Y, key=jax.random.key(0), steps=1)
