"""Control flow resolved at the checked point: one flat list of equations that the checker can edit.

At a fixed point the derivative of a program with control flow is the derivative of the straight-line
program it runs there.  :func:`inline` rebuilds a traced loss as that program:

* ``cond`` / ``switch``: the branch the point takes (its index evaluated), inlined;
* ``while_loop``: the body inlined once per iteration the point runs (its trip count evaluated); a loop
  that would inline into more than :data:`UNROLL_MAX` equations becomes one ``scan`` of that many
  iterations instead (the same program at this point, and reverse-differentiable), kept whole;
* ``jax.checkpoint`` (``remat``), ``jit`` (``pjit``), ``closed_call``: their equations inlined;
* ``scan`` and ``fori_loop`` are unrolled by tracing under ``jax.disable_jit`` when short, else kept
  whole (:func:`verification.checker.jaxpr.graph.trace`, :mod:`verification.checker.explain.loop_bodies`).

Every inlined equation keeps its source information, so a report names the user's line inside a loop
body or a branch.  ``custom_jvp_call`` and ``custom_vjp_call`` stay whole: their rule *is* the
reference.  The gradient of the inlined program equals ``jax.grad`` of the original at this point.
"""
from __future__ import annotations

from typing import Any, Dict, List

import jax
import jax.extend.core as jcore
import numpy as np

from verification.checker.jaxpr.interpreter import bind, read, run

CALLS = ("pjit", "jit", "closed_call", "core_call", "remat2", "checkpoint", "remat")
RESOLVED = ("cond", "while") + CALLS
CUSTOM_CALLS = ("custom_vjp_call", "custom_vjp_call_jaxpr", "custom_jvp_call")
MAX_EQNS = 20000  # equations in the inlined program; past it a construct stays one unit
MAX_TRIPS = 10 ** 6  # iterations of one while_loop at the point: past it, the loop is taken not to end
UNROLL_MAX = 256  # equations a loop may unroll into; past it the loop stays one scan, kept whole


class _Flat:
    def __init__(self):
        self.eqns: List[Any] = []
        self.constvars: List[Any] = []
        self.consts: List[Any] = []
        self.values: Dict[Any, Any] = {}  # var -> its value at the point
        self.rules = False  # inline custom rules' primals too
        self.static = False  # inline calls only, evaluating nothing (a loop body: no single point)

    def const(self, value):
        v = jcore.Var(jax.typeof(value))
        self.constvars.append(v)
        self.consts.append(value)
        self.values[v] = value
        return v


def scan_size(jaxpr) -> int:
    """Equations the scans of ``jaxpr`` (through calls and branches) unroll into; 0 without a scan."""
    total = 0
    for e in jaxpr.eqns:
        subs = [getattr(j, "jaxpr", j) for j in jcore.jaxprs_in_params(e.params)]
        if e.primitive.name == "scan":
            total += e.params["length"] * _size(subs[0])
        else:
            total += max((scan_size(j) for j in subs), default=0)
    return total


def _size(jaxpr) -> int:
    """Equations of ``jaxpr`` with its calls inlined and its scans unrolled."""
    total = 0
    for e in jaxpr.eqns:
        subs = [getattr(j, "jaxpr", j) for j in jcore.jaxprs_in_params(e.params)]
        inner = max((_size(j) for j in subs), default=1)
        total += e.params["length"] * inner if e.primitive.name == "scan" else inner
    return total


def needs_inlining(jaxpr) -> bool:
    return any(e.primitive.name in RESOLVED for e in jaxpr.eqns)


def inline(closed, leaves, rules: bool = False) -> Any:
    """The closed jaxpr of the straight-line program that ``closed`` runs at ``leaves``; with ``rules``,
    every ``custom_vjp``/``custom_jvp`` call is replaced by its primal (autodiff that trusts no rule)."""
    flat = _Flat()
    flat.rules = rules
    for v, c in zip(closed.jaxpr.constvars, closed.consts):
        flat.values[v] = c
    for v, x in zip(closed.jaxpr.invars, leaves):
        flat.values[v] = x
    return _rebuilt(flat, closed)


def inline_calls(closed) -> Any:
    """``closed`` with its ``jit``, ``checkpoint`` and ``closed_call`` calls replaced by their equations,
    at no particular point: ``cond`` and ``while_loop`` stay units (in a loop body the branch taken and
    the trip count change from one iteration to the next)."""
    flat = _Flat()
    flat.static = True
    return _rebuilt(flat, closed)


def _rebuilt(flat, closed):
    top = closed.jaxpr
    outer = _run(flat, top, dict(zip(top.constvars, top.constvars)), top.invars)
    outvars = [outer[v] if isinstance(v, jcore.Var) else v for v in top.outvars]
    jaxpr = jcore.Jaxpr(list(closed.jaxpr.constvars) + flat.constvars, list(closed.jaxpr.invars), outvars, flat.eqns,
                        closed.jaxpr.effects, debug_info=closed.jaxpr.debug_info)
    return jcore.ClosedJaxpr(jaxpr, list(closed.consts) + flat.consts)


def _closed_call(flat, closed, args):
    """Inline a closed sub-jaxpr on outer atoms ``args``; returns the outer atoms of its outputs."""
    rename = {v: flat.const(c) for v, c in zip(closed.jaxpr.constvars, closed.consts)}
    return _call(flat, closed.jaxpr, args, rename)


def _call(flat, jaxpr, args, rename):
    rename = _run(flat, jaxpr, dict(rename), args)
    return [rename[v] if isinstance(v, jcore.Var) else v for v in jaxpr.outvars]


def _run(flat, jaxpr, rename, args):
    """Append ``jaxpr``'s equations to ``flat``, run by the one interpreter over an environment of outer
    atoms: ``rename`` maps the inner constants (and receives every inner variable), ``args`` are the outer
    atoms of the inputs.  Returns the environment."""
    return run(jaxpr, args, lambda i, eqn, invals, env: _inline_eqn(flat, eqn, env), env=rename)


def _inline_eqn(flat, eqn, rename):
    """The outer atoms of one equation's outputs: its body inlined, or the equation itself appended (and,
    at a point, evaluated there)."""
    ins = [v if isinstance(v, jcore.Literal) else rename[v] for v in eqn.invars]  # outer atoms, literals kept
    name = eqn.primitive.name
    outs = None
    if len(flat.eqns) < MAX_EQNS and not (flat.static and name not in CALLS):
        if name == "cond":
            index = int(np.asarray(read(flat.values, ins[0])))
            branches = eqn.params["branches"]
            outs = _closed_call(flat, branches[min(max(index, 0), len(branches) - 1)], ins[1:])
        elif name == "while":
            outs = _while(flat, eqn, ins)
        elif flat.rules and name in CUSTOM_CALLS:
            outs = _closed_call(flat, eqn.params["call_jaxpr"], ins)
        elif name in CALLS:
            inner = eqn.params.get("jaxpr") or eqn.params.get("call_jaxpr")
            if isinstance(inner, jcore.ClosedJaxpr):
                outs = _closed_call(flat, inner, ins)
            elif inner is not None:
                outs = _call(flat, inner, ins, {})
    if outs is None:  # an ordinary equation (or a unit): fresh outputs, evaluated at the point
        outs = [jcore.Var(v.aval) for v in eqn.outvars]
        flat.eqns.append(eqn.replace(invars=ins, outvars=outs))
        if not flat.static:
            flat.values.update(zip(outs, bind(eqn, [read(flat.values, v) for v in ins])))
    return outs


def _while(flat, eqn, ins):
    p = eqn.params
    nc, nb = p["cond_nconsts"], p["body_nconsts"]
    cond_consts, body_consts, carry = ins[:nc], ins[nc:nc + nb], ins[nc + nb:]
    trips = _trips(p, *[[read(flat.values, v) for v in vs] for vs in (cond_consts, body_consts, carry)])
    if trips > MAX_TRIPS:
        raise ValueError(f"while_loop: more than {MAX_TRIPS} iterations at this point; taken not to end")
    if trips * (len(p["body_jaxpr"].jaxpr.eqns) + len(p["cond_jaxpr"].jaxpr.eqns)) > UNROLL_MAX:
        return _as_scan(flat, eqn, body_consts, carry, trips)
    for _ in range(trips):
        carry = _closed_call(flat, p["body_jaxpr"], body_consts + carry)
    return carry


def _trips(p, cond_consts, body_consts, carry) -> int:
    """The number of iterations the loop runs from ``carry`` (one compiled run, at most MAX_TRIPS + 1)."""
    cond, body = jcore.jaxpr_as_fun(p["cond_jaxpr"]), jcore.jaxpr_as_fun(p["body_jaxpr"])

    def count(cc, bc, c):
        state = jax.lax.while_loop(lambda s: cond(*cc, *s[1])[0] & (s[0] <= MAX_TRIPS),
                                   lambda s: (s[0] + 1, body(*bc, *s[1])), (0, list(c)))
        return state[0]

    return int(jax.jit(count)(cond_consts, body_consts, carry))


def _as_scan(flat, eqn, body_consts, carry, trips):
    """The loop as one ``scan`` of ``trips`` iterations over the same body (no slices in, none out)."""
    template = jax.make_jaxpr(lambda x: jax.lax.scan(lambda c, _: (c, None), x, None, length=1))(0.0).jaxpr.eqns[0]
    body = eqn.params["body_jaxpr"]
    params = dict(template.params, length=trips, jaxpr=body, num_consts=len(body_consts), num_carry=len(carry),
                  reverse=False)
    if "linear" in template.params:
        params["linear"] = (False,) * (len(body_consts) + len(carry))
    new = [jcore.Var(v.aval) for v in eqn.outvars]
    flat.eqns.append(jcore.new_jaxpr_eqn(list(body_consts) + list(carry), new, template.primitive, params,
                                         body.effects, eqn.source_info))
    flat.values.update(
        zip(new, bind(template, [read(flat.values, v) for v in list(body_consts) + list(carry)], params))
    )
    return new
