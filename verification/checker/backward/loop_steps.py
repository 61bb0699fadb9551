"""The right quantities of every iteration of a loop the loss keeps whole.

A long ``lax.scan`` stays one equation of the traced loss (:func:`verification.checker.jaxpr.graph.trace`),
so the loss's own values and cotangents say nothing of one step.  A hand-written BPTT computes, step by
step, exactly those: the state ``h_t``, its cotangent ``∂L/∂h_t``, the cotangent of the step's
pre-activation.  :func:`per_step` computes them for every variable of the scan's body at once: the body
is re-run (:func:`verification.checker.jaxpr.interpreter.scan`) with a zero probe added to each of its
values at each iteration, and one reverse pass of the loss gives the probes' cotangents, stacked over the
iterations: the true ``∂L/∂v`` of every body value ``v`` at every step.  The values themselves come from
the same run.

The user's code, traced with its loops unrolled, then meets a line's per-step values with these, as a
group of one line's instances (:mod:`verification.checker.backward.first_wrong`).
"""
from __future__ import annotations

from typing import Any, List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from verification.checker.explain import edits as ed
from verification.checker.jaxpr import graph as jg
from verification.checker.jaxpr import inline, interpreter

# Stacked entries tracked per loop (values and cotangents of every body value at every iteration): past
# it, the loop's largest body values are left out first.
MAX_STEP_ENTRIES = 2_000_000


class Steps(NamedTuple):
    """One value of a loop body at every iteration: ``values[t]`` and ``cotangents[t]``.  For a parameter the
    body reads (``role`` "const"), the cotangent at ``t`` is the share of its gradient that step ``t`` adds."""

    scan: int  # the scan equation of the loss
    body: Any  # the body's graph (calls inlined), for its lines
    eqn: Optional[int]  # the body equation that makes it (``None``: a body input, the carry or a slice)
    role: str  # "const" (a parameter read at every step: its cotangent is the step's share), "carry", "slice",
    # or "" (a value the body computes)
    position: int  # a carry's or a slice's index among the carries or the slices (-1: a value computed)
    var: Any
    values: np.ndarray  # (T, ...)
    cotangents: np.ndarray  # (T, ...)


def per_step(graph: jg.Graph, point) -> List[Steps]:
    """Every float value of the body of each top-level scan of ``graph`` that carries the parameters, at
    every iteration, with its true cotangent (``point``: the loss's values at the checked point)."""
    jaxpr = graph.closed.jaxpr
    leaves = [point.values[v] for v in jaxpr.invars]
    out: List[Steps] = []
    for i, eqn in enumerate(graph.eqns):
        if eqn.primitive.name != "scan" or i not in graph.live:
            continue
        out += _one_scan(graph, leaves, point, i, eqn)
    return out


def _one_scan(graph, leaves, point, i, eqn) -> List[Steps]:
    p = eqn.params
    body = p["jaxpr"]
    if inline.needs_inlining(body.jaxpr):
        body = inline.inline_calls(body)
    bg = jg.graph_of(body, [f"input {k}" for k in range(len(body.jaxpr.invars))])
    nc, ncar, length = p["num_consts"], p["num_carry"], p["length"]
    roles = {v: ("const", k) if k < nc else ("carry", k - nc) if k < nc + ncar else ("slice", k - nc - ncar)
             for k, v in enumerate(body.jaxpr.invars)}
    tracked = [(None, v) for v in body.jaxpr.invars if jg.is_float(v)]
    tracked += [(b, v) for b, e in enumerate(bg.eqns) for v in e.outvars if jg.is_float(v)]
    budget, kept = MAX_STEP_ENTRIES, []
    for b, v in sorted(tracked, key=lambda t: int(np.prod(t[1].aval.shape))):
        budget -= 2 * length * int(np.prod(v.aval.shape))
        if budget >= 0:
            kept.append((b, v))
    kept.sort(key=lambda t: -1 if t[0] is None else t[0])
    if not kept:
        return []
    index = {v: k for k, (_, v) in enumerate(kept)}
    probes = [jnp.zeros((length,) + v.aval.shape, v.aval.dtype) for _, v in kept]

    def loss(probes):
        stacked = []

        def step(args):
            *args, t = args  # the iteration's index rides along as one more slice: each probe at its own step
            args = [x + probes[index[v]][t] if v in index else x for v, x in zip(body.jaxpr.invars, args)]

            def on_eqn(k, e, invals, env):
                outs = interpreter.bind(e, invals)
                return [o + probes[index[v]][t] if v in index else o for v, o in zip(e.outvars, outs)]

            env = interpreter.run(body, args, on_eqn)
            return interpreter.outputs(body, env) + [interpreter.read(env, v) for _, v in kept]

        def rerun(e, invals, outs, read):
            res = interpreter.scan(e, list(invals) + [jnp.arange(length, dtype=jnp.int32)], step)
            stacked.extend(res[len(e.outvars):])
            return res[:len(e.outvars)]

        value, _ = ed.evaluate_outputs(graph, leaves, [], ed.Changes(edits={i: ed.Edit(rerun)}))
        return jnp.sum(value), stacked

    try:
        cots, values = jax.grad(loss, has_aux=True)(probes)
    except Exception:  # noqa: BLE001 -- a loop this cannot re-run (an unusual body): no per-step quantities
        return []
    return [Steps(i, bg, b, *roles.get(v, ("", -1)), v, np.asarray(x), np.asarray(c))
            for (b, v), x, c in zip(kept, values, cots)]
