"""What a wrong value of the hand gradient may have been meant to be, and the outputs with it put in.

A value's **replacements** are the expected output (for an output), the right quantity it equals up to a
factor or a transpose, and the most similar right quantities of its shape, each also times the factor its
inputs carry (a user who carries ``m`` times the cotangent and divides at the end).  A line run many times
(a loop body unrolled, a helper called per layer) is replaced as a **group**: its instances aligned with the
instances of one forward line (:func:`aligned_groups`), or each instance by its own best replacement
(:func:`repair_each`).  :func:`leaf_errors` is the localisation's one comparison of the outputs with what
they should be, and :func:`fit_constant` the constant that later code may divide out.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence

import jax.extend.core as jcore
import numpy as np

from verification.checker.backward.program import Program
from verification.checker.backward.references import Match, Ref, References

CANDIDATES_PER_VALUE = 8  # right quantities tried as the replacement of one value (the most similar first)


MAX_COTANGENTS = 64  # and every cotangent and gradient leaf of its shape, up to this many


LOOP_MIN = 5  # a line run this many times is a loop body: judged as a group only (a Python loop over a
# few layers is also judged value by value, a mistake in one layer being possible)


MAX_GROUP_CANDIDATES = 48  # a loop line's group is tried against twice this many groups of right quantities
# (in order and reversed), the most similar first, and this many more shifted one step (a carried delta)


MAX_EACH = 32  # instances of one line replaced each by its own right quantity (a helper called per layer)


def leaf_errors(outs: Sequence[np.ndarray], expected: Sequence[np.ndarray], stacked: bool = True) -> np.ndarray:
    """Per output leaf: ``||out - expected|| / ||expected||`` (with ``stacked``, candidates on axis 0)."""
    errs = []
    with np.errstate(all="ignore"):  # a non-finite output is an infinite error
        for o, e in zip(outs, expected):
            e = np.asarray(e, np.float64)
            o = np.asarray(o, np.float64)
            axes = tuple(range(int(stacked), o.ndim))
            if o.shape[int(stacked):] != e.shape:  # a result of another leaf's shape: never right here
                errs.append(np.full(o.shape[:1] if stacked else (), np.inf))
                continue
            diff = np.sqrt(np.sum((o - e) ** 2, axis=axes)) if axes else np.abs(o - e)
            errs.append(diff / max(float(np.linalg.norm(e)), 1e-300))
    out = np.stack(errs, axis=-1)
    return np.where(np.isnan(out), np.inf, out)


def loop_group(program: Program, v, seen: set) -> List[Any]:
    """The values of every instance of ``v``'s line when it runs more than once (a loop body unrolled, a
    helper called per step), the first time one of them is met; else ``[]``."""
    i = program.producer(v)
    key = program.graph.key(i)
    if key in seen:
        return []
    k = list(program.eqns[i].outvars).index(v)
    shape = np.shape(program.value(v))  # (one op on one line may make values of several shapes: a broadcast)
    group = [w for w in (program.eqns[j].outvars[k] for j in program.graph.instances(i, by="op"))
             if program.value(w) is not None and np.shape(program.value(w)) == shape]
    ends = [program.ends_line(w) for w in group]
    if 2 * sum(ends) == len(group) >= 4:  # two equal ops of one line (``a + b + c`` in a loop): the line's
        # result apart from its partial sum (a recurrence on one line, ``y = y + dt * k``, stays one group)
        mine = program.ends_line(v)
        if key + (mine,) in seen:
            return []
        seen.add(key + (mine,))
        group = [w for w, e in zip(group, ends) if e == mine]
    else:
        seen.add(key)
    if len(group) >= 2:
        return group
    if key[:3] in seen:
        return []
    seen.add(key[:3])  # a helper called once per layer: the line's instances on values of different shapes
    layers = [w for w in (program.eqns[j].outvars[k] for j in program.graph.instances(i, by="line")
                          if k < len(program.eqns[j].outvars)) if program.value(w) is not None]
    return layers if len(layers) >= 2 and len({np.shape(program.value(w)) for w in layers}) > 1 else []


def repair_groups(program: Program, refs: References, groups, expected, tol) -> list:
    """For each of ``groups``, every instance of a loop line replaced at once, instance ``k`` by the ``k``-th
    (or, for a loop run backwards, the ``k``-th from the end) of a group of right quantities of one forward
    line (:func:`aligned_groups`): ``(first wrong instance, its match, errors)`` when that repairs the wrong
    outputs, else ``None``.  All the groups in one batched run (:meth:`Program.replaced_parts`)."""
    tried = []  # (group, its values, its aligned right groups)
    for group in groups:
        values = [np.asarray(program.value(w), np.float64) for w in group]
        tried.append((group, values, aligned_groups(refs, values)))
    parts = [(group, [[refs.shaped(ms[k], v.shape) for ms in aligned] for k, v in enumerate(values)])
             for group, values, aligned in tried if aligned]
    outs = iter(program.replaced_parts(parts) if parts else [])
    return [_repaired(values, aligned, leaf_errors(next(outs), [r.value for r in expected]), group, refs, tol)
            if aligned else None for group, values, aligned in tried]


def _repaired(values, aligned, errs, group, refs, tol):
    best = int(np.argmin(errs.sum(axis=1)))
    if not np.all(errs[best] <= max(100 * tol, 1e-6)):
        return None
    rights = aligned[best]
    ours = [k for k, v in enumerate(values) if rights[k].ref.value is v]  # an instance kept as it is (no partner)
    wrong = [k for k, v in enumerate(values)  # the first instance that differs from its right quantity
             if k not in ours and leaf_errors([v], [refs.shaped(rights[k], v.shape)], stacked=False)[0]
             > max(100 * tol, 1e-6)]
    k = wrong[0] if wrong else next(k for k in range(len(values)) if k not in ours)
    return group[k], rights[k], errs[best]


def aligned_groups(refs: References, values: Sequence[np.ndarray]) -> List[List[Match]]:
    """The groups of right quantities of one forward line aligned with a loop line's instances ``values``,
    most similar first: in program order or reversed (a loop run backwards), each also shifted by one step (a
    carried cotangent: the reverse step for ``t`` computes ∂L/∂h_{t-1}, the forward line's instance before
    it), the instance left without a partner kept as it is (the last carry, read by nothing).  Instances of
    different shapes (a line run once per layer: a per-example forward under ``vmap``) take one forward
    line's instances of those shapes, transposed where needed (:meth:`References.layer_groups`)."""
    n = len(values)
    plain, shifted = [], []
    if len({v.shape for v in values}) > 1:
        plain = refs.layer_groups([v.shape for v in values])
    else:
        kept = [Match(Ref("value", "", v), 1.0) for v in values]
        for g in refs.groups(values[0].shape, n, short=1 if n > 2 else 0):
            for order in (1, -1):
                g_o = [Match(r, 1.0) for r in g[::order]]
                if len(g_o) < n:  # a quantity the loop's first (or last) step has none of: the initial carry's
                    shifted += [g_o + kept[-1:], kept[:1] + g_o]
                else:
                    plain.append(g_o)
                    shifted += [g_o[1:] + kept[-1:], kept[:1] + g_o[:-1]]

    cosines = {}  # (instance, quantity, transposed) -> |cos|: the groups share their members

    def cosine(k, m):
        key = (k, id(m.ref), m.transposed)
        if key not in cosines:
            cosines[key] = _cosine(values[k].ravel(), refs.shaped(m, values[k].shape).ravel())
        return cosines[key]

    def unlike(ms):  # (a mistake leaves most instances right: the most similar first)
        return -float(np.mean([cosine(k, m) for k, m in enumerate(ms) if m.ref.value is not values[k]]))

    # the aligned groups first, as many as before the shifted ones were tried; then the most similar shifted
    return sorted(plain, key=unlike)[:2 * MAX_GROUP_CANDIDATES] + sorted(shifted, key=unlike)[:MAX_GROUP_CANDIDATES]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """``|cos|`` of the angle between two flat arrays (0 where one is zero)."""
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return abs(float(np.dot(a, b))) / den if den > 0 else 0.0


def repair_each(program: Program, refs: References, v, seen: set, expected, out_of, status, tol, skip=False):
    """``v``'s line run more than once on values of different shapes (a helper called once per layer:
    ``penalty_grad(p)`` for every ``p``), each instance repairing only its own share: every instance
    replaced at once by the right quantity that serves it best alone.  ``(v, its match, errors)`` when that
    repairs the wrong outputs, else ``None`` (and ``None`` for a line already tried).  With ``skip``, never
    by the quantity an instance already equals (a right quantity for another role)."""
    i = program.producer(v)
    line = program.graph.user_line(i)
    k = list(program.eqns[i].outvars).index(v)
    key = (program.graph.key(i)[:3], k, skip)  # the op on that line (instances(by="line"))
    if line is None or key in seen:
        return None
    seen.add(key)
    live = set(program.live_vars())
    group = [program.eqns[j].outvars[k] for j in program.graph.instances(i, by="line")]
    group = [w for w in group if w in live and program.value(w) is not None]
    if not 2 <= len(group) <= MAX_EACH or v not in group:
        return None
    best = []
    for w in group:
        value = program.value(w)
        m = status.get(w)
        options = replacements(refs, value, m, expected[out_of[w]] if w in out_of else None,
                                input_factors(program, w, status))
        if skip and m is not None:
            options = [o for o in options if o.ref is not m.ref or o.transposed != m.transposed]
        if not options:
            return None
        outs = program.replaced(w, [value] + [o.factor * refs.shaped(o, value.shape) for o in options])
        errs = leaf_errors(outs, [r.value for r in expected]).sum(axis=1)
        j = int(np.argmin(errs))
        best.append(None if j == 0 else options[j - 1])  # j = 0: the instance is best as it is
    if all(o is None for o in best):
        return None
    shaped = [[program.value(w) if o is None else o.factor * refs.shaped(o, program.value(w).shape)]
              for w, o in zip(group, best)]
    errs = leaf_errors(program.replaced_all(group, shaped), [r.value for r in expected])[0]
    if not np.all(errs <= max(100 * tol, 1e-6)):
        return None
    pick = group.index(v) if best[group.index(v)] is not None else next(n for n, o in enumerate(best) if o is not None)
    return group[pick], best[pick], errs


def fit_constant(outs, expected):
    """Per candidate (``outs[k][1:]``; ``outs[k][0]`` is the run with the value zeroed): the constant ``c``
    that makes the outputs best (they are affine in the replacement), and the leaf errors at ``c``."""
    with np.errstate(all="ignore"):  # a replacement may divide by zero downstream: its errors are inf
        alpha = [np.asarray(o[0], np.float64) for o in outs]
        betas = [np.asarray(o[1:], np.float64) - a for o, a in zip(outs, alpha)]
        target = [np.asarray(r.value, np.float64) - a for r, a in zip(expected, alpha)]
        num = sum(np.sum((b * t).reshape(b.shape[0], -1), axis=1) for b, t in zip(betas, target))
        den = sum(np.sum((b * b).reshape(b.shape[0], -1), axis=1) for b in betas)
        c = np.where(den > 0, num / den, 0.0)
        c = np.where(np.isfinite(c), c, 0.0)
        fitted = [a + c.reshape((-1,) + (1,) * (b.ndim - 1)) * b for a, b in zip(alpha, betas)]
    return c, leaf_errors(fitted, [r.value for r in expected])


def input_factors(program: Program, v, status) -> List[float]:
    """The factors of the inputs of ``v``'s line that are right up to a constant (a user who carries ``m``
    times the cotangent and divides by ``m`` at the end): ``v`` may be meant to carry the same factor."""
    out = []
    for u in program.eqns[program.producer(v)].invars:
        m = status.get(u) if isinstance(u, jcore.Var) else None
        if m is not None and not m.exact and abs(m.factor) > 0 and not any(abs(m.factor - c) < 1e-9 for c in out):
            out.append(m.factor)
    return out


def replacements(refs: References, value, match: Optional[Match], expected: Optional[Ref],
                  factors: Sequence[float] = ()) -> List[Match]:
    """What a value might have been meant to be: the expected output (for an output), the quantity it
    equals up to a factor or a transpose, then the most similar right quantities of its shape; each also
    times the factor its inputs carry (``factors``)."""
    out: List[Match] = []
    if expected is not None:
        out.append(Match(expected, 1.0))
    if match is not None:
        out.append(Match(match.ref, 1.0, match.transposed))
    ranked = [m for m, _ in refs.ranked(value)]
    backward = [m for m in ranked if m.ref.kind != "value"][:MAX_COTANGENTS]
    for m in ranked[:CANDIDATES_PER_VALUE] + backward:
        if not any(o.ref is m.ref and o.transposed == m.transposed for o in out):
            out.append(Match(m.ref, 1.0, m.transposed))
    return out + [Match(o.ref, c, o.transposed) for c in factors for o in out]
