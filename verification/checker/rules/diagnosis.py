r"""Why a rule's block is wrong: the usual mistakes of hand-written VJPs, JVPs and curvature products.

For a failing block with rule results ``R`` and reference results ``F`` on the same probes ``P``
(stacked, float64) and the difference ``D = R - F``, the tests run in this order; the first that fits
names the cause, a code of the one vocabulary (:data:`verification.checker.base.causes.CAUSES`); a scale
``R = c F`` is named by the one classifier (:func:`verification.checker.base.causes.name_scale`) with the
problem's axis sizes:

=====================  ======================================================================
cause                  evidence
=====================  ======================================================================
transposed             the rule's leaf has the reference's shape reversed and equals its transpose,
                       or (square) ``R = F^T`` probe by probe
path_dropped           ``R = 0`` where ``F`` is not
ignores_probe          ``R`` is the same for every random probe while ``F`` is not: the rule ignores
                       the cotangent (tangent); when ``R`` equals the reference at a probe of ones,
                       the rule is "correct only when the cotangent is 1"
not_linear             ``rule(2.5 p) != 2.5 rule(p)``
sign_flipped           ``R = -F``
mean_sum_confused      ``R = c F`` with ``c`` (or ``1/c``) the size of one axis of the problem
factor_2               ``R = 2F`` or ``F / 2``
wrong_constant         ``R = c F`` for another constant
wrong_leaf             ``R`` equals the reference block of another input of the same shape
missing_term           ``D`` is constant along one axis (a mean or sum term missing or extra), or
                       ``D`` is proportional, row by row, to a primal input or output (a projection
                       like softmax's ``s <s, t>`` left out)
unknown                none fits; the block and worst index still say where
=====================  ======================================================================
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence

import numpy as np

from verification.checker.base import causes
from verification.checker.base.findings import RuleFinding
from verification.checker.base.fits import fits, max_norm
from verification.checker.rules.linear_maps import Block, Leaf, embed, reference_dtype


def _fits(a, b, fit):
    """``a ~ b`` relative to the largest entry of ``b`` (the one fit test, in the max norm)."""
    return fits(a, b, fit, norm=max_norm)


def _scale(R, F):
    den = float(np.sum(F * F))
    return float(np.sum(R * F) / den) if den > 0 else np.nan


def explain_block(b: Block, *, mode: str, fit: float, dims: Sequence[int], others: Sequence[Block],
                  apply_rule: Callable, apply_ref_ones: Callable, primals: Dict[str, np.ndarray]) -> RuleFinding:
    """The cause of one failing block (see the module table).  ``mode`` is "vjp", "jvp" or "hvp"."""
    R, F, P = b.rule, b.reference, b.probes
    probe = "cotangent" if mode == "vjp" else ("tangent" if mode == "jvp" else "direction v")
    out, inp = b.output, b.input
    finding = lambda cause, text: RuleFinding(out, inp, cause, text)  # noqa: E731
    if R.size == 0 or R.shape != F.shape:
        if R.ndim == 3 and F.ndim == 3 and R.shape[1:] == F.shape[:0:-1] and _fits(R.transpose(0, 2, 1), F, fit):
            return finding("transposed", f"the rule returns {inp if mode == 'vjp' else out}'s block transposed "
                                         f"(shape {R.shape[1:]}, expected {F.shape[1:]})")
        return finding("shape", f"the rule's result has shape {R.shape[1:]}, the reference {F.shape[1:]}")
    if not np.all(np.isfinite(R)):
        return finding("overflow", "the rule returns non-finite values where the reference is finite")
    if R.ndim == 3 and R.shape[1] == R.shape[2] and R.shape[1] > 1 and _fits(R.transpose(0, 2, 1), F, fit):
        return finding("transposed", "the rule's block equals the reference transposed, probe by probe")
    if np.max(np.abs(R)) == 0:
        return finding("path_dropped", f"the rule returns zero for this block: the term of {inp} in {out} is missing")
    k = min(len(R), 3)  # the random probes
    if (
        k > 1
        and all(_fits(R[0], R[i], fit) for i in range(1, k))
        and not all(_fits(F[0], F[i], fit) for i in range(1, k))
    ):
        ones = apply_ref_ones()
        tail = (f"correct only when the {probe} is 1: the rule ignores the {probe}" if ones is not None
                and ones.shape == R[0].shape and _fits(R[0], ones, fit)
                else f"the rule gives the same result for every {probe}: it ignores the {probe}")
        return finding("ignores_probe", tail)
    p0 = P[0]
    r1, r2 = apply_rule(p0), apply_rule(2.5 * p0)
    if r1 is not None and r2 is not None and r1.shape == r2.shape and not _fits(r2, 2.5 * r1, fit):
        return finding("not_linear", f"the rule is not linear in the {probe}: rule(2.5 p) != 2.5 rule(p)")
    c = _scale(R, F)
    if np.isfinite(c) and _fits(R, c * F, fit):
        return finding(*_scale_finding(c, dims))
    for o in others:
        if o is not b and o.output == out and o.reference.shape == R.shape and _fits(R, o.reference, fit):
            return finding("wrong_leaf", f"the rule's {probe} result for {inp} is the reference's for {o.input}: "
                                             "two inputs' results swapped")
    D = R - F
    for axis in range(1, D.ndim):
        if D.shape[axis] > 1 and _fits(D, np.broadcast_to(D.mean(axis=axis, keepdims=True), D.shape), fit):
            return finding("missing_term", f"the rule differs from the reference by a term constant along axis "
                                           f"{axis - 1} of the result: a mean (or sum) term is missing or extra")
    for name, v in primals.items():
        if D.ndim >= 2 and v.shape == D.shape[1:]:
            vb = np.broadcast_to(v, D.shape)
            den = np.sum(vb * vb, axis=-1, keepdims=True)
            coef = np.where(den > 0, np.sum(D * vb, axis=-1, keepdims=True) / np.where(den > 0, den, 1), 0)
            if _fits(D, coef * vb, fit):
                return finding("missing_term", f"the rule differs from the reference by a term proportional to "
                                               f"{name}, row by row: a projection onto {name} is missing or extra "
                                               "(e.g. softmax's s<s, t>)")
    return finding("unknown", "no single pattern fits; the block and worst index say where the rule is wrong")


def _scale_finding(c: float, dims: Sequence[int]):
    """``(cause, sentence)`` of "rule = c x reference" (the one classifier, with the problem's axis sizes).

    An axis size is weaker evidence here than a reduction's size in the traced loss: it is every axis of
    the problem, not the one the rule reduces over.  So sizes of 2 are left out, and a factor 2 stays
    ``factor_2`` (the commoner mistake) even where some axis has 2 entries."""
    dims = [n for n in dims if n > 2]
    return causes.scale_cause(c, dims, {
        "path_dropped": "the rule is ~0 times the reference: the term is missing",
        "sign_flipped": "the rule has the opposite sign",
        "mean_sum_confused": lambda n: (f"the rule is {c:g} times the reference: a sum and a mean over "
                                        f"{n} entries confused"),
        "factor_2": f"the rule is {c:g} times the reference: a factor 2 dropped or doubled"},
        f"the rule is {c:.6g} times the reference: a wrong constant")


def where_of(fn) -> str:
    """``name (file:line)`` of a rule function, when Python knows it."""
    import inspect

    if fn is None:
        return ""
    try:
        _, line = inspect.getsourcelines(fn)
        return f"{getattr(fn, '__qualname__', repr(fn))} ({inspect.getsourcefile(fn)}:{line})"
    except (OSError, TypeError):
        return getattr(fn, "__qualname__", repr(fn))


def explain(blocks: List[Block], rule: Callable, reference: Callable, probe_space: Sequence[Leaf],
            result_names: Sequence[str], *, mode: str, fit: float, primals: Dict[str, np.ndarray],
            where: str = "") -> List[RuleFinding]:
    """One finding per failing block, in block order.

    ``rule`` and ``reference`` map a probe (a list over ``probe_space``) to the result leaves named
    ``result_names``; a block's probe leaf is its output for a VJP and its input otherwise.
    """
    names = [l.name for l in probe_space]
    dims = sorted({d for l in probe_space for d in l.shape} | {d for v in primals.values() for d in v.shape})
    out = []
    for b in blocks:
        if b.passed:
            continue
        j = names.index(b.output if mode == "vjp" else b.input)
        i = list(result_names).index(b.input if mode == "vjp" else b.output)

        def apply_rule(p, j=j, i=i):
            r = rule(embed(probe_space, j, p))[i]
            return None if r is None else np.asarray(r, np.float64)

        def apply_ref_ones(j=j, i=i):
            ones = np.ones(probe_space[j].shape)
            return np.asarray(reference(embed(probe_space, j, ones, reference_dtype()))[i], np.float64)

        f = explain_block(b, mode=mode, fit=fit, dims=dims, others=blocks, apply_rule=apply_rule,
                          apply_ref_ones=apply_ref_ones, primals=primals)
        f.where = where
        out.append(f)
    return out


def primal_finding(where: str = "") -> RuleFinding:
    """The rule's forward pass returns a different value from the undecorated function."""
    return RuleFinding("primal", "-", "primal_mismatch", "the rule's forward pass returns a different primal output "
                       "from the undecorated function (f.fun): fwd and the primal disagree", where)
