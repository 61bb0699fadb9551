"""Whole-leaf patterns: a documented layer on top of the hypotheses, for mistakes no single rule edit makes.

A hypothesis (:mod:`verification.checker.explain.hypotheses`) changes one rule inside the traced loss.  Some
hand-derivation mistakes live outside it: a leaf returned transposed, gradients assigned to the wrong
leaf, a regulariser term forgotten in the *gradient* code only, a naive exp that overflows.  Each test
below fits one such pattern to the failing leaf ``a`` (manual) against ``b`` (``jax.grad``), with ``p``
the parameter leaf and ``d = a - b``; the causes are codes of the one vocabulary
(:data:`verification.checker.base.causes.CAUSES`), and a whole-leaf scale is named by the one classifier
(:func:`verification.checker.base.causes.name_scale`) with the inputs' batch sizes as the sizes it may confuse.
The gradient report gives each failing leaf one :class:`Diagnosis`: the pattern if one fits (with the
best hypothesis's site), else the best hypothesis.

==========================  ==============================================================
cause                       evidence
==========================  ==============================================================
overflow                    ``a`` non-finite where ``b`` is finite (naive exp at large logits)
transposed                  ``a.T == b``
mean_sum_confused           ``a = c b`` with ``c = m`` (or ``1/m``), m a batch size of the inputs
sign_flipped                ``a = -b``
factor_2                    ``a = 2 b`` or ``a = b / 2`` (a ½ in the loss, e.g. ½‖·‖²)
wrong_constant              ``a = c b`` for another constant c
l2_missing / l2_extra       ``d = ∓λ p``
l1_missing / l1_extra       ``d = ∓λ sign(p)``
constant_offset             ``d = const``
l1_without_sign             ``d = λ(1 - sign(p))``: DNN Maths (2020-01-12)'s printed L1 gradient ``+λ``
wrong_leaf                  ``a`` equals the reference of another leaf of the same shape
regulariser_wrong           the check passes with the regulariser off and fails with it on
==========================  ==============================================================
"""
from __future__ import annotations

import jax
import numpy as np

from verification.checker.base import causes
from verification.checker.base.findings import Diagnosis
from verification.checker.base.fits import fits, least_squares
from verification.checker.base.tolerances import PATTERN_FIT_RTOL


def _scale_cause(c, batch_sizes):
    return causes.scale_cause(c, batch_sizes, {
        "mean_sum_confused": lambda m: (
            f"manual = {c:.6g} x autodiff, and m = {m} is the batch size: a 1/m missing" if causes.near(c, m)
            else f"manual = autodiff / {1 / c:.6g}, and m = {m}: the loss sums but the gradient averages"),
        "sign_flipped": "manual = -1 x autodiff",
        "factor_2": f"manual = {c:.6g} x autodiff: a 1/2 in the loss (e.g. 1/2 ||.||^2) is dropped or doubled"},
        f"manual = {c:.6g} x autodiff (a constant factor)")


def _leaf_cause(a, b, p, batch_sizes, strengths):
    a, b, p = (np.asarray(t, np.float64) for t in (a, b, p))
    if a.shape != b.shape or (a.ndim == 2 and a.shape[0] == a.shape[1] and not fits(a, b, PATTERN_FIT_RTOL)):
        if a.ndim == 2 and a.T.shape == b.shape and fits(a.T, b, PATTERN_FIT_RTOL):
            return "transposed", f"manual has shape {a.shape}; its transpose equals autodiff's {b.shape}"
        if a.shape != b.shape:
            return "shape", f"manual shape {a.shape} vs autodiff {b.shape}"
    if not np.all(np.isfinite(a)) and np.all(np.isfinite(b)):
        n = int(np.sum(~np.isfinite(a)))
        return "overflow", (f"{n} non-finite manual entries where autodiff is finite: an exp/log overflowed "
                            f"(use logsumexp / a stable log-sigmoid)")
    c, res = least_squares(a, b)
    if res <= PATTERN_FIT_RTOL and c != 0:
        return _scale_cause(c, batch_sizes)
    d = a - b
    lam = ", ".join(f"{k}={v:g}" for k, v in strengths.items())
    for name, basis in (("L2", p), ("L1", np.sign(p))):
        alpha, res = least_squares(d, basis)
        if res <= PATTERN_FIT_RTOL and alpha != 0:
            kind = "extra" if alpha > 0 else "missing"
            sym = "lambda W" if name == "L2" else "lambda sign(W)"
            return f"{name.lower()}_{kind}", (
                f"manual - autodiff = {alpha:+.6g} x {sym.split(' ', 1)[1]}, i.e. a {kind} "
                f"{name} term with lambda = {abs(alpha):.6g}" + (f" (given {lam})" if lam else "")
            )
    alpha, res = least_squares(d, np.ones_like(d))
    if res <= PATTERN_FIT_RTOL:
        return (
            "constant_offset",
            f"manual - autodiff = {alpha:+.6g} everywhere (a constant where a sign(W) or W belongs?)",
        )
    alpha, res = least_squares(d, 1 - np.sign(p))
    if res <= PATTERN_FIT_RTOL and alpha != 0:
        return "l1_without_sign", (f"manual - autodiff = {alpha:.6g} x (1 - sign(W)): the L1 gradient adds lambda = "
                                   f"{alpha:.6g} where lambda sign(W) belongs")
    return None


def diagnose(manual, ref, params, args, report, strengths, off=None):
    """A list of :class:`Diagnosis`, one per failing leaf (or one for the whole tree)."""
    if report.structure_error:
        return [Diagnosis("<tree>", "structure", report.structure_error)]
    batch_sizes = {int(np.shape(a)[0]) for a in jax.tree.leaves(args) if np.ndim(a) >= 1}
    m_leaves, r_leaves, p_leaves = jax.tree.leaves(manual), jax.tree.leaves(ref), jax.tree.leaves(params)
    failing = [i for i, l in enumerate(report.leaves) if not l.passed]
    out = []
    for i in failing:
        name = report.leaves[i].path
        found = _leaf_cause(m_leaves[i], r_leaves[i], p_leaves[i], batch_sizes, strengths)
        if found is None:
            for j, rj in enumerate(r_leaves):
                if j != i and fits(m_leaves[i], rj, PATTERN_FIT_RTOL):
                    found = ("wrong_leaf", f"manual {name} equals autodiff's {report.leaves[j].path}: "
                                            f"gradients assigned to the wrong leaf/layer")
                    break
        if found is None and report.unregularised_passed and strengths:
            found = ("regulariser_wrong", "the check passes with the regulariser off and fails with it on")
        if found is None and off is not None and not report.unregularised_passed:
            m0, r0 = jax.tree.leaves(off[0]), jax.tree.leaves(off[1])
            cause = _leaf_cause(m0[i], r0[i], p_leaves[i], batch_sizes, {})
            if cause is not None:
                found = (cause[0], "with the regulariser off: " + cause[1])
        out.append(Diagnosis(name, *found) if found else None)
    return [d if d is not None else Diagnosis(report.leaves[i].path, "unknown",
                                              f"no pattern fits (max rel {report.leaves[i].max_rel:.2e})")
            for d, i in zip(out, failing)]
