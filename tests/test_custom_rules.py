"""Custom rules inside a model (issue 25): every rule found and checked where it runs, a wrong rule blamed
when autodiff is the wrong side, rule checks on any callable, and equinox Modules as params."""
import functools

import jax
import jax.numpy as jnp
import pytest

from verification import check_custom_jvp, check_custom_vjp, check_gradients, check_rules


@jax.custom_vjp
def softplus(x):
    return jnp.logaddexp(x, 0.0)


def _sp_fwd(x):
    return softplus(x), x


softplus.defvjp(_sp_fwd, lambda x, g: (g * jax.nn.sigmoid(x),))
bad_softplus = jax.custom_vjp(softplus.fun)
bad_softplus.defvjp(_sp_fwd, lambda x, g: (g * jax.nn.sigmoid(-x),))  # the sign of x flipped


@jax.custom_jvp
def tanh_rule(x):
    return jnp.tanh(x)


tanh_rule.defjvp(lambda p, t: (jnp.tanh(p[0]), (1 - jnp.tanh(p[0]) ** 2) * t[0]))
bad_tanh = jax.custom_jvp(tanh_rule.fun)
bad_tanh.defjvp(lambda p, t: (jnp.tanh(p[0]), (1 - jnp.tanh(p[0])) * t[0]))  # the square forgotten


def _model(sp, th, p, xs, flag):
    def step(h, x):
        return th(h @ p["W"] + x), jnp.sum(sp(h))

    h, ys = jax.lax.scan(step, jnp.zeros(3), xs)
    h = jax.lax.cond(flag > 0, lambda h: sp(h), lambda h: h, h)
    return jnp.sum(jax.vmap(sp)(ys[:, None] * h[None, :])) + jnp.sum(ys)


P = {"W": 0.5 * jnp.eye(3)}
XS = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)


def test_check_rules_finds_every_rule_through_jit_scan_cond_vmap_and_partial():
    model = jax.jit(functools.partial(_model, softplus, tanh_rule, flag=1))
    r = check_rules(model, P, XS)
    assert r.passed, str(r)
    assert sorted(row.name for row in r.rows) == ["softplus", "tanh_rule"]
    sp = next(row for row in r.rows if row.name == "softplus")
    assert sp.kind == "custom_vjp" and sp.defined.endswith(f"test_custom_rules.py:{softplus.fun.__code__.co_firstlineno}")
    assert len({c.where for c in sp.calls}) == 3  # in the scan body, in the cond branch, under vmap
    assert len(sp.reports) == 4  # one per call site first, then up to MAX_CALLS_CHECKED


@pytest.mark.parametrize("sp, th, wrong", [(bad_softplus, tanh_rule, "softplus"), (softplus, bad_tanh, "tanh_rule")])
def test_check_rules_names_the_wrong_rule(sp, th, wrong):
    r = check_rules(lambda p, xs: _model(sp, th, p, xs, 1), P, XS)
    assert not r.passed and [row.name for row in r.failing()] == [wrong], str(r)
    assert "FAIL" in str(r) and r.to_json()


def test_no_rule_is_a_passing_report_that_says_so():
    r = check_rules(lambda x: jnp.sum(jnp.sin(x)), jnp.ones(2))
    assert r.passed and not r.rows and "no custom_vjp or custom_jvp call" in str(r)


def test_rule_checks_accept_any_callable_with_one_rule():
    x = jnp.linspace(-1.0, 1.0, 4)
    assert check_custom_vjp(lambda x: 2.0 * softplus(x), x).passed
    assert not check_custom_vjp(functools.partial(lambda x, k: k * bad_softplus(x), k=2.0), x).passed
    assert not check_custom_jvp(jax.jit(lambda x: bad_tanh(x) ** 2), x).passed
    assert check_custom_jvp(jax.jit(lambda x: tanh_rule(x) ** 2), x).passed
    assert check_custom_vjp(lambda x: softplus(x) * 2.0, jnp.linspace(-1.0, 1.0, 8).reshape(2, 4), batched=True).passed
    with pytest.raises(TypeError, match="calls exactly one custom_jvp rule.*calling 2.*check_rules"):
        check_custom_jvp(lambda x: tanh_rule(bad_tanh(x)), x)
    with pytest.raises(TypeError, match="calling 0 .found: none"):
        check_custom_vjp(lambda x: x, x)


def _loss(sp, th, p, x):
    return jnp.sum(th(sp(x @ p["W1"]) @ p["W2"]) ** 2)


def _manual(p, x, bug=None):
    a = x @ p["W1"]
    h = jnp.logaddexp(a, 0.0)
    t = jnp.tanh(h @ p["W2"])
    dz = 2 * t if bug == "tanh" else 2 * t * (1 - t ** 2)
    return {"W1": x.T @ ((dz @ p["W2"].T) * jax.nn.sigmoid(a)), "W2": h.T @ dz}


def _point():
    k = jax.random.split(jax.random.key(0), 3)
    p = {"W1": jax.random.normal(k[0], (3, 4), jnp.float64), "W2": jax.random.normal(k[1], (4, 2), jnp.float64)}
    return p, jax.random.normal(k[2], (5, 3), jnp.float64)


def test_a_wrong_custom_vjp_with_a_correct_hand_gradient_blames_the_rule():
    p, x = _point()
    r = check_gradients(functools.partial(_loss, bad_softplus, tanh_rule), _manual, p, x)
    assert not r.passed
    assert {d.cause for d in r.diagnoses} == {"custom_rule_wrong"}, str(r)
    assert "softplus" in r.diagnoses[0].where and "autodiff of the primals" in r.diagnoses[0].evidence
    assert check_gradients(functools.partial(_loss, softplus, tanh_rule), _manual, p, x).passed


def test_a_custom_vjp_in_the_loss_does_not_stop_the_diagnosis_of_another_bug():
    p, x = _point()
    r = check_gradients(functools.partial(_loss, softplus, tanh_rule), functools.partial(_manual, bug="tanh"), p, x)
    assert not r.passed and not any("stopped" in n for n in r.notes), str(r)
    assert r.diagnoses[0].cause == "derivative_dropped" and "tanh_rule" in r.diagnoses[0].where


eqx = pytest.importorskip("equinox")


def test_an_equinox_module_as_params_names_the_users_line_and_the_layer():
    mlp = eqx.nn.MLP(3, 1, 8, 2, activation=jnp.tanh, key=jax.random.key(0), dtype=jnp.float64)
    x, y = jnp.linspace(-1.0, 1.0, 15).reshape(5, 3), jnp.zeros(5)

    def loss(m, x, y):
        return jnp.mean((jax.vmap(m)(x)[:, 0] - y) ** 2)  # the user's line

    grads = lambda m, x, y: eqx.filter_grad(loss)(m, x, y)  # noqa: E731
    r = check_gradients(loss, grads, mlp, x, y)
    assert r.passed and ".activation (PjitFunction)" in r.notes[0], str(r)
    wrong = lambda m, x, y: eqx.tree_at(lambda t: t.layers[1].bias, grads(m, x, y), 2 * grads(m, x, y).layers[1].bias)  # noqa: E731
    r = check_gradients(loss, wrong, mlp, x, y)
    d = {d.leaf: d for d in r.diagnoses}[".layers[1].bias"]
    line = loss.__code__.co_firstlineno + 1
    assert d.cause == "factor_2" and f"test_custom_rules.py:{line} (in equinox/" in d.where, str(r)
    assert "[2 of 3: .layers[1].bias]" in d.where
