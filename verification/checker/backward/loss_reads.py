"""A hand gradient that is right for the loss the user meant: the *loss* reads one value where another belongs.

The check compares the hand gradient with ``jax.grad`` of the loss, so a slip in the loss itself (an
argument repeated, ``head.loss(y, y)`` where ``head.loss(z, y)`` belongs; the row weights read where the
per-row losses belong) shows as a wrong first value at the top of a right backward: the hand delta is the
cotangent that the intended loss gives (never zero: a hand delta of zero is the hand's own slip, which a
loss that ignores the value would fit).  :func:`reading` tries the loss with one variable read in another's
place at the equations after the forward value the hand value belongs to, a value that the loss never
reads on its way to the result: one it computes from the parameters along a floating path (``per_row`` in
``sum(w * w)``, ``z`` in ``loss(y, y)``), or one it is handed (the targets in ``loss(z, z)``).  A value the
loss does read (the unhalved square under a ``0.5 *``) would make every dropped factor of the hand code a
slip of the loss, and a value that reaches the parameters only through an integer (an unreturned accuracy's
``argmax``) or a flat op would make every dropped term one: neither is tried; nor is a scalar.  A change
whose gradient there equals the hand value and whose gradient equals every hand leaf names the loss's line.
Reads of one variable are changed in every subset, up to ``MAX_SLOTS`` reads (``head.loss(y, y)`` reads
``y`` as both arguments: only the reads in the first argument's role change).  The line is the reading
line; a call site that passes one name for two parameters (:func:`handoffs.passed_in`,
``head.loss(y, y)``) comes before it, and other call sites after it.

>>> list(_subsets([1, 2]))
[(1,), (2,), (1, 2)]
"""
from __future__ import annotations

import itertools
from typing import List, NamedTuple, Optional, Sequence

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from verification.checker.backward import handoffs
from verification.checker.backward.source_code import code_at
from verification.checker.backward.why import close
from verification.checker.explain.edit_effects import pullbacks
from verification.checker.jaxpr import graph as jg
from verification.checker.jaxpr import interpreter

__all__ = ["LossRead", "reading"]

MAX_CANDIDATE_POINTS = 12  # forward values of the hand value's shape tried as the one it is the cotangent of
MAX_POINTS = 3  # of those, the ones whose cotangent error explains the whole error
MAX_SLOTS = 6  # reads of one variable changed in every subset (more: one at a time)
# ops whose value is flat in their input (a library's internals leave such values unread: logsumexp's sign of its
# max): read in a value's place they only drop a term, the hand code's own commonest slip
FLAT_OPS = ("sign", "floor", "ceil", "round", "stop_gradient")
MAX_TRIES = 240  # changed losses differentiated in all (a failing check only)


class LossRead(NamedTuple):
    """The loss with ``wanted`` read at ``lines`` where it reads ``read``: its gradient is the hand gradient."""

    lines: List[str]  # "file:line code", the likeliest first
    sentence: str


def _subsets(slots):
    if len(slots) > MAX_SLOTS:
        yield from ((s,) for s in slots)
        return
    for n in range(1, len(slots) + 1):
        yield from itertools.combinations(slots, n)


def _loss(graph, eqn_ids: Sequence[int], r, changed: dict):
    """The loss as a function of the environment with ``r`` set: equations ``eqn_ids`` re-run where they read
    a value that moved (``r``, or one computed from it) or a read ``changed`` ``{(eqn, position): variable}``
    (that variable read instead); the others keep their values."""
    eqns, at = graph.eqns, {i for i, _ in changed}

    def f(env):
        moved = {r}
        for i in eqn_ids:
            e = eqns[i]
            if i not in at and not any(isinstance(a, jcore.Var) and a in moved for a in e.invars):
                continue
            invals = [env[changed[i, j]] if (i, j) in changed else interpreter.read(env, a)
                      for j, a in enumerate(e.invars)]
            env.update(zip(e.outvars, interpreter.bind(e, invals)))
            moved.update(e.outvars)
        return interpreter.read(env, graph.closed.jaxpr.outvars[0])
    return f


def _feeding(graph, outs, start: int) -> set:
    """The equations from ``start`` on whose values reach ``outs``."""
    need, found = {v for v in outs if isinstance(v, jcore.Var)}, set()
    for i in range(len(graph.eqns) - 1, start - 1, -1):
        e = graph.eqns[i]
        if any(v in need for v in e.outvars):
            found.add(i)
            need.update(u for u in e.invars if isinstance(u, jcore.Var))
    return found


def _fitted(hand: np.ndarray, shape) -> Optional[np.ndarray]:
    if hand.size != int(np.prod(shape)):
        return None
    if hand.ndim == 2 and tuple(shape) == hand.shape[::-1] and hand.shape[0] != hand.shape[1]:
        return hand.T
    return np.reshape(hand, shape)


def reading(graph, point, hands: Sequence[np.ndarray], hand_leaves: Sequence[np.ndarray], true_leaves: Sequence,
            leaves: Sequence, rtol: float) -> Optional[LossRead]:
    """The change of one read of the loss (``graph`` at ``point``, a function of ``leaves``, whose gradient is
    ``true_leaves``) whose gradient equals one of the hand values ``hands`` (at a forward value of its shape)
    and every hand leaf, or ``None``."""
    eqns, jaxpr = graph.eqns, graph.closed.jaxpr
    if (len(jaxpr.outvars) != 1 or not len(hand_leaves) == len(true_leaves) == len(jaxpr.invars)
            or any(np.shape(h) != np.shape(t) for h, t in zip(hand_leaves, true_leaves)) or not _ignored(graph)):
        return None
    error = np.concatenate([np.ravel(np.asarray(h, np.float64) - np.asarray(t, np.float64))
                            for h, t in zip(hand_leaves, true_leaves)])
    tried = []
    for hand in hands:
        if np.any(hand):  # (a hand delta of zero is the hand's own slip: a loss that ignores the value fits it)
            tried += [(i, v, _fitted(hand, v.aval.shape)) for i in sorted(graph.live, reverse=True)
                      for v in eqns[i].outvars if jg.is_float(v) and _fitted(hand, v.aval.shape) is not None
                      ][:MAX_CANDIDATE_POINTS]
    if not tried:
        return None
    moved = pullbacks(graph, leaves, point, [{v: t - np.asarray(point.cotangents[v])} for _, v, t in tried])
    points = list({v: (i, v, t) for (i, v, t), m in zip(tried[::-1], moved[::-1]) if close(m, error, rtol)}.values())
    tries = 0
    for at, r, target in sorted(points, key=lambda p: p[0])[:MAX_POINTS]:  # the most upstream first: below it, the
        # hand is right (a value the loss computes from it, only in a dead branch, may be matched by chance)
        made, after = {r: at}, {r: None}  # (a dict: its order is the program's)
        reads: dict = {}
        loss = _feeding(graph, jaxpr.outvars, at + 1)  # a read changed off the loss's paths changes nothing
        read = {}  # every value read after r (one read only off the loss's paths may be the one that belongs)
        for i in range(at + 1, len(eqns)):
            e = eqns[i]
            for j, u in enumerate(e.invars):
                if isinstance(u, jcore.Var) and jg.is_float(u):
                    read[u] = None
                    if i in loss:
                        reads.setdefault(u, []).append((i, j))
            if any(isinstance(u, jcore.Var) and u in after for u in e.invars):
                after.update(dict.fromkeys(e.outvars))
                made.update((v, i) for v in e.outvars)
        env0 = dict(point.values)
        handed = [v for v in list(jaxpr.constvars) + list(jaxpr.invars) if jg.is_float(v)]  # read nowhere, perhaps
        made.update((u, graph.producer.get(u, -1)) for u in list(read) + handed if u not in after)
        # a read of one value changed to another that the loss never reads (``z`` in ``loss(y, y)``, ``per_row`` in
        # ``sum(w * w)``): one of them r or computed from it along a floating path; values handed in (r, an input,
        # the row weights) before the loss's own intermediates (a slip is made where a value is passed)
        inner = {v for v in after if v is not r}
        unread = [v for v in dict.fromkeys(list(read) + handed + list(after)) if v not in reads
                  and (v is r or v not in after or graph.producer[v] in graph.live) and v.aval.size > 1  # (a scalar:
                  # a logged unhalved loss read for the returned one would make a dropped ½ of the hand a loss slip)
                  and not (v in graph.producer and jg.op_name(eqns[graph.producer[v]]) in FLAT_OPS)]
        pairs = sorted(((u, v) for u in reads for v in unread if (v in after or u in after)
                        and v.aval.shape == u.aval.shape and v.aval.dtype == u.aval.dtype),
                       key=lambda uv: ((uv[0] in inner) + (uv[1] in inner), made[uv[0]], made[uv[1]]))
        for u, v in pairs:
            for subset in _subsets([s for s in reads[u] if made[v] < s[0]]):
                tries += 1
                if tries > MAX_TRIES:
                    return None
                changed = {s: v for s in subset}
                f = _loss(graph, sorted(loss | _feeding(graph, [v], at + 1)), r, changed)
                g = jax.grad(lambda x: f({**env0, r: x}))(jnp.asarray(point.values[r]))
                if close(np.asarray(g), target, rtol) and _confirmed(graph, leaves, changed, hand_leaves, rtol):
                    return _said(graph, subset, u, v)
    return None


def _ignored(graph) -> bool:
    """The loss computes or is handed a floating value that it never reads on its way to the result."""
    on = _feeding(graph, graph.closed.jaxpr.outvars, 0)
    read = {u for i in on for u in graph.eqns[i].invars if isinstance(u, jcore.Var)}
    made = [v for i, e in enumerate(graph.eqns) for v in e.outvars]
    jaxpr = graph.closed.jaxpr
    return any(jg.is_float(v) and v not in read and v not in jaxpr.outvars
               for v in made + list(jaxpr.invars) + list(jaxpr.constvars))


def _gradient(graph, leaves, changed: dict):
    """The gradient of the loss with the reads ``changed`` with respect to every leaf (a run that changes
    values, not an edit of a rule: :mod:`verification.checker.explain.edits` keeps every value)."""
    def on_eqn(i, e, invals, env):
        invals = [env[changed[i, j]] if (i, j) in changed else x for j, x in enumerate(invals)]
        return interpreter.bind(e, invals)

    def loss(*ls):
        return interpreter.outputs(graph.closed, interpreter.run(graph.closed, list(ls), on_eqn))[0]

    return jax.grad(loss, argnums=tuple(range(len(leaves))))(*[jnp.asarray(x) for x in leaves])


def _confirmed(graph, leaves, changed: dict, hand_leaves, rtol: float) -> bool:
    """The changed loss's gradient equals the hand leaves."""
    flat = lambda xs: np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in xs])  # noqa: E731
    return close(flat(hand_leaves), flat(_gradient(graph, leaves, changed)), rtol)


def _said(graph, subset, u, v) -> LossRead:
    duplicated, own, other = [], [], []  # a call passing one name twice; the reading lines; other call sites
    for i, _ in subset:
        own.append(graph.user_line(i))
        for site, twice in handoffs.passed_in(graph.eqns[i]):
            (duplicated if twice else other).append(site)
    lines = [f"{s} {code_at(s)}".rstrip() for s in dict.fromkeys(duplicated + own + other) if s]
    where = lambda w: graph.describe(graph.producer[w]) if w in graph.producer else "an input"  # noqa: E731
    reads = ", ".join(dict.fromkeys(graph.describe(i) for i, _ in subset))
    sentence = (f"the hand gradient is exactly the gradient of the loss with the value of {where(v)} read where "
                f"{reads} read{'s' if len(subset) == 1 else ''} the value of {where(u)}: the loss reads the wrong "
                "value there (a repeated or swapped argument); if that loss is the one you meant, the hand "
                "gradient differentiates another function")
    return LossRead(lines, sentence)
