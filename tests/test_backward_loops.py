"""The line of the user's backward code inside a loop that stays whole (verification/checker/backward/loop_steps.py,
loop_lines.py): the loss's scan is too long to unroll, so the hand BPTT's reverse scan stays whole too; its body's
values, stacked over the iterations, meet the loss's per-step quantities, and the body line to fix is named.

The hand gradient is the long-RNN catalogue family (verification/catalogue/long_rnn_scan.py) on 30 steps (past the
unroll bound, shorter to check)."""
import jax
import pytest

from verification import check_gradients
from verification.catalogue import bwd_lines, long_rnn_scan
from verification.catalogue.backward import line_hits
from verification.catalogue.data import random_data
from verification.checker.backward import loop_steps
from verification.checker.explain import edit_effects
from verification.checker.jaxpr import graph as jg

STEPS = 30  # 30 steps of the body unroll into more than inline.UNROLL_MAX equations: the scan stays whole


def _problem():
    p, _, _ = long_rnn_scan.problem(0)
    x, y = random_data(0, long_rnn_scan.M, long_rnn_scan.N_IN, long_rnn_scan.N_OUT, steps=STEPS)
    return p, x, y


def test_the_per_step_quantities_of_a_whole_scan():
    """The probes' cotangents: at the last step, ∂L/∂h_T is the read-out's alone, (h_T V - y_T) V^T / (T m); a
    parameter's shares over the steps add up to its gradient."""
    import numpy as np

    p, x, y = _problem()
    whole = jg.trace(lambda q: long_rnn_scan.loss(q, x, y), p, list(p))
    assert [e.primitive.name for e in whole.eqns].count("scan") == 1
    steps = loop_steps.per_step(whole, edit_effects.at_point(whole, jax.tree.leaves(p)))
    tanh = [s for s in steps if s.eqn is not None and jg.op_name(s.body.eqns[s.eqn]) == "tanh"]
    assert len(tanh) == 1 and tanh[0].values.shape == (STEPS, long_rnn_scan.M, long_rnn_scan.H)
    h_last = np.asarray(tanh[0].values[-1])
    want = (h_last @ np.asarray(p["V"]) - np.asarray(y[-1])) @ np.asarray(p["V"]).T / (STEPS * long_rnn_scan.M)
    np.testing.assert_allclose(tanh[0].cotangents[-1], want, rtol=1e-10, atol=1e-16)
    grad = jax.grad(lambda q: long_rnn_scan.loss(q, x, y))(p)
    shares = [s for s in steps if s.role == "const" and s.cotangents.shape[1:] == p["Wh"].shape]
    assert any(np.allclose(s.cotangents.sum(0), grad["Wh"], rtol=1e-10, atol=1e-16) for s in shares)


@pytest.mark.parametrize("bug", ["wh_not_transposed", "tanh_prime_dropped"])
def test_a_mistake_in_the_body_of_a_whole_reverse_scan_is_named_at_its_line(bug):
    """``wh_not_transposed``: the carry sent back is wrong, and every later value with it; the first wrong value
    runs at the first reverse step (a step's carry holds the next step's cotangent).  ``tanh_prime_dropped``:
    ``dz = dh`` in one branch of an ``if``, the other branch computing ``dh * (1 - h ** 2)``: the rename is
    named, not the line of ``dh`` (right as it is)."""
    p, x, y = _problem()
    report = check_gradients(long_rnn_scan.loss, lambda p, x, y: long_rnn_scan.grad(p, x, y, bug=bug), p, x, y)
    assert not report.passed
    first, _ = line_hits(report, bwd_lines(long_rnn_scan)[bug])
    assert first, report.backward
    assert "at every iteration of the loop" in report.backward.explanation


@pytest.mark.parametrize("family,bug,cause", [("rnn_scan", "wh_not_transposed", "transposed_operand"),
                                               ("rk4_ode", "field_w_not_transposed", "transposed_operand"),
                                               ("rnn_scan", "time_mean_forgotten", "mean_sum_confused")])
def test_a_mistake_in_an_unrolled_loop_line_is_named_at_its_first_wrong_instance(family, bug, cause):
    """Short loops unroll: a Python BPTT over 4 steps whose carried delta goes back through ``Wh`` untransposed,
    and an RK4 adjoint whose VJP helper, called for every stage of every step, does the same with ``W``.  Every
    later delta is wrong too, and replacing any of their lines repairs the leaves; the line whose first wrong
    instance runs first is named (the helper's: what reaches each operand of the stage's matrix product).  The
    BPTT's read-out delta, taken step by step of a read-out the loss computes for all steps at once, is matched
    slice by slice (the mean over the steps left out)."""
    import importlib

    fam = importlib.import_module(f"verification.catalogue.{family}")
    p, x, y = fam.problem()
    report = check_gradients(fam.loss, lambda p, x, y: fam.grad(p, x, y, bug=bug), p, x, y)
    assert not report.passed
    first, _ = line_hits(report, bwd_lines(fam)[bug])
    assert first, report.backward
    assert report.backward.cause == cause, report.backward
