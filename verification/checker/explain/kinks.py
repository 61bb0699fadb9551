"""The kink test of :func:`verification.check_gradients`: at a non-differentiable point (relu or abs at
exactly 0, a tie in max or a comparison) a hand gradient that differs from autodiff may still be right.

A leaf passes when every entry that differs from autodiff lies between the one-sided differences (a
valid subgradient); entries that agree need no test, and of the others :data:`KINK_SAMPLE` that differ
most and as many at random are tested (all when there are fewer).  Chained kinks pass when the hand
gradient equals autodiff with one consistent one-sided derivative at each kind of kink
(:mod:`verification.checker.explain.kink_conventions`).
"""
from __future__ import annotations

from typing import List

import jax
import numpy as np

from verification.checker.base import finite_differences as fd
from verification.checker.explain import edit_effects as le
from verification.checker.jaxpr import graph as jg
from verification.checker.jaxpr import interpreter
from verification.checker.explain import kink_conventions
from verification.checker.explain import derivative_edits
from verification.checker.base.compare import compare_leaves
from verification.checker.base.context import CheckContext, StageResult
from verification.checker.base.tolerances import KINK_RTOL

KINK_SAMPLE = 128  # entries of a leaf tested at a kink: the most differing ones, and as many at random


def kinks_at(graph, leaves) -> List[str]:
    """The non-differentiable points the loss sits on: relu/abs at exactly 0, exact ties in max/min/compare."""
    values = derivative_edits.saved_values(graph, leaves)
    found = []

    def val(v):
        return np.asarray(interpreter.read(values, v, None))

    for i, eqn in enumerate(graph.eqns):
        name = jg.op_name(eqn)
        ins = [val(v) for v in eqn.invars]
        if any(x.dtype == object for x in ins) or i not in graph.live:
            continue
        if name in jg.KINKS_AT_ZERO + ("sign",) and np.any(ins[0] == 0):  # sign: its value jumps at 0
            found.append(graph.describe(i))
        elif name in jg.KINKS_AT_TIES + ("ge", "gt", "le", "lt") and len(ins) == 2 and np.any(ins[0] == ins[1]):
            found.append(graph.describe(i))
    return found


def one_sided_agree(loss, params, manual, ref, leaf_results, precision, atol):
    """For each failing leaf: does every manual entry that differs from autodiff lie between the one-sided
    differences?  Entries that agree with autodiff need no test; of the others, the :data:`KINK_SAMPLE`
    that differ most and as many random ones are tested (all of them when there are fewer).  Returns
    ``({leaf: passed}, {leaf: (tested, differing)})``."""
    from jax.flatten_util import ravel_pytree

    m_flat, r_flat = np.asarray(ravel_pytree(manual)[0], np.float64), np.asarray(ravel_pytree(ref)[0], np.float64)
    h = fd.step_for(precision, "one_sided")
    offsets = np.cumsum([0] + [int(np.prod(l.shape)) for l in leaf_results])
    rng = np.random.default_rng(0)
    ok, counts = {}, {}
    for k, l in enumerate(leaf_results):
        if l.passed:
            continue
        m, r = m_flat[offsets[k]:offsets[k + 1]], r_flat[offsets[k]:offsets[k + 1]]
        err = np.abs(m - r)
        differing = np.flatnonzero(err > max(atol, 0.0))
        if len(differing) > 2 * KINK_SAMPLE:
            worst = differing[np.argsort(-err[differing])[:KINK_SAMPLE]]
            rest = np.setdiff1d(differing, worst)
            differing_tested = np.concatenate([worst, rng.choice(rest, KINK_SAMPLE, replace=False)])
        else:
            differing_tested = differing
        counts[l.path] = (len(differing_tested), len(differing))
        up, down = fd.one_sided(loss, params, offsets[k] + differing_tested, h)
        lo, hi = np.minimum(up, down), np.maximum(up, down)
        slack = KINK_RTOL * max(float(np.max(np.abs(np.concatenate([lo, hi, r])))), 1e-300)
        mk = m[differing_tested]
        ok[l.path] = bool(np.all((mk >= lo - slack) & (mk <= hi + slack)))
    return ok, counts


def passes_at_kinks(ctx: CheckContext) -> StageResult:
    """At a kink, accept valid subgradients leaf by leaf, or one consistent convention throughout; settled
    when every leaf is then accepted (and the other comparisons pass)."""
    leaves = jax.tree.leaves(ctx.params)
    kinks = kinks_at(ctx.graph, leaves)
    if not kinks:
        return StageResult()
    between, counts = one_sided_agree(ctx.loss, ctx.params, ctx.manual, ctx.reference, ctx.leaves, ctx.precision,
                                      ctx.atol)
    accepted, notes = [], []
    for l in ctx.failing():
        if between.get(l.path):
            accepted.append(l.path)
            tested, differing = counts[l.path]
            sample = ("every entry that differs" if tested == differing else
                      f"each of {tested} of the {differing} entries that differ ({KINK_SAMPLE} that differ most, the "
                      "rest at random)")
            notes.append(f"{l.path}: differs from autodiff at a kink ({'; '.join(kinks[:3])}) but {sample} "
                         "lies between the one-sided differences: a valid subgradient")
    others_pass = all(l.passed for l in ctx.finite_differences or ()) and ctx.taylor_passed is not False
    if len(accepted) < len(ctx.failing()):
        convention = _kink_convention(ctx.graph, leaves, ctx.manual, ctx.rtol, ctx.atol)
        if convention is None:
            return StageResult(tuple(accepted), (), tuple(notes), False)
        accepted = [l.path for l in ctx.failing()]
        notes.append(f"differs from autodiff only at kinks: it equals autodiff when {convention} "
                     "(a consistent subgradient convention)")
    return StageResult(tuple(accepted), (), tuple(notes), others_pass)


def _kink_convention(graph, leaves, manual, rtol, atol):
    """Chained kinks: the text of the one consistent one-sided derivative at each kind of kink with which
    autodiff equals the manual gradient (``relu'(0) = 1`` throughout, say), or ``None``."""
    cands = kink_conventions.kink_conventions(graph, derivative_edits.saved_values(graph, leaves))
    if not cands:
        return None
    H = le.exact_gradients(graph, leaves, None, [(c.edits, None) for c in cands])
    treedef = jax.tree.structure(manual)
    shapes = [np.shape(l) for l in jax.tree.leaves(manual)]
    for c, h in zip(cands, H):
        parts = np.split(h, np.cumsum([int(np.prod(s)) for s in shapes])[:-1])
        ref = jax.tree.unflatten(treedef, [p.reshape(s) for p, s in zip(parts, shapes)])
        results, err = compare_leaves(manual, ref, rtol, atol)
        if not err and all(r.passed for r in results):
            return c.text
    return None
