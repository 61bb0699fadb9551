"""The rule checkers: custom_vjp / custom_jvp / hand VJPs and JVPs / curvature products (issue 15)."""
import functools
import json

import chex
import jax
import jax.numpy as jnp
import pytest

import jaxmlp
import verification
from verification.catalogue import rule_bugs
from verification.catalogue.backward import bwd_lines, line_hits
from verification.catalogue.rule_bugs import CASES
from verification.suite.problems import grid_problem
from verification import CAUSES


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rule_catalogue(case):
    for dtype in (jnp.float64, jnp.float32):
        twin = case.check(False, dtype)
        assert twin.passed, str(twin)
    bug = case.check(True, jnp.float64)
    assert not bug.passed
    assert [f.cause for f in bug.findings][:1] == [case.cause], str(bug)
    assert all(f.cause in CAUSES for f in bug.findings)
    # the line of the rule's own code (bwd, fwd, hand VJP / JVP, curvature product) marked "# bwd:" is named first
    assert line_hits(bug, bwd_lines(rule_bugs)[case.name])[0], str(bug)


def test_catalogue_size():
    assert len(CASES) >= 15


def test_cotangent_one_only_fails_on_scalar_output():
    @jax.custom_vjp
    def f(x):
        return jnp.sum(jnp.sin(x))

    f.defvjp(lambda x: (f(x), x), lambda x, g: (jnp.cos(x),))  # right for g = 1 only
    r = verification.check_custom_vjp(f, jnp.arange(3.0))
    assert not r.passed
    assert r.findings[0].cause == "ignores_probe"
    assert "correct only when the cotangent is 1" in r.findings[0].explanation


def test_nondiff_argnums_and_pytrees():
    @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
    def f(scale, p, x):
        return scale * jnp.tanh(x @ p["W"] + p["b"][None, :])

    def fwd(scale, p, x):
        y = f(scale, p, x)
        return y, (p, x, y)

    def bwd(scale, res, g):
        p, x, y = res
        d = g * scale * (1 - (y / scale) ** 2)
        return {"W": x.T @ d, "b": jnp.sum(d, 0)}, d @ p["W"].T

    f.defvjp(fwd, bwd)
    p = {"W": jnp.ones((3, 2)) * 0.3, "b": jnp.array([0.1, -0.2])}
    x = jnp.arange(12.0).reshape(4, 3) / 10
    r = verification.check_custom_vjp(f, 2.0, p, x)
    assert r.passed, str(r)
    assert {b.input for b in r.blocks} == {"p['W']", "p['b']", "x"}
    js = json.loads(r.to_json())
    assert js["schema"] == "verification.check_rule/3" and js["passed"] and len(js["blocks"]) == 3


def test_jitted_and_vmapped_rule():
    case = CASES[0]  # logsumexp rows
    r = case.check(False, jnp.float64)
    assert r.passed

    @jax.custom_vjp
    def lse(x):
        return jax.nn.logsumexp(x)

    lse.defvjp(lambda x: (lse(x), jax.nn.softmax(x)), lambda s, g: (g * s,))
    rb = verification.check_custom_vjp(jax.jit(lse), jnp.arange(12.0).reshape(4, 3), batched=True)
    assert rb.passed and len(rb.batched) == 1, str(rb)


def test_while_loop_uses_finite_differences():
    r = next(c for c in CASES if "newton" in c.name).check(False, jnp.float64)
    assert r.passed and r.reference.startswith("finite differences")


@pytest.mark.parametrize("dtype,name", [(jnp.float16, "float16"), (jnp.bfloat16, "bfloat16")])
def test_half_precision_twins(dtype, name):
    r = next(c for c in CASES if c.name.startswith("softplus")).check(False, dtype)
    assert r.passed, str(r)
    assert r.precision.startswith(f"{name} rule vs float64 reference")


def test_report_interface():
    r = CASES[2].check(True, jnp.float64)
    text = str(r)
    assert "FAIL" in text and "diagnosis:" in text and "rule against autodiff of the primal" in text
    with pytest.raises(AssertionError, match="does not match"):
        r.raise_if_failed()
    f = lambda x: x ** 2  # noqa: E731
    with pytest.raises(AssertionError, match="vjp rule does not match"):
        verification.assert_vjp_correct(f, lambda x: (f(x), lambda g: (g * x,)), jnp.ones(3))
    verification.assert_jvp_correct(f, lambda p, t: (f(p[0]), 2 * p[0] * t[0]), jnp.ones(3))


def test_bad_arguments():
    with pytest.raises(TypeError, match="f: expected a jax.custom_vjp"):
        verification.check_custom_vjp(jnp.sin, jnp.ones(2))
    with pytest.raises(TypeError, match="f: expected a jax.custom_jvp"):
        verification.check_custom_jvp(jnp.sin, jnp.ones(2))
    with pytest.raises(ValueError, match="kind: expected one of"):
        verification.check_hvp(lambda p: jnp.sum(p ** 2), lambda p, v: 2 * v, jnp.ones(2), kind="newton")
    with pytest.raises(ValueError, match="expected the pair"):
        verification.check_hvp(lambda p: jnp.sum(p ** 2), lambda p, v: 2 * v, jnp.ones(2), kind="gauss_newton")
    with pytest.raises(ValueError, match="args: expected at least one floating-point"):
        verification.check_vjp(lambda n: n, lambda n: (n, lambda g: (g,)), jnp.arange(3))
    with pytest.raises(ValueError, match="rtol: expected a tolerance >= 0"):
        verification.check_jvp(jnp.sin, lambda p, t: (jnp.sin(p[0]), jnp.cos(p[0]) * t[0]), jnp.ones(2), rtol=-1.0)


def test_malformed_pullback_is_a_structure_error():
    r = verification.check_vjp(lambda x, y: x * y, lambda x, y: (x * y, lambda g: (g * y,)), jnp.ones(2), jnp.ones(2))
    assert not r.passed and "one cotangent per argument" in r.structure_error


def test_jaxmlp_manual_vjp_under_jit_grad():
    model, params, x, y = grid_problem("tanh", "softmax_cross_entropy", 3, 4, 5, seed=1)
    g_manual = jax.jit(jax.grad(lambda p: jaxmlp.loss_with_manual_vjp(model, p, x, y, 0.0, 0.1)))(params)
    g_auto = jax.grad(lambda p: jaxmlp.loss(model, p, x, y, l2=0.1))(params)
    chex.assert_trees_all_close(g_manual, g_auto, rtol=1e-12, atol=1e-14)
    verification.assert_custom_vjp_correct(jaxmlp.loss_with_manual_vjp, model, params, x, y, 0.01, 0.1)


def test_gauss_newton_refuses_non_least_squares():
    model, params, x, y = grid_problem("tanh", "softmax_cross_entropy", 2, 3, 4)
    with pytest.raises(ValueError, match="model.head"):
        jaxmlp.gauss_newton_product(model, params, params, x, y)


def test_x64_off_uses_a_float32_reference():
    """With x64 off the reference is float32 (and finite differences use the float32 step)."""
    import subprocess
    import sys

    code = ("import jax, jax.numpy as jnp\n"
            "from verification.catalogue.rule_bugs import CASES\n"
            "by = {c.name: c for c in CASES}\n"
            "for name in ('softplus_jvp_sign', 'newton_while_loop_implicit_sign', 'layer_norm_vjp_missing_mean'):\n"
            "    twin, bug = by[name].check(False, jnp.float32), by[name].check(True, jnp.float32)\n"
            "    assert twin.passed, str(twin)\n"
            "    assert not bug.passed and bug.findings[0].cause == by[name].cause, str(bug)\n"
            "    assert 'float32 rule vs float32 reference' in twin.precision, twin.precision\n"
            "print('ok')\n")
    import os
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "JAX_ENABLE_X64": "0", "PYTHONPATH": str(root), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
