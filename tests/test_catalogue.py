"""Every mutation kind the checker explains, taken from the catalogue (verification/catalogue/), plus the
shared-helper and wrong-slope cases, the Taylor-remainder test, and the judge's own rules."""
import json

import jax
import jax.numpy as jnp
import pytest

import jaxmlp
from verification import check_gradients
from verification.suite.bugs import manual_with
from verification.catalogue import FAMILIES, judge, site_lines
from verification.catalogue.planted import Planted
from verification.suite.problems import mlp_problem
from verification.checker.base.taylor import taylor_test


# One xdist worker runs this module: its tests compile many of the same programs (the per-process
# compilation cache of conftest.py), once on one worker and twice when -n 2 splits them.
pytestmark = [pytest.mark.xdist_group("catalogue"), pytest.mark.usefixtures("loss_side_only")]

ALL = [(f, b) for f in FAMILIES for b in f.BUGS]
FIRST_OF_EACH_CAUSE = {}
for _f, _b in ALL:
    FIRST_OF_EACH_CAUSE.setdefault(_b.cause, (_f, _b))


def _run(family, planted):
    p, x, y = family.problem(0)
    return check_gradients(family.loss, lambda p, x, y: family.grad(p, x, y, bug=planted.bug), p, x, y)


def test_catalogue_size_and_spread():
    assert len(ALL) >= 40 and len(FAMILIES) >= 6
    assert {b.cause for _, b in ALL} >= {"derivative_dropped", "derivative_at_input", "sign_flipped", "path_dropped",
                                         "mean_sum_confused", "wrong_saved_operand", "transposed_operand",
                                         "wrong_branch", "wrong_constant", "factor_2", "unknown"}


@pytest.mark.parametrize("cause", sorted(FIRST_OF_EACH_CAUSE))
def test_every_mutation_kind_is_located_and_explained(cause):
    family, planted = FIRST_OF_EACH_CAUSE[cause]
    r = _run(family, planted)
    assert not r.passed
    located, explained = judge(r, planted, site_lines(family)[planted.site])
    assert located and explained, str(r)
    doc = json.loads(r.to_json())
    failing = [l for l in doc["leaves"] if not l["passed"]]
    assert failing and all({"leaf", "cause", "where", "evidence"} <= set(l) for l in failing)
    if cause != "unknown":  # a whole-leaf pattern (e.g. "extra L2") may name the leaf; the hypothesis is listed
        assert any(h["cause"] == cause for h in doc["hypotheses"])
        assert all(l["where"] for l in failing)


def test_derivative_at_output_is_explained():
    def loss(w, x):
        return jnp.sum(jnp.exp(jnp.sin(x @ w)))

    def manual(w, x):  # exp' taken at exp's output: exp(exp(u)) for exp(u)
        u = jnp.sin(x @ w)
        return x.T @ (jnp.exp(jnp.exp(u)) * jnp.cos(x @ w))

    w, x = jnp.array([0.3, -0.2]), jnp.array([[1.0, 2.0], [0.5, -1.0]])
    r = check_gradients(loss, manual, w, x)
    assert r.hypotheses[0].cause == "derivative_at_output" and r.hypotheses[0].where.startswith("exp")


def test_a_shared_helper_mistake_is_named_at_every_use():
    model, p, x, y = mlp_problem((4, 6, 6, 6, 3), "tanh", "softmax_cross_entropy", m=8, init="xavier")
    manual = lambda p, x, y: manual_with(model, p, x, y, 0.0, 0.0, derivative=lambda z, a: 1 - z ** 2)  # noqa: E731
    r = check_gradients(lambda p, x, y: jaxmlp.loss(model, p, x, y, check=False), manual, p, x, y)
    h = r.hypotheses[0]
    # One helper line serves all three layers: one change, made at its three traced instances.
    assert h.cause == "derivative_at_input" and "in all 3 instances" in h.explanation and len(h.sites) == 3


def test_a_wrong_leaky_relu_slope_is_a_wrong_constant():
    def loss(w, x):
        return jnp.sum(jax.nn.leaky_relu(x @ w, negative_slope=0.01) ** 2)

    def manual(w, x):
        z = x @ w
        return x.T @ (2 * jax.nn.leaky_relu(z, 0.01) * jnp.where(z >= 0, 1.0, 0.1))  # slope 0.1 for 0.01

    w, x = jnp.array([0.3, -0.7]), jnp.array([[1.0, 2.0], [0.5, -1.0], [-1.0, 0.2]])
    r = check_gradients(loss, manual, w, x)
    assert any(h.cause == "wrong_constant" and "0.1 where the forward uses 0.01" in h.explanation
               for h in r.hypotheses), str(r)


def test_correct_gradients_at_chained_kinks_pass_with_a_note():
    model, p, x, y = mlp_problem((3, 4, 4, 2), "relu", "mse", m=5, init="xavier", zero_rows=2)
    manual = lambda p, x, y: manual_with(model, p, x, y, 0.0, 0.0,  # noqa: E731
                                         derivative=lambda z, a: (z >= 0).astype(z.dtype))
    r = check_gradients(lambda p, x, y: jaxmlp.loss(model, p, x, y, check=False), manual, p, x, y)
    assert r.passed and any("kink" in n for n in r.notes), str(r)


def test_a_real_bug_at_a_kink_still_fails():
    model, p, x, y = mlp_problem((3, 4, 4, 2), "relu", "mse", m=5, init="xavier", zero_rows=2)
    manual = lambda p, x, y: manual_with(model, p, x, y, 0.0, 0.0,  # noqa: E731
                                         derivative=lambda z, a: jnp.ones_like(z))  # relu' left out
    r = check_gradients(lambda p, x, y: jaxmlp.loss(model, p, x, y, check=False), manual, p, x, y)
    assert not r.passed


@pytest.mark.parametrize("family", FAMILIES[:4], ids=lambda f: f.__name__.rsplit(".", 1)[-1])
def test_taylor_slope_is_two_when_right_and_one_when_wrong(family):
    p, x, y = family.problem(0)
    loss = lambda p: family.loss(p, x, y)  # noqa: E731
    right = taylor_test(loss, p, family.grad(p, x, y))
    wrong = taylor_test(loss, p, family.grad(p, x, y, bug=family.BUGS[0].bug))
    assert right.passed and abs(right.slope - 2) < 0.2, right
    assert not wrong.passed and abs(wrong.slope - 1) < 0.2, wrong


def test_taylor_in_the_report_and_its_json():
    family = FAMILIES[0]
    p, x, y = family.problem(0)
    r = check_gradients(family.loss, family.grad, p, x, y, taylor=True)
    assert r.passed and r.taylor.passed and "Taylor remainder slope" in str(r)
    assert json.loads(r.to_json())["taylor"]["passed"] is True


def test_taylor_rejects_bad_input():
    with pytest.raises(ValueError, match="n_steps: expected an int >= 3, got 2"):
        taylor_test(jnp.sum, jnp.ones(2), jnp.ones(2), n_steps=2)
    with pytest.raises(ValueError, match="grad: expected 2 entries like params, got 3"):
        taylor_test(jnp.sum, jnp.ones(2), jnp.ones(3))


def test_the_judge_needs_the_right_site():
    family, planted = FIRST_OF_EACH_CAUSE["derivative_dropped"]
    r = _run(family, planted)
    lines = site_lines(family)
    assert judge(r, planted, lines[planted.site]) == (True, True)
    other = next(v for k, v in lines.items() if k != planted.site)
    assert judge(r, planted, other)[0] is False
    assert judge(r, Planted(planted.bug, "", "sign_flipped", planted.site), lines[planted.site]) == (True, False)
