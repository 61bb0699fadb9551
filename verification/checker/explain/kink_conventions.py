"""At exact kinks, the consistent one-sided derivative conventions a correct hand derivation may use.

Each convention is autodiff with the derivative at every tie point of one kind of kink (a kink op, or a
``where`` on a comparison that ties) taken from another side: a manual gradient equal to one of them is
correct, and passes with a note (:func:`verification.check_gradients`).
"""
from __future__ import annotations

from typing import Dict, List

import jax
import jax.extend.core as jcore
import jax.numpy as jnp

from verification.checker.jaxpr import graph as jg
from verification.checker.jaxpr import interpreter
from verification.checker.explain import edits as ed
from verification.checker.jaxpr import source_lines
from verification.checker.explain.derivative_edits import Candidate

# Ops whose derivative jumps at 0 and whose tie points a hand derivation may assign to either side.
COMPARISONS = ("ge", "gt", "le", "lt")
MAX_KINK_GROUPS = 3  # kinds of kink combined (3 ** groups candidates)


def kink_conventions(graph: jg.Graph, values: Dict) -> List[Candidate]:
    """At exact kinks, every consistent choice of one-sided derivative: for each kind of kink (a kink op,
    or a ``where`` on a comparison that ties), autodiff's own choice or the other side(s), at all of that
    kind's tie points at once.  A hand derivation with ``relu'(0) = 1`` throughout matches one of them."""
    groups: Dict[str, List[tuple]] = {}  # kind -> [(equation, [alternative edits])]
    for i, eqn in enumerate(graph.eqns):
        name = jg.op_name(eqn)
        var_in = [j for j, v in enumerate(eqn.invars) if isinstance(v, jcore.Var)]
        if name in jg.KINKS_AT_ZERO and len(var_in) == 1:
            x = values.get(eqn.invars[var_in[0]])
            if x is not None and bool(jnp.any(x == 0)):
                groups.setdefault(name, []).append((i, [_kink_side(eqn, var_in[0], s) for s in (1.0, -1.0)]))
        elif name == "select_n" and len(eqn.invars) == 3 and jg.is_float(eqn.invars[1]):
            tie = _tie_mask(graph, values, eqn.invars[0])
            if tie is not None:
                groups.setdefault(f"select_n at {source_lines.user_line(eqn)}", []).append((i, [_tie_flip(tie)]))
    kinds = list(groups)[:MAX_KINK_GROUPS]
    out = []

    def combos(k):
        if k == len(kinds):
            yield {}
            return
        n_alt = len(groups[kinds[k]][0][1])
        for rest in combos(k + 1):
            yield rest
            for a in range(n_alt):
                yield {**rest, **{i: alts[a] for i, alts in groups[kinds[k]]}}

    for edits in combos(0):
        if edits:
            out.append(Candidate("kink_convention", max(edits), edits,
                                 f"another one-sided derivative is taken at the kinks of {', '.join(kinds)}"))
    return out


def _kink_side(eqn, pos, side):
    def derivative(x, y):
        nudged = jnp.where(x == 0, side * jnp.finfo(x.dtype).tiny, x)
        return ed.local_derivative(eqn, nudged)

    return ed.unary_edit(derivative, pos)


def _tie_mask(graph, values, pred):
    p = graph.producer.get(pred)
    if p is None or graph.eqns[p].primitive.name not in COMPARISONS or p not in graph.live:
        return None
    a, b = (interpreter.read(values, v, None) for v in graph.eqns[p].invars)
    if a is None or b is None:
        return None
    tie = jnp.asarray(a) == jnp.asarray(b)
    return tie if bool(jnp.any(tie)) else None


def _tie_flip(tie):
    """The backward of ``select_n(p, a, b)`` sends the cotangent to the other case where the comparison ties."""
    def edit(eqn, invals, outs, read):
        p, a, b = invals
        flipped = jnp.where(jnp.broadcast_to(tie, p.shape), jnp.logical_not(p), p)
        return [jax.lax.stop_gradient(outs[0]) + jax.lax.select_n(flipped, ed.deviation(a), ed.deviation(b))]

    return ed.Edit(edit)
