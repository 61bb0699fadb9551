"""Where the error most likely enters, when no hypothesis fits.

:func:`consistent_sites` keeps the equations where one change could enter (an input that depends on
every failing leaf and no agreeing one); :func:`rank_lines` orders their source lines by how much of the
error ``D = M - G`` a change there alone explains.
"""
from __future__ import annotations

from typing import Dict, List

import jax.extend.core as jcore
import numpy as np

from verification.checker.jaxpr import graph as jg
from verification.checker.explain.search_state import Search

LEAF_FAILS_RTOL = 1e-8  # a leaf whose share of ||M - G|| is below this agrees (rounding)
RANK_DIGITS = 6  # ranking scores equal to this many digits tie


def failing_leaves(leaves, D) -> frozenset:
    """Indices of the leaves whose share of ``D = M - G`` is above rounding (:data:`LEAF_FAILS_RTOL`)."""
    sizes = np.cumsum([0] + [int(np.size(l)) for l in leaves])
    norms = np.array([np.linalg.norm(D[a:b]) for a, b in zip(sizes[:-1], sizes[1:])])
    return frozenset(np.flatnonzero(norms > LEAF_FAILS_RTOL * np.linalg.norm(D)).tolist())


def failing_columns(leaves, D) -> np.ndarray:
    """The flat entries of the failing leaves (:func:`failing_leaves`), in order."""
    sizes = np.cumsum([0] + [int(np.size(l)) for l in leaves])
    return np.concatenate([np.arange(sizes[k], sizes[k + 1]) for k in sorted(failing_leaves(leaves, D))]
                          or [np.zeros(0, int)])


def consistent_sites(graph, leaves, D) -> set:
    """The equations where one change can enter: one of its inputs depends on every failing leaf and on no
    agreeing one (a change there reaches the failing leaves and leaves the agreeing ones alone).  This holds
    in any graph, not only a chain; empty when no equation qualifies (two sites, or changes that cancel).
    A loop kept whole (a long ``scan``) holds many sites, each reached by its own inputs: it is consistent
    when one of its inputs depends on a failing leaf."""
    failing = failing_leaves(leaves, D)
    deps = {v: frozenset([k]) for k, v in enumerate(graph.closed.jaxpr.invars)}
    out = set()
    for i, e in enumerate(graph.eqns):
        ins = [deps.get(v, frozenset()) for v in e.invars if isinstance(v, jcore.Var)]
        if any(s == failing for s in ins) or (e.primitive.name == "scan" and any(s & failing for s in ins)):
            out.add(i)
        for o in e.outvars:
            deps[o] = frozenset().union(*ins)
    return out


def rank_lines(s: Search, top: int = 3, sites=None) -> List[str]:
    """The source lines (``op at file:line``) ordered by how much of the error a change at that line alone
    explains: an edge scaled by its best constant, or a rule edit by its best factor.  Only equations in
    ``sites`` (:func:`consistent_sites`, when not empty) are ranked; ties go to the equation the backward
    pass reaches first."""
    graph, D = s.graph, s.fit.D
    score: Dict[str, tuple] = {}
    nD = float(np.linalg.norm(D))
    name: Dict[str, str] = {}

    def offer(i, v):
        n = float(v @ v)
        if n == 0 or (sites and i not in sites):
            return
        res = (round(float(np.linalg.norm(D - v * (D @ v) / n) / nD), RANK_DIGITS), -i)
        line = graph.user_line(i) or graph.describe(i)
        if res < score.get(line, (np.inf, 0)):
            score[line], name[line] = res, graph.describe(i)

    for c, k in enumerate(s.allowed):
        i = graph.edges[k][0]
        if jg.op_name(graph.eqns[i]) not in jg.PLUMBING:
            offer(i, s.edge_effects[:, c])
    for c, d in zip(s.singles, s.edit_effects):
        offer(c.eqn, d)
    return [name[l] for l in sorted(score, key=score.get)[:top]]
