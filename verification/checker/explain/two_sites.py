"""Two changes at once, when no single change fits: the search over pairs.

Rule edits (fixed effects) and scalings of an edge or of a loop-wide / line-wide group (free constants)
are paired: the :data:`PAIR_POOL` items most aligned with the error, every pair screened at once by
least squares on their first-order effects (from their Gram matrix), the best :data:`MAX_PAIRS_EXACT`
evaluated exactly.
"""
from __future__ import annotations

from typing import List

import numpy as np

from verification.checker.explain import edits as ed, scale_causes
from verification.checker.base.findings import Hypothesis
from verification.checker.explain.search_state import Search

MAX_PAIRS_EXACT = 6  # two-site candidates evaluated exactly
PAIR_POOL = 200  # single changes (most aligned with the error first) combined into pairs


def _both(e1, e2):
    """Two edits of one equation (each changing one operand's rule): their changes added."""

    def edit(eqn, invals, outs, read):
        return [a + b - o for a, b, o in zip(e1(eqn, invals, outs, read), e2(eqn, invals, outs, read), outs)]

    return ed.Edit(edit)


def pairs(s: Search) -> List[Hypothesis]:
    """Two changes: rule edits (fixed effects) and scalings of an edge or of a loop-wide / line-wide group
    (free constants).  The :data:`PAIR_POOL` items most aligned with the error are paired, every pair
    screened at once by least squares on the first-order effects (from their Gram matrix), the best
    :data:`MAX_PAIRS_EXACT` evaluated exactly."""
    graph, fit, singles = s.graph, s.fit, s.singles
    items = [("edit", k, s.edit_effects[k]) for k in range(len(singles))]
    items += [("scale", (k,), s.edge_effects[:, c]) for k, c in s.column_of.items()]
    items += [("scale", tuple(ks), s.group_effect(ks)) for ks in s.groups.values()]
    items = [it for it in items if np.linalg.norm(it[2]) > 0]
    if len(items) < 2:
        return []
    V = np.stack([it[2] for it in items])
    cos = np.abs(V @ fit.D) / (np.linalg.norm(V, axis=1) * fit.nD)
    keep = np.argsort(-cos)[:PAIR_POOL]
    items, V = [items[k] for k in keep], V[keep]
    K, d, DD = V @ V.T, V @ fit.D, fit.nD ** 2  # Gram matrix, projections, ||D||^2
    free = np.array([it[0] == "scale" for it in items])
    n = len(items)
    kx, dx = np.diag(K)[:, None], d[:, None]
    ky, dy = kx.T, dx.T
    with np.errstate(divide="ignore", invalid="ignore"):
        both_free = DD - (ky * dx ** 2 - 2 * K * dx * dy + kx * dy ** 2) / (kx * ky - K ** 2)
        x_free = DD - 2 * dy + ky - (dx - K) ** 2 / kx  # y fixed: (D - v_y) projected on v_x
        y_free = DD - 2 * dx + kx - (dy - K) ** 2 / ky
    both_fixed = DD + kx + ky - 2 * dx - 2 * dy + 2 * K
    fx, fy = free[:, None], free[None, :]
    res2 = np.where(fx & fy, both_free, np.where(fx, x_free, np.where(fy, y_free, both_fixed)))
    res2 = np.where(np.triu(np.ones((n, n), bool), 1) & np.isfinite(res2), res2, np.inf)
    screened = []
    for flat in np.argsort(res2, axis=None)[:MAX_PAIRS_EXACT]:
        x, y = divmod(int(flat), n)
        if not np.isfinite(res2[x, y]):
            break
        a, b = items[x], items[y]
        fixed = sum((it[2] for it in (a, b) if it[0] == "edit"), np.zeros_like(fit.D))
        fr = [it[2] for it in (a, b) if it[0] == "scale"]
        coef = list(np.linalg.lstsq(np.stack(fr, axis=1), fit.D - fixed, rcond=None)[0]) if fr else []
        screened.append((float(np.sqrt(max(res2[x, y], 0.0))) / fit.nD, a, b, coef))
    tries = []  # (edits, scales, parts) of each pair screened close enough to evaluate
    for res, a, b, coef in sorted(screened, key=lambda t: t[0])[:MAX_PAIRS_EXACT]:
        if res > 1e-3:
            break
        edits, scales, parts, coef = {}, {}, [], list(coef)
        for it in (a, b):
            if it[0] == "edit":
                c = singles[it[1]]
                (i, e), = c.edits.items()
                edits[i] = _both(edits[i], e) if i in edits else e
                parts.append((c.cause, c.eqn, c.text))
            else:
                factor = _rounded(1.0 + coef.pop(0))
                scales.update({graph.edges[k]: factor for k in it[1]})
                i, j = graph.edges[it[1][-1]]
                cause, text = scale_causes.classify(graph, i, j, factor)
                parts.append((cause, i, text + (f" (at all {len(it[1])} of its uses)" if len(it[1]) > 1 else "")))
        tries.append((edits, scales, parts))
    out = []
    for (edits, scales, parts), H in zip(tries, s.exact([(e or None, sc or None) for e, sc, _ in tries])):
        if fit.fits(H - s.reference):
            (c1, i1, t1), (c2, i2, t2) = sorted(parts, key=lambda p: -p[1])
            out.append(
                Hypothesis(
                    c1,
                    i1,
                    graph.describe(i1),
                    f"manual equals autodiff if two changes are made: {t1}; and {t2}",
                    fit.residual(H - s.reference),
                    also_at=[graph.describe(i2)],
                    sites=sorted({i1, i2}),
                    changes=2,
                    equivalent=[graph.describe(i2)] if c1 != c2 else [],
                )
            )
            break
    return out


def _rounded(s):
    """``s``, or the meaningful scale (0, -1, 2, 1/2) it is up to screening error."""
    return next((c for c in scale_causes.CANONICAL_SCALES if abs(s - c) <= 1e-6 * max(1.0, abs(c))), s)
