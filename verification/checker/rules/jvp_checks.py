r"""Check forward-mode rules: ``jax.custom_jvp`` functions and hand-written JVPs.

As for VJPs (:mod:`verification.checker.rules.vjp_checks`), ``jax.jvp`` of a ``custom_jvp`` function runs the rule
itself, so the reference is forward-mode autodiff of the undecorated primal ``f.fun`` (or directional
central differences when it cannot be differentiated).  A block is (output leaf, input leaf): random
tangents on the input leaf, and every unit tangent when it is small (a column block of the Jacobian,
:math:`\dot y = J\dot x`).

>>> import jax, jax.numpy as jnp
>>> @jax.custom_jvp
... def softplus(x):
...     return jnp.logaddexp(x, 0.0)
>>> @softplus.defjvp
... def softplus_jvp(primals, tangents):
...     (x,), (t,) = primals, tangents
...     return softplus(x), -jax.nn.sigmoid(x) * t  # sign error
>>> report = check_custom_jvp(softplus, jnp.linspace(-2.0, 2.0, 4))
>>> report.passed, report.findings[0].cause
(False, 'sign_flipped')
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from verification.checker.base import finite_differences as fd
from verification.checker.rules.linear_maps import compare_maps, probe_set
from verification.checker.rules.args import (Args, check_callables, decorated, out_space, precision_line, primal_row,
                                    primal_values, reference_dtype, tolerance, vmap_rows)
from verification.checker.rules.diagnosis import explain, primal_finding, where_of
from verification.checker.rules.report import RuleReport
from verification.checker.base.tolerances import FIT_RTOL


def jvp_report(kind, rule_jvp, ref_fn, args: Args, *, rtol=None, where="", force_fd=False) -> RuleReport:
    """The JVP check shared by :func:`check_custom_jvp` and :func:`check_jvp`.

    ``rule_jvp(leaves, tangent_leaves) -> (out, tangent_out)``; ``ref_fn(*leaves)`` is what forward-mode
    autodiff (or directional finite differences) differentiates for the reference.
    """
    ref_leaves = args.upcast()
    reference = "finite differences" if force_fd else "autodiff of the primal"
    ref_out = ref_fn(*ref_leaves)
    if not force_fd:
        try:
            jax.jvp(ref_fn, ref_leaves, [jnp.zeros_like(l) for l in ref_leaves])
        except Exception as e:  # noqa: BLE001 -- any failure to forward-differentiate the primal
            reference, force_fd = f"finite differences (the primal cannot be differentiated: {type(e).__name__})", True
    def reference_t(t):
        if force_fd:
            return fd.directional(ref_fn, ref_leaves, t, fd.step_for(reference_dtype()))
        return jax.tree.leaves(jax.jvp(ref_fn, ref_leaves, list(t))[1])

    space, treedef = out_space(ref_out)
    got_out, _ = rule_jvp(args.leaves, [jnp.zeros_like(l) for l in args.leaves])
    report_err = ""
    if jax.tree.structure(got_out) != treedef:
        report_err = f"the rule's output {jax.tree.structure(got_out)} vs the primal's {treedef}"

    def rule(t):
        _, tout = rule_jvp(args.leaves, t)
        leaves = jax.tree.leaves(tout)
        return leaves if len(leaves) == len(space) else [None] * len(space)

    tol = tolerance(args.precision, rtol, force_fd)
    blocks = compare_maps(rule, reference_t, args.space(), space, tol, probe_is_input=True,
                          ref_dtype=reference_dtype())
    report = RuleReport(kind, reference, blocks, tol, precision_line(args.precision, reference),
                        structure_error=report_err)
    if not report_err:
        report.primal = primal_row(got_out, ref_out, tol)
    if not report.passed:
        report.findings = explain(blocks, rule, reference_t, args.space(), [s.name for s in space], mode="jvp",
                                  fit=FIT_RTOL[args.precision], primals=primal_values(args, space, ref_out),
                                  where=where)
        if report.primal is not None and not report.primal.passed:
            report.findings.insert(0, primal_finding(where))
    return report


def batched_rows(rule_jvp, args: Args, tol):
    """The rule vmapped over the leading axis against one call per example, on random tangents."""
    ts = [jnp.asarray(probe_set(s, 7 + j)[0], s.dtype) for j, s in enumerate(args.space())]
    return vmap_rows(lambda ls, t: jax.tree.leaves(rule_jvp(ls, t)[1]), args, ts, None, tol)


def check_custom_jvp(f: Callable, *args, rtol=None, finite_differences=False, batched=False) -> RuleReport:
    r"""Check the forward rule of ``f``, a ``jax.custom_jvp`` function (or a jitted one), at ``args``.

    The rule (``jax.jvp`` of ``f``) against forward-mode autodiff of the undecorated ``f.fun`` (or
    directional central differences), with random tangents and, on small inputs, every unit tangent.
    ``nondiff_argnums`` are held fixed.  ``batched=True``: the arguments carry a leading batch axis; the
    rule is checked under ``jax.vmap`` and against per-example calls.

    >>> import jax, jax.numpy as jnp
    >>> @jax.custom_jvp
    ... def f(x):
    ...     return jnp.sin(x)
    >>> _ = f.defjvp(lambda p, t: (jnp.sin(p[0]), jnp.cos(p[0]) * t[0]))
    >>> check_custom_jvp(f, jnp.arange(3.0)).passed
    True
    """
    where, a, one_rule, rule_f, ref_f = decorated(f, "custom_jvp", "jvp", args, batched)
    report = jvp_report("custom_jvp", lambda ls, t: jax.jvp(rule_f, list(ls), list(t)), ref_f, a, rtol=rtol,
                        where=where, force_fd=finite_differences)
    if batched:
        report.batched = batched_rows(lambda ls, t: jax.jvp(one_rule, list(ls), list(t)), a, report.rtol)
    return report


def check_jvp(f: Callable, f_jvp: Callable, *args, rtol=None, finite_differences=False, batched=False) -> RuleReport:
    r"""Check a hand-written JVP: ``f_jvp(primals, tangents) -> (out, tangent_out)``.

    The calling convention of ``jax.test_util.check_jvp``: ``primals`` and ``tangents`` are tuples shaped
    like ``args`` (integer leaves get float0 tangents).  The reference is ``jax.jvp(f, ...)``;
    ``finite_differences=True`` uses directional central differences instead.

    >>> import jax.numpy as jnp
    >>> f = lambda x: x / jnp.linalg.norm(x)
    >>> def f_jvp(primals, tangents):
    ...     (x,), (t,) = primals, tangents
    ...     n = jnp.linalg.norm(x)
    ...     return x / n, (t - x * (x @ t) / n ** 2) / n
    >>> check_jvp(f, f_jvp, jnp.array([1.0, 2.0, 2.0])).passed
    True
    """
    check_callables(f=f, f_jvp=f_jvp)
    a = Args(f, args)
    one = lambda ls, t: f_jvp(a.rebuild(ls), a.tangents(t))  # noqa: E731
    ref = lambda *ls: f(*a.rebuild(ls))  # noqa: E731
    report = jvp_report("jvp", jax.vmap(one) if batched else one, jax.vmap(ref) if batched else ref, a, rtol=rtol,
                        where=where_of(f_jvp), force_fd=finite_differences)
    if batched:
        report.batched = batched_rows(one, a, report.rtol)
    return report


def assert_custom_jvp_correct(f, *args, **kw) -> RuleReport:
    """pytest helper: :func:`check_custom_jvp` then :meth:`RuleReport.raise_if_failed`."""
    return check_custom_jvp(f, *args, **kw).raise_if_failed()


def assert_jvp_correct(f, f_jvp, *args, **kw) -> RuleReport:
    """pytest helper: :func:`check_jvp` then :meth:`RuleReport.raise_if_failed`."""
    return check_jvp(f, f_jvp, *args, **kw).raise_if_failed()
