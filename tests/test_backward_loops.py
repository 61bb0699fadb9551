"""The line of the user's backward code inside a loop that stays whole (verification/checker/backward/loop_steps.py,
loop_lines.py): the loss's scan is too long to unroll, so the hand BPTT's reverse scan stays whole too; its body's
values, stacked over the iterations, meet the loss's per-step quantities, and the body line to fix is named.

The hand gradient is the long-RNN catalogue family (verification/catalogue/long_rnn_scan.py) on 30 steps (past the
unroll bound, shorter to check)."""
import jax
import jax.numpy as jnp
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


def _named_first(loss, grad, marker, *args):
    """``grad`` is right; with ``bug=True`` its line ending in ``marker`` is wrong and is named first."""
    import inspect

    assert check_gradients(loss, grad, *args).passed
    report = check_gradients(loss, lambda *a: grad(*a, bug=True), *args)
    src, start = inspect.getsourcelines(grad)
    want = f"test_backward_loops.py:{start + next(i for i, l in enumerate(src) if marker in l)}"
    assert not report.passed and report.backward is not None, str(report)
    assert line_hits(report, want)[0], report.backward.lines


T_GATED, M_GATED, N_GATED, H_GATED = 3, 2, 2, 3


def _gated_loss(p, x, y):
    h, total = jnp.zeros((M_GATED, H_GATED), x.dtype), 0.0
    for t in range(T_GATED):
        z = jax.nn.sigmoid(x[t] @ p["Wz"] + h @ p["Uz"])
        n = jnp.tanh(x[t] @ p["Wn"] + h @ p["Un"])
        h = (1.0 - z) * n + z * h
        total = total + jnp.sum((h @ p["V"] - y[t]) ** 2)
    return 0.5 * total / (T_GATED * M_GATED)


def _gated_grad(p, x, y, bug=False):
    hs, zs, ns = [jnp.zeros((M_GATED, H_GATED), x.dtype)], [], []
    for t in range(T_GATED):
        z = jax.nn.sigmoid(x[t] @ p["Wz"] + hs[-1] @ p["Uz"])
        n = jnp.tanh(x[t] @ p["Wn"] + hs[-1] @ p["Un"])
        zs, ns, hs = zs + [z], ns + [n], hs + [(1.0 - z) * n + z * hs[-1]]
    g = {k: jnp.zeros_like(v) for k, v in p.items()}
    dh_next = jnp.zeros_like(hs[0])
    for t in reversed(range(T_GATED)):
        z, n, h_prev, err = zs[t], ns[t], hs[t], hs[t + 1] @ p["V"] - y[t]
        dh = err @ p["V"].T / (T_GATED * M_GATED) + dh_next
        dan = dh * (1.0 - z) * (1.0 - n ** 2)
        daz = dh * (h_prev - n) * z * (1.0 - z)
        dh_prev = 0.0 if bug else dh * z  # skip path
        dh_prev = dh_prev + dan @ p["Un"].T + daz @ p["Uz"].T
        g = {"Wz": g["Wz"] + x[t].T @ daz, "Uz": g["Uz"] + h_prev.T @ daz, "Wn": g["Wn"] + x[t].T @ dan,
             "Un": g["Un"] + h_prev.T @ dan, "V": g["V"] + hs[t + 1].T @ err / (T_GATED * M_GATED)}
        dh_next = dh_prev
    return g


def test_a_carried_delta_whose_term_is_a_zero_is_named_at_the_zero():
    """A gated recurrence's BPTT in Python loops: the carried ``dh_prev`` is what reaches h_{t-1} through step
    t's own uses (every use but the previous step's read-out), one step off the forward line's instances; with
    the skip path's term set to zero, the line that sets it is named."""
    k = jax.random.split(jax.random.key(0), 7)
    shapes = {"Wz": (N_GATED, H_GATED), "Uz": (H_GATED, H_GATED), "Wn": (N_GATED, H_GATED),
              "Un": (H_GATED, H_GATED), "V": (H_GATED, 2)}
    p = {name: 0.6 * jax.random.normal(kk, s, jnp.float64) for (name, s), kk in zip(shapes.items(), k)}
    x = jax.random.normal(k[5], (T_GATED, M_GATED, N_GATED), jnp.float64)
    y = jax.random.normal(k[6], (T_GATED, M_GATED, 2), jnp.float64)
    _named_first(_gated_loss, _gated_grad, "# skip path", p, x, y)


def test_a_recurrence_written_on_one_line_is_one_group():
    """A BPTT whose carried delta is one line reading its own previous value (``dh = dout[t] + (dh * (1 -
    h**2)) @ Wh.T``), run 6 times: an untransposed ``Wh`` there is named at that line (a guard on grouping
    a line's instances: the line's result is read by the same line one step later)."""
    steps, m, n, h = 6, 2, 2, 3

    def loss(p, x, y):
        hs, total = jnp.zeros((m, h), x.dtype), 0.0
        for t in range(steps):
            hs = jnp.tanh(x[t] @ p["Wx"] + hs @ p["Wh"])
            total = total + jnp.sum((hs - y[t]) ** 2)
        return 0.5 * total

    def grad(p, x, y, bug=False):
        hs = [jnp.zeros((m, h), x.dtype)]
        for t in range(steps):
            hs.append(jnp.tanh(x[t] @ p["Wx"] + hs[-1] @ p["Wh"]))
        g, dh = {"Wx": jnp.zeros_like(p["Wx"]), "Wh": jnp.zeros_like(p["Wh"])}, jnp.zeros((m, h), x.dtype)
        for t in reversed(range(steps)):
            wh = p["Wh"] if bug else p["Wh"].T
            dh = (hs[t + 1] - y[t]) + (dh * (1.0 - hs[t + 2] ** 2) @ wh if t + 1 < steps else 0.0)  # carried
            da = dh * (1.0 - hs[t + 1] ** 2)
            g = {"Wx": g["Wx"] + x[t].T @ da, "Wh": g["Wh"] + hs[t].T @ da}
        return g

    k = jax.random.split(jax.random.key(1), 4)
    p = {"Wx": 0.5 * jax.random.normal(k[0], (n, h), jnp.float64),
         "Wh": 0.5 * jax.random.normal(k[1], (h, h), jnp.float64)}
    x = jax.random.normal(k[2], (steps, m, n), jnp.float64)
    y = jax.random.normal(k[3], (steps, m, h), jnp.float64)
    _named_first(loss, grad, "# carried", p, x, y)


def test_a_per_example_forward_under_vmap_is_repaired_layer_by_layer():
    """Lemma 1's shape of code: each example's forward recomputed inside the hand gradient under ``vmap``,
    one line per layer with values of different shapes ((n_l, m) there, (m, n_l) in the loss); with the
    bias left out of it, every layer is wrong, and only the loss's own pre-activations, layer by layer and
    transposed, repair it: that line is named."""
    sizes = (3, 4, 3, 2)
    k = jax.random.split(jax.random.key(2), 8)
    p = [{"W": 0.7 * jax.random.normal(k[i], (sizes[i], sizes[i + 1]), jnp.float64),
          "b": 0.3 * jax.random.normal(k[i + 3], (sizes[i + 1],), jnp.float64)} for i in range(3)]
    x, y = jax.random.normal(k[6], (5, 3), jnp.float64), jax.random.normal(k[7], (5, 2), jnp.float64)

    def loss(p, x, y):
        a = x
        for layer in p:
            a = jnp.tanh(a @ layer["W"] + layer["b"][None, :])
        return 0.5 * jnp.mean(jnp.sum((a - y) ** 2, axis=1))

    def grad(p, x, y, bug=False):
        def one(xi, yi):
            a, acts = xi, [xi]
            for layer in p:
                a = jnp.tanh(layer["W"].T @ a + (0.0 if bug else layer["b"]))  # pre-activation
                acts.append(a)
            delta, out = (a - yi) * (1.0 - a ** 2), [None] * len(p)
            for l in reversed(range(len(p))):
                out[l] = {"W": jnp.outer(acts[l], delta), "b": delta}
                delta = (p[l]["W"] @ delta) * (1.0 - acts[l] ** 2)
            return out
        return jax.tree.map(lambda g: jnp.mean(g, axis=0), jax.vmap(one)(x, y))

    _named_first(loss, grad, "# pre-activation", p, x, y)


@pytest.mark.parametrize("unroll", [True, False])
def test_several_replacements_in_one_batched_run_equal_each_run_alone(unroll):
    """:meth:`Program.replaced_parts` (the loop lines and single values of a localisation tried in one run,
    each variable replaced on its own rows only) gives each part what :meth:`Program.replaced_all` gives it
    alone, for a hand BPTT unrolled and kept whole (a scan re-run compiled)."""
    import numpy as np

    from verification.checker.backward import program as bp

    p, x, y = _problem()
    names = sorted(p)
    prog = bp.trace(lambda *ls: jax.tree.leaves(long_rnn_scan.grad(dict(zip(names, ls)), x, y)),
                    [p[k] for k in names], names, unroll=unroll)
    live = [v for v in prog.live_vars() if prog.value(v) is not None and prog.value(v).size > 1]
    a = next(v for v in live if prog.eqns[prog.producer(v)].primitive.name == "dot_general")  # read by every leaf
    b, c = live[len(live) // 2], live[-3]
    parts = [([a], [[2 * prog.value(a), np.zeros_like(prog.value(a))]]),
             ([b, c], [[prog.value(b) + 1.0], [-prog.value(c)]]),
             ([a], [[prog.value(a) - 0.5]])]
    together = prog.replaced_parts(parts)
    for (vs, cs), got in zip(parts, together):
        for g, alone in zip(got, prog.replaced_all(vs, cs)):
            np.testing.assert_allclose(g, alone, rtol=1e-12, atol=1e-12)
    assert not all(np.allclose(x[0], y[0]) for x, y in zip(together[0], together[2]))  # each part's own value
