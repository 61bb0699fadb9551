"""verification.check_gradients: reports, JSON, the pytest helper, and the planted-bug catalogue."""
import re
import json
import pathlib

import jax
import jax.numpy as jnp
import pytest

import jaxmlp
from verification import assert_gradients_match, check_gradients
from verification.suite.bugs import catalogue_cases, run_case
from verification.suite.errata import ERRATA

pytestmark = pytest.mark.usefixtures("loss_side_only")  # conftest.py: the backward line has its own tests

MODEL = jaxmlp.MLP((3, 4, 2), "tanh")
PARAMS = jaxmlp.init(MODEL, jax.random.key(0), dtype=jnp.float64)
X = jax.random.normal(jax.random.key(1), (5, 3), jnp.float64)
Y = jnp.array([0, 1, 1, 0, 1])


def good(p, x, y, l2=0.0):
    return jaxmlp.value_and_grad(MODEL, p, x, y, l2=l2)[1]


def loss(p, x, y, l2=0.0):
    return jaxmlp.loss(MODEL, p, x, y, l2=l2)


def test_correct_gradient_passes_with_fd_and_reg_off_run():
    r = check_gradients(loss, good, PARAMS, X, Y, l2=0.1, finite_differences=True)
    assert r.passed and r.unregularised_passed and len(r.finite_differences) == 4
    assert "overall: PASS" in str(r)
    assert_gradients_match(loss, good, PARAMS, X, Y, l2=0.1)


def test_failure_names_leaf_index_band_and_serialises():
    def bad(p, x, y, l2=0.0):
        g = good(p, x, y)
        return (g[0], g[1]._replace(W=g[1].W.at[2, 1].add(1.0)))

    r = check_gradients(loss, bad, PARAMS, X, Y)
    assert not r.passed
    leaf = [l for l in r.leaves if not l.passed]
    assert [l.path for l in leaf] == ["[1].W"] and leaf[0].worst_index == (2, 1)
    assert leaf[0].band.startswith("wrong")
    d = json.loads(r.to_json())
    assert d["schema"] == "verification.check_gradients/4" and d["passed"] is False
    assert d["leaves"][2]["leaf"] == "[1].W" and d["leaves"][2]["cause"]
    assert {"leaf", "cause", "where", "evidence"} <= set(d["leaves"][2])
    with pytest.raises(AssertionError, match=re.escape("[1].W")):
        r.raise_if_failed()


def test_structure_mismatch_is_reported_first():
    r = check_gradients(loss, lambda p, x, y: good(p, x, y)[:1], PARAMS, X, Y)
    assert not r.passed and r.structure_error and r.diagnoses[0].cause == "structure"


def test_works_for_any_function_not_only_mlps():
    params = {"a": jnp.array([1.0, 2.0], jnp.float64), "s": jnp.array(3.0, jnp.float64)}
    f = lambda p, t: jnp.sum(p["s"] * jnp.sin(p["a"] * t))  # noqa: E731
    manual = lambda p, t: {"a": p["s"] * t * jnp.cos(p["a"] * t), "s": jnp.sum(jnp.sin(p["a"] * t))}  # noqa: E731
    assert check_gradients(f, manual, params, jnp.array(0.7, jnp.float64)).passed
    wrong = lambda p, t: {"a": -manual(p, t)["a"], "s": manual(p, t)["s"]}  # noqa: E731
    r = check_gradients(f, wrong, params, jnp.array(0.7, jnp.float64))
    assert [d.cause for d in r.diagnoses] == ["sign_flipped"]


def _diagonal(cases):
    """Every planted bug once, on an architecture cycled over the bugs (every architecture met): all 38
    pairs run in ``python -m verification --bugs``, whose first table this test would repeat."""
    archs, out = list(dict.fromkeys(a for a, _ in cases)), []
    for k, name in enumerate(dict.fromkeys(b.name for _, b in cases)):
        mine = {a: b for a, b in cases if b.name == name}
        arch = next(archs[(k + j) % len(archs)] for j in range(len(archs)) if archs[(k + j) % len(archs)] in mine)
        out.append((arch, mine[arch]))
    return out


CATALOGUE = _diagonal(list(catalogue_cases()))  # the pairs only: each check runs in its own test


def test_the_diagonal_meets_every_bug_and_architecture():
    assert {b.name for _, b in CATALOGUE} == {b.name for _, b in catalogue_cases()}
    assert {a for a, _ in CATALOGUE} == {a for a, _ in catalogue_cases()}


@pytest.mark.parametrize("arch, bug", CATALOGUE, ids=[f"{c[0]}: {c[1].name}" for c in CATALOGUE])
def test_planted_bug_is_diagnosed(arch, bug):
    report = run_case(arch, bug)
    causes = {d.cause for d in report.diagnoses}
    if bug.cause == "kink":  # a valid subgradient at a kink: passes, with a note
        assert report.passed and any("kink" in n for n in report.notes), str(report)
        return
    assert not report.passed
    assert causes == {bug.cause}, str(report)


@pytest.mark.parametrize("k", range(len(ERRATA)), ids=[e.where for e in ERRATA])
def test_every_erratum_fails_as_printed_and_passes_corrected(k):
    e = ERRATA[k]
    assert not e.check_printed()[0], e.where
    assert e.check_corrected()[0], e.where


def test_dnn_maths_l1_erratum_is_diagnosed():
    from verification.suite.errata import l1_printed

    passed, why = l1_printed()
    assert not passed and "l1_without_sign" in why


def test_regulariser_off_run_diagnoses_the_data_term():
    def f(p, x, y, l2=0.0):
        h = jnp.tanh(x @ p["W1"])
        return jnp.mean((h @ p["W2"] - y) ** 2) + 0.5 * l2 * jnp.sum(p["W1"] ** 2)

    def g(p, x, y, l2=0.0):  # forgets the 1/m of the mean, keeps the L2 term right
        h = jnp.tanh(x @ p["W1"])
        d = 2 * (h @ p["W2"] - y) / y.shape[1]
        return {"W1": x.T @ ((d @ p["W2"].T) * (1 - h**2)) + l2 * p["W1"], "W2": h.T @ d}

    k = jax.random.split(jax.random.key(0), 4)
    p = {"W1": jax.random.normal(k[0], (3, 5), jnp.float64), "W2": jax.random.normal(k[1], (5, 2), jnp.float64)}
    x, y = jax.random.normal(k[2], (8, 3), jnp.float64), jax.random.normal(k[3], (8, 2), jnp.float64)
    r = check_gradients(f, g, p, x, y, l2=0.1)
    assert [d.cause for d in r.diagnoses] == ["mean_sum_confused", "mean_sum_confused"] and r.unregularised_passed is False


def test_integer_and_bool_leaves_are_held_fixed_with_a_note():
    """A step count and a mask in params have no gradient: they are skipped with a note, whether the hand
    gradient returns None there (equinox.filter_grad), returns them, or leaves them out; the float leaf is
    still checked, and a bug in it still fails."""
    params = {"w": jnp.linspace(-1.0, 1.0, 3), "n": jnp.array(3), "mask": jnp.array([True, False, True])}
    loss = lambda p: jnp.sum(jnp.tanh(p["w"]) * p["mask"].astype(jnp.float64)) * p["n"].astype(jnp.float64)  # noqa: E731
    grad_w = lambda p: 3.0 * (1 - jnp.tanh(p["w"]) ** 2) * p["mask"].astype(jnp.float64)  # noqa: E731
    for manual in (lambda p: {"w": grad_w(p), "n": None, "mask": None}, lambda p: {**p, "w": grad_w(p)},
                   lambda p: {"w": grad_w(p)}):
        r = check_gradients(loss, manual, params)
        assert r.passed and [l.path for l in r.leaves] == ["['w']"], str(r)
        assert "['mask'] (bool)" in r.notes[0] and "['n'] (int64)" in r.notes[0]
    r = check_gradients(loss, lambda p: {"w": 2 * grad_w(p)}, params)
    assert not r.passed and r.diagnoses[0].cause == "factor_2", str(r)
    r = check_gradients(loss, lambda p: {"n": 1}, params)
    assert not r.passed and "no leaf at [\"['w']\"]" in r.structure_error
    with pytest.raises(ValueError, match="params: expected at least one floating-point leaf"):
        check_gradients(lambda p: jnp.sum(p["n"]), lambda p: p, {"n": jnp.arange(2)})


def _while_loss(p, x):
    def body(c):
        k, h = c
        return k + 1, jnp.tanh(h @ p["W"])  # while body

    return jnp.sum(jax.lax.while_loop(lambda c: c[0] < 3, body, (0, x))[1] ** 2)


def _while_grad(p, x, bug=False):
    hs = [x]
    for _ in range(3):
        hs.append(jnp.tanh(hs[-1] @ p["W"]))
    g, gW = 2 * hs[-1], jnp.zeros_like(p["W"])
    for k in range(3, 0, -1):
        dz = g if bug else g * (1 - hs[k] ** 2)
        gW, g = gW + hs[k - 1].T @ dz, dz @ p["W"].T
    return {"W": gW}


def test_a_while_loop_loss_is_checked_against_forward_mode_and_diagnosed():
    p = {"W": 0.5 * jax.random.normal(jax.random.key(0), (3, 3), jnp.float64)}
    x = jax.random.normal(jax.random.key(1), (4, 3), jnp.float64)
    ok = check_gradients(_while_loss, _while_grad, p, x)
    assert ok.passed and any("forward-mode" in n for n in ok.notes), str(ok)
    bad = check_gradients(_while_loss, lambda p, x: _while_grad(p, x, bug=True), p, x)
    h = bad.hypotheses[0]
    assert not bad.passed and h.cause == "derivative_dropped" and len(h.sites) == 3, str(bad)
    assert "while body" in pathlib.Path(__file__).read_text().splitlines()[int(h.where.rsplit(":", 1)[1]) - 1]
