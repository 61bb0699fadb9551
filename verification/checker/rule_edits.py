"""The single-rule changes the checker tries: each is autodiff of the traced loss with one derivative rule
edited at one equation (or, for a shared helper, at every equation of the same op).

Kinds of change, each named by a cause code of :data:`verification.checker.gradients.CAUSES`:

* an elementwise derivative dropped (treated as 1), or a product's other factor left out;
* an elementwise derivative evaluated at the op's output instead of its input, or an output-form
  formula (``1 - a**2`` for tanh, ``a (1 - a)`` for the logistic) evaluated at the input;
* the wrong branch of a ``select_n`` (``where``, ``clip``) or of a piecewise op (relu, abs, max);
* a transposed operand, or the wrong saved forward value, in a matrix product's or a product's backward.

Scalings of one edge (a dropped path, a flipped sign, mean and sum confused, a factor 2, a wrong constant)
are found all at once by :func:`verification.checker.hypotheses.scalings`, not here.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List

import jax
import jax.extend.core as jcore
import jax.numpy as jnp

from verification.checker import jaxpr_graph as jg

# Elementwise derivatives written in terms of the op's output y, as people derive them by hand.
OUTPUT_FORM = {"tanh": lambda u: 1 - u * u, "logistic": lambda u: u * (1 - u), "exp": lambda u: u,
               "sqrt": lambda u: 0.5 / u}
PIECEWISE = ("max", "min", "custom_jvp_call[relu]", "abs", "custom_jvp_call[leaky_relu]")
NOT_ELEMENTWISE_RULES = jg.PLUMBING | {"neg", "mul", "div", "add", "sub", "reduce_sum", "dot_general"}
MAX_SAVED_CANDIDATES = 4  # forward values tried in place of a product's saved operand


@dataclasses.dataclass
class Candidate:
    cause: str  # a code of verification.checker.gradients.CAUSES
    eqn: int  # the equation named as the site (the latest, for a shared change)
    edits: Dict[int, jg.Edit]  # equation -> its edited rule
    text: str  # "the derivative of tanh at model.py:12 is left out (treated as 1)"


def saved_values(graph: jg.Graph, leaves) -> Dict:
    """Every forward value at this point, by variable (the leaves, the constants and each equation's outputs)."""
    jaxpr = graph.closed.jaxpr
    values = dict(zip(jaxpr.invars, leaves))
    values.update(zip(jaxpr.constvars, graph.closed.consts))

    def record(eqn, invals, outs, read):
        values.update((v, jax.lax.stop_gradient(o)) for v, o in zip(eqn.outvars, outs))
        return outs

    jg.evaluate(graph, leaves, edits={i: record for i in range(len(graph.eqns))})
    return values


def candidates(graph: jg.Graph, leaves) -> List[Candidate]:
    """Every single-rule change that applies to the traced loss, then each elementwise change made at
    every equation of the same op at once (the mistake made in a shared helper such as ``tanh_prime``)."""
    values = saved_values(graph, leaves)
    out = list(_per_equation(graph, values))
    groups: Dict[tuple, List[Candidate]] = {}
    for c in out:
        if c.cause in ("derivative_dropped", "derivative_at_output", "derivative_at_input", "wrong_branch") \
                and len(c.edits) == 1 and c.text.startswith("the derivative of"):
            groups.setdefault((c.cause, jg.op_name(graph.eqns[c.eqn]), c.text.split(" is ")[-1]), []).append(c)
    for (cause, name, how), cs in groups.items():
        if len(cs) > 1:
            edits = {i: e for c in cs for i, e in c.edits.items()}
            out.append(Candidate(cause, max(edits), edits,
                                 f"the derivative of {name} is {how}, at every one of its {len(cs)} uses "
                                 "(a shared helper)"))
    return out


def _one(cause, i, edit, text):
    return Candidate(cause, i, {i: edit}, text)


def _per_equation(graph, values):
    live = {graph.eqns[i].invars[j] for i, j in graph.edges}
    for i, eqn in enumerate(graph.eqns):
        name, where = jg.op_name(eqn), graph.describe(i)
        float_vars = [j for j, v in enumerate(eqn.invars) if jg.is_float(v) and v in live]
        if not float_vars:
            continue
        out_shape = eqn.outvars[0].aval.shape
        one = len(float_vars) == 1 and len([v for v in eqn.invars if isinstance(v, jcore.Var)]) == 1
        pos = float_vars[0]
        if one and eqn.invars[pos].aval.shape == out_shape and name not in NOT_ELEMENTWISE_RULES:
            yield _one("derivative_dropped", i, jg.unary_edit(lambda x, y: jnp.ones_like(x), pos),
                       f"the derivative of {where} is left out (treated as 1)")
            yield _one("derivative_at_output", i, jg.unary_edit(lambda x, y, e=eqn: jg.local_derivative(e, y), pos),
                       f"the derivative of {where} is evaluated at its output instead of its input")
            if name in OUTPUT_FORM:
                yield _one("derivative_at_input", i, jg.unary_edit(lambda x, y, f=OUTPUT_FORM[name]: f(x), pos),
                           f"the derivative of {where} is written in terms of its output but evaluated at its input")
            if name in PIECEWISE:
                yield _one("wrong_branch", i, jg.unary_edit(lambda x, y, e=eqn: 1 - jg.local_derivative(e, x), pos),
                           f"the derivative of {where} is taken from the other branch (the mask is inverted)")
        if name == "select_n":
            yield from _select_edits(i, eqn, where)
        if name == "mul" and all(isinstance(v, jcore.Var) for v in eqn.invars):
            for j in float_vars:
                yield _one("derivative_dropped", i, jg.product_edit(j, lambda a, b: jnp.ones((), a.dtype)),
                           f"the backward of {where} leaves out the factor (operand {2 - j}) in the cotangent to "
                           f"operand {j + 1}")
                for u, what in _saved_candidates(graph, eqn.invars[1 - j], i):
                    yield _one("wrong_saved_operand", i, jg.product_edit(j, lambda a, b, u=values[u]: u),
                               f"the backward of {where} multiplies the cotangent to operand {j + 1} by {what} in "
                               f"place of operand {2 - j}")
        if name == "dot_general" and eqn.params["dimension_numbers"] == (((1,), (0,)), ((), ())) and \
                len(out_shape) == 2:
            yield from _matmul_edits(graph, values, i, eqn, where, float_vars)


def _matmul_edits(graph, values, i, eqn, where, float_vars):
    B = eqn.invars[1]
    for j in float_vars:
        square = eqn.invars[j].aval.shape[0] == eqn.invars[j].aval.shape[1]
        if j == 1 and square:
            yield _one("transposed_operand", i, jg.matmul_edit(1, lambda a, b, g: (a.T @ g).T),
                       f"the backward of {where} returns the transpose of the gradient of its 2nd operand")
        if j == 0 and B.aval.shape[0] == B.aval.shape[1]:
            yield _one("transposed_operand", i, jg.matmul_edit(0, lambda a, b, g: g @ b),
                       f"the backward of {where} multiplies by the 2nd operand where its transpose belongs")
        for u, what in _saved_candidates(graph, eqn.invars[1 - j], i):
            if j == 1:
                edit = jg.matmul_edit(1, lambda a, b, g, u=values[u]: u.T @ g)
            else:
                edit = jg.matmul_edit(0, lambda a, b, g, u=values[u]: g @ u.T)
            yield _one("wrong_saved_operand", i, edit, f"the backward of {where} uses {what} in place of its "
                                                       f"operand {2 - j}")


def _select_edits(i, eqn, where):
    """The backward of ``select_n(p, *cases)`` taking the wrong branch: always case ``k``, or (two cases)
    always the case not taken."""
    n = len(eqn.invars) - 1
    dev = lambda t: t - jax.lax.stop_gradient(t)  # noqa: E731

    def always(k):
        def edit(eqn, invals, outs, read):
            return [jax.lax.stop_gradient(outs[0]) + dev(jnp.broadcast_to(invals[1 + k], outs[0].shape))]

        return edit

    def flip(eqn, invals, outs, read):
        p, a, b = invals
        return [jax.lax.stop_gradient(outs[0]) + jax.lax.select_n(p, dev(b), dev(a))]

    for k in range(n):
        if jg.is_float(eqn.invars[1 + k]):
            yield _one("wrong_branch", i, always(k), f"the backward of {where} always takes branch {k + 1} of {n} "
                                                     "(the derivative of one case used everywhere)")
    if n == 2:
        yield _one("wrong_branch", i, flip, f"the backward of {where} sends the cotangent to the branch not taken")


def _saved_candidates(graph, v, i):
    """Other forward values with ``v``'s shape that a hand derivation might save instead of ``v``."""
    out = []
    p = graph.producer.get(v)
    if p is not None:
        for u in graph.eqns[p].invars:
            if jg.is_float(u) and u.aval.shape == v.aval.shape and u is not v:
                out.append((u, f"the input of {graph.describe(p)} (e.g. a pre-activation instead of the activation)"))
    for k, e in enumerate(graph.eqns[:i]):
        for u in e.outvars:
            if len(out) >= MAX_SAVED_CANDIDATES:
                return out
            if u is not v and u.aval.shape == v.aval.shape and jg.is_float(u) and all(u is not c for c, _ in out):
                out.append((u, f"the output of {graph.describe(k)}"))
    return out


# Ops whose derivative jumps at 0 and whose tie points a hand derivation may assign to either side.
KINK_OPS = ("custom_jvp_call[relu]", "abs", "custom_jvp_call[leaky_relu]")
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
        if name in KINK_OPS and len(var_in) == 1:
            x = values.get(eqn.invars[var_in[0]])
            if x is not None and bool(jnp.any(x == 0)):
                groups.setdefault(name, []).append((i, [_kink_side(eqn, var_in[0], s) for s in (1.0, -1.0)]))
        elif name == "select_n" and len(eqn.invars) == 3 and jg.is_float(eqn.invars[1]):
            tie = _tie_mask(graph, values, eqn.invars[0])
            if tie is not None:
                groups.setdefault(f"select_n at {jg.user_line(eqn)}", []).append((i, [_tie_flip(tie)]))
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
        return jg.local_derivative(eqn, nudged)

    return jg.unary_edit(derivative, pos)


def _tie_mask(graph, values, pred):
    p = graph.producer.get(pred)
    if p is None or graph.eqns[p].primitive.name not in COMPARISONS or p not in graph.live:
        return None
    a, b = (v.val if isinstance(v, jcore.Literal) else values.get(v) for v in graph.eqns[p].invars)
    if a is None or b is None:
        return None
    tie = jnp.asarray(a) == jnp.asarray(b)
    return tie if bool(jnp.any(tie)) else None


def _tie_flip(tie):
    """The backward of ``select_n(p, a, b)`` sends the cotangent to the other case where the comparison ties."""
    dev = lambda t: t - jax.lax.stop_gradient(t)  # noqa: E731

    def edit(eqn, invals, outs, read):
        p, a, b = invals
        flipped = jnp.where(jnp.broadcast_to(tie, p.shape), jnp.logical_not(p), p)
        return [jax.lax.stop_gradient(outs[0]) + jax.lax.select_n(flipped, dev(a), dev(b))]

    return edit
