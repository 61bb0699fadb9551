"""The order of the lines to fix: the first wrong value's line, what the cause blames, the renames that
hand the wrong value on, the lines upstream that match nothing (:func:`ranked_lines`); and the inputs of
the first wrong line that are right (:func:`right_inputs`).  What the program's structure says about the
order (a scaling line, a sum's terms, a where's comparison) is :mod:`verification.checker.backward.line_order`.
"""
from __future__ import annotations

from typing import List, Optional

import jax.extend.core as jcore
import numpy as np

from verification.checker.backward import line_order, substitutes, why
from verification.checker.backward.program import Program
from verification.checker.backward.source_code import assigned_name, code_at, silent_assignments
from verification.checker.backward.references import References
from verification.checker.jaxpr import graph as jg

MISSING_TERM_LINES = 4  # a missing term: the nearest lines upstream searched for a zero left there


def ranked_lines(program: Program, refs: References, expected, var, e: int, status, found: why.Why,
                  readers=None, back: Optional[str] = None, hint: Optional[str] = None) -> List[str]:
    """The user's lines to fix, most likely first: a silent assignment that hands the wrong value on
    (:func:`_confirmed`), the factor the cause blames (when it is another line) and the terms of that factor
    where it is a sum, the first wrong value's line, the lines that read it where it is right only
    transposed, the lines of its other unmatched inputs and (a sum) of its terms that equal a right
    cotangent, upstream lines that match nothing, a ``where``'s comparison after the where's line; a line
    that only scales a wrong cotangent comes after the line that computes it, for a derivative's slip
    (:mod:`verification.checker.backward.line_order`).  ``hint``: the cause the loss's side names."""
    ordered = []
    ancestors = program.ancestors([var])
    blamed = [i for i in ([program.producer(found.factor)] if found.factor is not None else []) if i is not None]
    derivative = line_order.derivative_slip(found.cause, hint)
    for k, i in enumerate(blamed + [e]):  # the factor the cause blames, then the first wrong value's line
        source = line_order.scaled_from(program, i, status) if derivative else None
        if source is not None:  # a line that only scales by a constant is wrong by a constant or not at all
            ordered.append(program.line(source))
        ordered.append(program.graph.user_line(i))
        if k == 0 and blamed:  # a sum: a right quantity may be the wrong term (``dz * eps * std``, halved)
            ordered += line_order.terms(program, i, status)
    live_eqns = program.live_eqns()
    if found.cause == "transposed":  # right once transposed: here, or where each line reads it
        ordered += [program.graph.user_line(i) for w in program.eqns[e].outvars for i in program.consumers(w)
                    if i in live_eqns]
    ordered += [program.line(u) for u in line_order.unmatched_inputs(program, e, status)]
    ordered += line_order.terms(program, e, status)
    ordered += [program.line(u) for u in ancestors[::-1] if status.get(u, False) is None]  # nearest first
    if found.cause in ("wrong_leaf", "wrong_branch", "unknown"):  # a where's condition, after the where's line
        ordered = line_order.with_conditions(program, ancestors, ordered)
    live = program.live_lines()
    involved = [var] + ([found.factor] if found.factor is not None else []) + why.cone(program, var, status)
    involved += [u for w in involved if program.producer(w) is not None
                 for u in program.eqns[program.producer(w)].invars if isinstance(u, jcore.Var)]
    passing = {assigned_name(program.line(u)) for u in involved}
    scan = [next((l for l in ordered if l), None), program.graph.user_line(e)]
    near = program.consumers(var)  # the lines that read it, and those that read what they compute
    near += [j for i in near for w in program.eqns[i].outvars for j in program.consumers(w)]
    scan += [program.graph.user_line(i) for i in near]
    dropped = found.cause in ("path_dropped", "missing_term")
    upstream = list(dict.fromkeys(l for l in map(program.line, ancestors[::-1]) if l))[
        :MISSING_TERM_LINES] if dropped else []
    scan += [program.line(u) for u in line_order.unmatched_inputs(program, e, status)]
    scan += upstream  # (a term's zero upstream)
    silent, at_line = [], set()  # at_line: read on the wrong line itself
    ran, zero_read = program.traced_lines(), line_order.zero_lines(program)
    for k, line in enumerate(scan):
        returned = k == 0 and any(v is var for v in program.outvars)
        zeros = found.cause in ("path_dropped", "missing_term", "unknown") and line in zero_read
        for s in silent_assignments(line, live, passing - {""}, returns=returned, zeros=zeros, ran=ran):
            if k <= 1:
                at_line.add(s)
            if s not in silent and (not s.argument or k <= 1):  # an argument handed on: read at the line itself
                silent.append(s)
    split = {program.graph.user_line(i) for i in readers or ()}  # the value is wrong as these lines read it
    # a rename read on a line whose mistake nothing else explains is taken as it is (what it should hand on
    # may be a partial quantity that no reference holds: ``direct = dxhat`` for ``dxhat / s``)
    # the first wrong value's statement is to fix where that value matches nothing right (one right up to a
    # factor may be what a rename should have scaled)
    m = status.get(var)
    wrong_at = program.graph.user_line(e) if m is None or m.transposed else None
    confirmed = list(dict.fromkeys(s.where for s in silent if (split and split <= set(s.reads))
                                   or (found.cause == "unknown" and s in at_line and _handed_size(program, s) >= 2)
                                   or _confirmed(program, refs, expected, s, status, wrong_at)))
    literal_zeros = line_order.zero_lines(program, literal=True)
    front, rest = confirmed[:1], confirmed[1:]
    if program.graph.user_line(e) in literal_zeros:  # the wrong line adds a literal zero itself: that term is the
        # one left out, not an array of zeros made earlier (``dh_next = jnp.zeros_like(h)``: a carry's start)
        named = {s.where for s in silent if not s.source and not s.argument and s.where in ran}
        front, rest = [w for w in confirmed if w not in named][:1], [w for w in confirmed if w in named] + rest
    zeros_added = [l for l in upstream if l != program.line(var) and l in literal_zeros]
    at = ordered.index(program.graph.user_line(e)) + 1 if program.graph.user_line(e) in ordered else 1
    ordered = front + ([back] if back else []) + ordered[:at] + zeros_added + ordered[at:] + rest
    if dropped and line_order.is_zeros(program, var):  # an accumulator's zero start: a zero term after it first
        ordered = line_order.zero_terms_after(program, var, literal_zeros) + ordered
    seen, lines = set(), []
    for line in ordered:
        if line and line not in seen:
            seen.add(line)
            lines.append(f"{line} {code_at(line)}".rstrip())
    return lines


def _handed(program: Program, s):
    """The value a silent assignment ``s`` hands on: the last value its source statement computes."""
    made = [v for v in program.live_vars() if program.line(v) in s.source and jg.is_float(v)]
    return made[-1] if made else None


def _handed_size(program: Program, s) -> int:
    w = _handed(program, s) if s.source else None
    value = None if w is None else program.value(w)
    return 0 if value is None else value.size


def _confirmed(program: Program, refs: References, expected, s, status, first: Optional[str] = None) -> bool:
    """The value a silent assignment ``s`` hands on, replaced by a right quantity only where its new name
    is read, repairs the wrong outputs (a literal zero handed on is taken as it is).  Not where it hands on
    what the statement on line ``first`` computes (the first wrong value's, where that value is no right
    quantity: the statement is to fix), nor by the same numbers or their transpose (a right value read
    untransposed: its reader is to fix)."""
    if not s.source:  # a zero (or an argument): not handed on where the line reads another branch's value
        live = program.live_eqns()
        other = {v for v in program.live_vars() if program.line(v) in s.others}
        return not any(isinstance(u, jcore.Var) and u in other for i in live
                       if i is not None and program.graph.user_line(i) in s.reads for u in program.eqns[i].invars)
    w = _handed(program, s)
    if w is None or (first is not None and first in s.source):
        return False
    live = program.live_eqns()
    if _confirmed_in_loop(program, refs, expected, s, w, live):
        return True
    readers = [i for i in program.consumers(w) if i in live and program.graph.user_line(i) in s.reads]
    value = program.value(w)
    if value is None or value.size < 2 or not (readers or any(v is w for v in program.outvars)):
        return False  # a scalar repairs too easily to tell
    m = status.get(w)
    options = [o for o in substitutes.replacements(refs, value, m, None)
               if m is None or not m.exact or o.ref is not m.ref]
    tol = max(100 * refs.rtol, 1e-6)
    shaped = [o.factor * refs.shaped(o, value.shape) for o in options]
    shaped = [a for a in shaped if not _same_numbers(a, value, tol)]
    if not shaped:
        return False
    outs = program.replaced_all([w], [[np.zeros_like(value)] + shaped], readers=readers or None)  # returned as
    _, errs = substitutes.fit_constant(outs, expected)  # it is: every use; up to a constant the user divides out later
    return bool(np.any(np.all(errs <= tol, axis=1)))


def _same_numbers(a: np.ndarray, value: np.ndarray, rtol: float) -> bool:
    """``a`` equals ``value`` or (square) its transpose: the same numbers, not another quantity (a multiple
    of ``value`` is another: a rename that leaves out a ``/ m``)."""
    cands = [value] + ([value.T] if value.ndim == 2 and value.shape[0] == value.shape[1] else [])
    return any(why.close(a, c, rtol) for c in cands)


def _confirmed_in_loop(program: Program, refs: References, expected, s, w, live) -> bool:
    """:func:`_confirmed` for a rename inside a loop body (unrolled): every instance of the value handed on,
    replaced where the new name is read by the instances of one forward line's right quantities
    (:func:`substitutes.aligned_groups`), repairs the wrong outputs."""
    group = substitutes.loop_group(program, w, set())
    values = [np.asarray(program.value(u), np.float64) for u in group]
    if not group or values[0].size < 2:
        return False
    readers = [i for u in group for i in program.consumers(u) if i in live and program.graph.user_line(i) in s.reads]
    aligned = substitutes.aligned_groups(refs, values)
    if not readers or not aligned:
        return False
    stacks = [[refs.shaped(ms[k], v.shape) for ms in aligned] for k, v in enumerate(values)]
    _, errs = substitutes.fit_constant(program.replaced_all(group, stacks, readers=readers), expected)
    return bool(np.any(np.all(errs <= max(100 * refs.rtol, 1e-6), axis=1)))


def right_inputs(program: Program, e: int, status) -> List[str]:
    """``"dh = ∂L/∂(...) ✔"`` for each input of equation ``e`` that equals a right quantity."""
    out = []
    invars = list(program.graph.closed.jaxpr.invars)
    for u in program.eqns[e].invars:
        if isinstance(u, jcore.Var) and u in invars:
            out.append(f"{program.graph.leaf_names[invars.index(u)]} (the point) ✔")
            continue
        m = status.get(u) if isinstance(u, jcore.Var) else None
        if m is not None and m.exact:
            name = why.name_of(program, u, status, program.graph.user_line(e))
            label = m.ref.name or m.ref.label
            out.append(f"{name} = {m.ref.label}{' (transposed)' if m.transposed else ''} ✔"
                       if name not in (label, label + ".T") else f"{name} ✔")
    return out
