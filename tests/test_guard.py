"""The non-finite guard: stops at the first NaN/Inf step, names the leaf, keeps the last good params and checkpoint."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmlp
from jaxmlp import checkpoint
from jaxmlp import optim, samplers
from jaxmlp import train

MODEL = jaxmlp.MLP((2, 2, 3, 2), "sigmoid", "sigmoid_quadratic")
X, Y = jaxmlp.data.higham_points(dtype=np.float64)
POISON = 7  # the example whose gradient turns NaN in layer 2's bias
P0 = jaxmlp.init(MODEL, jax.random.key(0), "higham", jnp.float64)
_manual = train.manual_grad(MODEL)


def _holds_poison(x):
    """True when the batch is the single example POISON."""
    return (x.shape[0] == 1) & jnp.all(x == X[POISON][None, :])


def poisoned_grad(params, x, y):
    """The manual gradient, with NaN in ``grads[1].b`` whenever the batch holds example POISON (a marked row)."""
    value, grads = _manual(params, x, y)
    layer = grads[1]._replace(b=jnp.where(_holds_poison(x), jnp.nan, grads[1].b))
    return value, (grads[0], layer, grads[2])


def _first_poisoned_step(key):
    """The first step at which sgd_replacement (batch 1) draws example POISON: the loop's own sampling rule."""
    draws = samplers.replacement_indices(key, 0, 200, len(X), 1)[:, 0]
    return int(np.argmax(np.asarray(draws) == POISON))


KEY = next(k for k in map(jax.random.key, range(100)) if 20 < _first_poisoned_step(k) < 200)


def test_guard_names_step_and_leaf_and_keeps_the_last_good_state(tmp_path):
    expect = _first_poisoned_step(KEY)
    ck = train.Checkpointer(tmp_path, MODEL, every=10, keep=50)
    with pytest.raises(train.NonFiniteError) as info:
        train.train(poisoned_grad, optim.sgd(0.05), P0, X, Y, key=KEY, steps=expect + 50, scheme="sgd_replacement",
                log_every=10, progress=False, checkpoint=ck)
    e = info.value
    assert e.step == expect and e.leaf == "grads[1].b"
    assert f"step {expect}" in str(e) and "grads[1].b" in str(e) and str(e.checkpoint) in str(e)
    # the params in the error are those before the bad step: equal to a clean run of exactly `expect` steps
    clean = train.train(_manual, optim.sgd(0.05), P0, X, Y, key=KEY, steps=expect, scheme="sgd_replacement",
                    log_every=expect, progress=False)
    chex.assert_trees_all_equal(e.result.params, clean.params)
    assert np.all(np.isfinite(e.result.losses)) and e.result.steps[-1] <= expect
    last = checkpoint.load(e.checkpoint)
    assert last.step == expect // 10 * 10 and all(np.all(np.isfinite(a)) for a in jax.tree.leaves(last.params))


def test_guard_can_be_disabled():
    r = train.train(poisoned_grad, optim.sgd(0.05), P0, X, Y, key=KEY, steps=_first_poisoned_step(KEY) + 10,
                scheme="sgd_replacement", log_every=10, progress=False, check_finite=False)
    assert np.isnan(r.losses[-1])


def poisoned_loss(params, x, y):
    """The manual gradient with the loss and every gradient NaN whenever the batch holds example POISON."""
    value, grads = _manual(params, x, y)
    nan = jnp.where(_holds_poison(x), jnp.nan, 1.0)
    return value * nan, jax.tree.map(lambda g: g * nan, grads)


def test_guard_catches_a_non_finite_loss_and_does_not_change_a_healthy_run():
    expect = _first_poisoned_step(KEY)
    with pytest.raises(train.NonFiniteError, match=f"step {expect}: first non-finite loss"):
        train.train(poisoned_loss, optim.sgd(0.05), P0, X, Y, key=KEY, steps=expect + 50, scheme="sgd_replacement",
                log_every=10, progress=False)
    kw = dict(key=KEY, steps=300, scheme="sgd_replacement", log_every=100, progress=False)
    on, off = (train.train(_manual, optim.sgd(0.05), P0, X, Y, check_finite=c, **kw) for c in (True, False))
    chex.assert_trees_all_equal(on.params, off.params)


def test_guard_catches_an_update_that_overflows_from_a_finite_gradient():
    with pytest.raises(train.NonFiniteError, match=r"step 0: first non-finite updated parameter leaf params\[0\]\.W") as info:
        train.train(_manual, optax.sgd(jnp.inf), P0, X, Y, key=KEY, steps=20, log_every=10, progress=False)
    chex.assert_trees_all_equal(info.value.result.params, P0)
