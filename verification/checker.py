"""``check_gradients``: compare anyone's hand-derived gradient with ``jax.grad``, and say where and why it differs.

>>> import jax, jax.numpy as jnp
>>> def loss(w, x):
...     return jnp.mean(jnp.tanh(x @ w) ** 2)
>>> def my_grad(w, x):  # d/dw mean(tanh(xw)^2) = x^T (2 tanh(xw) (1 - tanh^2(xw))) / m
...     t = jnp.tanh(x @ w)
...     return x.T @ (2 * t * (1 - t ** 2)) / x.shape[0]
>>> w, x = jnp.ones(3), jnp.arange(6.0).reshape(2, 3) / 6
>>> report = check_gradients(my_grad, loss, w, x)
>>> report.passed
True
>>> report.raise_if_failed() is report  # for tests
True
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from verification import hypotheses as hy
from verification import jaxpr_graph as jg
from verification import rule_edits
from verification.compare import LeafResult, compare_leaf, compare_leaves
from verification.diagnose import Diagnosis, diagnose
from verification.hypotheses import Hypothesis
from verification.localize import Localization, localize, tapped, true_cotangents
from verification.taylor import TaylorResult, taylor_test
from verification.tolerances import FD_RTOL, FD_STEP, FIT_RTOL, KINK_RTOL, RTOL_BY_DTYPE

REG_KWARGS = ("l1", "l2", "reg", "lam", "weight_decay")  # regulariser strengths switched off in the second run


# The documented vocabulary of ``cause`` codes (a diagnosis's or a hypothesis's).
CAUSES = {
    # found by hypothesis: autodiff with one rule changed at one equation reproduces the manual gradient
    "derivative_dropped": "an elementwise derivative left out (treated as 1)",
    "derivative_at_output": "an elementwise derivative evaluated at the op's output instead of its input",
    "derivative_at_input": "a derivative written in terms of the output (1 - a^2, a(1 - a)) evaluated at the input",
    "sign_flipped": "one op's backward flips the sign",
    "path_dropped": "one operand's path dropped in the backward (a skip connection, tied weight, regulariser "
                    "or label term forgotten)",
    "mean_sum_confused": "mean and sum confused on one reduction",
    "factor_2": "one op's backward off by a factor 2 (a 1/2 dropped or doubled)",
    "wrong_constant": "one op's backward scaled by a wrong constant (e.g. a leaky-relu slope)",
    "transposed_operand": "a transposed operand in a matrix product's backward",
    "wrong_saved_operand": "a matrix product's backward uses the wrong saved forward value",
    "wrong_branch": "the wrong branch of a select / where / max / relu taken in the backward",
    "kink_convention": "differs only by a consistent one-sided derivative at exact kinks (passes, with a note)",
    # found by a whole-leaf pattern (verification/diagnose.py)
    "missing 1/m": "the whole gradient m times too large", "extra 1/m": "the whole gradient m times too small",
    "sign flipped": "the whole gradient negated", "factor 1/2": "the whole gradient 2x or 1/2x",
    "scale": "the whole gradient scaled by a constant", "transposed": "a leaf transposed",
    "missing L2": "the L2 term forgotten", "extra L2": "an L2 term added", "missing L1": "the L1 term forgotten",
    "extra L1": "an L1 term added", "constant offset": "a constant added", "L1 without sign": "lambda for lambda sign(W)",
    "wrong layer": "gradients assigned to the wrong leaf", "overflow": "a non-finite manual value (naive exp)",
    "regulariser term wrong": "passes with the regulariser off only", "shape": "a leaf of the wrong shape",
    "structure": "the trees differ", "unknown": "no hypothesis fits; the localisation still says where",
}
SCHEMA = "verification.check_gradients/2"


@dataclasses.dataclass
class Report:
    """What :func:`check_gradients` found.  ``to_json()`` follows the schema in docs/checker.md."""

    leaves: List[LeafResult]
    rtol: float
    structure_error: str = ""
    diagnoses: List[Diagnosis] = dataclasses.field(default_factory=list)
    finite_differences: Optional[List[LeafResult]] = None
    unregularised_passed: Optional[bool] = None
    localization: Optional[Localization] = None
    hypotheses: List[Hypothesis] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)  # e.g. leaves passed at a kink
    precision: str = "float64"  # the dtype the check was judged in
    taylor: Optional[TaylorResult] = None  # the Taylor-remainder test, when asked for

    @property
    def passed(self) -> bool:
        ok = not self.structure_error and all(l.passed for l in self.leaves)
        ok = ok and all(l.passed for l in (self.finite_differences or []))
        return ok and (self.taylor is None or self.taylor.passed)

    def __str__(self):
        lines = [f"{'leaf':<22} {'shape':<12} {'max abs':>10} {'max rel':>10} {'worst':<10} {'cs231n band':<27} verdict"]
        for l in self.leaves:
            lines.append(f"{l.path:<22} {str(l.shape):<12} {l.max_abs:>10.2e} {l.max_rel:>10.2e} "
                         f"{str(list(l.worst_index)):<10} {l.band:<27} {'PASS' if l.passed else 'FAIL'}")
        if self.structure_error:
            lines.append(f"structure: {self.structure_error}")
        for l in self.finite_differences or []:
            lines.append(f"fd {l.path:<19} {str(l.shape):<12} {l.max_abs:>10.2e} {l.max_rel:>10.2e} "
                         f"{str(list(l.worst_index)):<10} {'(central differences)':<27} {'PASS' if l.passed else 'FAIL'}")
        if self.taylor is not None:
            lines.append(str(self.taylor))
        if self.unregularised_passed is not None:
            lines.append(f"with the regulariser off: {'PASS' if self.unregularised_passed else 'FAIL'}")
        lines.append(f"overall: {'PASS' if self.passed else 'FAIL'} (rtol {self.rtol:g}, {self.precision})")
        lines += [f"note: {n}" for n in self.notes]
        if self.localization is not None and self.localization.first_wrong is not None:
            lines += [f"where: {l}" for l in self.localization.lines()]
        for d in self.diagnoses:
            lines.append(f"diagnosis: {d.leaf}: {d.cause}" + (f" at {d.where}" if d.where else "") + f" -- {d.evidence}")
        for h in self.hypotheses[1:]:
            lines.append(f"also fits: {h.cause} at {h.where} -- {h.explanation}")
        return "\n".join(lines)

    def to_json(self) -> str:
        """The report as JSON (schema ``verification.check_gradients/2``, documented in docs/checker.md)."""
        by_leaf = {d.leaf: d for d in self.diagnoses}

        def num(x):
            return x if np.isfinite(x) else str(x)

        leaves = [{"leaf": l.path, "shape": list(l.shape), "max_abs": num(l.max_abs), "max_rel": num(l.max_rel),
                   "elem_rel": num(l.elem_rel), "worst_index": list(l.worst_index), "passed": l.passed,
                   "cause": by_leaf[l.path].cause if l.path in by_leaf else None,
                   "where": by_leaf[l.path].where if l.path in by_leaf else None,
                   "evidence": by_leaf[l.path].evidence if l.path in by_leaf else None} for l in self.leaves]
        loc = None if self.localization is None else dataclasses.asdict(self.localization)
        return json.dumps({"schema": SCHEMA, "passed": self.passed, "rtol": self.rtol, "precision": self.precision,
                           "structure_error": self.structure_error or None, "leaves": leaves,
                           "localization": loc, "hypotheses": [h.as_dict() for h in self.hypotheses],
                           "notes": self.notes, "unregularised_passed": self.unregularised_passed,
                           "taylor": None if self.taylor is None else {
                               "slope": num(self.taylor.slope), "passed": self.taylor.passed,
                               "steps": self.taylor.steps, "remainders": self.taylor.remainders}})

    def raise_if_failed(self):
        if not self.passed:
            raise AssertionError("hand-derived gradient does not match jax.grad:\n" + str(self))
        return self


def central_differences(loss, params, h=FD_STEP):
    """Central differences of ``loss`` at ``params`` in float64, one parameter at a time (vmapped)."""
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(params)
    flat = flat.astype(jnp.float64)
    eye = jnp.eye(flat.size, dtype=jnp.float64)
    f = lambda v: loss(unravel(v.astype(flat.dtype)))  # noqa: E731
    return unravel(jax.vmap(lambda e: (f(flat + h * e) - f(flat - h * e)) / (2 * h))(eye))


def precision_of(params) -> str:
    """The lowest-precision floating dtype among the leaves (the one the check is judged in)."""
    names = {jnp.dtype(jnp.result_type(l)).name for l in jax.tree.leaves(params)}
    for name in ("float16", "bfloat16", "float32", "float64"):
        if name in names:
            return name
    return "float64"


def _kinks(graph, leaves) -> List[str]:
    """The non-differentiable points the loss sits on: relu/abs at exactly 0, exact ties in max/min/compare."""
    values = rule_edits.saved_values(graph, leaves)
    found = []

    def val(v):
        return np.asarray(v.val if isinstance(v, jg.jcore.Literal) else values.get(v))

    for i, eqn in enumerate(graph.eqns):
        name = jg.op_name(eqn)
        ins = [val(v) for v in eqn.invars]
        if any(x.dtype == object for x in ins):
            continue
        if name in ("abs", "custom_jvp_call[relu]", "sign") and np.any(ins[0] == 0):
            found.append(graph.describe(i))
        elif name in ("max", "min", "ge", "gt", "le", "lt") and len(ins) == 2 and np.any(ins[0] == ins[1]):
            found.append(graph.describe(i))
    return found


def _one_sided(loss, params, manual, leaf_results, precision):
    """For each failing leaf: does every manual entry lie between the one-sided differences?"""
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(params)
    m_flat, _ = ravel_pytree(manual)
    h = FD_STEP if precision == "float64" else float(np.sqrt(np.finfo(np.dtype(precision)).eps))
    f0 = loss(params)
    sizes = [int(np.prod(l.shape)) for l in leaf_results]
    offsets = np.cumsum([0] + sizes)
    ok = {}
    for k, l in enumerate(leaf_results):
        if l.passed:
            continue
        idx = jnp.arange(offsets[k], offsets[k + 1])
        step = lambda i, s: loss(unravel(flat.at[i].add(s * h)))  # noqa: E731
        up = (jax.vmap(lambda i: step(i, 1.0))(idx) - f0) / h
        down = (f0 - jax.vmap(lambda i: step(i, -1.0))(idx)) / h
        lo, hi = np.minimum(up, down), np.maximum(up, down)
        m = np.asarray(m_flat[offsets[k]:offsets[k + 1]], np.float64)
        slack = KINK_RTOL * max(float(np.max(np.abs(np.concatenate([lo, hi])))), 1e-300)
        ok[l.path] = bool(np.all((m >= lo - slack) & (m <= hi + slack)))
    return ok


def check_gradients(manual_fn: Callable[..., Any], loss_fn: Callable[..., Any], params, *args, rtol=None, atol=None,
                    finite_differences=False, taylor=False, diagnose_failures=True, deltas=None, **kwargs) -> Report:
    r"""Compare ``manual_fn(params, *args, **kwargs)`` (a grads pytree) with ``jax.grad(loss_fn)`` at the same point.

    Structure first, then leaf by leaf.  ``rtol`` defaults to the params' dtype
    (``verification.tolerances.RTOL_BY_DTYPE``: float64 1e-12, float32 1e-5, bfloat16 4e-2, float16 5e-3),
    and ``atol`` to ``rtol`` times the largest entry of the whole autodiff gradient: a leaf whose entries
    cancel (a bias's sum of deltas) carries the rounding of its terms, not of its small value.
    With ``finite_differences=True`` the manual gradient is also compared with central differences.  If a
    regulariser strength in ``kwargs`` (named as in ``REG_KWARGS``) is non-zero, the check is run again
    with it set to 0, as cs231n advises, and both runs feed the diagnosis.  With ``taylor=True`` the
    Taylor-remainder test (:func:`verification.taylor.taylor_test`) is a second opinion that needs no
    step size and no autodiff.

    When leaves fail, the report says *where* and *why*:

    * **At a kink** (relu or abs at exactly 0, a tie in max): a leaf whose every manual entry lies between
      the one-sided differences is a valid subgradient and passes, with a note.
    * **Localisation**: the leaves in the order the backward pass reaches them, the first that fails, the
      last that agrees before it, and the operations and source lines in between.  ``deltas`` maps the
      names of values marked with :func:`verification.localize.tap` in ``loss_fn`` to your hand-derived
      :math:`\partial J/\partial(\text{value})`; each is checked against autodiff's, and the first wrong
      one in backward order is named.
    * **Hypotheses**: autodiff with one derivative rule changed at one equation
      (:mod:`verification.hypotheses`); every change that reproduces the manual gradient is listed.
    * **Patterns** of a whole leaf (1/m, transposed, L1/L2 terms, swapped leaves, overflow):
      :mod:`verification.diagnose`.
    """
    for name, fn in (("manual_fn", manual_fn), ("loss_fn", loss_fn)):
        if not callable(fn):
            raise TypeError(f"{name}: expected a callable, got {type(fn).__name__}")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if tol is not None and not (isinstance(tol, (int, float)) and tol >= 0):
            raise ValueError(f"{name}: expected a tolerance >= 0, got {tol!r}")
    precision = precision_of(params)
    rtol = RTOL_BY_DTYPE[precision] if rtol is None else rtol
    loss = lambda p: loss_fn(p, *args, **kwargs)  # noqa: E731
    manual = manual_fn(params, *args, **kwargs)
    ref = jax.grad(loss)(params)
    if atol is None:  # a leaf that cancels to small values is judged on the gradient's scale (tolerances.py)
        atol = rtol * max([float(np.max(np.abs(np.asarray(l, np.float64)))) for l in jax.tree.leaves(ref) if np.size(l)]
                          or [0.0])
    results, structure_error = compare_leaves(manual, ref, rtol, atol)
    report = Report(results, rtol, structure_error, precision=precision)
    if finite_differences:
        fd = central_differences(loss, params)
        report.finite_differences = compare_leaves(manual, fd, max(rtol, FD_RTOL), atol)[0]
    if taylor:
        report.taylor = taylor_test(loss, params, manual)
    reg = {k: v for k, v in kwargs.items() if k in REG_KWARGS and np.any(np.asarray(v) != 0)}
    off = None
    if reg:
        off = {**kwargs, **{k: 0.0 for k in reg}}
        m0 = manual_fn(params, *args, **off)
        r0 = jax.grad(lambda p: loss_fn(p, *args, **off))(params)
        res0, err0 = compare_leaves(m0, r0, rtol, atol)
        report.unregularised_passed = not err0 and all(l.passed for l in res0)
        off = (m0, r0)
    if report.passed or not diagnose_failures:
        return report
    if structure_error:
        report.diagnoses = diagnose(manual, ref, params, args, report, strengths=reg, off=off)
        return report
    graph = jg.trace(loss, params, [l.path for l in report.leaves])
    leaves = jax.tree.leaves(params)
    kinks = _kinks(graph, leaves)
    if kinks:
        between = _one_sided(loss, params, manual, report.leaves, precision)
        for l in report.leaves:
            if between.get(l.path):
                l.passed = True
                report.notes.append(f"{l.path}: differs from autodiff at a kink ({'; '.join(kinks[:3])}) but every "
                                    "entry lies between the one-sided differences: a valid subgradient")
        if not report.passed:
            _accept_kink_convention(graph, leaves, manual, report, rtol, atol)
        if report.passed:
            return report
    report.localization = localize(graph, {l.path: l.passed for l in report.leaves})
    if deltas is not None:
        _check_deltas(report.localization, loss_fn, params, args, kwargs, deltas, rtol)
    report.hypotheses = hy.explain(graph, leaves, manual, ref, FIT_RTOL[precision])
    legacy = diagnose(manual, ref, params, args, report, strengths=reg, off=off)
    report.diagnoses = [_merge(d, report) for d in legacy]
    return report


def _accept_kink_convention(graph, leaves, manual, report, rtol, atol):
    """Chained kinks: the manual gradient passes if it equals autodiff with one consistent one-sided
    derivative at each kind of kink (``relu'(0) = 1`` throughout, say)."""
    cands = rule_edits.kink_conventions(graph, rule_edits.saved_values(graph, leaves))
    if not cands:
        return
    H = hy.candidate_gradients(graph, leaves, cands)
    treedef = jax.tree.structure(manual)
    shapes = [np.shape(l) for l in jax.tree.leaves(manual)]
    for c, h in zip(cands, H):
        parts = np.split(h, np.cumsum([int(np.prod(s)) for s in shapes])[:-1])
        ref = jax.tree.unflatten(treedef, [p.reshape(s) for p, s in zip(parts, shapes)])
        results, err = compare_leaves(manual, ref, rtol, atol)
        if not err and all(r.passed for r in results):
            for l in report.leaves:
                l.passed = True
            report.notes.append(f"differs from autodiff only at kinks: it equals autodiff when {c.text} "
                                "(a consistent subgradient convention)")
            return


def _check_deltas(loc, loss_fn, params, args, kwargs, deltas, rtol):
    """Each tapped delta against the true cotangent; the first wrong one in backward order."""
    names = [t[0] for t in tapped(loss_fn, params, *args, **kwargs)]
    unknown = sorted(set(deltas) - set(names))
    if unknown:
        raise ValueError(f"deltas: no tap named {unknown} in loss_fn; its taps are {names}")
    true = true_cotangents(loss_fn, params, *args, **kwargs)
    for name in reversed(names):  # backward order
        if name in deltas:
            r = compare_leaf(name, deltas[name], true[name], rtol)
            loc.deltas.append({"name": name, "max_rel": r.max_rel, "passed": r.passed, "worst_index": r.worst_index})
            if not r.passed and loc.first_wrong_delta is None:
                loc.first_wrong_delta = name


def _merge(d: Diagnosis, report: Report) -> Diagnosis:
    """A leaf's diagnosis: a whole-leaf pattern if one fits, else the best hypothesis; with a site either way."""
    loc, hyps = report.localization, report.hypotheses
    if d.cause == "unknown" and hyps:
        h = hyps[0]
        extra = f" ({len(hyps) - 1} more hypotheses fit, listed below)" if len(hyps) > 1 else ""
        alts = f"; equivalent sites: {', '.join(h.equivalent[:3])}" if h.equivalent else ""
        return Diagnosis(d.leaf, h.cause, h.explanation + alts + extra, h.where)
    if hyps:
        return dataclasses.replace(d, where=hyps[0].where, evidence=f"{d.evidence}; {hyps[0].explanation}")
    if loc is not None and loc.between:
        where = loc.between[0] if d.cause != "unknown" else "; ".join(loc.between[:4])
        return dataclasses.replace(d, where=where,
                                   evidence=d.evidence + ("; no single-rule change reproduces it" if d.cause == "unknown" else ""))
    return d


def assert_gradients_match(manual_fn, loss_fn, params, *args, **kwargs) -> Report:
    """pytest helper: :func:`check_gradients` then :meth:`Report.raise_if_failed`."""
    return check_gradients(manual_fn, loss_fn, params, *args, **kwargs).raise_if_failed()
