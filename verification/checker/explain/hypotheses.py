"""Explanation by hypothesis: alternative references, each autodiff with one derivative rule changed.

For a failing gradient ``M`` (manual) against ``G`` (``jax.grad``), every hypothesis ``H`` is the gradient
of the same loss with one rule edited (:mod:`verification.checker.explain.derivative_edits`).  A hypothesis *fits*
when ``||M - H|| <= fit_rtol * ||M - G||`` (:mod:`verification.checker.base.fits`).

* **Single-equation changes**, all at once by linearity (:mod:`verification.checker.explain.edit_effects`):
  an edge scaled by a fitted constant ``a`` (0 a dropped path, -1 a flipped sign, a reduction's size
  mean and sum confused, 2 or 1/2 a factor 2, else a wrong constant) and every rule edit.
* **Loop-wide changes**: the same change at every instance of one loop-body line (a scan or Python loop
  unrolled, ``while_loop`` inlined), and the same scaling of every use of one value on one line.  These
  chain: screened by their first-order effect, the best few evaluated exactly (:data:`MAX_MULTI_EXACT`,
  :data:`MAX_GROUP_SCALES`).
* **Long loops kept whole**: each change of a scan body made at every iteration, one edit of the scan
  with an exact effect (:mod:`verification.checker.explain.loop_bodies`).
* **Two sites**, when nothing else fits: pairs of changes screened by least squares, the best few
  evaluated exactly (:mod:`verification.checker.explain.two_sites`).
* **Ranking** (:mod:`verification.checker.explain.ranking`): when nothing fits, the source lines ordered by how
  much of the error a change at that line alone can explain, among the sites consistent with the
  agreeing leaves.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import jax
import numpy as np

from verification.checker.explain import edit_effects as le
from verification.checker.explain import ranking
from verification.checker.explain import scale_causes
from verification.checker.explain import two_sites
from verification.checker.base.findings import Hypothesis
from verification.checker.base.fits import Fitter
from verification.checker.explain.first_order import Effects
from verification.checker.explain.search_state import Search

MAX_MULTI_EXACT = 8  # multi-equation rule changes evaluated exactly (best first-order screens first)
MAX_GROUP_SCALES = 8  # loop-wide scalings evaluated exactly (best linear screens first)
NEAR_CANONICAL = 0.5  # a chained group's first-order scale is tried with the canonical scales this close
WIDE_BUDGET = (
    2**27
)  # entries of the wide search's effect matrix (1 GiB of float64): past it, the narrow result stands
WIDE_ROWS_PER_EDGE = 9  # the effect matrix's rows per edge: its scaling and a bound on its rule edits


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(l, np.float64)) for l in jax.tree.leaves(tree)] or [np.zeros(0)])


def scalings(s: Search) -> List[Hypothesis]:
    """Every edge whose scaling by one constant reproduces ``D``, grouped by equal effect."""
    graph, C, fit, allowed = s.graph, s.edge_effects, s.fit, s.allowed
    norms = np.linalg.norm(C, axis=0)
    groups = []  # [(effect, [(specificity, Hypothesis)])], latest equation first within a group
    for c in np.argsort(-np.asarray(allowed, int)):  # latest equation first: the order backward visits them
        k = allowed[c]
        if norms[c] == 0:
            continue
        am1 = float(fit.D @ C[:, c] / norms[c] ** 2)  # the best a - 1
        effect = am1 * C[:, c]
        res = fit.residual(effect)
        if res > fit.fit_rtol:
            continue
        i, j = graph.edges[k]
        cause, text = scale_causes.classify(graph, i, j, 1 + am1)
        h = Hypothesis(cause, i, graph.describe(i, instance=True), f"manual equals autodiff if {text}", res, 1 + am1)
        spec = scale_causes.specificity(cause, text)
        for e, members in groups:
            if np.linalg.norm(e - effect) <= fit.fit_rtol * fit.nD:
                members.append((spec, h))
                break
        else:
            groups.append((effect, [(spec, h)]))
    out: List[Hypothesis] = []
    for _, members in groups:  # one effect: one hypothesis per meaningful cause, each with all its sites
        best = min(spec for spec, _ in members)
        kinds = []
        for spec, h in members:
            if (spec <= 1 or spec == best) and h.cause not in kinds:
                kinds.append(h.cause)
        for cause in kinds:
            same = sorted((m for m in members if m[1].cause == cause), key=lambda m: m[0])
            h = same[0][1]
            h.equivalent = [m.where for _, m in same[1:] if m.where != h.where]
            h.sites = [m.eqn for _, m in same]
            out.append(h)
    return out


def _scale_groups(graph) -> Dict[tuple, List[int]]:
    """Edges scaled together: every instance of one loop-body line's input, and every use of one value on
    one source line (``1 + lv - exp(lv)``)."""
    groups: Dict[tuple, List[int]] = {}
    for k, (i, j) in enumerate(graph.edges):
        line = graph.user_line(i)
        if not line:
            continue
        first = graph.instances(i)[0]  # the loop-body line (graph.instance_groups), by its first instance
        groups.setdefault(("loop", first, j), []).append(k)
        groups.setdefault(("line", line, graph.eqns[i].invars[j]), []).append(k)
    seen, out = set(), {}
    for key, ks in groups.items():
        if len(ks) > 1 and tuple(ks) not in seen:
            seen.add(tuple(ks))
            out[key] = ks
    return out


def _group_tries(s: Search) -> List[tuple]:
    """The loop-wide and line-wide scalings (``s.groups``, :func:`_scale_groups`) worth an exact evaluation,
    ``(group, edges, scale)``: the groups screened best by their first-order effect, each at the canonical
    scales near its fitted one, then at that one."""
    fit, screened = s.fit, []
    for key, ks in s.groups.items():
        col = s.group_effect(ks)
        n = float(col @ col)
        if n == 0:
            continue
        am1 = float(fit.D @ col / n)
        screened.append((fit.residual(am1 * col), key, ks, 1 + am1))
    tries = []  # (key, edges, scale): per group the canonical scales near its first-order one, then that one
    for _, key, ks, a_lin in sorted(screened, key=lambda t: t[0])[:MAX_GROUP_SCALES]:
        near = [c for c in scale_causes.CANONICAL_SCALES if abs(a_lin - c) <= NEAR_CANONICAL * max(1.0, abs(c))]
        tries += [(key, ks, a) for a in (*near, a_lin)]
    return tries


def _group_changes(s: Search, tries) -> List[tuple]:
    """The ``(edits, scales)`` of :func:`_group_tries`' scalings, for ``s.exact``."""
    return [(None, {s.graph.edges[k]: a for k in ks}) for _, ks, a in tries]


def _group_scalings(s: Search, tries, Hs=None) -> List[Hypothesis]:
    """The scalings ``tries`` (:func:`_group_tries`) that fit, evaluated exactly (``Hs``: already, in the
    order of ``tries``; else here, in one batched pass)."""
    graph, fit, G = s.graph, s.fit, s.reference
    Hs = s.exact(_group_changes(s, tries)) if Hs is None else Hs
    out, done = [], set()
    for (key, ks, a), H in zip(tries, Hs):
        if key in done or not fit.fits(H - G):
            continue
        i, j = graph.edges[ks[-1]]
        cause, text = scale_causes.classify(graph, i, j, a)
        n_sites = len({graph.edges[k][0] for k in ks})
        where = (
            "in all instances of a loop body"
            if key[0] == "loop"
            else "at every use of that value on the line"
        )
        out.append(Hypothesis(cause, i, graph.describe(i), f"manual equals autodiff if {text}, {where} "
                              f"({n_sites} sites)", fit.residual(H - G), a,
                              sites=sorted({graph.edges[k][0] for k in ks})))
        done.add(key)
    return out


def explain(graph, leaves, manual, reference, fit_rtol, point=None) -> Tuple[List[Hypothesis], List[str]]:
    """Every hypothesis that fits, rule edits first (they are the more specific), each with its site; and
    when none fits, the three source lines :mod:`verification.checker.explain.ranking` ranks first.

    Cost follows the bug: the search runs first at the sites consistent with the comparison (an input that
    depends on every failing leaf and no agreeing one, :func:`verification.checker.explain.ranking.consistent_sites`),
    on the failing leaves' entries only.  Only when nothing fits there is it widened to every equation,
    and only while its effects fit in :data:`WIDE_BUDGET` entries.

    ``point``: the loss's values and true cotangents (:func:`verification.checker.explain.edit_effects.at_point`),
    or a function that makes them, called only once a search is needed (``None``: made here)."""
    if any(np.shape(m) != np.shape(g) for m, g in zip(jax.tree.leaves(manual), jax.tree.leaves(reference))):
        return [], []  # a leaf of the wrong shape: the comparison and the backward localisation say which
    M, G = _flat(manual), _flat(reference)
    D = M - G
    if not np.all(np.isfinite(D)) or np.linalg.norm(D) == 0:
        return [], []
    point = le.at_point(graph, leaves) if point is None else point() if callable(point) else point
    sites = ranking.consistent_sites(graph, leaves, D)
    cols = ranking.failing_columns(leaves, D)
    wide = WIDE_ROWS_PER_EDGE * len(graph.edges) * D.size <= WIDE_BUDGET
    effects = Effects(graph, leaves, point, all_columns=wide, reference=G)  # the wide search reuses the narrow one's
    found, ranked = _search(effects, D, G, fit_rtol, sites, cols)
    if found or not wide:
        return found, ranked
    found, ranked_wide = _search(effects, D, G, fit_rtol, None, None)
    return found, (ranked_wide or ranked)


def _search(effects: Effects, D, G, fit_rtol, sites, cols):
    """The hypotheses at ``sites`` (``None``: every equation), judged on the entries ``cols`` (``None``:
    all): ``(found, ranked)``."""
    graph, leaves, point = effects.graph, effects.leaves, effects.point
    if cols is not None:
        D, G = D[cols], G[cols]
    fit = Fitter(D, fit_rtol)

    def exact(changes):  # the gradients with each (edits, scales) made, on the judged entries
        H = effects.exact(changes)
        return H if cols is None else H[:, cols]

    cands = effects.candidates(sites)
    singles = [c for c in cands if len(c.edits) == 1]
    multi = [c for c in cands if len(c.edits) > 1]
    allowed = [k for k, (i, _) in enumerate(graph.edges) if sites is None or i in sites]
    members = {}  # (equation, edit) -> row of the edit's first-order effect
    for c in singles + multi:
        for i, e in c.edits.items():
            members.setdefault((i, id(e)), (len(members), i, e))
    by_edge, rows = effects.effects(allowed, [(i, e) for _, i, e in members.values()], cols)
    C = by_edge.T  # (n_params, n_allowed): scaling edge allowed[c] by a changes the gradient by (a - 1) C_c
    col_of = {k: c for c, k in enumerate(allowed)}

    def first_order(c):
        return sum(rows[members[(i, id(e))][0]] for i, e in c.edits.items())

    R = np.stack([first_order(c) for c in singles]) if singles else np.zeros((0, len(D)))  # exact: one equation
    found, in_loops = [], []  # in_loops: (hypothesis, effect) of loop-body changes, merged by equal effect
    for c, d in zip(singles, R):
        if fit.fits(d):
            h = _from_candidate(graph, c, fit.residual(d))
            same = next((f for f, e in in_loops if f.cause == h.cause and
                         np.linalg.norm(e - d) <= fit.fit_rtol * fit.nD), None) if c.where else None
            if same is not None:
                same.equivalent += [h.where] if h.where != same.where and h.where not in same.equivalent else []
                continue
            found.append(h)
            if c.where:
                in_loops.append((h, d))
    groups = {key: ks for key, ks in _scale_groups(graph).items() if all(k in col_of for k in ks)}
    state = Search(graph, fit, G, exact, singles, R, allowed, C, groups, sites)
    # Edits at several equations chain: screened by their first-order effect, the best few evaluated exactly;
    # with them, in the same batched pass (one compile, not two), the group scalings tried below if nothing
    # else fits (a program too large to batch evaluates those only then).
    chained = sorted(multi, key=lambda c: fit.residual(first_order(c)))[:MAX_MULTI_EXACT]
    tries = _group_tries(state)
    batched = effects.pullback is not None or le.exact_rows(point, leaves) >= 2
    ahead = _group_changes(state, tries) if chained and batched else []
    Hs = exact([(c.edits, None) for c in chained] + ahead)
    for c, H in zip(chained, Hs):
        if fit.fits(H - G):
            found.append(_from_candidate(graph, c, fit.residual(H - G)))
    found += scalings(state)
    if not found:
        found += _group_scalings(state, tries, Hs[len(chained):] if ahead else None)
    if not found:
        found += two_sites.pairs(state)
    consistent = ranking.consistent_sites(graph, leaves, D) if cols is None else sites
    return found, ([] if found else ranking.rank_lines(state, sites=consistent))


def _from_candidate(graph, c, res):
    where = c.where or graph.describe(c.eqn, instance=len(c.edits) == 1)
    return Hypothesis(c.cause, c.eqn, where, f"manual equals autodiff if {c.text}", res,
                      also_at=sorted({graph.describe(i) for i in c.edits if i != c.eqn}), sites=sorted(c.edits))
