"""The skeleton of the first-order rule checks: what :mod:`verification.checker.rules.vjp_checks` and
:mod:`verification.checker.rules.jvp_checks` share.

Each check supplies only what differs: how the rule and the reference apply to a probe, and on which
side the probes are (``mode``: ``"vjp"``, a cotangent on the output; ``"jvp"``, a tangent on the
inputs).  The skeleton chooses the reference (:func:`reference_of`: autodiff of the primal, or finite
differences), compares the rule with it block by block, adds the primal row and the structure error,
and explains a failure (:func:`rule_report`); with ``batched=True``, the vmapped rule against one call
per example (:func:`batched_rows`).
"""
from __future__ import annotations

from typing import Callable, List

import jax
import jax.numpy as jnp
import numpy as np

from verification.checker.base.compare import LeafResult, compare_leaf
from verification.checker.base import causes
from verification.checker.base.findings import RuleFinding
from verification.checker.base.tolerances import FIT_RTOL, STABILISER_REL, default_atol
from verification.checker.rules.args import Args, precision_line, primal_row, primal_values, tolerance
from verification.checker.rules.diagnosis import explain, primal_finding
from verification.checker.rules.linear_maps import Leaf, compare_maps, probe_set, reference_dtype
from verification.checker.rules.report import RuleReport


def reference_of(autodiff: Callable, force_fd: bool, cannot: str):
    """``(reference, found)``: "autodiff of the primal" with what ``autodiff()`` returns, or finite
    differences (``found`` is ``None``) when ``force_fd`` or when ``autodiff()`` raises, the reference then
    saying that the primal cannot be ``cannot`` ("differentiated") and why."""
    if force_fd:
        return "finite differences", None
    try:
        return "autodiff of the primal", autodiff()
    except Exception as e:  # noqa: BLE001 -- any failure to differentiate the primal
        return f"finite differences (the primal cannot be {cannot}: {type(e).__name__})", None


def rule_report(kind: str, mode: str, args: Args, *, rule: Callable, reference_map: Callable,
                space: List[Leaf], treedef, got_out, ref_out, reference: str, fd: bool, rtol=None,
                where: str = "", structure_error: Callable[[], str] = lambda: "") -> RuleReport:
    """The report of a first-order rule check.

    ``rule(probe)`` and ``reference_map(probe)`` map a probe (a list of leaves) to the result leaves: for
    ``mode="vjp"`` a cotangent on the output ``space`` to the cotangents of ``args``' leaves, for
    ``mode="jvp"`` a tangent on ``args``' leaves to the output's.  ``got_out`` is the rule's primal output
    and ``ref_out`` the reference's (whose pytree is ``treedef``); ``fd``: the reference is finite
    differences.  ``structure_error()``, asked after the comparison, says what was malformed ("" if
    nothing) and overrides the output's structure error.
    """
    tol = tolerance(args.precision, rtol, fd)
    probes, results = (space, args.space()) if mode == "vjp" else (args.space(), space)
    blocks = compare_maps(rule, reference_map, probes, results, tol, probe_is_input=mode != "vjp",
                          ref_dtype=reference_dtype())
    report = RuleReport(kind, reference, blocks, tol, precision_line(args.precision, reference))
    if jax.tree.structure(got_out) == treedef:
        report.primal = primal_row(got_out, ref_out, tol)
    else:
        report.structure_error = f"the rule's output {jax.tree.structure(got_out)} vs the primal's {treedef}"
    report.structure_error = structure_error() or report.structure_error
    if not report.passed:
        report.findings = explain(blocks, rule, reference_map, probes, [r.name for r in results], mode=mode,
                                  fit=FIT_RTOL[args.precision], primals=primal_values(args, space, ref_out),
                                  where=where)
        if report.primal is not None and not report.primal.passed:
            report.findings.insert(0, primal_finding(where))
        if not report.structure_error and report.max_rel <= STABILISER_REL:
            report.findings = [RuleFinding(b.output, b.input, "stabiliser", causes.stabiliser_sentence(report.max_rel),
                                           where) for b in blocks if not b.passed]
    return report


def batched_rows(fn: Callable, args: Args, tol: float, out: List[Leaf] = None) -> List[LeafResult]:
    """The rows of ``batched=True``: ``fn(leaves, probes)`` (a list of result leaves) vmapped over the
    leading axis, against one call per example, on random probes: cotangents on the output ``out`` (its
    leaves per example; the rows named by the arguments' leaves), or when ``out`` is None tangents on the
    arguments (the rows named ``out[i]``)."""
    if out is None:
        space, names = args.space(), None
    else:
        n = args.leaves[0].shape[0]
        space, names = [Leaf(s.name, (n, *s.shape), s.dtype) for s in out], args.names
    probes = [jnp.asarray(probe_set(s, 7 + j)[0], s.dtype) for j, s in enumerate(space)]
    vm = jax.vmap(fn)(args.leaves, probes)
    names = [f"out[{i}]" for i in range(len(vm))] if names is None else names
    n = args.leaves[0].shape[0]
    per = [fn([l[b] for l in args.leaves], [p[b] for p in probes]) for b in range(n)]
    refs = [np.stack([np.asarray(p[i]) for p in per]) for i in range(len(vm))]
    return [compare_leaf(name, vm[i], refs[i], tol, default_atol(tol, refs[i]))
            for i, name in enumerate(names)]
