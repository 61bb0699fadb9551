"""Explanation by hypothesis: alternative references, each autodiff with exactly one derivative rule changed.

For a failing gradient ``M`` (manual) against ``G`` (``jax.grad``), every hypothesis ``H`` is the gradient
of the same loss with one rule edited at one equation (:mod:`verification.jaxpr_graph`).  A hypothesis
*fits* when ``||M - H|| <= fit_rtol * ||M - G||``: it reproduces the mistake, not just the right answer.

Two families:

* **Scalings**, found all at once.  Scaling the cotangent that equation ``i`` sends to its input ``j``
  by ``a`` changes the gradient to ``G + (a - 1) C_e``, where ``C_e = dG/da_e`` at ``a = 1`` is the part
  of the gradient that flows through that edge.  One forward-over-reverse pass (``jax.jacfwd`` of the
  gradient in the scales) gives every ``C_e``; each edge's best ``a`` is a least-squares fit.  The value
  of ``a`` names the mistake: 0 a dropped path (a forgotten skip connection, tied weight, regulariser
  or label term), -1 a flipped sign, the size ``N`` of a reduction (or its inverse) mean and sum
  confused, 2 or 1/2 a factor of 2, anything else a wrong constant.
* **Rule edits**, one gradient each: an elementwise derivative dropped (treated as 1), evaluated at
  the op's output instead of its input (or the output-form formula at the input, ``1 - z**2`` for
  tanh), the wrong branch of a ``select``/``max``/relu, a transposed operand or a wrong saved operand
  in a matrix product's backward.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from verification import jaxpr_graph as jg

# Elementwise derivatives written in terms of the op's output y, as people derive them by hand.
OUTPUT_FORM = {"tanh": lambda u: 1 - u * u, "logistic": lambda u: u * (1 - u), "exp": lambda u: u,
               "sqrt": lambda u: 0.5 / u}
PIECEWISE = ("max", "min", "custom_jvp_call[relu]", "abs", "custom_jvp_call[leaky_relu]")
MAX_SAVED_CANDIDATES = 4


@dataclasses.dataclass
class Hypothesis:
    cause: str  # a code of the documented vocabulary (verification.checker.CAUSES)
    eqn: int  # equation index in the traced loss
    where: str  # "tanh at model.py:12"
    explanation: str  # "manual equals autodiff if ..."
    residual: float  # ||M - H|| / ||M - G||
    scale: Optional[float] = None  # for scalings: the fitted a
    equivalent: List[str] = dataclasses.field(default_factory=list)  # other sites with the same effect

    def as_dict(self):
        return dataclasses.asdict(self)


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(l, np.float64)) for l in jax.tree.leaves(tree)] or [np.zeros(0)])


def _grad(graph, leaves, **kw):
    return jax.grad(lambda ls: jg.evaluate(graph, ls, **kw))(list(leaves))


def _near(a, b, tol=1e-3):
    return abs(a - b) <= tol * max(abs(b), 1.0)


def _reduced_size(eqn):
    if eqn.primitive.name != "reduce_sum":
        return None
    shape = eqn.invars[0].aval.shape
    return int(np.prod([shape[a] for a in eqn.params["axes"]]))


def _classify_scale(graph, i, j, a):
    eqn = graph.eqns[i]
    name, where = jg.op_name(eqn), graph.describe(i)
    operand = f"input {j + 1}" if len(eqn.invars) > 1 else "its input"
    const = None
    if name in ("mul", "div") and len(eqn.invars) == 2 and isinstance(eqn.invars[1 - j], jcore.Literal):
        const = float(np.asarray(eqn.invars[1 - j].val))
    n = _reduced_size(eqn)
    if _near(a, 0.0, 1e-6):
        return "path_dropped", f"the backward of {where} drops the path to {operand} (a forgotten term)"
    if _near(a, -1.0):
        return "sign_flipped", f"the backward of {where} flips the sign of the cotangent to {operand}"
    if n and n > 1 and (_near(a, n) or _near(a, 1 / n)):
        how = "sums where the forward averages" if _near(a, n) else "averages where the forward sums"
        return "mean_sum_confused", f"the backward of {where} {how} (factor {a:.6g}, the reduction has {n} terms)"
    if const is not None and name == "div" and j == 0 and _near(a, const):
        return "mean_sum_confused", f"the backward of {where} skips the division by {const:g} (a mean taken as a sum)"
    if const is not None and name == "div" and j == 0 and _near(a, 1 / const):
        return "mean_sum_confused", f"the backward of {where} divides by {const:g} twice"
    if _near(a, 2.0) or _near(a, 0.5):
        return "factor_2", f"the backward of {where} is {a:.6g} x the true one (a factor 2: a 1/2 dropped or doubled)"
    if const is not None:
        return "wrong_constant", (f"the backward of {where} uses the constant {const * a:.6g} where the forward "
                                  f"uses {const:g}")
    return "wrong_constant", f"the backward of {where} is scaled by {a:.6g} (a wrong constant)"


def scalings(graph, leaves, D, fit_rtol) -> List[Hypothesis]:
    """Every edge whose scaling by one constant reproduces ``D = M - G``, grouped by equal effect."""
    edges = graph.edges
    if not edges:
        return []
    dtype = jnp.result_type(*leaves)

    def grad_in_scales(a):
        return _grad(graph, leaves, scales={e: a[k] for k, e in enumerate(edges)})

    C = jax.jacfwd(grad_in_scales)(jnp.ones(len(edges), dtype))
    C = np.concatenate([np.asarray(c, np.float64).reshape(-1, len(edges)) for c in C], axis=0)  # (n_params, n_edges)
    norms = np.linalg.norm(C, axis=0)
    nD = np.linalg.norm(D)
    out: List[Hypothesis] = []
    seen = []
    for k in np.argsort(-np.arange(len(edges))):  # latest equation first: the order backward visits them
        if norms[k] == 0:
            continue
        am1 = float(D @ C[:, k] / norms[k] ** 2)
        res = float(np.linalg.norm(D - am1 * C[:, k]) / nD)
        if res > fit_rtol:
            continue
        i, j = edges[k]
        a = am1 + 1
        cause, text = _classify_scale(graph, i, j, a)
        effect = am1 * C[:, k]
        for h, e in seen:
            if np.linalg.norm(e - effect) <= fit_rtol * nD:
                h.equivalent.append(graph.describe(i))
                break
        else:
            h = Hypothesis(cause, i, graph.describe(i), f"manual equals autodiff if {text}", res, a)
            seen.append((h, effect))
            out.append(h)
    return out


def _rule_edits(graph):
    """``(cause, equation, edit, text)`` for every rule edit that applies to the traced loss."""
    eqns = graph.eqns
    live = {graph.eqns[i].invars[j] for i, j in graph.edges}
    for i, eqn in enumerate(eqns):
        name, where = jg.op_name(eqn), graph.describe(i)
        float_vars = [j for j, v in enumerate(eqn.invars) if jg.is_float(v) and v in live]
        if not float_vars:
            continue
        out_shape = eqn.outvars[0].aval.shape
        one = len(float_vars) == 1 and len([v for v in eqn.invars if isinstance(v, jcore.Var)]) == 1
        pos = float_vars[0]
        if one and eqn.invars[pos].aval.shape == out_shape and name not in jg.PLUMBING | {
                "neg", "mul", "div", "add", "sub", "reduce_sum", "dot_general"}:
            yield ("derivative_dropped", i, jg.unary_edit(lambda x, y: jnp.ones_like(x), pos),
                   f"the derivative of {where} is left out (treated as 1)")
            yield ("derivative_at_output", i,
                   jg.unary_edit(lambda x, y, e=eqn: jg.local_derivative(e, y), pos),
                   f"the derivative of {where} is evaluated at its output instead of its input")
            if name in OUTPUT_FORM:
                yield ("derivative_at_input", i, jg.unary_edit(lambda x, y, f=OUTPUT_FORM[name]: f(x), pos),
                       f"the derivative of {where}, written in terms of its output, is evaluated at its input")
            if name in PIECEWISE:
                yield ("wrong_branch", i, jg.unary_edit(lambda x, y, e=eqn: 1 - jg.local_derivative(e, x), pos),
                       f"the backward of {where} takes the other branch (the mask is inverted)")
        if name == "select_n" and len(eqn.invars) == 3:
            def flip(eqn, invals, outs, read):
                p, a, b = invals
                dev = lambda t: t - jax.lax.stop_gradient(t)  # noqa: E731
                return [jax.lax.stop_gradient(outs[0]) + jax.lax.select_n(p, dev(b), dev(a))]

            yield "wrong_branch", i, flip, f"the backward of {where} sends the cotangent to the branch not taken"
        if name == "dot_general" and eqn.params["dimension_numbers"] == (((1,), (0,)), ((), ())) and \
                len(out_shape) == 2:
            A, B = eqn.invars
            for j in float_vars:
                other = eqn.invars[1 - j]
                square = eqn.invars[j].aval.shape[0] == eqn.invars[j].aval.shape[1]
                if j == 1 and square:
                    yield ("transposed_operand", i, jg.matmul_edit(1, lambda a, b, g: (a.T @ g).T),
                           f"the backward of {where} returns the transpose of the gradient of its 2nd operand")
                if j == 0 and B.aval.shape[0] == B.aval.shape[1]:
                    yield ("transposed_operand", i, jg.matmul_edit(0, lambda a, b, g: g @ b),
                           f"the backward of {where} multiplies by the 2nd operand where its transpose belongs")
                for u, what in _saved_candidates(graph, other, i):
                    if j == 1:
                        edit = jg.matmul_edit(1, lambda a, b, g, u=u: _value(graph, u).T @ g)
                    else:
                        edit = jg.matmul_edit(0, lambda a, b, g, u=u: g @ _value(graph, u).T)
                    yield ("wrong_saved_operand", i, edit,
                           f"the backward of {where} uses {what} in place of its operand {2 - j}")


_VALUES = {}  # var -> value of the current point: filled by saved_values() before the rule edits run


def _value(graph, v):
    return _VALUES[v]


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


def saved_values(graph, leaves):
    """Record every intermediate value at this point (for the wrong-saved-operand edits)."""
    _VALUES.clear()
    edits = {i: (lambda eqn, invals, outs, read: [_record(eqn, outs)][0]) for i in range(len(graph.eqns))}
    jg.evaluate(graph, leaves, edits=edits)


def recorded_values():
    """The values :func:`saved_values` recorded, by variable."""
    return dict(_VALUES)


def _record(eqn, outs):
    for v, o in zip(eqn.outvars, outs):
        _VALUES[v] = jax.lax.stop_gradient(o)
    return outs


def rule_edits(graph, leaves, D, G, fit_rtol) -> List[Hypothesis]:
    """Every single-rule edit whose gradient reproduces the manual one."""
    saved_values(graph, leaves)
    nD = np.linalg.norm(D)
    out = []
    for cause, i, edit, text in _rule_edits(graph):
        H = _flat(_grad(graph, leaves, edits={i: edit}))
        res = float(np.linalg.norm(D - (H - G)) / nD)
        if res <= fit_rtol and np.linalg.norm(H - G) > 0:
            out.append(Hypothesis(cause, i, graph.describe(i), f"manual equals autodiff if {text}", res))
    return out


def explain(graph, leaves, manual, reference, fit_rtol) -> List[Hypothesis]:
    """Every hypothesis that fits, rule edits first (they are the more specific), each with its site."""
    M, G = _flat(manual), _flat(reference)
    D = M - G
    if not np.all(np.isfinite(D)) or np.linalg.norm(D) == 0:
        return []
    found = rule_edits(graph, leaves, D, G, fit_rtol)
    found += scalings(graph, leaves, D, fit_rtol)
    return found
