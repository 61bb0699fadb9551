"""Long loops kept whole: a change of a ``lax.scan`` body's rule, made at every iteration, as one edit.

A long scan is not unrolled (:func:`verification.checker.jaxpr.graph.trace`): it stays one equation of
the traced loss, so the checker's cost does not grow with the number of iterations.  A hand-derived
backward pass through a loop errs the same way at every step (it is one piece of code), so each
candidate change of the body is made at every iteration at once, by re-running the scan with the edited
body:

* every single-equation rule edit of :func:`verification.checker.explain.derivative_edits.body_changes` (a saved
  operand is another variable of the body, read at each iteration);
* every edge of the body scaled by a canonical constant (``scale_causes.CANONICAL_SCALES``: a dropped
  path, a flipped sign, a factor 2; a fitted constant would chain through the iterations).

Each is an edit of one equation of the outer program, the scan, so its effect on the gradient is
*exactly* the pullback of the change it makes to the cotangents the scan sends its inputs
(:mod:`verification.checker.explain.edit_effects`): no first-order screening, however the change chains
through the iterations.  Those changes, for every candidate of one scan, come from one compiled program
that loops over the candidates, each run with its own edit alone (an integer ``switch`` of
:func:`verification.checker.jaxpr.graph.evaluate`): the cost is linear in their number.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from verification.checker.base import finite_differences as fd
from verification.checker.jaxpr import inline
from verification.checker.jaxpr import graph as jg
from verification.checker.jaxpr import interpreter
from verification.checker.explain import edits as ed
from verification.checker.explain import derivative_edits
from verification.checker.explain import scale_causes

MAX_BODY_CANDIDATES = 1024  # candidate changes of one scan body


def candidates(graph: jg.Graph, point, sites=None) -> List[derivative_edits.Candidate]:
    """The loop-wide changes of every scan in ``graph`` (at ``sites``, if given) that carries the params."""
    out = []
    for i, eqn in enumerate(graph.eqns):
        if eqn.primitive.name == "scan" and i in graph.live and (sites is None or i in sites):
            out += ScanChanges(graph, point, i).candidates()
    return out


class ScanChanges:
    """One scan equation of the traced loss and every candidate change of its body (and of the loops and
    branches nested in it), all selected by one index ``k`` (:meth:`run`)."""

    def __init__(self, graph, point, i):
        self.graph, self.point, self.i = graph, point, i
        self.eqn = graph.eqns[i]
        self.invals = [interpreter.read(point.values, v) for v in self.eqn.invars]
        self.changes = []  # (cause, text, where): change k runs where the index is k
        self.loop = None
        self._deltas = self._true = None

    def add(self, cause, text, where) -> Optional[int]:
        """Register a change; its index, or ``None`` past :data:`MAX_BODY_CANDIDATES`."""
        if len(self.changes) >= MAX_BODY_CANDIDATES:
            return None
        self.changes.append((cause, text, where))
        return len(self.changes) - 1

    def candidates(self):
        self.loop = _Loop(self, self.eqn, self.invals, "")
        line = self.graph.user_line(self.i)
        loop = f"the loop at {line}" if line else "the loop"  # a scan, a fori_loop, or a while_loop at this point
        return [derivative_edits.Candidate(cause, self.i, {self.i: _scan_edit(self, k)},
                                     f"{text}, at every one of the {self.loop.length} iterations of {loop}", where)
                for k, (cause, text, where) in enumerate(self.changes)]

    def run(self, invals, k):
        """The scan's outputs on ``invals`` with change ``k`` alone made (-1: none)."""
        return self.loop.run(invals, k)

    def true_cotangents(self) -> dict:
        """``{outer input var: the cotangent the scan sends it}`` by its true rule (the row of no change of
        :meth:`deltas`: no eager pullback of the loop of its own)."""
        self.deltas()
        return self._true

    def deltas(self):
        """For each change: ``{outer input var: change of the cotangent the scan sends it}``."""
        if self._deltas is not None:
            return self._deltas
        eqn, point = self.eqn, self.point
        pos = sorted({j for i, j in self.graph.edges if i == self.i})  # the inputs that carry the params
        outs = [k for k, v in enumerate(eqn.outvars) if jg.is_float(v)]
        gs = [point.cotangents.get(eqn.outvars[k]) for k in outs]
        gs = [jnp.zeros(eqn.outvars[k].aval.shape, eqn.outvars[k].aval.dtype) if g is None else g
              for k, g in zip(outs, gs)]

        def local(k, xs):
            def f(*ys):
                ins = list(self.invals)
                for j, y in zip(pos, ys):
                    ins[j] = y
                o = self.run(ins, k)
                return [o[k] for k in outs]

            _, vjp = jax.vjp(f, *xs)
            return vjp(gs)

        entries = sum(int(np.size(self.invals[j])) for j in pos)
        rows = int(max(1, min(len(self.changes) + 1, fd.COPY_BUDGET // max(entries, 1))))
        # One change at a time (lax.map: each row runs its own edit alone), compiled once, the inputs arguments.
        run = lambda ks, xs: jax.lax.map(lambda k: local(k, xs), ks)  # noqa: E731
        ks = np.arange(-1, len(self.changes))  # -1: no change
        got = []
        for lo in range(0, len(ks), rows):
            chunk = np.concatenate([ks[lo:lo + rows], np.full(max(0, lo + rows - len(ks)), -1)])  # one compiled shape
            args = (jax.device_put(chunk), [self.invals[j] for j in pos])
            if not got:
                run = interpreter.compile_once(run, *args)
            got.append([np.asarray(c)[:len(ks) - lo] for c in run(*args)])
        cots = [np.concatenate([g[n] for g in got]) for n in range(len(pos))]
        self._deltas = [{eqn.invars[j]: c[k + 1] - c[0] for j, c in zip(pos, cots)} for k in range(len(self.changes))]
        self._true = {eqn.invars[j]: c[0] for j, c in zip(pos, cots)}
        return self._deltas


class _Scale(NamedTuple):
    """A body edge's scaling: input ``j`` of its equation receives ``a`` times its cotangent."""

    j: int
    a: float


class _Program:
    """A loop body or a branch of a ``cond`` inside one: its graph (``jit``/``checkpoint`` calls inlined),
    its changes (registered with the root :class:`ScanChanges`), and the loops and branches nested in it."""

    def __init__(self, root, closed, names, args, context):
        if inline.needs_inlining(closed.jaxpr):  # the user's helpers' lines are sites too
            closed = inline.inline_calls(closed)
        self.graph = g = jg.graph_of(closed, names)
        self.root, self.switched, self.scaled, self.units = root, {}, {}, {}
        values = derivative_edits.saved_values(g, args)  # this program's values at its first run (shapes, structure)
        changes = [(c.edits, c.cause, c.text, g.describe(c.eqn)) for c in derivative_edits.body_changes(g, values)]
        for b, j in g.edges:
            if jg.op_name(g.eqns[b]) not in jg.PLUMBING:
                changes += [({b: _Scale(j, a)}, *scale_causes.classify(g, b, j, a), g.describe(b))
                            for a in scale_causes.CANONICAL_SCALES]
        self.changes = changes
        for edits, cause, text, where in changes:
            self.switch(root.add(cause, text + context, where), edits)
        for b, e in enumerate(g.eqns):
            if b in g.live and e.primitive.name in ("scan", "cond"):
                ins, line = [interpreter.read(values, v) for v in e.invars], g.user_line(b) or "?"
                self.units[b] = (_Loop(root, e, ins, f" (inside the inner loop at {line}){context}")
                                 if e.primitive.name == "scan" else _Cond(root, e, ins, line, context))

    def switch(self, k, edits):
        """Make change ``k`` (an index of the root's list; ``None``: past its cap) the edits
        ``{equation: edit}`` of this program (an edge's scaling: a :class:`_Scale`)."""
        for b, edit in (edits.items() if k is not None else ()):
            if isinstance(edit, _Scale):
                self.scaled.setdefault((b, edit.j), []).append((k, edit.a))
            else:
                self.switched.setdefault(b, []).append((k, edit))

    def run(self, args, k):
        """This program's outputs on ``args`` with change ``k`` made where it lies in this program.  An edge's
        scalings are one constant read from a table by ``k`` (1 for every other change): one multiplication,
        not a branch per scaling (a 100-step recurrence's 88 changes: 58 of them scalings)."""
        every = [v for e in self.graph.eqns for v in e.outvars]
        _, values = ed.evaluate_outputs(self.graph, args, every)  # for an edit that reads a value saved later
        known = {v: jax.lax.stop_gradient(u) for v, u in zip(every, values)}
        units = {b: ed.Edit(lambda eqn, invals, outs, read, u=u: u.run(invals, k)) for b, u in self.units.items()}
        n = len(self.root.changes)
        scales = {}
        for edge, pairs in self.scaled.items():
            table = np.ones(n + 1)  # entry k + 1: change k's constant (-1: no change)
            for c, a in pairs:
                table[c + 1] = a
            scales[edge] = jnp.asarray(table)[k + 1]
        out = ed.evaluate(self.graph, args, ed.Changes(edits=units or None, scales=scales or None,
                                                       switched=self.switched, switch=k), known=known)
        return out if isinstance(out, list) else [out]


class _Loop:
    """A scan equation (the checked one, or one nested in a body): its body a :class:`_Program`."""

    def __init__(self, root, eqn, invals, context):
        p = eqn.params
        self.eqn = eqn
        self.nc, self.ncar, self.length, self.reverse = p["num_consts"], p["num_carry"], p["length"], p["reverse"]
        n_x = len(eqn.invars) - self.nc - self.ncar
        names = ([f"constant {k}" for k in range(self.nc)] + [f"carry {k} (the previous iteration's)" for k in
                                                               range(self.ncar)] + [f"xs {k} (this iteration's slice)"
                                                                                    for k in range(n_x)])
        x0 = -1 if self.reverse else 0
        first = invals[:self.nc + self.ncar] + [x[x0] for x in invals[self.nc + self.ncar:]]
        self.body = _Program(root, p["jaxpr"], names, first, context)

    def run(self, invals, k):
        return interpreter.scan(self.eqn, invals, lambda args: self.body.run(args, k))


class _Cond:
    """A ``cond`` inside a loop body: each branch a :class:`_Program`, changed wherever it is taken."""

    def __init__(self, root, eqn, invals, line, context):
        branches = eqn.params["branches"]
        names = [f"operand {k}" for k in range(len(eqn.invars) - 1)]
        which = (["the false branch (index 0)", "the true branch (index 1)"] if len(branches) == 2 else
                 [f"branch index {k} of {len(branches)}" for k in range(len(branches))])
        self.branches = [_Program(root, br, names, invals[1:], f" (in {which[k]} of the cond at {line}, wherever it "
                                                                f"is taken){context}")
                         for k, br in enumerate(branches)]
        same = {}  # one change in several branches (a helper they share): made in all of them at once
        for b in self.branches:
            for edits, cause, text, where in b.changes:
                same.setdefault((cause, text), []).append((b, edits, where))
        for (cause, text), members in same.items():
            if len(members) > 1:
                k = root.add(cause, f"{text} (in {len(members)} branches of the cond at {line}){context}",
                             members[0][2])
                for b, edits, _ in members:
                    b.switch(k, edits)

    def run(self, invals, k):
        fns = [lambda *ops, b=b: b.run(list(ops), k) for b in self.branches]
        return list(jax.lax.switch(invals[0], fns, *invals[1:]))


def _scan_edit(scan: ScanChanges, k: int) -> ed.Edit:
    """The edit of the scan equation that makes change ``k`` of its body at every iteration."""
    return ed.Edit(lambda eqn, invals, outs, read: scan.run(invals, jnp.asarray(k)),
                      input_deltas=lambda: scan.deltas()[k])
