"""What the ranking of the user's lines reads from the program's structure
(:func:`verification.checker.backward.first_wrong.localize`): where a value is only scaled (and whether the
causes make that matter: :func:`derivative_slip`), where a mask is built, which condition a ``where`` reads,
the terms of a sum, an accumulator's zero start (:func:`is_zeros`) and a zero term added after it, the lines
that read a zero, the inputs of a line that match nothing.  Each returns ``"file:line"``
strings or program variables; the order of the report is first_wrong's."""
from __future__ import annotations

import collections
from typing import Any, List, Optional

import jax.extend.core as jcore
import numpy as np

from verification.checker.backward.program import Program
from verification.checker.backward.source_code import code_at
from verification.checker.jaxpr import graph as jg

MASK_CAUSES = ("wrong_threshold", "wrong_selection", "wrong_branch")  # a hypothesis that puts mask lines first
COMPARISONS = ("gt", "ge", "lt", "le", "eq", "ne")
SCALE_CAUSES = ("factor_2", "sign_flipped", "wrong_constant", "mean_sum_confused", "inverted_factor")
SCALINGS = ("mul", "div", "neg", "convert_element_type")  # with a scalar: a value only scaled
DERIVATIVE_CAUSES = ("derivative_dropped", "wrong_derivative", "derivative_at_input", "derivative_at_output")


def mask_lines(program: Program, e: int, status) -> List[str]:
    """Where a mask is built (``active = (margins > 0) * (1 - y)``, ``mask = jnp.full_like(w, 0.5)``): for
    each input of equation ``e`` that matches nothing and is computed from forward quantities alone (no
    cotangent), the lines of the comparisons it comes from, then its own line."""
    out = []
    for u in unmatched_inputs(program, e, status):
        if status.get(u) is not None:
            continue
        up = program.ancestors([u])
        if any(status.get(w) is not None and status[w].ref.kind != "value" for w in up):
            continue  # (a cotangent flows into it: not a mask)
        out += [program.graph.user_line(program.producer(w)) for w in up[::-1]  # nearest first
                if program.eqns[program.producer(w)].primitive.name in COMPARISONS]
        out.append(program.line(u))
    return [f"{l} {code_at(l)}".rstrip() for l in dict.fromkeys(out) if l]


def derivative_slip(cause: str, hint: Optional[str]) -> bool:
    """Whether the hand's cause (``cause``) or the loss's (``hint``) is a derivative's slip, or neither side
    knows (a line that only scales cannot drop a derivative; it can lose a term: ``P / m`` for
    ``(P - y) / m``, a path dropped)."""
    if cause in SCALE_CAUSES:
        return False
    return cause in DERIVATIVE_CAUSES or hint in DERIVATIVE_CAUSES or (cause == "unknown" and hint in (None, "unknown"))


def scaled_from(program: Program, e: int, status):
    """The value equation ``e`` (and the scalings before it) only scales by a constant (``d / m``, ``-d``),
    where that value is already a wrong cotangent (another value's, up to a factor: ``1 / cosh(r)``, ``m``
    times the cotangent of ``cosh(r)``), else ``None``: the line that computes it made the mistake the
    scaling carries on.  (A value that matches nothing is no evidence: ``P / m`` may have lost its ``- y``.)"""
    source = None
    while e is not None and program.eqns[e].primitive.name in SCALINGS:
        arrays = [u for u in program.eqns[e].invars if isinstance(u, jcore.Var) and jg.is_float(u)
                  and np.size(program.value(u)) > 1]
        scalars = [u for u in program.eqns[e].invars if u not in arrays]
        if len(arrays) != 1 or any(isinstance(u, jcore.Var) and program.value(u) is None for u in scalars):
            break
        u = arrays[0]
        if program.eqns[e].primitive.name == "div" and program.eqns[e].invars[0] is not u:
            break  # (``c / x`` takes a reciprocal: no scaling)
        m = status.get(u)
        if m is None or m.exact or m.ref.kind == "value":
            break
        source, e = u, program.producer(u)
    return source


def with_conditions(program: Program, ancestors, ordered: List[str]) -> List[str]:
    """``ordered`` with the line of each condition a ``where`` among ``ancestors`` (those of the first wrong
    value) reads (``take_a = a >= b`` inverted routes each cotangent to the other branch) right after the
    where's line."""
    out = list(ordered)
    for w in ancestors[::-1]:
        eqn = program.eqns[program.producer(w)]
        cond = eqn.invars[0] if eqn.primitive.name == "select_n" else None
        at = program.line(w)
        if isinstance(cond, jcore.Var) and program.producer(cond) is not None and at in out \
                and program.eqns[program.producer(cond)].primitive.name in COMPARISONS:
            line = program.line(cond)
            if line not in out:
                out.insert(out.index(at) + 1, line)
    return out


def zero_lines(program: Program, literal: bool = False) -> set:
    """The lines where an equation reads a zero constant (``dn - mean_dn`` with ``mean_dn = 0.0``): a name
    set to zero is read there.  With ``literal``, a scalar literal only (not ``zeros_like``: an accumulator's
    or a carry's start)."""
    def zero(u):
        if isinstance(u, jcore.Literal):
            return np.ndim(u.val) == 0 and float(np.asarray(u.val)) == 0.0
        i = program.producer(u)
        return (not literal and i is not None and program.eqns[i].primitive.name == "broadcast_in_dim"
                and zero(program.eqns[i].invars[0]))
    # a zero added or subtracted is a term left out; a zero multiplied (``reg * W`` with ``reg = 0.0``) is
    # the line's own term
    return {program.graph.user_line(i) for i, e in enumerate(program.eqns)
            if e.primitive.name in ("add", "sub") and any(zero(u) for u in e.invars)}


def terms(program: Program, i: int, status) -> List[str]:
    """Where equation ``i`` is a sum: the lines of its terms that equal a right cotangent, each of which may
    be the wrong term (``dz * eps * std`` where its half belongs)."""
    if program.eqns[i].primitive.name not in ("add", "sub", "add_any"):
        return []
    return [program.line(u) for u in program.eqns[i].invars
            if isinstance(u, jcore.Var) and status.get(u) is not None and status[u].ref.kind != "value"]


def is_zeros(program: Program, var) -> bool:
    """``var`` is a zero array made by a broadcast (``jnp.zeros_like``: an accumulator's start)."""
    i = program.producer(var)
    value = program.value(var)
    return i is not None and program.eqns[i].primitive.name == "broadcast_in_dim" and value is not None \
        and not np.any(value)


def zero_terms_after(program: Program, var, literal_zeros: set) -> List[str]:
    """The lines after ``var`` on its way to the results that add or subtract a literal zero (``edge - 0.0``
    where ``edge - y[:-1].T @ y[1:]`` belongs); ``literal_zeros``: :func:`zero_lines` with ``literal``."""
    seen, todo, out = set(), collections.deque([var]), []
    live = program.live_eqns()
    while todo:
        for i in program.consumers(todo.popleft()):
            if i in seen or i not in live:
                continue
            seen.add(i)
            line = program.graph.user_line(i)
            if line in literal_zeros and program.eqns[i].primitive.name in ("add", "sub"):
                out.append(line)
            todo += list(program.eqns[i].outvars)
    return list(dict.fromkeys(out))


def unmatched_inputs(program: Program, e: int, status) -> List[Any]:
    """The floating inputs of equation ``e`` that match no right quantity, or one only up to a factor."""
    return [u for u in program.eqns[e].invars if isinstance(u, jcore.Var) and jg.is_float(u)
            and u in status and (status[u] is None or not status[u].exact)]
