"""Blame a wrong custom rule inside a failing loss: when the hand gradient agrees with autodiff of the
primals (every rule replaced by its primal), with finite differences or with the Taylor test, ``jax.grad``
is the wrong side of the check."""
from __future__ import annotations

import jax

from verification.checker.base.compare import compare_leaves
from verification.checker.explain.patterns import Diagnosis
from verification.checker.jaxpr.rule_calls import RULE_CALLS, primal_gradient
from verification.checker.rules.check_rules import check_program_rules


def blame_rules(graph, loss, params, manual, report, rtol, atol) -> bool:
    """When the loss calls custom rules: check each where it runs.  A wrong rule makes ``jax.grad`` the
    wrong side; if the hand gradient equals autodiff of the primals (every rule replaced by its primal),
    each failing leaf is blamed on the rule (``custom_rule_wrong``) and ``True`` ends the diagnosis."""
    if not any(e.primitive.name in RULE_CALLS for e in graph.eqns):
        return False
    rules = check_program_rules(graph.closed, jax.tree.leaves(params))
    bad = rules.failing()
    if not bad:
        return False
    named = "; ".join(f"{r.label()}, called at {', '.join(sorted({c.where for c in r.calls}))}, max rel "
                      f"{r.max_rel:.2e} against autodiff of its primal" for r in bad)
    try:
        primal = primal_gradient(loss, params)
    except (TypeError, ValueError):  # the primals cannot be reverse-differentiated: the rule check stands alone
        primal = None
    agrees = primal is not None and all(l.passed for l in compare_leaves(manual, primal, rtol, atol)[0])
    fd_agrees = report.finite_differences is not None and all(l.passed for l in report.finite_differences)
    taylor_agrees = report.taylor is not None and report.taylor.passed
    if not (agrees or fd_agrees or taylor_agrees):
        report.notes.append(f"a custom rule inside the loss is wrong too: {named}")
        return False
    sides = [s for s, ok in (("autodiff of the primals (every custom rule replaced by its primal)", agrees),
                             ("finite differences", fd_agrees), ("the Taylor test", taylor_agrees)) if ok]
    where = f"{bad[0].kind} rule {bad[0].name} at {bad[0].defined}"
    report.diagnoses = [Diagnosis(l.path, "custom_rule_wrong",
                                  f"jax.grad is the wrong side: the hand gradient agrees with {' and '.join(sides)}; "
                                  f"{named}", where) for l in report.leaves if not l.passed]
    report.notes.append(f"autodiff is the wrong side: {named}; check it with verification.check_rules")
    return True

