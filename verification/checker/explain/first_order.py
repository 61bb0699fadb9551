"""The first-order effects of one explanation's changes, made once and shared by its searches.

:func:`verification.checker.explain.hypotheses.explain` searches the sites consistent with the comparison
first and, when nothing fits there, every equation.  The second search's candidates, cotangent changes and
effects include the first's: here each is made once, by equation and by change, and read by both (a gated
recurrence's failing check: 1884 local cotangents and 943 pullbacks made twice before).

A change's *cotangent change* is what it does to the cotangents of its equation's inputs: scaling edge
``(i, j)`` by ``a`` changes the cotangent equation ``i`` sends input ``j`` by ``(a - 1)`` times the true one;
an edit of ``i``'s rule by its local cotangents' difference.  Its *first-order effect* is that change pulled
back to the flattened parameter gradient (:class:`verification.checker.explain.edit_effects.Pullback`).  In a
loss of :data:`SHARED_PULLBACK_MIN_EQNS` equations or more, one pullback is compiled per explanation and gives
both searches' effects and every round of the exact evaluations (:meth:`Effects.exact`,
:mod:`verification.checker.explain.chained_effects`): a gated recurrence's check compiled one program where it
compiled four.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import jax.extend.core as jcore
import numpy as np

from verification.checker.explain import chained_effects
from verification.checker.explain import derivative_edits
from verification.checker.explain import edit_effects as le
from verification.checker.explain import loop_bodies
from verification.checker.jaxpr import graph as jg
from verification.checker.jaxpr import interpreter

SHARED_PULLBACK_ENTRIES = 2**23  # a batch of the shared pullback's seeds, probes and gradients (64 MiB of float64)
SHARED_PULLBACK_ROWS = 64  # changes per run of it: the exact rounds' batches are small (a gated recurrence's
# rounds, about 30 changes each: 256 rows ran 4x the work), the first-order batch runs in chunks
SHARED_PULLBACK_MIN_EQNS = 80  # below it, a pullback compiled per batch for its own seeds costs less than one for
# every value (softmax regression, 27 equations: 0.02 s against 0.09 s a compile; a gated recurrence, 262: one
# shared compile of 1.0 s against four of 0.6-2.7 s)


class Effects:
    """One explanation's changes and their first-order effects on the gradient of ``graph`` at ``point``.

    ``all_columns``: every effect is kept on every entry of the gradient (a later search judges all of them);
    otherwise each on the entries its search asked for."""

    def __init__(self, graph, leaves, point: le.Point, all_columns: bool, reference=None):
        self.graph, self.leaves, self.point, self.all_columns = graph, leaves, point, all_columns
        self.reference = reference  # the flattened true gradient, all entries (for exact evaluations)
        self._live = {graph.eqns[i].invars[j] for i, j in graph.edges}
        self.pullback = self._shared_pullback() if all_columns else None
        self._by_eqn: Dict[int, list] = {}  # equation -> its single-equation candidates
        self._scans: Dict[int, tuple] = {}  # scan equation -> (its loop_bodies.ScanChanges, their candidates)
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
                scan = loop_bodies.ScanChanges(graph, self.point, i)
                self._scans[i] = (scan, scan.candidates())
        return out + derivative_edits.shared(graph, out) + loop + [c for i in scans for c in self._scans[i][1]]

    def effects(self, allowed: Sequence[int], members: Sequence[tuple], cols=None):
        """The first-order effects on the entries ``cols`` (``None``: all), in one batch of pullbacks:
        ``(len(allowed), n)`` of scaling each edge (an index into ``graph.edges``) by ``a``, per unit ``a - 1``,
        and ``(len(members), n)`` of each ``(equation, edit)``."""
        keys = [("edge", k) for k in allowed] + [("edit", i, e) for i, e in members]
        todo = list({self._key(k): k for k in keys if self._key(k) not in self._rows}.values())
        if todo:
            deltas = [self._delta(k) for k in todo]
            rows = self.pullback(deltas, probes=False)[0] if self.pullback is not None else le.pullbacks(
                self.graph, self.leaves, self.point, deltas, cols=None if self.all_columns else cols)
            self._rows.update(zip(map(self._key, todo), rows))
        n = sum(int(np.size(l)) for l in self.leaves) if self.all_columns or cols is None else len(cols)
        out = np.stack([self._rows[self._key(k)] for k in keys]) if keys else np.zeros((0, n))
        out = out[:, cols] if self.all_columns and cols is not None else out
        return out[:len(allowed)], out[len(allowed):]

    def exact(self, changes: Sequence[tuple]) -> np.ndarray:
        """``(len(changes), n)``: the gradient, all entries, with each ``(edits, scales)`` made, exactly: by
        rounds of the shared pullback (:mod:`verification.checker.explain.chained_effects`) where it is
        compiled, else (and for a change it cannot make) one batched program
        (:func:`verification.checker.explain.edit_effects.exact_gradients`)."""
        out = np.zeros((len(changes), sum(int(np.size(l)) for l in self.leaves)))
        todo = list(range(len(changes)))
        if self.pullback is not None and self.reference is not None and changes:
            rows, todo = chained_effects.corrections(self, changes)
            out[:] = self.reference + rows
        if todo:
            out[todo] = le.exact_gradients(self.graph, self.leaves, self.point, [changes[k] for k in todo])
        return out

    def rule_delta(self, i: int, edit, scales: Dict[int, float], extra=None) -> Optional[dict]:
        """The cotangent change ``{input var: change}`` of equation ``i`` with ``edit`` (or ``None``) and
        its inputs ``j`` scaled by ``scales[j]``, for output cotangents the true ones plus ``extra`` (a list
        per output, ``None`` entries nothing; ``None``: the true ones).  ``None`` where it cannot be made:
        a loop's change for cotangents that are not the true ones, or an edit and a scaling at once."""
        eqn = self.graph.eqns[i]
        if extra is None or all(x is None for x in extra):
            parts = [self._delta(("edit", i, edit))] if edit is not None else []
            t = self._local(i) if scales else None
            parts += [{eqn.invars[j]: (a - 1) * t[j]} for j, a in scales.items() if t[j] is not None]
            return _summed(parts)
        if (edit is not None and scales) or (edit is not None and edit.input_deltas is not None):
            return None
        gs = [None if v in self.point.frozen else _plus(self.point.cotangents.get(v), x)
              for v, x in zip(eqn.outvars, extra)]
        invals = [self._read(v) for v in eqn.invars]
        if edit is not None and edit.delta is not None and len(eqn.outvars) == 1 and gs[0] is not None:
            return {eqn.invars[j]: d for j, d in edit.delta(eqn, invals, gs[0]).items()
                    if isinstance(eqn.invars[j], jcore.Var)}
        true = le.local_cotangents(eqn, invals, gs)
        if edit is None:
            return _summed([{eqn.invars[j]: (a - 1) * true[j]} for j, a in scales.items() if true[j] is not None])
        changed = le.local_cotangents(eqn, invals, gs, edit)
        return _summed([{v: n - t} for v, t, n in zip(eqn.invars, true, changed)
                        if t is not None and isinstance(v, jcore.Var)])

    def _shared_pullback(self) -> Optional[le.Pullback]:
        """One pullback for every search and exact round: seeds at every value that carries the params'
        cotangent, probes at every output of an equation with such an input, for a program of at least
        :data:`SHARED_PULLBACK_MIN_EQNS` equations while a batch of them fits in :data:`SHARED_PULLBACK_ENTRIES`
        (else ``None``: a pullback per batch, for its own seeds)."""
        graph = self.graph
        if len(graph.eqns) < SHARED_PULLBACK_MIN_EQNS:
            return None
        seeds = [v for v in self._live if isinstance(v, jcore.Var) and jg.is_float(v)]
        probes = list({v: None for i in sorted({i for i, _ in graph.edges}) for v in graph.eqns[i].outvars
                       if jg.is_float(v)})
        entries = sum(int(np.prod(v.aval.shape)) for v in seeds + probes) + sum(int(np.size(l)) for l in self.leaves)
        if SHARED_PULLBACK_ROWS * entries > SHARED_PULLBACK_ENTRIES:
            return None
        return le.Pullback(graph, self.leaves, self.point, seeds, probes, rows=SHARED_PULLBACK_ROWS)

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
        if edit is None and i in self._scans and self._scans[i][1]:  # a kept loop: its changes' pass has it
            true = self._scans[i][0].true_cotangents()
            self._true[i] = [true.get(v) if jg.is_float(v) else None for v in e.invars]
            return self._true[i]
        out = le.local_cotangents(e, [self._read(v) for v in e.invars],
                                  [self.point.cotangents.get(v) for v in e.outvars], edit)
        if edit is None:
            self._true[i] = out
        return out

    def _read(self, v):
        return interpreter.read(self.point.values, v)


def _plus(a, b):
    return a if b is None else b if a is None else a + b


def _summed(parts) -> dict:
    out = {}
    for d in parts:
        for v, x in d.items():
            out[v] = _plus(out.get(v), x)
    return out
