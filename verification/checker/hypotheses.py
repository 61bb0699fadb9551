"""Explanation by hypothesis: alternative references, each autodiff with exactly one derivative rule changed.

For a failing gradient ``M`` (manual) against ``G`` (``jax.grad``), every hypothesis ``H`` is the gradient
of the same loss with one rule edited at one equation (:mod:`verification.checker.jaxpr_graph`).  A hypothesis
*fits* when ``||M - H|| <= fit_rtol * ||M - G||``: it reproduces the mistake, not just the right answer.

Two families:

* **Scalings**, found all at once.  Scaling the cotangent that equation ``i`` sends to its input ``j``
  by ``a`` changes the gradient to ``G + (a - 1) C_e``, where ``C_e = dG/da_e`` at ``a = 1`` is the part
  of the gradient that flows through that edge.  One forward-over-reverse pass (``jax.jacfwd`` of the
  gradient in the scales) gives every ``C_e``; each edge's best ``a`` is a least-squares fit.  The value
  of ``a`` names the mistake: 0 a dropped path (a forgotten skip connection, tied weight, regulariser
  or label term), -1 a flipped sign, the size ``N`` of a reduction (or its inverse) mean and sum
  confused, 2 or 1/2 a factor of 2, anything else a wrong constant.
* **Rule edits** (:mod:`verification.checker.rule_edits`): a derivative dropped, evaluated at the wrong point,
  the wrong branch, a transposed or wrong saved operand, each at one equation or at every equation of
  one op (a shared helper).  :func:`candidate_gradients` runs them all in one compiled program, each
  switched on by one entry of a one-hot vector, vmapped over the rows of the identity.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from verification.checker import causes
from verification.checker import jaxpr_graph as jg
from verification.checker import rule_edits



@dataclasses.dataclass
class Hypothesis:
    cause: str  # a code of the documented vocabulary (verification.checker.causes.CAUSES)
    eqn: int  # equation index in the traced loss
    where: str  # "tanh at model.py:12"
    explanation: str  # "manual equals autodiff if ..."
    residual: float  # ||M - H|| / ||M - G||
    scale: Optional[float] = None  # for scalings: the fitted a
    equivalent: List[str] = dataclasses.field(default_factory=list)  # other sites with the same effect
    also_at: List[str] = dataclasses.field(default_factory=list)  # the same change made at these sites too
    sites: List[int] = dataclasses.field(default_factory=list)  # every equation index named above

    def as_dict(self):
        return dataclasses.asdict(self)


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(l, np.float64)) for l in jax.tree.leaves(tree)] or [np.zeros(0)])


def _grad(graph, leaves, **kw):
    return jax.grad(lambda ls: jg.evaluate(graph, ls, **kw))(list(leaves))


def _reduced_size(eqn, j):
    """How many terms the op's forward (reduce_sum) or its backward to input ``j`` (a broadcast input: a
    sum over the broadcast axes) adds up."""
    if eqn.primitive.name == "reduce_sum":
        shape = eqn.invars[0].aval.shape
        return int(np.prod([shape[a] for a in eqn.params["axes"]]))
    size = int(np.prod(eqn.invars[j].aval.shape))
    out = int(np.prod(eqn.outvars[0].aval.shape))
    return out // size if 0 < size < out else None


def _divides_a_sum_by_its_count(graph, eqn, const):
    """Is ``eqn`` (x / const) the second half of a mean: x from a reduce_sum over ``const`` terms?"""
    p = graph.producer.get(eqn.invars[0])
    return p is not None and _reduced_size(graph.eqns[p], 0) == int(const) == const


def _literal_operand(eqn, j):
    """The literal constant of a two-input ``mul``/``div`` whose other operand is input ``j``, or None."""
    if jg.op_name(eqn) in ("mul", "div") and len(eqn.invars) == 2 and isinstance(eqn.invars[1 - j], jcore.Literal):
        return float(np.asarray(eqn.invars[1 - j].val))
    return None


def _mean_sum_text(graph, eqn, j, a, where):
    """What a ``mean_sum_confused`` scale at this edge means: a reduction's size, a broadcast, or the
    division that completes a mean."""
    n = _reduced_size(eqn, j)
    if n and n > 1 and causes.reduction_match(a, [n]):
        times = causes.near(a, n)
        if eqn.primitive.name != "reduce_sum":
            how = "sums over the broadcast axes twice" if times else "averages over the broadcast axes where it sums"
        else:
            how = "sums where the forward averages" if times else "averages where the forward sums"
        return f"the backward of {where} {how} (factor {a:.6g}, the reduction has {n} terms)"
    const = _literal_operand(eqn, j)
    if causes.near(a, const):
        return f"the backward of {where} skips the division by {const:g} (a mean taken as a sum)"
    return f"the backward of {where} divides by {const:g} twice"


def _classify_scale(graph, i, j, a):
    """The cause code (:func:`verification.checker.causes.name_scale`) and the sentence of a fitted scale
    ``a`` of the cotangent that equation ``i`` sends to input ``j``."""
    eqn = graph.eqns[i]
    name, where = jg.op_name(eqn), graph.describe(i)
    operand = f"input {j + 1}" if len(eqn.invars) > 1 else "its input"
    const = _literal_operand(eqn, j)
    sizes = [n for n in (_reduced_size(eqn, j),) if n]
    if const is not None and name == "div" and j == 0 and _divides_a_sum_by_its_count(graph, eqn, const):
        sizes.append(int(const))
    cause = causes.name_scale(a, sizes)
    if cause == "path_dropped":
        return cause, f"the backward of {where} drops the path to {operand} (a forgotten term)"
    if cause == "sign_flipped":
        return cause, f"the backward of {where} flips the sign of the cotangent to {operand}"
    if cause == "mean_sum_confused":
        return cause, _mean_sum_text(graph, eqn, j, a, where)
    if cause == "factor_2":
        return cause, f"the backward of {where} is {a:.6g} x the true one (a factor 2: a 1/2 dropped or doubled)"
    if const is not None:
        used = const * a if name == "mul" else const / a  # the backward of x / c is g / c
        return cause, f"the backward of {where} uses the constant {used:.6g} where the forward uses {const:g}"
    return cause, f"the backward of {where} is scaled by {a:.6g} (a wrong constant)"


# Among edges with the same effect, the one whose scale means the most names the group: a reduction's
# size beats a factor 2, which beats a literal constant, which beats a bare scale.
_SPECIFICITY = {"path_dropped": 0, "sign_flipped": 0, "mean_sum_confused": 0, "factor_2": 1}


def _specificity(cause, text):
    return _SPECIFICITY.get(cause, 2 if "uses the constant" in text else 3)


def scalings(graph, leaves, D, fit_rtol) -> List[Hypothesis]:
    """Every edge whose scaling by one constant reproduces ``D = M - G``, grouped by equal effect."""
    edges = graph.edges
    if not edges:
        return []
    dtype = jnp.result_type(*leaves)

    def grad_in_scales(a):
        return _grad(graph, leaves, scales={e: a[k] for k, e in enumerate(edges)})

    C = jax.jit(jax.jacfwd(grad_in_scales))(jnp.ones(len(edges), dtype))
    C = np.concatenate([np.asarray(c, np.float64).reshape(-1, len(edges)) for c in C], axis=0)  # (n_params, n_edges)
    norms = np.linalg.norm(C, axis=0)
    nD = np.linalg.norm(D)
    groups = []  # [(effect, [(specificity, Hypothesis)])], latest equation first within a group
    for k in np.argsort(-np.arange(len(edges))):  # latest equation first: the order backward visits them
        if norms[k] == 0:
            continue
        am1 = float(D @ C[:, k] / norms[k] ** 2)
        res = float(np.linalg.norm(D - am1 * C[:, k]) / nD)
        if res > fit_rtol:
            continue
        i, j = edges[k]
        cause, text = _classify_scale(graph, i, j, am1 + 1)
        h = Hypothesis(cause, i, graph.describe(i), f"manual equals autodiff if {text}", res, am1 + 1)
        effect = am1 * C[:, k]
        for e, members in groups:
            if np.linalg.norm(e - effect) <= fit_rtol * nD:
                members.append((_specificity(cause, text), h))
                break
        else:
            groups.append((effect, [(_specificity(cause, text), h)]))
    out: List[Hypothesis] = []
    for _, members in groups:  # one effect: one hypothesis per meaningful cause, each with all its sites
        best = min(spec for spec, _ in members)
        causes = []
        for spec, h in members:
            if (spec <= 1 or spec == best) and h.cause not in causes:
                causes.append(h.cause)
        for cause in causes:
            same = sorted((m for m in members if m[1].cause == cause), key=lambda m: m[0])
            h = same[0][1]  # the most specific site, latest equation first among equals
            h.equivalent = [m.where for _, m in same[1:] if m.where != h.where]
            h.sites = [m.eqn for _, m in same]
            out.append(h)
    return out


def candidate_gradients(graph, leaves, cands) -> np.ndarray:
    """``(len(cands), n_params)``: the flattened gradient of each candidate (all in one vmapped program)."""
    switched = {}
    for k, c in enumerate(cands):
        for i, edit in c.edits.items():
            switched.setdefault(i, []).append((k, edit))
    dtype = jnp.result_type(*leaves)

    def flat_grad(w):
        g = _grad(graph, leaves, switched=switched, switch=w)
        return jnp.concatenate([jnp.ravel(l).astype(jnp.float64) for l in g])

    return np.asarray(jax.jit(jax.vmap(flat_grad))(jnp.eye(len(cands), dtype=dtype)), np.float64)


def edited_gradients(graph, leaves, D, G, fit_rtol) -> List[Hypothesis]:
    """Every single-rule edit whose gradient reproduces the manual one.

    All edits run in one compiled program: each is switched on by its own entry of a one-hot vector
    (:func:`verification.checker.jaxpr_graph.evaluate`'s ``switched``), and the gradient is vmapped over the rows
    of the identity.
    """
    cands = rule_edits.candidates(graph, leaves)
    if not cands:
        return []
    H = candidate_gradients(graph, leaves, cands)
    nD = np.linalg.norm(D)
    out = []
    for c, h in zip(cands, H):
        res = float(np.linalg.norm(D - (h - G)) / nD)
        if res <= fit_rtol and np.linalg.norm(h - G) > 0:
            out.append(Hypothesis(c.cause, c.eqn, graph.describe(c.eqn), f"manual equals autodiff if {c.text}", res,
                                  also_at=[graph.describe(i) for i in c.edits if i != c.eqn], sites=sorted(c.edits)))
    return out


def explain(graph, leaves, manual, reference, fit_rtol) -> List[Hypothesis]:
    """Every hypothesis that fits, rule edits first (they are the more specific), each with its site."""
    M, G = _flat(manual), _flat(reference)
    D = M - G
    if not np.all(np.isfinite(D)) or np.linalg.norm(D) == 0:
        return []
    found = edited_gradients(graph, leaves, D, G, fit_rtol)
    found += scalings(graph, leaves, D, fit_rtol)
    return found
