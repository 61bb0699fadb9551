"""Explanation by hypothesis: alternative references, each autodiff with one derivative rule changed.

For a failing gradient ``M`` (manual) against ``G`` (``jax.grad``), every hypothesis ``H`` is the gradient
of the same loss with one rule edited (:mod:`verification.checker.rule_edits`).  A hypothesis *fits*
when ``||M - H|| <= fit_rtol * ||M - G||``: it reproduces the mistake, not just the right answer.

* **Single-equation changes**, all at once by linearity (:mod:`verification.checker.linear_effects`):
  an edge scaled by a fitted constant ``a`` (0 a dropped path, -1 a flipped sign, a reduction's size
  mean and sum confused, 2 or 1/2 a factor 2, else a wrong constant) and every rule edit.
* **Loop-wide changes**: the same change at every instance of one loop-body line (a scan or Python loop
  unrolled, ``while_loop`` inlined), and the same scaling of every use of one value on one line.  These
  chain: screened by their first-order effect, the best few evaluated exactly (:data:`MAX_MULTI_EXACT`,
  :data:`MAX_GROUP_SCALES`).
* **Two sites**, when nothing else fits: pairs of changes screened by least squares, the best few
  evaluated exactly (:data:`MAX_PAIRS_EXACT`).
* **Ranking** (:mod:`verification.checker.ranking`): when nothing fits, the source lines ordered by how
  much of the error a change at that line alone can explain, among the sites consistent with the
  agreeing leaves.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from verification.checker import jaxpr_graph as jg
from verification.checker import linear_effects as le
from verification.checker import loop_bodies, ranking, rule_edits, scale_causes

CANONICAL_SCALES = (0.0, -1.0, 2.0, 0.5)
MAX_MULTI_EXACT = 8  # multi-equation rule changes evaluated exactly (best first-order screens first)
MAX_GROUP_SCALES = 8  # loop-wide scalings evaluated exactly (best linear screens first)
NEAR_CANONICAL = 0.5  # a chained group's first-order scale is tried with the canonical scales this close
MAX_PAIRS_EXACT = 6  # two-site candidates evaluated exactly
PAIR_POOL = 200  # single changes (most aligned with the error first) combined into pairs
WIDE_BUDGET = 2 ** 27  # entries of the wide search's effect matrix (1 GiB of float64): past it, the narrow result stands
WIDE_ROWS_PER_EDGE = 9  # the effect matrix's rows per edge: its scaling and a bound on its rule edits


@dataclasses.dataclass
class Hypothesis:
    cause: str  # a code of the documented vocabulary (verification.CAUSES)
    eqn: int  # equation index in the traced loss
    where: str  # "tanh at model.py:12"
    explanation: str  # "manual equals autodiff if ..."
    residual: float  # ||M - H|| / ||M - G||
    scale: Optional[float] = None  # for scalings: the fitted a
    equivalent: List[str] = dataclasses.field(default_factory=list)  # other sites with the same effect
    also_at: List[str] = dataclasses.field(default_factory=list)  # the same change made at these sites too
    sites: List[int] = dataclasses.field(default_factory=list)  # every equation index named above
    changes: int = 1  # distinct rule changes: 2 for a two-site (or two-operand) pair

    def as_dict(self):
        return dataclasses.asdict(self)


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(l, np.float64)) for l in jax.tree.leaves(tree)] or [np.zeros(0)])


def _grad(graph, leaves, **kw):
    return jax.grad(lambda ls: jg.evaluate(graph, ls, **kw))(list(leaves))


def _read(point, v):
    return v.val if isinstance(v, jcore.Literal) else point.values[v]


def _local(graph, point, i, edit=None):
    e = graph.eqns[i]
    return le.local_cotangents(e, [_read(point, v) for v in e.invars], [point.cotangents.get(v) for v in e.outvars],
                               edit)


def _edge_deltas(graph, point, true, allowed):
    """For each edge ``(i, j)`` in ``allowed`` (edge indices): ``{input var: the cotangent equation i sends
    it}`` (its scaling's direction); ``true`` caches each equation's local cotangents."""
    out = []
    for i, j in (graph.edges[k] for k in allowed):
        if i not in true:
            true[i] = _local(graph, point, i)
        out.append({graph.eqns[i].invars[j]: true[i][j]})
    return out


def _edit_delta(graph, point, i, edit, true):
    """The change an edit of equation ``i``'s rule makes to the cotangents of its inputs (``true``: the
    true rule's, by equation)."""
    eqn = graph.eqns[i]
    if hasattr(edit, "input_deltas"):  # a loop body's change: computed with its loop's others, in one pass
        return edit.input_deltas()
    if hasattr(edit, "delta") and len(eqn.outvars) == 1 and eqn.outvars[0] in point.cotangents:
        g = point.cotangents[eqn.outvars[0]]
        return {eqn.invars[j]: d for j, d in edit.delta(eqn, [_read(point, v) for v in eqn.invars], g).items()
                if isinstance(eqn.invars[j], jcore.Var)}
    if i not in true:
        true[i] = _local(graph, point, i)
    new = _local(graph, point, i, edit)
    d = {}
    for v, t, n in zip(graph.eqns[i].invars, true[i], new):
        if t is not None and isinstance(v, jcore.Var):
            d[v] = d.get(v, 0) + (n - t)
    return d


class _Fitter:
    def __init__(self, D, fit_rtol):
        self.D, self.nD, self.fit_rtol = D, float(np.linalg.norm(D)), fit_rtol

    def residual(self, effect):
        return float(np.linalg.norm(self.D - effect) / self.nD)

    def fits(self, effect):
        return self.residual(effect) <= self.fit_rtol and np.linalg.norm(effect) > 0


def scalings(graph, C, fit: _Fitter, allowed) -> List[Hypothesis]:
    """Every edge whose scaling by one constant reproduces ``D``, grouped by equal effect (column ``c`` of
    ``C`` is edge ``allowed[c]``)."""
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
        groups.setdefault(("loop", graph.key(i), j), []).append(k)
        groups.setdefault(("line", line, graph.eqns[i].invars[j]), []).append(k)
    seen, out = set(), {}
    for key, ks in groups.items():
        if len(ks) > 1 and tuple(ks) not in seen:
            seen.add(tuple(ks))
            out[key] = ks
    return out


def _group_scalings(graph, exact, groups, C, col_of, G, fit) -> List[Hypothesis]:
    """Loop-wide and line-wide scalings (``groups``, :func:`_scale_groups`): screened by their first-order
    effect, then evaluated exactly (``exact(scales=...)``) at the canonical scales and the fitted one."""
    screened = []
    for key, ks in groups.items():
        col = C[:, [col_of[k] for k in ks]].sum(axis=1)
        n = float(col @ col)
        if n == 0:
            continue
        am1 = float(fit.D @ col / n)
        screened.append((fit.residual(am1 * col), key, ks, 1 + am1))
    out = []
    for _, key, ks, a_lin in sorted(screened, key=lambda t: t[0])[:MAX_GROUP_SCALES]:
        near = [c for c in CANONICAL_SCALES if abs(a_lin - c) <= NEAR_CANONICAL * max(1.0, abs(c))]
        for a in (*near, a_lin):
            H = exact(scales={graph.edges[k]: a for k in ks})
            if fit.fits(H - G):
                i, j = graph.edges[ks[-1]]
                cause, text = scale_causes.classify(graph, i, j, a)
                n_sites = len({graph.edges[k][0] for k in ks})
                where = "in all instances of a loop body" if key[0] == "loop" else "at every use of that value on the line"
                out.append(Hypothesis(cause, i, graph.describe(i), f"manual equals autodiff if {text}, {where} "
                                      f"({n_sites} sites)", fit.residual(H - G), a,
                                      sites=sorted({graph.edges[k][0] for k in ks})))
                break
    return out


def explain(graph, leaves, manual, reference, fit_rtol) -> Tuple[List[Hypothesis], List[str]]:
    """Every hypothesis that fits, rule edits first (they are the more specific), each with its site; and
    when none fits, the three source lines :mod:`verification.checker.ranking` ranks first.

    Cost follows the bug: the search runs first at the sites consistent with the comparison (an input that
    depends on every failing leaf and no agreeing one, :func:`verification.checker.ranking.consistent_sites`),
    on the failing leaves' entries only.  Only when nothing fits there is it widened to every equation,
    and only while its effects fit in :data:`WIDE_BUDGET` entries."""
    M, G = _flat(manual), _flat(reference)
    D = M - G
    if not np.all(np.isfinite(D)) or np.linalg.norm(D) == 0:
        return [], []
    point = le.at_point(graph, leaves)
    sites = ranking.consistent_sites(graph, leaves, D)
    cols = ranking.failing_columns(leaves, D)
    found, ranked = _search(graph, leaves, point, D, G, fit_rtol, sites, cols)
    if found:
        return found, ranked
    if WIDE_ROWS_PER_EDGE * len(graph.edges) * D.size <= WIDE_BUDGET:
        found, ranked_wide = _search(graph, leaves, point, D, G, fit_rtol, None, None)
        return found, (ranked_wide or ranked)
    return found, ranked


def _search(graph, leaves, point, D, G, fit_rtol, sites, cols):
    """The hypotheses at ``sites`` (``None``: every equation), judged on the entries ``cols`` (``None``:
    all): ``(found, ranked)``."""
    if cols is not None:
        D, G = D[cols], G[cols]
    fit = _Fitter(D, fit_rtol)
    exact = (lambda **kw: le.exact_gradient(graph, leaves, point, **kw)[cols]) if cols is not None else \
        (lambda **kw: le.exact_gradient(graph, leaves, point, **kw))
    cands = rule_edits.candidates(graph, point.values, sites=sites) + loop_bodies.candidates(graph, point, sites)
    singles = [c for c in cands if len(c.edits) == 1]
    multi = [c for c in cands if len(c.edits) > 1]
    true = {}
    allowed = [k for k, (i, _) in enumerate(graph.edges) if sites is None or i in sites]
    edge_deltas = _edge_deltas(graph, point, true, allowed)
    members = {}  # (equation, edit) -> row of the edit's first-order effect
    for c in singles + multi:
        for i, e in c.edits.items():
            members.setdefault((i, id(e)), (len(members), i, e))
    E = le.pullbacks(graph, leaves, point, edge_deltas + [_edit_delta(graph, point, i, e, true)
                                                          for _, i, e in members.values()], cols=cols)
    C = E[:len(edge_deltas)].T  # (n_params, n_allowed): scaling edge allowed[c] by a changes the gradient by (a - 1) C_c
    col_of = {k: c for c, k in enumerate(allowed)}
    rows = E[len(edge_deltas):]

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
    # Edits at several equations chain: screened by their first-order effect, the best few evaluated exactly.
    for c in sorted(multi, key=lambda c: fit.residual(first_order(c)))[:MAX_MULTI_EXACT]:
        H = exact(edits=c.edits)
        if fit.fits(H - G):
            found.append(_from_candidate(graph, c, fit.residual(H - G)))
    found += scalings(graph, C, fit, allowed)
    groups = {key: ks for key, ks in _scale_groups(graph).items() if all(k in col_of for k in ks)}
    if not found:
        found += _group_scalings(graph, exact, groups, C, col_of, G, fit)
    if not found:
        found += _pairs(graph, exact, groups, singles, R, C, col_of, G, fit)
    consistent = ranking.consistent_sites(graph, leaves, D) if cols is None else sites
    return found, ([] if found else ranking.rank_lines(graph, singles, R, C, fit.D, sites=consistent, allowed=allowed))


def _from_candidate(graph, c, res):
    return Hypothesis(c.cause, c.eqn, c.where or graph.describe(c.eqn, instance=len(c.edits) == 1), f"manual equals autodiff if {c.text}", res,
                      also_at=sorted({graph.describe(i) for i in c.edits if i != c.eqn}), sites=sorted(c.edits))


def _both(e1, e2):
    """Two edits of one equation (each changing one operand's rule): their changes added."""

    def edit(eqn, invals, outs, read):
        return [a + b - o for a, b, o in zip(e1(eqn, invals, outs, read), e2(eqn, invals, outs, read), outs)]

    return edit


def _pairs(graph, exact, groups, singles, R, C, col_of, G, fit) -> List[Hypothesis]:
    """Two changes: rule edits (fixed effects) and scalings of an edge or of a loop-wide / line-wide group
    (free constants).  The :data:`PAIR_POOL` items most aligned with the error are paired, every pair
    screened at once by least squares on the first-order effects (from their Gram matrix), the best
    :data:`MAX_PAIRS_EXACT` evaluated exactly."""
    items = [("edit", k, R[k]) for k in range(len(singles))] + [("scale", (k,), C[:, c]) for k, c in col_of.items()]
    items += [("scale", tuple(ks), C[:, [col_of[k] for k in ks]].sum(axis=1)) for ks in groups.values()]
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
    out = []
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
                s = _rounded(1.0 + coef.pop(0))
                scales.update({graph.edges[k]: s for k in it[1]})
                i, j = graph.edges[it[1][-1]]
                cause, text = scale_causes.classify(graph, i, j, s)
                parts.append((cause, i, text + (f" (at all {len(it[1])} of its uses)" if len(it[1]) > 1 else "")))
        H = exact(edits=edits or None, scales=scales or None)
        if fit.fits(H - G):
            (c1, i1, t1), (c2, i2, t2) = sorted(parts, key=lambda p: -p[1])
            out.append(Hypothesis(c1, i1, graph.describe(i1),
                                  f"manual equals autodiff if two changes are made: {t1}; and {t2}",
                                  fit.residual(H - G), also_at=[graph.describe(i2)], sites=sorted({i1, i2}), changes=2,
                                  equivalent=[graph.describe(i2)] if c1 != c2 else []))
            break
    return out


def _rounded(s):
    """``s``, or the meaningful scale (0, -1, 2, 1/2) it is up to screening error."""
    return next((c for c in CANONICAL_SCALES if abs(s - c) <= 1e-6 * max(1.0, abs(c))), s)


def candidate_gradients(graph, leaves, cands) -> np.ndarray:
    """``(len(cands), n_params)``: the flattened gradient of each candidate (one vmapped pass, op by op)."""
    switched = {}
    for k, c in enumerate(cands):
        for i, edit in c.edits.items():
            switched.setdefault(i, []).append((k, edit))
    dtype = jnp.result_type(*leaves)

    def flat_grad(w):
        g = _grad(graph, leaves, switched=switched, switch=w)
        return jnp.concatenate([jnp.ravel(l).astype(jnp.float64) for l in g])

    return np.asarray(jax.vmap(flat_grad)(jnp.eye(len(cands), dtype=dtype)), np.float64)
