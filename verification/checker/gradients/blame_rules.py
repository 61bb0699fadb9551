"""Blame a wrong custom rule inside a failing loss: when the hand gradient agrees with autodiff of the
primals (every rule replaced by its primal), with finite differences or with the Taylor test, ``jax.grad``
is the wrong side of the check."""
from __future__ import annotations

import jax

from verification.checker.base.compare import compare_leaves
from verification.checker.base.context import CheckContext, StageResult
from verification.checker.base.findings import Diagnosis
from verification.checker.jaxpr.rule_calls import RULE_CALLS, primal_gradient
from verification.checker.rules.check_rules import check_program_rules


def blame_rules(ctx: CheckContext) -> StageResult:
    """When the loss calls custom rules: check each where it runs.  A wrong rule makes ``jax.grad`` the
    wrong side; if the hand gradient equals autodiff of the primals (every rule replaced by its primal),
    finite differences or the Taylor test, each failing leaf is blamed on the rule (``custom_rule_wrong``)
    and the result settles the check."""
    graph = ctx.graph
    if not any(e.primitive.name in RULE_CALLS for e in graph.eqns):
        return StageResult()
    rules = check_program_rules(graph.closed, jax.tree.leaves(ctx.params))
    bad = rules.failing()
    if not bad:
        return StageResult()
    named = "; ".join(f"{r.label()}, called at {', '.join(sorted({c.where for c in r.calls}))}, max rel "
                      f"{r.max_rel:.2e} against autodiff of its primal" for r in bad)
    try:
        primal = primal_gradient(ctx.loss, ctx.params)
    except (TypeError, ValueError):  # the primals cannot be reverse-differentiated: the rule check stands alone
        primal = None
    agrees = primal is not None and all(l.passed for l in compare_leaves(ctx.manual, primal, ctx.rtol, ctx.atol)[0])
    fd_agrees = ctx.finite_differences is not None and all(l.passed for l in ctx.finite_differences)
    taylor_agrees = bool(ctx.taylor_passed)
    if not (agrees or fd_agrees or taylor_agrees):
        return StageResult(notes=(f"a custom rule inside the loss is wrong too: {named}",))
    sides = [s for s, ok in (("autodiff of the primals (every custom rule replaced by its primal)", agrees),
                             ("finite differences", fd_agrees), ("the Taylor test", taylor_agrees)) if ok]
    where = f"{bad[0].kind} rule {bad[0].name} at {bad[0].defined}"
    diagnoses = tuple(Diagnosis(l.path, "custom_rule_wrong",
                                f"jax.grad is the wrong side: the hand gradient agrees with {' and '.join(sides)}; "
                                f"{named}", where) for l in ctx.failing())
    return StageResult((), diagnoses, (f"autodiff is the wrong side: {named}; check it with verification.check_rules",),
                       True)

