"""The rule changes the checker tries: each is autodiff of the traced loss with one derivative rule edited
at one equation, at every instance of one loop-body line, or (a shared helper) at every use of one op.

Kinds of change, each named by a cause code of :data:`verification.CAUSES`:

* an elementwise derivative dropped (treated as 1), evaluated at the op's output instead of its input,
  an output-form formula (``1 - a**2``, ``a (1 - a)``) evaluated at the input, the mask of a piecewise op
  inverted, or computed before a literal offset (a hinge's margin left out);
* ``select_n`` / ``where`` and two-input ``max`` / ``min``: the cotangent sent to the branch not taken;
* ``reduce_max`` / ``reduce_min`` (max pooling): the cotangent routed to every element, averaged, to the
  opposite extreme, or to the neighbouring window;
* matrix products: every orientation of the operand and of the incoming cotangent that the shapes allow
  (square or not), and every forward value of the right shape in place of the saved operand, earlier or
  later, in loops also from the neighbouring iteration or the mirrored instance.

Scalings of one edge (a dropped path, a flipped sign, mean and sum confused, a factor 2, a wrong
constant) are fitted in :mod:`verification.checker.explain.hypotheses`, not here.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from verification.checker.jaxpr import graph as jg
from verification.checker.jaxpr import interpreter
from verification.checker.explain import edits as ed
from verification.checker.explain import saved_operands as saved

# Elementwise derivatives written in terms of the op's output y, as people derive them by hand.
OUTPUT_FORM = {"tanh": lambda u: 1 - u * u, "logistic": lambda u: u * (1 - u), "exp": lambda u: u,
               "sqrt": lambda u: 0.5 / u}
PIECEWISE = jg.KINKS_AT_TIES + jg.KINKS_AT_ZERO
NOT_ELEMENTWISE_RULES = jg.PLUMBING | {"neg", "mul", "div", "add", "sub", "reduce_sum", "dot_general",
                                       "reduce_max", "reduce_min", "select_n"}
STANDARD_MATMUL = (((1,), (0,)), ((), ()))


@dataclasses.dataclass
class Candidate:
    cause: str  # a code of verification.CAUSES
    eqn: int  # the equation named as the site (the latest, for a shared change)
    edits: Dict[int, ed.Edit]  # equation -> its edited rule
    text: str  # "the derivative of tanh at model.py:12 is left out (treated as 1)"
    where: Optional[str] = None  # the site's name where it is not equation ``eqn`` itself (a line in a loop body)


def saved_values(graph: jg.Graph, leaves) -> Dict:
    """Every forward value at this point, by variable (the leaves, the constants and each equation's outputs)."""
    saved = lambda i, eqn, invals, env: [jax.lax.stop_gradient(o) for o in interpreter.bind(eqn, invals)]  # noqa: E731
    return interpreter.run(graph.closed, leaves, saved)


def candidates(graph: jg.Graph, values, sites=None) -> List[Candidate]:
    """Every single-equation change, then each change made at every instance of the same loop-body line
    (the same op at the same line, with the same shapes), each elementwise change at every use of one op
    (a shared helper such as ``tanh_prime``), and the loop-wide saved-operand changes.  With ``sites`` (a
    set of equation indices), only changes whose every equation is one of them."""
    out = list(_per_equation(graph, values, sites))
    return out + shared(graph, out) + [c for c in loop_saved(graph, values) if sites is None or set(c.edits) <= sites]


def loop_saved(graph: jg.Graph, values) -> List[Candidate]:
    """The loop-wide saved-operand changes (:func:`verification.checker.explain.saved_operands.loop_saved`)."""
    return [Candidate("wrong_saved_operand", site, edits, text) for site, edits, text in saved.loop_saved(graph, values)]


def shared(graph, out) -> List[Candidate]:
    """The changes of ``out`` made together: at every instance of one line, and (an elementwise derivative)
    at every use of one op (a shared helper)."""
    by_text: Dict[tuple, List[Candidate]] = {}
    helper: Dict[tuple, List[Candidate]] = {}
    for c in out:
        by_text.setdefault((c.cause, c.text), []).append(c)
        if c.cause in ("derivative_dropped", "derivative_at_output", "derivative_at_input", "wrong_branch") \
                and c.text.startswith("the derivative of"):
            helper.setdefault((c.cause, jg.op_name(graph.eqns[c.eqn]), c.text.split(" is ")[-1]), []).append(c)
    groups = []
    for (cause, text), cs in by_text.items():
        if len(cs) > 1 and graph.user_line(cs[0].eqn):
            edits = {i: e for c in cs for i, e in c.edits.items()}
            groups.append(Candidate(cause, max(edits), edits, f"{text}, in all {len(cs)} instances (a loop body, "
                                                              "a repeated line or a shared helper)"))
    for (cause, name, how), cs in helper.items():
        if len({graph.user_line(c.eqn) for c in cs}) > 1:
            edits = {i: e for c in cs for i, e in c.edits.items()}
            groups.append(Candidate(cause, max(edits), edits, f"the derivative of {name} is {how}, at every one of "
                                                              f"its {len(cs)} uses (a shared helper)"))
    return groups


def body_changes(graph: jg.Graph, values) -> List[Candidate]:
    """Every change of a loop body (``graph``, ``values`` at one iteration) that reads nothing but the
    iteration's own values, so that it can be made at every iteration at once
    (:mod:`verification.checker.explain.loop_bodies`): each single-equation change (a saved operand is another of
    the body's variables, not a value of this iteration), and each made at every instance of one line or
    every use of one op in the body (a helper called twice per step)."""
    out = list(_per_equation(graph, values, body=True))
    return out + shared(graph, out)


def _one(cause, i, edit, text):
    return Candidate(cause, i, {i: edit}, text)


def _per_equation(graph, values, sites=None, body=False):
    live = {graph.eqns[i].invars[j] for i, j in graph.edges}
    for i in range(len(graph.eqns)):
        if sites is None or i in sites:
            yield from at_equation(graph, values, i, live, body)


def at_equation(graph, values, i: int, live, body=False):
    """The single-equation changes of equation ``i`` (``live``: the inputs that carry the parameters;
    ``body``: ``graph`` is a loop body, at one iteration)."""
    eqn = graph.eqns[i]
    name, where = jg.op_name(eqn), graph.describe(i)
    float_vars = [j for j, v in enumerate(eqn.invars) if jg.is_float(v) and v in live]
    if not float_vars:
        return
    out_shape = eqn.outvars[0].aval.shape
    n_vars = len([v for v in eqn.invars if isinstance(v, jcore.Var)])
    pos = float_vars[0]
    if n_vars == 1 and eqn.invars[pos].aval.shape == out_shape and name not in NOT_ELEMENTWISE_RULES:
        yield from _elementwise(graph, values, i, eqn, where, name, pos, body)
    if name == "select_n":
        yield from _select_edits(i, eqn, where)
    if name in ("max", "min") and n_vars == 2 and len(float_vars) == 2:
        yield _one(
            "wrong_branch",
            i,
            ed.Edit(_loser_edit),
            f"the backward of {where} sends the cotangent to the input that lost (the mask inverted)",
        )
    if name in ("reduce_max", "reduce_min") and not body:  # its masks are this iteration's
        yield from _routing_edits(i, eqn, where, values)
    if name in ("mul", "dot_general") and n_vars == 2:
        for j in float_vars:
            if name == "mul":
                yield _one("derivative_dropped", i, ed.product_edit(j, lambda a, b: jnp.ones((), a.dtype)),
                           f"the backward of {where} leaves out the factor (operand {2 - j}) in the cotangent "
                           f"to operand {j + 1}")
            for u, x, what in saved.saved_candidates(graph, values, eqn.invars[1 - j], i, inputs=body):
                yield _one("wrong_saved_operand", i, saved.operand_edit(j, u if body else x),
                           f"the backward of {where} uses {what} in place of operand {2 - j} in the cotangent "
                           f"to operand {j + 1}")
        if name == "dot_general" and eqn.params["dimension_numbers"] == STANDARD_MATMUL and len(out_shape) == 2:
            yield from _orientation_edits(i, eqn, where, float_vars, values)


def _elementwise(graph, values, i, eqn, where, name, pos, body=False):
    yield _one("derivative_dropped", i, ed.unary_edit(lambda x, y: jnp.ones_like(x), pos),
               f"the derivative of {where} is left out (treated as 1)")
    yield _one("derivative_at_output", i, ed.unary_edit(lambda x, y, e=eqn: ed.local_derivative(e, y), pos),
               f"the derivative of {where} is evaluated at its output instead of its input")
    if name in OUTPUT_FORM:
        yield _one("derivative_at_input", i, ed.unary_edit(lambda x, y, f=OUTPUT_FORM[name]: f(x), pos),
                   f"the derivative of {where} is written in terms of its output but evaluated at its input")
    if name in PIECEWISE:
        yield _one("wrong_branch", i, ed.unary_edit(lambda x, y, e=eqn: 1 - ed.local_derivative(e, x), pos),
                   f"the derivative of {where} is taken from the other branch (the mask is inverted)")
        p = None if body else graph.producer.get(eqn.invars[pos])  # (in a body, its offset is this iteration's)
        if p is not None and jg.op_name(graph.eqns[p]) in ("add", "sub"):
            inner = graph.eqns[p]
            lits = [v for v in inner.invars if isinstance(v, jcore.Literal)]
            var_in = [v for v in inner.invars if isinstance(v, jcore.Var)]
            if lits and len(var_in) == 1 and var_in[0].aval.shape == eqn.invars[pos].aval.shape:
                u = values[var_in[0]]
                yield _one("wrong_threshold", i, ed.unary_edit(lambda x, y, e=eqn, u=u: ed.local_derivative(e, u),
                                                               pos),
                           f"the mask of {where} is computed before the offset {float(lits[0].val):g} of "
                           f"{graph.describe(p)} (a margin or threshold left out)")


def _orientation_edits(i, eqn, where, float_vars, values):
    """``A @ B``: each operand's cotangent from every other arrangement of the incoming cotangent ``g`` and
    the other operand (each transposed or not, in either order) that has the operand's shape."""
    A, B = (values[v] for v in eqn.invars)
    g0 = np.ones(eqn.outvars[0].aval.shape, A.dtype)
    for j in float_vars:
        other, shape = (B, A.shape) if j == 0 else (A, B.shape)
        true = (lambda g, o: g @ o.T) if j == 0 else (lambda g, o: o.T @ g)
        for tg in (False, True):
            for to in (False, True):
                for first in ("g", "o"):
                    def form(g, o, tg=tg, to=to, first=first):
                        gg, oo = (g.T if tg else g), (o.T if to else o)
                        return gg @ oo if first == "g" else oo @ gg

                    gs, os_ = g0.shape[::-1] if tg else g0.shape, other.shape[::-1] if to else other.shape
                    left, right = (gs, os_) if first == "g" else (os_, gs)
                    if left[1] != right[0] or (left[0], right[1]) != shape:  # by shape alone: a raise costs 20 ms
                        continue
                    o = np.asarray(other)  # compared in numpy: no eager program per shape
                    probe = np.random.default_rng(1).standard_normal(g0.shape).astype(o.dtype)
                    t, got = true(probe, o), form(probe, o)
                    if np.allclose(got, t):
                        continue
                    if t.shape == t.T.shape and np.allclose(got, t.T):
                        yield _one("transposed_operand", i, _matmul_form(j, form),
                                   f"the backward of {where} sends operand {j + 1} the transpose of its cotangent "
                                   "(the gradient of a transposed operand, W^T's for W, not transposed back)")
                        continue
                    cause = "transposed_cotangent" if tg else "transposed_operand"
                    expr = f"{'g^T' if tg else 'g'}, {'the transpose of ' if to else ''}operand {2 - j}"
                    yield _one(cause, i, _matmul_form(j, form),
                               f"the backward of {where} forms the cotangent to operand {j + 1} from {expr} "
                               f"({'g first' if first == 'g' else 'the operand first'}): an orientation mixed up")


def _matmul_form(j, form):
    def edit(eqn, invals, outs, read):
        A, B = invals
        sA, sB = jax.lax.stop_gradient(A), jax.lax.stop_gradient(B)
        keep = (A - sA) @ sB if j == 1 else sA @ (B - sB)
        other = sB if j == 0 else sA
        changed = ed.linear_with_transpose(lambda g: form(g, other), outs[0], invals[j])
        return [jax.lax.stop_gradient(outs[0]) + keep + changed]

    def delta(eqn, invals, g):
        A, B = invals
        return {j: form(g, B) - g @ B.T if j == 0 else form(g, A) - A.T @ g}

    return ed.Edit(edit, delta)


def _loser_edit(eqn, invals, outs, read):
    a, b = invals
    sa, sb = jax.lax.stop_gradient(a), jax.lax.stop_gradient(b)
    wins = (sa >= sb) if eqn.primitive.name == "max" else (sa <= sb)
    return [jax.lax.stop_gradient(outs[0]) + jnp.where(wins, b - sb, a - sa)]


def _routing_edits(i, eqn, where, values):
    """``reduce_max``: the cotangent routed to every element, averaged, to the opposite extreme, or with the
    mask of the neighbouring window along the first kept axis."""
    x = values[eqn.invars[0]]
    axes = tuple(eqn.params["axes"])
    y = values[eqn.outvars[0]]
    kept = [a for a in range(x.ndim) if a not in axes]
    extreme = jnp.min if eqn.primitive.name == "reduce_max" else jnp.max
    hit = (x == jnp.expand_dims(y, axes)).astype(x.dtype)
    k = int(np.prod([x.shape[a] for a in axes]))
    masks = [("every element of its window", jnp.ones_like(x)), ("every element, averaged", jnp.ones_like(x) / k),
             ("the opposite extreme", (x == extreme(x, axis=axes, keepdims=True)).astype(x.dtype))]
    if kept and x.shape[kept[-1]] > 1:
        masks.append(("the neighbouring window's position", jnp.roll(hit, 1, axis=kept[-1])))
    for what, mask in masks:
        def edit(eqn, invals, outs, read, mask=mask):
            return [jax.lax.stop_gradient(outs[0]) + jnp.sum(mask * ed.deviation(invals[0]), axis=axes)]

        yield _one("wrong_selection", i, ed.Edit(edit), f"the backward of {where} routes the cotangent to {what}")


def _select_edits(i, eqn, where):
    """The backward of ``select_n(p, *cases)`` taking the wrong branch: always case ``k``, or (two cases)
    always the case not taken."""
    n = len(eqn.invars) - 1
    dev = ed.deviation

    def always(k):
        def edit(eqn, invals, outs, read):
            return [jax.lax.stop_gradient(outs[0]) + dev(jnp.broadcast_to(invals[1 + k], outs[0].shape))]

        return ed.Edit(edit)

    def flip(eqn, invals, outs, read):
        p, a, b = invals
        return [jax.lax.stop_gradient(outs[0]) + jax.lax.select_n(p, dev(b), dev(a))]

    for k in range(n):
        if jg.is_float(eqn.invars[1 + k]):
            yield _one("wrong_branch", i, always(k), f"the backward of {where} always takes branch {k + 1} of {n} "
                                                     "(the derivative of one case used everywhere)")
    if n == 2 and all(jg.is_float(v) for v in eqn.invars[1:]):
        yield _one(
            "wrong_branch",
            i,
            ed.Edit(flip),
            f"the backward of {where} sends the cotangent to the branch not taken",
        )
