"""The backward localisation of a failing check, from the traced loss (or primal) and the user's code.

:func:`locate` traces the user's function of the parameter leaves (a hand gradient, or a rule's ``bwd``
closed over its residuals and cotangent), builds the right quantities from the forward program at the
point (:func:`verification.checker.backward.references.of_forward`) and returns the
:class:`verification.checker.base.findings.BackwardFinding` of
:func:`verification.checker.backward.first_wrong.localize`.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax

from verification.checker.backward import first_wrong, loss_reads, program, references
from verification.checker.base.findings import BackwardFinding
from verification.checker.explain import edit_effects
from verification.checker.jaxpr import graph as jg
from verification.checker.jaxpr import interpreter


def tangent_point(graph, leaves: Sequence, tangents: Optional[Sequence]):
    """The forward program's values and true *tangents* along ``tangents`` (forward mode): the right
    quantities of a hand-written JVP, in the slots of a reverse-mode point.  ``tangents=None``: the values
    alone (a program that reverse mode cannot differentiate, or a hand primal)."""
    jaxpr = graph.closed.jaxpr
    outs = [v for e in graph.eqns for v in e.outvars if jg.is_float(v)]

    def values(*ls):
        env = interpreter.run(graph.closed, list(ls))
        return [env[v] for v in outs]

    if tangents is None:
        vals, tans = values(*leaves), None
    else:
        vals, tans = jax.jvp(values, tuple(leaves), tuple(tangents))
    env = dict(zip(jaxpr.invars, leaves))
    env.update(zip(jaxpr.constvars, graph.closed.consts))
    env.update(zip(outs, vals))
    return edit_effects.Point(env, {} if tans is None else dict(zip(outs, tans)), frozenset())


def locate(user_fn: Callable, leaves: Sequence, names: Sequence[str], graph, point, expected: Sequence,
           expected_names: Sequence[str], wrong: Sequence[bool], precision: str, what: str = "L", inputs=(),
           forward_leaves: Optional[Sequence] = None, returns_at: Optional[str] = None,
           hint: Optional[str] = None) -> Optional[BackwardFinding]:
    """``user_fn(*leaves)`` returns a flat list of arrays that should equal ``expected`` (``wrong``: those
    that do not); ``graph`` is the forward program (a function of ``forward_leaves``, by default
    ``leaves``) and ``point`` its values and true cotangents there (``None``: computed here by
    :func:`verification.checker.explain.edit_effects.at_point`), or its values and true tangents, or its
    values alone (:func:`tangent_point`; ``what`` "tangent" or "primal"); ``inputs`` name the program's inputs
    (``(name, array)``); ``returns_at`` is the line that hands the user's results back ("file:line"), blamed
    first where a right quantity is returned in the wrong place; ``hint`` the cause the loss's side names."""
    if point is None:
        point = edit_effects.at_point(graph, list(leaves if forward_leaves is None else forward_leaves))
    refs, wanted = references.of_forward(graph, point, expected, expected_names, precision, what, inputs,
                                         forward=what if what in ("tangent", "primal") else "")
    # the loss keeps a long loop whole, and so does the user's code: its loops are opened instead (loop_lines), their
    # body values meeting the loss's per-step quantities (loop_steps); short loops are unrolled on both sides
    whole = any(e.primitive.name == "scan" for e in graph.eqns)
    prog = program.trace(user_fn, leaves, names, unroll=not whole)
    loss_side = None
    if what == "L" and forward_leaves is None:  # a hand gradient: the loss itself may read a wrong value
        def loss_side(hands, hand_leaves):
            return loss_reads.reading(graph, point, hands, hand_leaves, [r.value for r in wanted], leaves, refs.rtol)
    return first_wrong.localize(prog, refs, wanted, wrong, returns_at, loss_side, hint)
