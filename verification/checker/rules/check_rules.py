r"""Every ``custom_vjp`` and ``custom_jvp`` rule inside a program, found in its trace and checked where it runs.

``jax.grad`` of a model trusts its custom rules: a wrong rule makes autodiff the wrong side of a gradient
check, and nothing in the model's output says so.  :func:`check_rules` traces ``fn(*args)`` (``jit``,
``functools.partial``, closures, lambdas and jitted models are inlined; ``scan`` and ``fori_loop``
unrolled; ``cond`` and ``while_loop`` resolved at this point; a ``vmap`` leaves the batched rule), finds
every custom-rule call, and checks each rule at the inputs it receives there: the rule (a ``jax.vjp`` or
``jax.jvp`` of the call, which runs the user's ``bwd`` or ``jvp``) against autodiff of its primal, in
float64 where x64 is on (:func:`verification.check_vjp` / :func:`verification.check_jvp`).  One row per
rule, named by its function and definition line, with its call sites.

>>> import jax, jax.numpy as jnp
>>> @jax.custom_vjp
... def softplus(x):
...     return jnp.logaddexp(x, 0.0)
>>> softplus.defvjp(lambda x: (softplus(x), x), lambda x, g: (g * jax.nn.sigmoid(-x),))  # sign of x flipped
>>> model = jax.jit(lambda W, x: jnp.sum(softplus(x @ W)))
>>> report = check_rules(model, jnp.ones((3, 2)), jnp.linspace(-1.0, 1.0, 6).reshape(2, 3))
>>> report.passed, [r.name for r in report.rows], report.rows[0].passed
(False, ['softplus'], False)
"""
from __future__ import annotations

import dataclasses
from typing import Callable, List

import jax

from verification.checker.base.report import CheckReport, json_number
from verification.checker.jaxpr.rule_calls import RuleCall, RuleRow, flat_program, rule_rows, rule_and_primal
from verification.checker.rules.jvp_checks import check_jvp
from verification.checker.rules.report import RuleReport
from verification.checker.rules.vjp_checks import check_vjp

MAX_CALLS_CHECKED = 4  # call sites of one rule checked at their own inputs (a rule in a 200-step scan: the first 4)
SCHEMA = "verification.check_rules/1"


def check_call(row: RuleRow, call: RuleCall, rtol=None) -> RuleReport:
    """The rule of ``row`` at one call's inputs, against autodiff of its primal."""
    rule, primal = rule_and_primal(call.eqn)
    if row.kind == "custom_vjp":
        report = check_vjp(primal, lambda *xs: jax.vjp(rule, *xs), *call.inputs, rtol=rtol)
    else:
        report = check_jvp(primal, lambda ps, ts: jax.jvp(rule, tuple(ps), tuple(ts)), *call.inputs, rtol=rtol)
    report.kind = row.kind
    for f in report.findings:
        f.where = row.rule
    report.notes.append(f"{row.label()}, called at {call.where}")
    return report


@dataclasses.dataclass
class RulesReport(CheckReport):
    """What :func:`check_rules` found: one row per custom rule reachable from the program."""

    SCHEMA = SCHEMA

    rows: List[RuleRow]
    notes: List[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def failing(self) -> List[RuleRow]:
        return [r for r in self.rows if not r.passed]

    def __str__(self):
        lines = [f"{'kind':<11} {'rule':<18} {'defined at':<28} {'calls':>5} {'checked':>7} {'max rel':>10} verdict"]
        for r in self.rows:
            lines.append(f"{r.kind:<11} {r.name:<18} {r.defined:<28} {len(r.calls):>5} {len(r.reports):>7} "
                         f"{r.max_rel:>10.2e} {'PASS' if r.passed else 'FAIL'}")
            lines.append(f"{'':<11} called at: {', '.join(sorted({c.where for c in r.calls}))}")
            found = [f"{'':<11} diagnosis: {f.output} | {f.input}: {f.cause} -- {f.explanation}"
                     for rep in r.reports for f in rep.findings]
            lines += list(dict.fromkeys(found))
        if not self.rows:
            lines.append("no custom_vjp or custom_jvp call is reachable from this program")
        lines.append(f"overall: {'PASS' if self.passed else 'FAIL'}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def failure_title(self) -> str:
        return "a custom rule does not match autodiff of its primal"

    def json_fields(self):
        """Schema ``verification.check_rules/1`` (docs/checker.md)."""
        return {"rows": [{"kind": r.kind, "name": r.name, "defined": r.defined, "rule": r.rule,
                          "calls": [c.where for c in r.calls], "checked": len(r.reports), "passed": r.passed,
                          "max_rel": json_number(r.max_rel), "reports": [rep.json_fields() for rep in r.reports]}
                         for r in self.rows], "notes": self.notes}


def check_program_rules(closed, values, rtol=None) -> RulesReport:
    """Every rule of a traced flat program, checked at its first :data:`MAX_CALLS_CHECKED` calls."""
    rows = rule_rows(closed, values)
    notes = []
    for row in rows:
        first = {}
        for k, c in enumerate(row.calls):
            first.setdefault(c.where, k)
        order = sorted(range(len(row.calls)), key=lambda k: (k not in first.values(), k))  # one per call site first
        for call in [row.calls[k] for k in order[:MAX_CALLS_CHECKED]]:
            row.reports.append(check_call(row, call, rtol))
        if len(row.calls) > MAX_CALLS_CHECKED:
            notes.append(f"{row.name}: {len(row.calls)} calls, the first {MAX_CALLS_CHECKED} checked")
    return RulesReport(rows, notes)


def check_rules(fn: Callable, *args, rtol=None) -> RulesReport:
    r"""Check every ``custom_vjp`` and ``custom_jvp`` rule reachable from ``fn(*args)`` at the inputs it
    receives there: the rule against autodiff of its primal, :math:`\bar x = J^\top \bar y` (VJP) or
    :math:`\dot y = J \dot x` (JVP), with random and unit probes, block by block.  ``fn`` is any callable:
    a jitted model, a ``functools.partial``, a lambda; ``args`` any pytrees (integer leaves held fixed,
    non-array leaves closed over).  Rules inside other rules' primals are found when those run.

    Returns a :class:`verification.RulesReport`: one row per rule (kind, name, definition line, call
    sites), each checked at its first ``MAX_CALLS_CHECKED`` calls, one per call site first; ``to_json()``
    follows the schema ``SCHEMA``.
    """
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    closed, values = flat_program(fn, args)
    return check_program_rules(closed, values, rtol)


