"""The first-order effects of one explanation's changes, made once and shared by its searches.

:func:`verification.checker.explain.hypotheses.explain` searches the sites consistent with the comparison
first and, when nothing fits there, every equation.  The second search's candidates, cotangent changes and
effects include the first's: here each is made once, by equation and by change, and read by both (a gated
recurrence's failing check: 1884 local cotangents and 943 pullbacks made twice before).

A change's *cotangent change* is what it does to the cotangents of its equation's inputs: scaling edge
``(i, j)`` by ``a`` changes the cotangent equation ``i`` sends input ``j`` by ``(a - 1)`` times the true one;
an edit of ``i``'s rule by its local cotangents' difference.  Its *first-order effect* is that change pulled
back to the flattened parameter gradient (:func:`verification.checker.explain.edit_effects.pullbacks`).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import jax.extend.core as jcore
import numpy as np

from verification.checker.explain import derivative_edits
from verification.checker.explain import edit_effects as le
from verification.checker.explain import loop_bodies
from verification.checker.jaxpr import interpreter


class Effects:
    """One explanation's changes and their first-order effects on the gradient of ``graph`` at ``point``.

    ``all_columns``: every effect is kept on every entry of the gradient (a later search judges all of them);
    otherwise each on the entries its search asked for."""

    def __init__(self, graph, leaves, point: le.Point, all_columns: bool):
        self.graph, self.leaves, self.point, self.all_columns = graph, leaves, point, all_columns
        self._live = {graph.eqns[i].invars[j] for i, j in graph.edges}
        self._by_eqn: Dict[int, list] = {}  # equation -> its single-equation candidates
        self._scans: Dict[int, list] = {}  # scan equation -> its loop-wide candidates
        self._loop_saved: Optional[list] = None
        self._true: Dict[int, list] = {}  # equation -> its true local cotangents
        self._rows: Dict[tuple, np.ndarray] = {}  # change key -> its first-order effect

    def candidates(self, sites=None) -> List[derivative_edits.Candidate]:
        """:func:`verification.checker.explain.derivative_edits.candidates` then
        :func:`verification.checker.explain.loop_bodies.candidates` at ``sites`` (``None``: every equation),
        the same objects in every search."""
        graph, values = self.graph, self.point.values
        idx = range(len(graph.eqns)) if sites is None else sorted(sites)
        for i in idx:
            if i not in self._by_eqn:
                self._by_eqn[i] = list(derivative_edits.at_equation(graph, values, i, self._live))
        if self._loop_saved is None:
            self._loop_saved = derivative_edits.loop_saved(graph, values)
        out = [c for i in idx for c in self._by_eqn[i]]
        loop = [c for c in self._loop_saved if sites is None or set(c.edits) <= sites]
        scans = [i for i in idx if graph.eqns[i].primitive.name == "scan" and i in graph.live]
        for i in scans:
            if i not in self._scans:
                self._scans[i] = loop_bodies.candidates(graph, self.point, {i})
        return out + derivative_edits.shared(graph, out) + loop + [c for i in scans for c in self._scans[i]]

    def effects(self, allowed: Sequence[int], members: Sequence[tuple], cols=None):
        """The first-order effects on the entries ``cols`` (``None``: all), in one batch of pullbacks:
        ``(len(allowed), n)`` of scaling each edge (an index into ``graph.edges``) by ``a``, per unit ``a - 1``,
        and ``(len(members), n)`` of each ``(equation, edit)``."""
        keys = [("edge", k) for k in allowed] + [("edit", i, e) for i, e in members]
        todo = list({self._key(k): k for k in keys if self._key(k) not in self._rows}.values())
        if todo:
            rows = le.pullbacks(self.graph, self.leaves, self.point, [self._delta(k) for k in todo],
                                cols=None if self.all_columns else cols)
            self._rows.update(zip(map(self._key, todo), rows))
        n = sum(int(np.size(l)) for l in self.leaves) if self.all_columns or cols is None else len(cols)
        out = np.stack([self._rows[self._key(k)] for k in keys]) if keys else np.zeros((0, n))
        out = out[:, cols] if self.all_columns and cols is not None else out
        return out[:len(allowed)], out[len(allowed):]

    @staticmethod
    def _key(k):
        return k if k[0] == "edge" else ("edit", k[1], id(k[2]))

    def _delta(self, k) -> dict:
        """The cotangent change of change ``k``: ``{input var: change}``."""
        graph, point = self.graph, self.point
        if k[0] == "edge":
            i, j = graph.edges[k[1]]
            return {graph.eqns[i].invars[j]: self._local(i)[j]}
        _, i, edit = k
        eqn = graph.eqns[i]
        if edit.input_deltas is not None:  # a loop body's change: computed with its loop's others, in one pass
            return edit.input_deltas()
        if edit.delta is not None and len(eqn.outvars) == 1 and eqn.outvars[0] in point.cotangents:
            g = point.cotangents[eqn.outvars[0]]
            return {eqn.invars[j]: d for j, d in edit.delta(eqn, [self._read(v) for v in eqn.invars], g).items()
                    if isinstance(eqn.invars[j], jcore.Var)}
        d = {}
        for v, t, n in zip(eqn.invars, self._local(i), self._local(i, edit)):
            if t is not None and isinstance(v, jcore.Var):
                d[v] = d.get(v, 0) + (n - t)
        return d

    def _local(self, i, edit=None):
        """Equation ``i``'s local cotangents (with ``edit``'s rule; the true ones cached)."""
        if edit is None and i in self._true:
            return self._true[i]
        e = self.graph.eqns[i]
        out = le.local_cotangents(e, [self._read(v) for v in e.invars],
                                  [self.point.cotangents.get(v) for v in e.outvars], edit)
        if edit is None:
            self._true[i] = out
        return out

    def _read(self, v):
        return interpreter.read(self.point.values, v)
