"""Long loops kept whole (verification/checker/explain/loop_bodies.py): a scan that would unroll into more than
``inline.UNROLL_MAX`` equations stays one equation, and a change of its body is made at every iteration.
The hand-derived gradients are the long-RNN catalogue family (BPTT as a reverse scan) and ``jax.grad``
through a wrong ``custom_jvp`` inside a 100-step ``fori_loop``."""
import inspect

import jax
import jax.numpy as jnp
import pytest

from verification import check_gradients
from verification.catalogue import judge, long_rnn_scan, site_lines
from verification.checker.jaxpr import graph as jg


# One xdist worker runs this module: its tests compile many of the same programs (the per-process
# compilation cache of conftest.py), once on one worker and twice when -n 2 splits them.
pytestmark = [pytest.mark.xdist_group("loop_bodies"), pytest.mark.usefixtures("loss_side_only")]


def _family_check(bug):
    p, x, y = long_rnn_scan.problem(0)
    return check_gradients(long_rnn_scan.loss, lambda p, x, y: long_rnn_scan.grad(p, x, y, bug=bug), p, x, y)


def test_a_long_scan_stays_one_equation_and_a_short_one_is_unrolled():
    p, x, y = long_rnn_scan.problem(0)
    long = jg.trace(lambda q: long_rnn_scan.loss(q, x, y), p, list(p))
    short = jg.trace(lambda q: long_rnn_scan.loss(q, x[:3], y[:3]), p, list(p))
    assert [e.primitive.name for e in long.eqns].count("scan") == 1 and len(long.eqns) < 20
    assert "scan" not in [e.primitive.name for e in short.eqns] and "tanh" in [jg.op_name(e) for e in short.eqns]


def test_the_correct_bptt_scan_passes():
    assert _family_check(None).passed


@pytest.mark.parametrize("bug", ["tanh_prime_from_z", "saved_h_next", "truncated_bptt"])
def test_a_bptt_mistake_is_explained_at_its_line_in_the_body(bug):
    planted = next(b for b in long_rnn_scan.BUGS if b.bug == bug)
    r = _family_check(bug)
    assert not r.passed
    located, explained = judge(r, planted, site_lines(long_rnn_scan)[planted.site])
    assert located and explained, str(r)
    h = r.hypotheses[0]
    assert f"every one of the {long_rnn_scan.T} iterations" in h.explanation and h.residual < 1e-9


def _wrong_tanh():
    f = jax.custom_jvp(jnp.tanh)
    f.defjvp(lambda xs, ts: (jnp.tanh(xs[0]), ts[0]))  # tanh' left out
    return f


def _fori_loss(p, x, act=jnp.tanh):
    return jnp.sum(jax.lax.fori_loop(0, 100, lambda t, h: act(h @ p["W"] + x[t % 4]), jnp.ones((2, 3))) ** 2)  # body


def test_a_mistake_in_a_long_fori_loop_body_is_named_at_its_line():
    k = jax.random.split(jax.random.key(0), 2)
    p = {"W": 0.4 * jax.random.normal(k[0], (3, 3), jnp.float64)}
    x = jax.random.normal(k[1], (4, 2, 3), jnp.float64)
    wrong = _wrong_tanh()
    r = check_gradients(_fori_loss, jax.grad(lambda p, x: _fori_loss(p, x, wrong)), p, x)
    h = r.hypotheses[0]
    assert h.cause == "derivative_dropped" and h.where.endswith(f":{_line(_fori_loss, '# body')}"), str(r)
    assert "every one of the 100 iterations" in h.explanation


def _line(fn, marker):
    src, start = inspect.getsourcelines(fn)
    return start + next(k for k, s in enumerate(src) if marker in s)


def _helper_loss(p, xs, act=jnp.tanh):
    @jax.jit
    def cell(h, x):
        return act(h @ p["W"] + x)  # helper

    _, hs = jax.lax.scan(lambda h, x: (cell(h, x), cell(h, x)), jnp.ones((2, 3)), xs)
    return jnp.sum(hs ** 2)


def _while_loss(p, xs, act=jnp.tanh):
    def body(c):
        t, h = c
        return t + 1, act(h @ p["W"] + xs[t % 4])  # while body

    return jnp.sum(jax.lax.while_loop(lambda c: c[0] < 120, body, (0, jnp.ones((2, 3))))[1] ** 2)


@pytest.mark.parametrize("loss, marker", [(_helper_loss, "# helper"), (_while_loss, "# while body")],
                         ids=["jitted-helper-in-scan", "long-while_loop"])
def test_a_long_loop_is_kept_whole_through_jit_helpers_and_while_loops(loss, marker):
    k = jax.random.split(jax.random.key(1), 2)
    p = {"W": 0.4 * jax.random.normal(k[0], (3, 3), jnp.float64)}
    xs = jax.random.normal(k[1], (100, 2, 3), jnp.float64) if loss is _helper_loss else \
        jax.random.normal(k[1], (4, 2, 3), jnp.float64)
    graph = jg.trace(lambda q: loss(q, xs), p, ["W"])
    assert [e.primitive.name for e in graph.eqns].count("scan") == 1
    derivative = jax.jacfwd if loss is _while_loss else jax.grad  # a while_loop has no reverse mode
    r = check_gradients(loss, derivative(lambda p, x: loss(p, x, _wrong_tanh())), p, xs)
    h = r.hypotheses[0]
    assert h.cause == "derivative_dropped" and h.where.endswith(f":{_line(loss, marker)}"), str(r)
    assert "iterations" in h.explanation


@jax.custom_vjp
def _identity_rule(x):
    return x


_identity_rule.defvjp(lambda x: (x, None), lambda _, g: (g,))


def _cond_loss(p, xs, act=jnp.tanh):
    def step(h, x):
        h = jax.lax.cond(jnp.sum(x) > 0, lambda h: act(h @ p["W"] + x),  # taken branch
                         lambda h: jnp.tanh(h @ p["W"] - x), h)
        return h, h

    return jnp.sum(jax.lax.scan(step, jnp.ones((2, 3)), xs)[1] ** 2)


def _nested_loss(p, xs, act=jnp.tanh):
    def step(h, x):
        h, _ = jax.lax.scan(lambda g, _: (act(g @ p["W"] + x), None), h, None, length=3)  # inner
        return h, h

    return jnp.sum(jax.lax.scan(step, jnp.ones((2, 3)), xs)[1] ** 2)


def _custom_rule_loss(p, xs, act=jnp.tanh):
    def step(h, x):
        h = act(_identity_rule(h) @ p["W"] + x)  # ruled
        return h, h

    return jnp.sum(jax.lax.scan(step, jnp.ones((2, 3)), xs)[1] ** 2)


@pytest.mark.parametrize("loss, marker, context", [
    (_cond_loss, "# taken branch", "in the true branch (index 1) of the cond"),
    (_nested_loss, "# inner", "inside the inner loop"),
    (_custom_rule_loss, "# ruled", "")], ids=["cond-in-body", "scan-in-body", "custom_vjp-in-body"])
def test_a_long_loop_body_with_branches_inner_loops_and_custom_rules(loss, marker, context):
    k = jax.random.split(jax.random.key(2), 2)
    p = {"W": 0.4 * jax.random.normal(k[0], (3, 3), jnp.float64)}
    xs = jax.random.normal(k[1], (100, 2, 3), jnp.float64)
    assert check_gradients(loss, jax.grad(loss), p, xs).passed
    r = check_gradients(loss, jax.grad(lambda p, x: loss(p, x, _wrong_tanh())), p, xs)
    h = r.hypotheses[0]
    assert h.cause == "derivative_dropped" and h.where.endswith(f":{_line(loss, marker)}"), str(r)
    assert context in h.explanation and "every one of the 100 iterations" in h.explanation
