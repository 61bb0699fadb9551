"""The custom rules of a program: the program flattened into one jaxpr at a point, its ``custom_vjp`` /
``custom_jvp`` calls grouped by rule, each call's inputs, and the program with every rule replaced by its
primal (the reference that does not trust the rules).  The checks themselves are
:mod:`verification.checker.rules.check_rules`."""
from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Callable, Dict, List, Sequence

import jax
import jax.numpy as jnp
import jax.core

from verification.checker.base.leaves import is_traceable, put
from verification.checker.jaxpr import inline, interpreter, source_lines

RULE_CALLS = {"custom_vjp_call": "custom_vjp", "custom_vjp_call_jaxpr": "custom_vjp", "custom_jvp_call": "custom_jvp"}


def flat_program(fn: Callable, args: Sequence[Any], rules: bool = False):
    """``(closed jaxpr, its input values)``: ``fn(*args)`` as one straight-line program at this point
    (non-array leaves of ``args``, an equinox Module's functions, held as constants); with ``rules``, every
    custom rule's call replaced by its primal."""
    flat, treedef = jax.tree.flatten(tuple(args))
    arrays = [k for k, x in enumerate(flat) if is_traceable(x)]

    def on_arrays(*xs):
        return jax.tree.leaves(fn(*jax.tree.unflatten(treedef, put(flat, arrays, xs))))

    values = [flat[k] for k in arrays]
    with jax.disable_jit():
        closed = jax.make_jaxpr(on_arrays)(*values)
    if rules or inline.needs_inlining(closed.jaxpr):
        closed = inline.inline(closed, values, rules=rules)
    return closed, values


def forward_values(closed, values) -> Dict[Any, Any]:
    """Every variable's value at this point."""
    return interpreter.run(closed, values)


@dataclasses.dataclass(eq=False)
class RuleCall:
    where: str  # the user's line of the call
    inputs: List[Any]
    eqn: Any


@dataclasses.dataclass
class RuleRow:
    """One custom rule: its kind, function name, definition line, rule function and call sites, and the
    check at each of the first :data:`verification.checker.rules.check_rules.MAX_CALLS_CHECKED` calls."""

    kind: str
    name: str
    defined: str  # "file:line" of the primal's definition
    rule: str  # the bwd / jvp function, "name at file:line"
    calls: List[RuleCall]
    reports: List[Any] = dataclasses.field(default_factory=list)

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
        ins = [interpreter.read(env, v) for v in eqn.invars]
        row.calls.append(RuleCall(source_lines.user_line(eqn) or "?", ins, eqn))
    return list(rows.values())


def rule_and_primal(eqn):
    """``(rule_fn, primal_fn)`` of one call: the call itself (its rule applies) and its undecorated primal."""
    cj = eqn.params["call_jaxpr"]
    rule = lambda *xs: tuple(interpreter.bind(eqn, xs))  # noqa: E731
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


def without_rules(fn: Callable, args: Sequence[Any]) -> Callable:
    """``fn`` with every custom rule replaced by its primal, as the program it runs at ``args`` (a ``cond``
    keeps the branch taken there): the reference of a rule found inside a callable."""
    out_tree = jax.tree.structure(jax.eval_shape(fn, *args))

    def key(xs):
        return tuple((tuple(jnp.shape(x)), jnp.result_type(x).name) for x in jax.tree.leaves(tuple(xs))
                     if is_traceable(x))

    # The program is traced at the arguments' dtypes and, for a float64 reference of float32 arguments, again
    # at float64: a constant of the program (a float nondiff argument) takes the dtype of its trace.
    wide = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64) if jax.config.jax_enable_x64 and is_traceable(x)
                        and jnp.issubdtype(jnp.result_type(x), jnp.floating) else x, tuple(args))
    flats = {key(args): flat_program(fn, args, rules=True)[0]}
    if key(wide) not in flats:
        flats[key(wide)] = flat_program(fn, wide, rules=True)[0]

    def run(*new_args):
        leaves = [x for x in jax.tree.leaves(tuple(new_args)) if is_traceable(x)]
        flat = flats.get(key(new_args)) or next(iter(flats.values()))
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


