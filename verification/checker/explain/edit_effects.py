"""Every single-rule change at once, by linearity: the change it makes to the gradient is a pullback.

An edit of one equation's derivative rule changes only the cotangents that equation sends to its
inputs: the cotangent ``g`` of its output is untouched (everything downstream is unchanged).  If the
cotangent it sends to input ``u`` changes by ``delta``, the parameter gradient changes by exactly

.. math::  \\Delta = \\Big(\\frac{\\partial u}{\\partial \\theta}\\Big)^{\\!\\top} \\delta,

the pullback of ``delta`` from ``u`` to the parameters.  So one vmapped reverse pass of the forward
program gives the effect of every single-equation edit and every edge scaling, however many there are,
in a program whose size does not grow with their number (:func:`pullbacks`).  Edits at several
equations (every instance of a loop body, two sites) chain, and are evaluated exactly instead, all the
candidates of one kind in one compiled program (:func:`exact_gradients`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from verification.checker.jaxpr import graph as jg
from verification.checker.jaxpr import interpreter
from verification.checker.explain.edits import Changes, evaluate, evaluate_outputs

SHIFT_OPS = ("reduce_max", "reduce_min", "argmax", "argmin", "stop_gradient")
ZERO_COTANGENT_RTOL = 1e-9  # a shift's cotangent below this (relative to the largest) is zero up to rounding
BATCH = 256  # pullbacks per vmapped call
JIT_MAX_EQNS = 1000  # programs up to this many equations are compiled whole (else run op by op, cached per op)
EXACT_BATCH_ENTRIES = 2**22  # rows x the program's values in one batched exact pass (32 MiB of float64); a
# program with more than half of it is evaluated one change at a time, eagerly (the 24-layer 1.6M-parameter
# diagnosis: 2.67 GiB batched, against its 2.5 GiB budget)


@dataclasses.dataclass
class Point:
    """The traced loss at the checked point: every value, every true cotangent, the frozen shifts."""

    values: Dict[Any, Any]
    cotangents: Dict[Any, Any]
    frozen: frozenset


def at_point(graph: jg.Graph, leaves) -> Point:
    """Forward values and true cotangents of every equation's outputs (one reverse pass with zero probes)."""
    outs = [v for e in graph.eqns for v in e.outvars if jg.is_float(v)]
    probes = [jnp.zeros(v.aval.shape, v.aval.dtype) for v in outs]

    def f(pr):
        return evaluate_outputs(graph, leaves, outs, Changes(probes=dict(zip(outs, pr))))

    (loss, vals), vjp = jax.vjp(f, probes)
    cots = dict(zip(outs, vjp((jnp.ones_like(loss), [jnp.zeros_like(v) for v in vals]))[0]))
    values = dict(zip(graph.closed.jaxpr.invars, leaves))
    values.update(zip(graph.closed.jaxpr.constvars, graph.closed.consts))
    values.update((v, jax.lax.stop_gradient(x)) for v, x in zip(outs, vals))
    for e in graph.eqns:  # integer and boolean outputs (masks, indices) too
        for v in e.outvars:
            if v not in values:
                values[v] = None
    _fill_non_float(graph, values)
    scale = max([float(jnp.max(jnp.abs(c))) for c in cots.values() if c.size] or [0.0])
    frozen = frozenset(v for i, e in enumerate(graph.eqns) if jg.op_name(e) in SHIFT_OPS
                       for v in e.outvars if v in cots and float(jnp.max(jnp.abs(cots[v]), initial=0.0))
                       <= ZERO_COTANGENT_RTOL * scale)
    return Point(values, cots, frozen)


def _fill_non_float(graph, values):
    """The values ``values`` lacks (integer and boolean outputs), computed; the others kept."""

    def missing(i, eqn, invals, env):
        known = [env.get(v) for v in eqn.outvars]
        return known if all(x is not None for x in known) else [
            x if x is not None else o for x, o in zip(known, interpreter.bind(eqn, invals))]

    jaxpr = graph.closed.jaxpr
    interpreter.run(jaxpr, [values[v] for v in jaxpr.invars], missing, env=values)


def local_cotangents(eqn, invals, g, edit=None):
    """The cotangents equation ``eqn`` sends to its floating inputs for output cotangents ``g`` (a list),
    by its true rule or, with ``edit``, the edited one.  ``None`` for non-floating inputs."""
    pos = [j for j, v in enumerate(eqn.invars) if jg.is_float(v)]

    def f(*xs):
        ins = list(invals)
        for j, x in zip(pos, xs):
            ins[j] = x
        outs = interpreter.bind(eqn, ins)
        if edit is not None:
            outs = edit(eqn, ins, outs, None)
        return outs

    outs, vjp = jax.vjp(f, *[invals[j] for j in pos])
    gs = [gg if gg is not None else jnp.zeros_like(o) for gg, o in zip(g, outs)]
    back = vjp([jnp.asarray(gg, o.dtype).reshape(o.shape) for gg, o in zip(gs, outs)])
    res = [None] * len(eqn.invars)
    for j, b in zip(pos, back):
        res[j] = b
    return res


class Pullback:
    """The pullback of the traced loss at ``point``: cotangent changes at the variables ``seeds`` ->
    the change of the flattened parameter gradient (only the leaves ``keep``, indices) and of the cotangent
    arriving at each variable of ``probes`` (a seed's own change included).  Compiled once, on first use, for
    ``rows`` changes at a time (programs up to :data:`JIT_MAX_EQNS` equations; longer ones run op by op):
    one program for every search of an explanation and every round of its exact evaluations
    (:mod:`verification.checker.explain.chained_effects`).  Shifts in ``point.frozen`` pass nothing."""

    def __init__(self, graph: jg.Graph, leaves, point: Point, seeds, probes=(), keep=None, rows: int = BATCH):
        self.seeds = sorted(set(seeds), key=lambda v: _order(graph, v))
        self.probes = list(probes)
        self.keep = list(range(len(leaves))) if keep is None else list(keep)
        self.rows, self.leaves = rows, list(leaves)
        self.width = sum(int(np.size(leaves[k])) for k in self.keep)
        self._dtype = jnp.result_type(*leaves)
        self._whole = len(graph.eqns) <= JIT_MAX_EQNS  # one compile beats a compile per new op
        self._compiled = None
        seeds_, keep_, probes_ = self.seeds, self.keep, self.probes
        self._seed_at = np.cumsum([0] + [int(np.prod(v.aval.shape)) for v in seeds_])
        self._probe_at = np.cumsum([0] + [int(np.prod(v.aval.shape)) for v in probes_])

        def split(flat, at, variables):  # one flat array (one transfer, not one per variable): its values
            return [flat[at[k]:at[k + 1]].reshape(v.aval.shape).astype(v.aval.dtype) for k, v in enumerate(variables)]

        def forward(ls, pr):
            ch = Changes(frozen=point.frozen, probes=dict(zip(probes_, pr)) or None)
            return evaluate_outputs(graph, ls, seeds_, ch)[1]

        def one(ls, pr, cot):
            _, vjp = jax.vjp(forward, ls, pr)
            g, gp = vjp(split(cot, self._seed_at, seeds_))
            return (jnp.concatenate([jnp.ravel(g[k]).astype(jnp.float64) for k in keep_] or [jnp.zeros(0)]), gp)

        self._run = jax.vmap(one, in_axes=(None, None, 0))  # the leaves are arguments, never folded constants
        self._zeros = None

    def __call__(self, deltas: Sequence[Dict[Any, Any]], probes: bool = True):
        """For each ``{var: delta}`` (a var not among the seeds carries nothing to the params): the rows
        ``(len(deltas), width)`` of the gradient's change and ``[(len(deltas),) + shape]`` of the probes'
        (``probes=False``: ``[]``)."""
        n = len(deltas)
        grads, at_probes = [], []
        seed = {v: k for k, v in enumerate(self.seeds)}
        if self._zeros is None:
            self._zeros = jax.device_put([np.zeros(v.aval.shape, v.aval.dtype) for v in self.probes])
        for lo in range(0, n, self.rows):
            chunk = deltas[lo:lo + self.rows]
            rows = self.rows if (self._whole or n > self.rows) else interpreter.bucket(len(chunk))
            cot = np.zeros((rows, int(self._seed_at[-1])), self._dtype)  # filled in numpy
            for r, d in enumerate(chunk):
                for v, x in d.items():
                    if v in seed:
                        k = seed[v]
                        cot[r, self._seed_at[k]:self._seed_at[k + 1]] = np.ravel(np.asarray(x))
            args = (self.leaves, self._zeros, jax.device_put(cot))
            run = self._run
            if self._whole:
                if self._compiled is None:
                    self._compiled = interpreter.compile_once(self._run, *args)
                run = self._compiled
            g, gp = run(*args)
            grads.append(np.asarray(g, np.float64)[:len(chunk)])
            if probes:
                at_probes.append(np.concatenate([np.asarray(x).reshape(rows, -1) for x in gp], axis=1)[:len(chunk)])
        if not grads:
            return np.zeros((0, self.width)), [np.zeros((0,) + tuple(v.aval.shape)) for v in self.probes]
        if not probes:
            return np.concatenate(grads), []
        flat, at = np.concatenate(at_probes), self._probe_at
        return np.concatenate(grads), [flat[:, at[k]:at[k + 1]].reshape((n,) + tuple(v.aval.shape))
                                       for k, v in enumerate(self.probes)]


def leaves_of(leaves, cols) -> list:
    """The leaves whose entries the flat columns ``cols`` include, each whole (``None``: every leaf)."""
    sizes = np.cumsum([0] + [int(np.size(l)) for l in leaves])
    return list(range(len(leaves))) if cols is None else [k for k in range(len(leaves))
                                                          if sizes[k + 1] > sizes[k] and np.isin(sizes[k], cols)]


def pullbacks(graph: jg.Graph, leaves, point: Point, deltas: Sequence[Dict[Any, Any]], cols=None) -> np.ndarray:
    """``(len(deltas), n_params)``: for each ``{var: delta}``, the change of the flattened parameter
    gradient when ``var``'s cotangent changes by ``delta`` (:class:`Pullback`, compiled for this call).  With
    ``cols`` (flat entries that are whole leaves), only those columns: the other leaves are never formed."""
    rows = BATCH if len(deltas) > BATCH else interpreter.bucket(max(len(deltas), 1))  # shapes that repeat
    return Pullback(graph, leaves, point, {v for d in deltas for v in d}, keep=leaves_of(leaves, cols),
                    rows=rows)(deltas, probes=False)[0]


def _order(graph, v):
    p = graph.producer.get(v)
    return -1 if p is None else p


def exact_gradient(graph: jg.Graph, leaves, point: Point, *, edits=None, scales=None) -> np.ndarray:
    """The flattened gradient with ``edits`` (equation -> edit) and ``scales`` (edge -> a) all applied."""
    sc = None if not scales else {e: jnp.asarray(a, jnp.result_type(*leaves)) for e, a in scales.items()}
    frozen = point.frozen if point is not None else ()
    g = jax.grad(lambda ls: evaluate(graph, ls, Changes(edits=edits, scales=sc, frozen=frozen)))(list(leaves))
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in g])


def exact_rows(point: Optional[Point], leaves) -> int:
    """How many changes :func:`exact_gradients` evaluates in one batched pass (under 2: one at a time, each
    change a pass of its own): :data:`EXACT_BATCH_ENTRIES` over the program's values."""
    values = sum(int(np.size(v)) for v in (point.values.values() if point is not None else leaves) if v is not None)
    return EXACT_BATCH_ENTRIES // max(values, 1)


def exact_gradients(graph: jg.Graph, leaves, point: Optional[Point], changes: Sequence[tuple]) -> np.ndarray:
    r"""``(len(changes), n_params)``: for each ``(edits, scales)`` pair, :func:`exact_gradient` with them
    applied, all in one compiled program vmapped over a one-hot switch :math:`w`: every edit of change
    :math:`k` is weighted by :math:`w_k` and every scaled edge's constant is :math:`\sum_k w_k a_k`, so that
    row :math:`k` runs exactly its own changes (a mutant's check: 30 eager passes 5.9 s; batched, 8.8 s
    eager and 1.9 s compiled).  A row that comes back not finite (another change's infinite derivative
    times its weight 0) is evaluated alone.  ``point=None``: no shift is frozen."""
    n = len(changes)
    if not n:
        return np.zeros((0, sum(int(np.size(l)) for l in leaves)))
    dtype = jnp.result_type(*leaves)
    switched, edges = {}, sorted({e for _, sc in changes for e in (sc or {})})
    for k, (edits, _) in enumerate(changes):
        for i, edit in (edits or {}).items():
            switched.setdefault(i, []).append((k, edit))
    col = {e: c for c, e in enumerate(edges)}
    A = np.ones((n, len(edges)), dtype)  # row k's constant on each scaled edge (1: not scaled by change k)
    for k, (_, sc) in enumerate(changes):
        for e, a in (sc or {}).items():
            A[k, col[e]] = a
    frozen = point.frozen if point is not None else ()

    def flat_grad(ls, A, w):
        a = w @ A
        ch = Changes(switched=switched or None, switch=w, scales={e: a[c] for e, c in col.items()} or None,
                     frozen=frozen)
        g = jax.grad(lambda ls: evaluate(graph, ls, ch))(ls)
        return [jnp.concatenate([jnp.ravel(l).astype(jnp.float64) for l in g])]

    rows = exact_rows(point, leaves)
    if rows < 2:  # a large program: one change at a time
        return np.stack([exact_gradient(graph, leaves, point, edits=e, scales=sc) for e, sc in changes])
    out = interpreter.vmapped(flat_grad, [np.eye(n, dtype=dtype)], [list(leaves), jax.device_put(A)], compiled=True,
                              rows=rows)[0].astype(np.float64)
    for k in np.flatnonzero(~np.all(np.isfinite(out), axis=1)):
        edits, scales = changes[k]
        out[k] = exact_gradient(graph, leaves, point, edits=edits, scales=scales)
    return out
