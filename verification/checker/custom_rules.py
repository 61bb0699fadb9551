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
import inspect
import re
from typing import Any, Callable, Dict, List, Sequence

import jax
import jax.core
import jax.extend.core as jcore
import numpy as np

from verification.checker import inline, source_lines
from verification.checker.compare import compare_leaves
from verification.checker.patterns import Diagnosis
from verification.checker.report import CheckReport, json_number
from verification.checker.rule_report import RuleReport

RULE_CALLS = {"custom_vjp_call": "custom_vjp", "custom_vjp_call_jaxpr": "custom_vjp", "custom_jvp_call": "custom_jvp"}
MAX_CALLS_CHECKED = 4  # call sites of one rule checked at their own inputs (a rule in a 200-step scan: the first 4)
SCHEMA = "verification.check_rules/1"


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic, int, float, complex, bool))


def flat_program(fn: Callable, args: Sequence[Any], rules: bool = False):
    """``(closed jaxpr, its input values)``: ``fn(*args)`` as one straight-line program at this point
    (non-array leaves of ``args``, an equinox Module's functions, held as constants); with ``rules``, every
    custom rule's call replaced by its primal."""
    flat, treedef = jax.tree.flatten(tuple(args))
    arrays = [k for k, x in enumerate(flat) if _is_array(x)]

    def on_arrays(*xs):
        full = list(flat)
        for k, x in zip(arrays, xs):
            full[k] = x
        return jax.tree.leaves(fn(*jax.tree.unflatten(treedef, full)))

    values = [flat[k] for k in arrays]
    with jax.disable_jit():
        closed = jax.make_jaxpr(on_arrays)(*values)
    if rules or inline.needs_inlining(closed.jaxpr):
        closed = inline.inline(closed, values, rules=rules)
    return closed, values


def forward_values(closed, values) -> Dict[Any, Any]:
    """Every variable's value at this point."""
    env = dict(zip(closed.jaxpr.invars, values))
    env.update(zip(closed.jaxpr.constvars, closed.consts))
    for eqn in closed.jaxpr.eqns:
        ins = [v.val if isinstance(v, jcore.Literal) else env[v] for v in eqn.invars]
        out = eqn.primitive.bind(*ins, **eqn.primitive.get_bind_params(eqn.params))
        env.update(zip(eqn.outvars, out if eqn.primitive.multiple_results else [out]))
    return env


@dataclasses.dataclass(eq=False)
class RuleCall:
    where: str  # the user's line of the call
    inputs: List[Any]
    eqn: Any


@dataclasses.dataclass
class RuleRow:
    """One custom rule: its kind, function name, definition line, rule function and call sites, and the
    check at each of the first :data:`MAX_CALLS_CHECKED` calls."""

    kind: str
    name: str
    defined: str  # "file:line" of the primal's definition
    rule: str  # the bwd / jvp function, "name at file:line"
    calls: List[RuleCall]
    reports: List[RuleReport] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.reports)

    @property
    def max_rel(self) -> float:
        return max((r.max_rel for r in self.reports), default=0.0)

    def label(self) -> str:
        return f"{self.kind} rule {self.name} (defined at {self.defined}; rule {self.rule})"


def _src(info) -> tuple:
    text = getattr(info, "func_src_info", None) or "?"
    name, _, where = text.partition(" at ")
    return name, where or "?"


def rule_rows(closed, values) -> List[RuleRow]:
    """The custom-rule calls of a flat program, grouped by rule, with each call's inputs."""
    env, rows = forward_values(closed, values), {}
    for i, eqn in enumerate(closed.jaxpr.eqns):
        kind = RULE_CALLS.get(eqn.primitive.name)
        if kind is None:
            continue
        name, defined = _src(eqn.params["call_jaxpr"].jaxpr.debug_info)
        thunk = eqn.params.get("bwd") or eqn.params.get("jvp_jaxpr_fun") or eqn.params.get("jvp_jaxpr_thunk")
        rule = " at ".join(_src(getattr(thunk, "debug_info", None)))
        row = rows.setdefault((kind, name, defined, rule), RuleRow(kind, name, defined, rule, []))
        ins = [v.val if isinstance(v, jcore.Literal) else env[v] for v in eqn.invars]
        row.calls.append(RuleCall(source_lines.user_line(eqn) or "?", ins, eqn))
    return list(rows.values())


def _rule_and_primal(eqn):
    """``(rule_fn, primal_fn)`` of one call: the call itself (its rule applies) and its undecorated primal."""
    params = eqn.primitive.get_bind_params(eqn.params)
    cj = eqn.params["call_jaxpr"]
    rule = lambda *xs: tuple(eqn.primitive.bind(*xs, **params))  # noqa: E731
    primal = lambda *xs: tuple(jax.core.eval_jaxpr(cj.jaxpr, cj.consts, *xs))  # noqa: E731
    primal.__signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_ONLY)
                                              for n in _input_names(eqn)])  # the reports name the rule's inputs
    return rule, primal


def _input_names(eqn) -> List[str]:
    """The primal's own argument names (``x``, ``args_0``), its closed-over constants ``const0``, ...."""
    n_consts = eqn.params.get("num_consts", 0)
    given = list(getattr(eqn.params["call_jaxpr"].jaxpr.debug_info, "arg_names", None) or [])
    names = [f"const{k}" for k in range(n_consts)]
    for k in range(len(eqn.invars) - n_consts):
        name = re.sub(r"\W+", "_", given[k]).strip("_") if k < len(given) and given[k] else ""
        names.append(name if name.isidentifier() and name not in names else f"arg{k}")
    return names


def check_call(row: RuleRow, call: RuleCall, rtol=None) -> RuleReport:
    """The rule of ``row`` at one call's inputs, against autodiff of its primal."""
    from verification.checker.jvp_checks import check_jvp
    from verification.checker.vjp_checks import check_vjp

    rule, primal = _rule_and_primal(call.eqn)
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
    """
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    closed, values = flat_program(fn, args)
    return check_program_rules(closed, values, rtol)


def without_rules(fn: Callable, args: Sequence[Any]) -> Callable:
    """``fn`` with every custom rule replaced by its primal, as the program it runs at ``args`` (a ``cond``
    keeps the branch taken there): the reference of a rule found inside a callable."""
    out_tree = jax.tree.structure(jax.eval_shape(fn, *args))
    flat, _ = flat_program(fn, args, rules=True)

    def run(*new_args):
        leaves = [x for x in jax.tree.leaves(tuple(new_args)) if _is_array(x)]
        return jax.tree.unflatten(out_tree, jax.core.eval_jaxpr(flat.jaxpr, flat.consts, *leaves))

    return run


def the_one_rule(fn: Callable, args: Sequence[Any], kind: str) -> RuleRow:
    """The single ``kind`` rule that ``fn(*args)`` calls; a ``TypeError`` that says what was found otherwise."""
    closed, values = flat_program(fn, args)
    rows = rule_rows(closed, values)
    mine = [r for r in rows if r.kind == kind]
    if len(mine) == 1:
        return mine[0]
    found = ", ".join(f"{r.kind} {r.name} ({r.defined})" for r in rows) or "none"
    hint = "; check every rule with verification.check_rules(f, *args)" if len(mine) > 1 else ""
    raise TypeError(f"f: expected a jax.{kind} function, or a callable that calls exactly one {kind} rule, got "
                    f"{type(fn).__name__} calling {len(mine)} (found: {found}){hint}")


def primal_gradient(loss: Callable, params):
    r"""``jax.grad`` of ``loss`` at ``params`` with every custom rule replaced by autodiff of its primal:
    the reference that does not trust the rules.  Raises jax's ``TypeError``/``ValueError`` when a primal
    cannot be reverse-differentiated (a ``while_loop``); the caller falls back to the rule checks alone."""
    leaves, treedef = jax.tree.flatten(params)
    flat, _ = flat_program(loss, (params,), rules=True)
    fn = lambda *ls: jax.core.eval_jaxpr(flat.jaxpr, flat.consts, *ls)[0]  # noqa: E731
    return jax.tree.unflatten(treedef, list(jax.grad(fn, argnums=tuple(range(len(leaves))))(*leaves)))


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
