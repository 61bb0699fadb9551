"""The line of a rule's own code to fix: a ``custom_vjp``'s ``fwd`` and ``bwd``, or a hand pullback.

The rule is run as the user wrote it, one probe ``g`` (a fixed random cotangent of the output): ``fwd`` at
the arguments, then ``bwd(res, g)`` (``f_vjp(*args)[1](g)`` for a hand VJP), traced with the user's lines.
The right quantities come from the undecorated primal at the same arguments, differentiated against the
same ``g``: every forward value and every cotangent of :math:`\\langle g, f(x)\\rangle`
(:func:`verification.checker.backward.check.locate`); where reverse mode cannot run on the primal (a
``while_loop``), its true pullback comes from forward mode and its forward values are the right quantities.
A ``fwd`` whose primal output is wrong is searched against the primal's own outputs (:func:`locate_primal`);
a tangent rule (``custom_jvp``, a hand JVP, a curvature product) against the true tangents along one probe
tangent (:func:`locate_in_jvp`).
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from verification.checker.backward.check import locate, tangent_point
from verification.checker.backward.source_code import return_line
from verification.checker.base.findings import BackwardFinding
from verification.checker.base.tolerances import precision_of
from verification.checker.jaxpr import graph as jg
from verification.checker.rules.args import Args, unwrap

PROBE_SEED = 7  # the probe cotangent g: random normal, the same for every check


def probe_like(out):
    """A fixed random cotangent shaped like ``out`` (a pytree)."""
    leaves, treedef = jax.tree.flatten(out)
    keys = jax.random.split(jax.random.PRNGKey(PROBE_SEED), max(len(leaves), 1))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, jnp.shape(l), jnp.result_type(l))
                                        for k, l in zip(keys, leaves)])


def custom_vjp_code(f) -> Optional[Callable]:
    """``(args, g) -> cotangents per argument`` running ``f``'s own ``fwd`` and ``bwd`` (a
    ``jax.custom_vjp`` object, or a jitted one), or ``None`` when ``f`` is another callable."""
    obj = unwrap(f)
    fwd, bwd = getattr(obj, "fwd", None), getattr(obj, "bwd", None)
    if fwd is None or bwd is None:
        return None
    nondiff = tuple(getattr(obj, "nondiff_argnums", ()) or ())

    def run(args, g):
        _, res = fwd(*args)
        cts = iter(bwd(*[args[k] for k in nondiff], res, g))
        return tuple(args[k] if k in nondiff else next(cts) for k in range(len(args)))

    run.returns_at = return_line(bwd)
    return run


def locate_in_rule(code: Callable, ref_fn: Callable, a: Args, rtol: float) -> Optional[BackwardFinding]:
    """``code(args, g)`` is the user's pullback at ``args`` (cotangents per argument); ``ref_fn(*leaves)``
    the primal over the differentiable leaves of ``a`` (reverse-differentiated, or where it cannot be, by
    forward mode up to ``MAX_FORWARD_MODE_ENTRIES`` input entries)."""
    leaves = list(a.leaves)
    precision = precision_of(leaves)
    g = probe_like(jax.eval_shape(ref_fn, *leaves))
    g_leaves = jax.tree.leaves(g)
    wide = a.upcast()

    def pairing(ls):  # <g, f(x)>: its gradient is the true pullback of g
        out = jax.tree.leaves(ref_fn(*ls))
        return sum(jnp.vdot(jnp.asarray(gl, o.dtype), o) for gl, o in zip(g_leaves, out))

    graph = jg.trace(lambda ls: pairing(ls), wide, a.names)
    point = None
    try:
        expected = jax.grad(lambda ls: pairing(ls))(wide)
    except ValueError:  # a primal reverse mode cannot run (a while_loop): the true pullback by forward mode,
        expected = jax.jacfwd(lambda ls: pairing(ls))(wide)  # and the forward values as the right quantities
        point = tangent_point(graph, wide, None)
    user = lambda *ls: list(a.cotangents(code(a.rebuild(ls), g)))  # noqa: E731
    wrong = _wrong(user(*leaves), expected, rtol)
    if not any(wrong):
        return None
    probe = [("g (the probe cotangent)", gl) for gl in g_leaves]
    return locate(user, leaves, a.names, graph, point, expected, a.names, wrong, precision, what="⟨g, f⟩",
                  inputs=list(zip(a.names, wide)) + probe, forward_leaves=wide,
                  returns_at=getattr(code, "returns_at", None))


def _wrong(got, expected, rtol) -> list:
    """Which of the user's results differ from the right ones (ten times the check's tolerance)."""
    return [not np.allclose(np.asarray(x, np.float64), np.asarray(e, np.float64), rtol=rtol * 10,
                            atol=rtol * 10 * max(float(np.max(np.abs(np.asarray(e)))), 1e-300))
            for x, e in zip(got, expected)]


def custom_vjp_primal(f) -> Optional[Callable]:
    """``args -> primal outputs`` of ``f``'s own ``fwd`` (a ``jax.custom_vjp``), or ``None``."""
    obj = unwrap(f)
    fwd = getattr(obj, "fwd", None)
    if fwd is None or getattr(obj, "bwd", None) is None:
        return None
    run = lambda args: fwd(*args)[0]  # noqa: E731
    run.returns_at = return_line(fwd)
    return run


def locate_primal(code: Callable, ref_fn: Callable, a: Args, rtol: float) -> Optional[BackwardFinding]:
    """The line of a rule's ``fwd`` whose primal output differs from the undecorated primal's:
    ``code(args)`` is the ``fwd``'s primal output, ``ref_fn(*leaves)`` the primal; the right quantities
    are the primal's forward values."""
    return _locate_forward(lambda xs, ts: code(xs), ref_fn, a, rtol, tangents=False,
                           returns_at=getattr(code, "returns_at", None))


def guarded(report, fn) -> Optional[BackwardFinding]:
    """``fn()``, or ``None`` with a note on ``report`` when the rule's code is beyond the localisation: the
    comparison stands, never a raw traceback."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 -- any rule: the report says what stopped
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        report.notes.append(f"backward localisation stopped ({type(e).__name__}: {first}); the comparison above "
                            "stands")
        return None


def custom_jvp_code(f) -> Optional[Callable]:
    """``(args, tangents) -> output tangents`` running ``f``'s own jvp rule (a ``jax.custom_jvp``), or
    ``None``."""
    obj = unwrap(f)
    rule = getattr(obj, "jvp", None)
    if rule is None or not hasattr(obj, "fun"):
        return None
    nondiff = tuple(getattr(obj, "nondiff_argnums", ()) or ())

    def run(args, tangents):
        diff = [k for k in range(len(args)) if k not in nondiff]
        return rule(*[args[k] for k in nondiff], tuple(args[k] for k in diff), tuple(tangents[k] for k in diff))[1]

    return run


def locate_in_jvp(code: Callable, ref_fn: Callable, a: Args, rtol: float, held=()) -> Optional[BackwardFinding]:
    """``code(args, tangents)`` is the user's tangent rule at ``args`` (output tangents); ``ref_fn(*leaves)``
    the primal over the differentiable leaves of ``a``; one probe tangent.  ``held``: ``(name, array)`` of
    the arrays ``ref_fn`` closes over (to name them)."""
    return _locate_forward(code, ref_fn, a, rtol, tangents=True, held=held)


def _locate_forward(code: Callable, ref_fn: Callable, a: Args, rtol: float, tangents: bool, held=(),
                    returns_at=None) -> Optional[BackwardFinding]:
    """The search of a forward-side rule: ``code(args, tangents)`` against the true tangents of ``ref_fn``
    along one probe tangent (``tangents``), or against its primal outputs (not ``tangents``: the forward
    values alone are the right quantities)."""
    leaves = list(a.leaves)
    t = jax.tree.leaves(probe_like(leaves))
    wide = a.upcast()
    t_wide = [jnp.asarray(x, w.dtype) for x, w in zip(t, wide)]
    graph = jg.trace(lambda ls: ref_fn(*ls), wide, a.names)
    point = tangent_point(graph, wide, t_wide if tangents else None)
    out_names = [f"output {k}" for k in range(len(jax.tree.leaves(jax.eval_shape(ref_fn, *wide))))]
    expected = jax.tree.leaves(jax.jvp(ref_fn, tuple(wide), tuple(t_wide))[1] if tangents else ref_fn(*wide))
    user = lambda *ls: jax.tree.leaves(code(a.rebuild(ls), a.tangents(t)))  # noqa: E731
    got = user(*leaves)
    wrong = _wrong(got, expected, rtol)
    if len(got) != len(expected) or not any(wrong):
        return None
    return locate(user, leaves, a.names, graph, point, expected, out_names, wrong, precision_of(leaves),
                  what="tangent" if tangents else "primal", inputs=list(zip(a.names, wide)) + list(held),
                  forward_leaves=wide, returns_at=returns_at)


def locate_vjp(report, pullback: Callable, primal: Optional[Callable], ref_fn: Callable, a: Args) -> None:
    """``report.backward`` of a failing VJP check, then reconciled with its first diagnosis: the line of the
    rule's forward pass when the primal output is what is wrong (``primal(args)``), else of its pullback
    (``pullback(args, g)``)."""
    wrong_primal = bool(report.findings) and report.findings[0].cause == "primal_mismatch" and primal is not None
    report.backward = guarded(report, lambda: locate_primal(primal, ref_fn, a, report.rtol) if wrong_primal
                              else locate_in_rule(pullback, ref_fn, a, report.rtol))
    agree(report)


def agree(report) -> None:
    """The rule's line finding reconciled with its first block diagnosis (:meth:`BackwardFinding.agree`)."""
    if report.backward is not None and report.findings:
        report.backward.agree(report.findings[0].cause, report.findings[0].where)
