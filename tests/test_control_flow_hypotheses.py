"""Hypotheses inside control flow (scan, fori_loop, cond, checkpoint, jit, custom_jvp) and the edit kinds
added for real models: loop-wide and one-instance changes, two-input max, max-pool routing, saved operands
from a neighbouring iteration, two changes at one product, and the ranking by consistent sites.

Each wrong gradient is ``jax.grad`` of the same loss with one rule replaced by a wrong ``custom_jvp``: the
mistake a hand derivation makes, at a known line, without a page of hand-written backward code.
"""
import inspect

import jax
import jax.numpy as jnp
import pytest

from verification import check_gradients
from verification.catalogue import causal_attention, graph_conv, judge, rnn_scan, site_lines

pytestmark = pytest.mark.usefixtures("loss_side_only")  # conftest.py: the backward line has its own tests


T, H = 4, 3


def wrong_rule(f, derivative):
    """``f`` with the tangent rule ``derivative(x) * t`` in place of its own."""
    g = jax.custom_jvp(f)
    g.defjvp(lambda xs, ts: (f(xs[0]), derivative(xs[0]) * ts[0]))
    return g


TANH_DROPPED = wrong_rule(jnp.tanh, jnp.ones_like)  # tanh' left out


def _problem(seed=0):
    k = jax.random.split(jax.random.key(seed), 3)
    p = {"Wh": 0.5 * jax.random.normal(k[0], (H, H), jnp.float64),
         "Wx": 0.5 * jax.random.normal(k[1], (2, H), jnp.float64)}
    return p, jax.random.normal(k[2], (T, 5, 2), jnp.float64)


def _line_of(fn, marker):
    src, start = inspect.getsourcelines(fn)
    return start + next(k for k, line in enumerate(src) if marker in line)


def _scan_loss(p, xs, act=jnp.tanh):
    def step(h, x):
        h = act(h @ p["Wh"] + x @ p["Wx"])  # cell
        return h, h

    _, hs = jax.lax.scan(step, jnp.zeros((5, H)), xs)
    return jnp.sum(hs ** 2)


def _unrolled_loss(p, xs, last_act=jnp.tanh):
    h = jnp.zeros((5, H))
    total = 0.0
    for t in range(T):
        act = last_act if t == T - 1 else jnp.tanh
        h = act(h @ p["Wh"] + xs[t] @ p["Wx"])  # cell
        total = total + jnp.sum(h ** 2)
    return total


def _check(loss, wrong_loss, p, xs):
    return check_gradients(loss, jax.grad(wrong_loss), p, xs)


def test_a_mistake_at_every_scan_step_is_one_loop_wide_hypothesis():
    p, xs = _problem()
    r = _check(_scan_loss, lambda p, xs: _scan_loss(p, xs, TANH_DROPPED), p, xs)
    h = r.hypotheses[0]
    assert h.cause == "derivative_dropped" and h.where.endswith(f":{_line_of(_scan_loss, '# cell')}")
    assert len(h.sites) == T and f"in all {T} instances" in h.explanation


def test_a_mistake_in_the_last_step_only_is_named_at_that_instance():
    p, xs = _problem(1)
    r = _check(_unrolled_loss, lambda p, xs: _unrolled_loss(p, xs, TANH_DROPPED), p, xs)
    h = r.hypotheses[0]
    assert h.cause == "derivative_dropped" and len(h.sites) == 1
    assert h.where.split(" [")[0].endswith(f":{_line_of(_unrolled_loss, '# cell')}")
    assert "[4 of 4" in h.where  # the instance: the last of the four steps


def _fori_loss(p, xs, act=jnp.tanh):
    h = jax.lax.fori_loop(0, T, lambda t, h: act(h @ p["Wh"] + xs[t] @ p["Wx"]), jnp.ones((5, H)))  # body
    return jnp.sum(h ** 2)


def _cond_loss(p, xs, act=jnp.tanh):
    z = xs[0] @ p["Wx"]
    out = jax.lax.cond(jnp.sum(xs[0]) > -1e9, lambda z: act(z @ p["Wh"]),  # taken
                       lambda z: jnp.sin(z), z)
    return jnp.sum(out ** 2)


def _checkpoint_loss(p, xs, act=jnp.tanh):
    @jax.checkpoint
    def block(z):
        return act(z @ p["Wh"])  # remat

    return jnp.sum(block(xs[0] @ p["Wx"]) ** 2)


def _jit_loss(p, xs, act=jnp.tanh):
    @jax.jit
    def inner(z, w):
        return act(z @ w)  # jitted

    return jnp.sum(inner(xs[0] @ p["Wx"], p["Wh"]) ** 2)


@pytest.mark.parametrize("loss, marker", [(_fori_loss, "# body"), (_cond_loss, "# taken"),
                                          (_checkpoint_loss, "# remat"), (_jit_loss, "# jitted")],
                         ids=["fori_loop", "cond", "checkpoint", "jit"])
def test_a_mistake_inside_control_flow_is_named_at_the_users_line(loss, marker):
    p, xs = _problem(2)
    r = _check(loss, lambda p, xs: loss(p, xs, TANH_DROPPED), p, xs)
    assert not r.passed and r.hypotheses, str(r)
    h = r.hypotheses[0]
    assert h.cause == "derivative_dropped" and h.where.endswith(f":{_line_of(loss, marker)}"), str(r)


def test_a_custom_jvp_in_the_loss_gets_its_branch_mistake_named():
    p, xs = _problem(3)
    relu_inverted = wrong_rule(jax.nn.relu, lambda x: (x <= 0).astype(x.dtype))

    def loss(p, xs, relu=jax.nn.relu):
        return jnp.sum(relu(xs[0] @ p["Wx"]) @ p["Wh"] ** 2)  # relu

    r = _check(loss, lambda p, xs: loss(p, xs, relu_inverted), p, xs)
    h = r.hypotheses[0]
    assert h.cause == "wrong_branch" and h.where.endswith(f":{_line_of(loss, '# relu')}"), str(r)


def test_a_two_input_max_sending_the_cotangent_to_the_loser_is_a_wrong_branch():
    p, xs = _problem(4)
    to_loser = jax.custom_jvp(jnp.maximum)
    to_loser.defjvp(lambda xs_, ts: (jnp.maximum(*xs_), jnp.where(xs_[0] >= xs_[1], ts[1], ts[0])))

    def loss(p, xs, mx=jnp.maximum):
        return jnp.sum(mx(xs[0] @ p["Wx"], xs[1] @ p["Wx"] @ p["Wh"]) ** 2)  # maxout

    r = _check(loss, lambda p, xs: loss(p, xs, to_loser), p, xs)
    h = r.hypotheses[0]
    assert h.cause == "wrong_branch" and "lost" in h.explanation and h.where.endswith(f":{_line_of(loss, '# maxout')}")


def test_max_pooling_that_routes_to_every_element_is_a_wrong_selection():
    p, xs = _problem(5)
    pool_all = jax.custom_jvp(lambda z: jnp.max(z, axis=1))
    pool_all.defjvp(lambda zs, ts: (jnp.max(zs[0], axis=1), jnp.sum(ts[0], axis=1)))

    def loss(p, xs, pool=lambda z: jnp.max(z, axis=1)):
        z = jnp.reshape(xs[0] @ p["Wx"] @ p["Wh"], (5, H, 1))
        return jnp.sum(jnp.tanh(pool(z) @ jnp.ones((1, 2))) ** 2)  # pool

    r = _check(loss, lambda p, xs: loss(p, xs, pool_all), p, xs)
    h = r.hypotheses[0]
    assert h.cause == "wrong_selection" and h.where.startswith("reduce_max"), str(r)


def _catalogue(family, bug):
    planted = next(b for b in family.BUGS if b.bug == bug)
    p, x, y = family.problem(0)
    r = check_gradients(family.loss, lambda p, x, y: family.grad(p, x, y, bug=bug), p, x, y)
    lines = site_lines(family)
    return r, judge(r, planted, lines[planted.site], lines[planted.also] if planted.also else "")


def test_a_saved_value_from_the_next_iteration_is_named_at_every_step():
    r, (located, explained) = _catalogue(rnn_scan, "saved_h_next")
    h = r.hypotheses[0]
    assert located and explained and h.cause == "wrong_saved_operand" and len(h.sites) > 1, str(r)
    assert f"in all {rnn_scan.T} instances" in h.explanation and ("later" in h.explanation or "t+1" in h.explanation)


def test_two_scalings_on_two_paths_are_one_hypothesis_with_both():
    """Two leaves off by two different constants: no one change fits; a pair of scalings does (a pair with a
    scaling once stopped the hypotheses with an AttributeError, the search state shadowed by the factor)."""
    def loss(p, x):
        t = jnp.tanh(x @ p["A"])
        return jnp.sum(t * t) + jnp.sum(jnp.sin(x @ p["B"]))

    def manual(p, x):
        t = jnp.tanh(x @ p["A"])
        return {"A": x.T @ (2 * t * (1 - t * t)) * 3.0, "B": x.T @ jnp.cos(x @ p["B"]) * 0.5}

    k = jax.random.split(jax.random.key(0), 3)
    p = {"A": jax.random.normal(k[0], (3, 4), jnp.float64), "B": jax.random.normal(k[1], (3, 2), jnp.float64)}
    r = check_gradients(loss, manual, p, jax.random.normal(k[2], (5, 3), jnp.float64))
    assert not any("stopped" in n for n in r.notes), str(r)
    assert r.hypotheses and r.hypotheses[0].changes == 2 and "two changes" in r.hypotheses[0].explanation, str(r)


def test_two_changes_at_one_product_are_one_hypothesis_with_both():
    r, (located, explained) = _catalogue(causal_attention, "roles_swapped")
    h = r.hypotheses[0]
    assert located and explained and h.changes == 2 and "two changes" in h.explanation, str(r)


def test_when_nothing_fits_the_ranked_sites_are_the_consistent_ones():
    r, (located, _) = _catalogue(graph_conv, "scatter_by_source")
    lines = site_lines(graph_conv)
    assert not r.hypotheses and len(r.ranked) == 3 and located, str(r)
    # b agrees: the activation, whose input depends on b, cannot be the site of a single change
    assert not any(w.endswith(lines["act"]) and w.startswith("tanh") for w in r.ranked)


@pytest.mark.parametrize("stage, target", [("tracing the loss", "verification.checker.jaxpr.graph.trace"),
                                           ("the hypotheses", "verification.checker.explain.hypotheses.explain")])
def test_a_construct_beyond_the_diagnosis_gets_a_note_not_a_traceback(monkeypatch, stage, target):
    def unsupported(*args, **kwargs):
        raise NotImplementedError("a primitive the diagnosis has no rule for")

    monkeypatch.setattr(target, unsupported)
    p, xs = _problem(6)
    r = _check(_scan_loss, lambda p, xs: _scan_loss(p, xs, TANH_DROPPED), p, xs)
    assert not r.passed and not r.hypotheses
    assert any(f"{stage} stopped (NotImplementedError" in n for n in r.notes), r.notes
    assert "FAIL" in str(r) and "stopped" in r.to_json()
