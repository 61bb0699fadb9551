"""Wrong saved operands: a product's backward computed with another forward value in place of the operand
it should have saved (a pre-activation for the activation, ``h_t`` for ``h_{t-1}``, a flipped kernel).

:func:`operand_edit` is the edit; :func:`saved_candidates` the values tried at one product;
:func:`loop_saved` the same change at every instance of a loop-body product, taken from the neighbouring
iteration or the mirrored instance.
"""
from __future__ import annotations

from typing import List, Optional

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from verification.checker.jaxpr import graph as jg
from verification.checker.jaxpr import interpreter
from verification.checker.explain import edits as ed

MAX_SAVED_CANDIDATES = 8  # forward values tried in place of a product's saved operand, nearest first
MAX_LOOP_SAVED = 24  # loop-wide saved-operand changes (neighbouring iteration, mirrored instance)


def operand_edit(j: int, u) -> ed.Edit:
    """A two-operand product (``mul`` or ``dot_general``) whose cotangent to operand ``j`` is computed with
    the forward value ``u`` in place of the other operand; operand ``1 - j`` keeps its rule.  ``u`` may be
    a variable of the program instead, read (reshaped to the operand) where the edit runs: a loop body's
    value at each iteration."""
    if isinstance(u, jcore.Var):
        var = u

        def edit(eqn, invals, outs, read):
            shape = jnp.shape(invals[1 - j])
            return operand_edit(j, jax.lax.stop_gradient(jnp.reshape(read(var), shape)))(eqn, invals, outs, read)

        return ed.Edit(edit)

    def edit(eqn, invals, outs, read):
        bind = lambda a, b: interpreter.bind(eqn, [a, b])[0]  # noqa: E731
        s = [jax.lax.stop_gradient(v) for v in invals]
        dev = [v - w for v, w in zip(invals, s)]
        other = [None, None]
        other[1 - j], other[j] = u, dev[j]
        keep = [None, None]
        keep[1 - j], keep[j] = dev[1 - j], s[j]
        return [jax.lax.stop_gradient(outs[0]) + bind(*keep) + bind(*other)]

    def delta(eqn, invals, g):  # bilinear: the cotangent to j changes by that of bind with (u - other)
        other = np.asarray(u) - np.asarray(invals[1 - j])
        closed = product_cotangent(eqn, j, np.asarray(g), other, np.shape(invals[j]))
        if closed is not None:
            return {j: closed}
        ins = list(invals)
        ins[1 - j] = u - invals[1 - j]
        _, vjp = jax.vjp(lambda x: interpreter.bind(eqn, ins[:j] + [x] + ins[j + 1:])[0], invals[j])
        return {j: vjp(g)[0]}

    return ed.Edit(edit, delta)


def product_cotangent(eqn, j: int, g: np.ndarray, other: np.ndarray, shape) -> Optional[np.ndarray]:
    """The cotangent a product (``mul`` of equal shapes, or ``dot_general``) sends operand ``j`` for output
    cotangent ``g`` when the other operand is ``other``, in numpy (an ``einsum`` of the two: no dispatch), or
    ``None`` for a product it does not write so."""
    if eqn.primitive.name == "mul":
        return g * other if np.shape(other) == np.shape(g) == tuple(shape) else None
    if eqn.primitive.name != "dot_general":
        return None
    (ca, cb), (ba, bb) = eqn.params["dimension_numbers"]
    nd = [len(shape), np.ndim(other)] if j == 0 else [np.ndim(other), len(shape)]
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    subs = [[None] * nd[0], [None] * nd[1]]
    for x, y in list(zip(ba, bb)) + list(zip(ca, cb)):
        subs[0][x] = subs[1][y] = next(letters)
    for side in subs:
        for k, c in enumerate(side):
            side[k] = c if c is not None else next(letters)
    free = [[c for k, c in enumerate(subs[n]) if k not in (ba, bb)[n] and k not in (ca, cb)[n]] for n in (0, 1)]
    out = [subs[0][k] for k in ba] + free[0] + free[1]
    return np.einsum(f"{''.join(out)},{''.join(subs[1 - j])}->{''.join(subs[j])}", g, other)


def saved_candidates(graph, values, v, i, inputs=False):
    """``(variable, its value, what)`` of other forward values with ``v``'s shape (or size, reshaped) that a
    hand derivation might save instead of ``v``: the input of the op that made ``v`` (through reshapes: a pre-activation for the activation),
    then every value of that shape, nearest to equation ``i`` first, earlier or later."""
    out, true = [], values.get(v)

    def offer(u, what):
        if len(out) >= MAX_SAVED_CANDIDATES or u is v or not jg.is_float(u) or any(u is c for c, _, _ in out):
            return
        if int(np.prod(u.aval.shape)) != int(np.prod(v.aval.shape)):
            return
        x = jnp.reshape(values[u], v.aval.shape)
        if true is None or not bool(jnp.array_equal(x, true)):
            out.append((u, x, what))

    p = graph.producer.get(v)
    while (p is not None and jg.op_name(graph.eqns[p]) in jg.PLUMBING and len(graph.eqns[p].invars) == 1
           and isinstance(graph.eqns[p].invars[0], jcore.Var)):
        p = graph.producer.get(graph.eqns[p].invars[0])
    if p is not None:
        for u in graph.eqns[p].invars:
            offer(u, f"the input of {graph.describe(p)} (e.g. a pre-activation instead of the activation)")
    for k in sorted(range(len(graph.eqns)), key=lambda k: abs(k - i)):
        for u in graph.eqns[k].outvars:
            if u.aval.shape == v.aval.shape:
                offer(u, f"the output of {graph.describe(k)}{' (computed later)' if k > i else ''}")
    for n, u in enumerate(graph.closed.jaxpr.invars if inputs else ()):  # a loop body's carries and slices
        offer(u, f"the loop body's input {graph.leaf_names[n]}")
    return out


def loop_saved(graph, values) -> List[tuple]:
    """In a loop body (a product at one line, repeated): the saved operand taken from the neighbouring
    iteration's value of the same line (``h_t`` for ``h_{t-1}``) or from the mirrored instance (a kernel
    flipped), at every instance at once: ``(site, {equation: edit}, text)`` each."""
    live = graph.live
    keys = graph.instance_groups(keep=lambda i: jg.op_name(graph.eqns[i]) in ("mul", "dot_general") and i in live
                                 and bool(graph.user_line(i)))
    producers = graph.instance_groups(keep=lambda i: bool(graph.user_line(i)) and len(graph.eqns[i].outvars) == 1
                                      and jg.is_float(graph.eqns[i].outvars[0]))
    out = []
    for inst in keys.values():
        if len(inst) < 2:
            continue
        where = graph.describe(inst[0])
        for j in (0, 1):
            saved = [graph.eqns[i].invars[1 - j] for i in inst]
            if not all(isinstance(v, jcore.Var) for v in saved):
                continue
            options = [("the mirrored instance's operand (a flipped kernel)", saved[::-1])]
            for pk, pinst in producers.items():
                if len(pinst) != len(inst) or graph.eqns[pinst[0]].outvars[0].aval.shape != saved[0].aval.shape:
                    continue
                for s in (-1, 0, 1):
                    seq = [graph.eqns[pinst[k + s]].outvars[0] if 0 <= k + s < len(pinst) else saved[k]
                           for k in range(len(inst))]
                    options.append(
                        (
                            f"the output of {graph.describe(pinst[0])} from iteration {'t' if s == 0 else f't{s:+d}'}"
                            " of the same pass (e.g. h_t where h_{t-1} belongs)",
                            seq,
                        )
                    )
            for what, seq in options:
                if all(u is v for u, v in zip(seq, saved)) or len(out) >= MAX_LOOP_SAVED:
                    continue
                if all(bool(jnp.array_equal(values[u], values[v])) for u, v in zip(seq, saved)):
                    continue
                edits = {i: operand_edit(j, values[u]) for i, u in zip(inst, seq) if u is not saved[inst.index(i)]}
                out.append((max(inst), edits, f"the backward of {where} uses {what} in place of operand {2 - j} "
                                              f"in the cotangent to operand {j + 1}, in all {len(inst)} instances"))
    return out
