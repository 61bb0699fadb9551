r"""Exact effects of changes made at several equations at once, by pullbacks from the last to the first.

A change of several equations' rules (one edit at every instance of a loop-body line, one scaling of every
use of a value, two sites) chains: an edited rule receives a cotangent that the edits after it have already
changed.  Its exact effect needs no edited program.  The reverse pass with edited rules :math:`R'_i` is the
true one plus, at each edited equation :math:`i`, the correction

.. math::  c_i = (R'_i - R_i)\,\bar g_i

pulled back through the true rules, where :math:`\bar g_i` is the cotangent of equation :math:`i`'s outputs
in the edited pass: the true one plus the corrections of the edits after it, pulled back to those outputs (a
correction that passes another edited equation is corrected there in turn, so every path is counted with its
edited rules, by linearity).  Taking the edited equations from the last to the first, each :math:`\bar g_i`
is known when it is needed.  One round per edited equation, each one run of the explanation's compiled
pullback (:class:`verification.checker.explain.edit_effects.Pullback`, its probes the cotangents that
reach each equation's outputs) for every change at once: nothing is compiled per batch (a gated recurrence's
failing check compiled two batched edited programs of 3400 and 4100 equations, 5.6 s of its 12).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np


def corrections(effects, changes: Sequence[tuple]) -> Tuple[np.ndarray, List[int]]:
    """``(rows, left)``: for each ``(edits, scales)`` of ``changes`` (``{equation: Edit}``, ``{(equation,
    input): constant}``), the exact change of the flattened gradient it makes (``effects``: a
    :class:`verification.checker.explain.first_order.Effects` with a shared pullback); ``left``, the changes
    that cannot be made so (a loop's change given a cotangent that is not the true one), whose rows are 0."""
    pull = effects.pullback
    probe = {v: n for n, v in enumerate(pull.probes)}
    graph = effects.graph
    plans = []  # per change: [(equation, edit, {input: constant})], the last equation first
    for edits, scales in changes:
        at = {i: [e, {}] for i, e in (edits or {}).items()}
        for (i, j), a in (scales or {}).items():
            at.setdefault(i, [None, {}])[1][j] = a
        plans.append([(i, e, sc) for i, (e, sc) in sorted(at.items(), reverse=True)])
    n = len(plans)
    rows = np.zeros((n, pull.width))
    induced = [{} for _ in range(n)]  # change -> {probe var: the cotangent its corrections so far send there}
    wanted = [{v for i, _, _ in p for v in graph.eqns[i].outvars if v in probe} for p in plans]
    pending, left = [None] * n, set()
    for r in range(max((len(p) for p in plans), default=0) + 1):
        live = [k for k in range(n) if pending[k]]
        if live:
            grads, at_probes = pull([pending[k] for k in live])
            for row, k in enumerate(live):
                rows[k] += grads[row]
                for v in wanted[k]:
                    x = at_probes[probe[v]][row]
                    induced[k][v] = x if v not in induced[k] else induced[k][v] + x
        pending = [None] * n
        for k, plan in enumerate(plans):
            if r >= len(plan) or k in left:
                continue
            i, edit, scales = plan[r]
            extra = [induced[k].get(v) for v in graph.eqns[i].outvars]
            d = effects.rule_delta(i, edit, scales, extra if any(x is not None and np.any(x) for x in extra)
                                   else None)
            if d is None:
                left.add(k)
            else:
                pending[k] = d
    rows[sorted(left)] = 0.0
    return rows, sorted(left)
