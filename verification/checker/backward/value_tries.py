"""The hand code's values tried one by one: each replaced by the right quantities it may have been meant to be,
and how much of the wrong outputs' error that removes.

:func:`prepared` runs, before the search of :mod:`verification.checker.backward.first_wrong` walks the values
(most upstream first), everything it will try: the loop lines as groups
(:func:`verification.checker.backward.substitutes.repair_groups`) and then the single values
(:func:`replays`), each kind in one batched run (:meth:`verification.checker.backward.program.Program.replaced_parts`)
where the walk tried them one replay at a time (a loop kept whole compiles each replay: a 100-step recurrence's
14 tries, one compile); :func:`try_value` judges one value's replacements.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from verification.checker.backward import substitutes
from verification.checker.backward.references import Match

MAX_TESTED = 64  # values tried as the first wrong one, most upstream first
MAX_REPLAYED = 6000  # and at most this many equations re-run for them in all (a long unrolled loop)


def is_right(m, v, out_of) -> bool:
    """``v`` equals a right quantity as it is (and is not a result, nor one path's share of one)."""
    return m is not None and m.exact and not m.transposed and v not in out_of and not m.ref.share


def prepared(program, refs, targets, expected, status, out_of, tol) -> Tuple[dict, dict]:
    """What the first wrong value's search (:mod:`verification.checker.backward.first_wrong`) tries, each kind in
    one batched run: ``({value: repair}`` for the first value met of each loop line, tried as a group
    (:func:`verification.checker.backward.substitutes.repair_groups`), ``{value: (options, outputs)})`` for the
    values it then tries one by one (:func:`try_value`), in its order and within its limits."""
    seen, firsts, groups, met = set(), [], [], []
    for v in program.ancestors(targets):
        if v in status and not is_right(status[v], v, out_of):
            group = substitutes.loop_group(program, v, seen)
            met.append((v, bool(group)))
            if group:
                firsts.append(v)
                groups.append(group)
    repairs = dict(zip(firsts, substitutes.repair_groups(program, refs, groups, expected, tol)))
    return repairs, replays(program, refs, [v for v, grouped in met if not (grouped and repairs[v] is not None)],
                             expected, out_of, status)


def replays(program, refs, values, expected, out_of, status, right=False) -> dict:
    """``{value: (options, outputs)}``: :func:`try_value`'s replacements of each of ``values`` (not a loop's step),
    in order, within :data:`MAX_TESTED` and :data:`MAX_REPLAYED`, all in one batched run.  ``right``: values
    equal to a right quantity, never replaced by it."""
    parts, replayed = [], 0
    for v in values:
        if len(program.graph.instances(program.producer(v), by="op")) >= substitutes.LOOP_MIN:
            continue
        options = candidates_for(program, refs, v, None if right else status[v], expected, out_of, status,
                           skip=status[v] if right else None)
        if options is None:
            continue
        parts.append((v, options))
        replayed += len(program.eqns) - program.producer(v)
        if len(parts) >= MAX_TESTED or replayed >= MAX_REPLAYED:
            break
    outs = program.replaced_parts([([v], [stacked(program, refs, v, o)]) for v, o in parts]) if parts else []
    return {v: (options, o) for (v, options), o in zip(parts, outs)}


def candidates_for(program, refs, v, m, expected, out_of, status, skip=None) -> Optional[List[Match]]:
    """The right quantities :func:`try_value` puts in place of ``v`` (never ``skip``), or ``None``: none, or a
    value too small to judge."""
    value = program.value(v)
    if value is None or (value.size < 2 and v not in out_of):
        return None
    options = substitutes.replacements(refs, value, m, expected[out_of[v]] if v in out_of else None,
                                       substitutes.input_factors(program, v, status))
    if skip is not None:
        options = [o for o in options if o.ref is not skip.ref or o.transposed != skip.transposed]
    return options or None


def stacked(program, refs, v, options) -> List[np.ndarray]:
    """``v``'s candidates: zero (the value's removal), then each option."""
    value = program.value(v)
    return [np.zeros_like(value)] + [o.factor * refs.shaped(o, value.shape) for o in options]


def try_value(program, refs, v, m, expected, out_of, status, tol, total, skip=None, replayed=None):
    """``v`` replaced by each right quantity it might have been meant to be (never ``skip``, the one it
    equals): ``(repairs, (match, errors) of a fitted-constant repair or None, share of the error removed,
    best match, its errors)``, or ``None`` when nothing is tried.  ``replayed``: ``(options, outputs)``,
    already run (:func:`_prepared`)."""
    if replayed is not None:
        options, outs = replayed
    else:
        options = candidates_for(program, refs, v, m, expected, out_of, status, skip)
        if options is None:
            return None
        outs = program.replaced(v, stacked(program, refs, v, options))
    errs = substitutes.leaf_errors([o[1:] for o in outs], [r.value for r in expected])  # (candidates, leaves)
    totals = errs.sum(axis=1)
    k = int(np.argmin(totals))
    repaired = lambda e: bool(np.all(e <= max(100 * tol, 1e-6)))  # noqa: E731
    full = [j for j in range(len(options)) if repaired(errs[j])]
    if full:  # the first that repairs, in the options' order: the errors left are rounding, whose order is chance
        return True, None, 1.0, options[full[0]], errs[full[0]]
    c, errs_c = substitutes.fit_constant(outs, expected)  # the factor that later code divides out
    scaled = [j for j in range(len(errs_c)) if repaired(errs_c[j]) and abs(c[j]) > 0]  # (the first, as above)
    fitted = None
    if scaled:
        kc = scaled[0]
        fitted = (Match(options[kc].ref, options[kc].factor * c[kc], options[kc].transposed), errs_c[kc])
    gain = 1 - totals[k] / max(total, 1e-300) if np.isfinite(totals[k]) else 0.0  # (an overflow removes none)
    return False, fitted, gain, options[k], errs[k]
