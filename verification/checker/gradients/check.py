"""``check_gradients``: compare anyone's hand-derived gradient with ``jax.grad``, and say where and why it differs.

>>> import jax, jax.numpy as jnp
>>> def loss(w, x):
...     return jnp.mean(jnp.tanh(x @ w) ** 2)
>>> def my_grad(w, x):  # d/dw mean(tanh(xw)^2) = x^T (2 tanh(xw) (1 - tanh^2(xw))) / m
...     t = jnp.tanh(x @ w)
...     return x.T @ (2 * t * (1 - t ** 2)) / x.shape[0]
>>> w, x = jnp.ones(3), jnp.arange(6.0).reshape(2, 3) / 6
>>> report = check_gradients(loss, my_grad, w, x)
>>> report.passed
True
>>> report.raise_if_failed() is report  # for tests
True
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable, Optional

import jax
import numpy as np

from verification.checker.base import finite_differences as fd
from verification.checker.explain import hypotheses as hy
from verification.checker.jaxpr import graph as jg
from verification.checker.gradients import blame_rules
from verification.checker.explain import kinks
from verification.checker.base import sampled_differences as sampled
from verification.checker.backward import structure
from verification.checker.backward.check import locate
from verification.checker.backward.source_code import return_line
from verification.checker.base.compare import compare_leaf, compare_leaves
from verification.checker.explain import edit_effects
from verification.checker.base.context import CheckContext
from verification.checker.base.leaves import DiffLeaves
from verification.checker.explain.patterns import diagnose
from verification.checker.base.findings import Diagnosis
from verification.checker.explain.localize import localize, tapped, true_cotangents
from verification.checker.gradients.report import GradientReport
from verification.checker.base.taylor import taylor_test
from verification.checker.base import causes
from verification.checker.base.tolerances import (FD_RTOL, FIT_RTOL, RTOL_BY_DTYPE, STABILISER_REL, default_atol,
                                                  precision_of)

REG_KWARGS = ("l1", "l2", "reg", "lam", "weight_decay")  # regulariser strengths switched off in the second run


# Whether a failing check also names the line of ``manual_fn`` to fix (docs/checker.md, "The line of your
# backward code"): one trace of ``manual_fn`` and replays of it.  Tests of the loss-side diagnosis turn it
# off to spend their time on what they test.
LOCATE_BACKWARD = True


def check_gradients(loss_fn: Callable[..., Any], manual_fn: Callable[..., Any], params, *args, rtol=None, atol=None,
                    finite_differences=False, taylor=False, diagnose_failures=True, deltas=None, leaf_names=None,
                    **kwargs) -> GradientReport:
    r"""Compare ``manual_fn(params, *args, **kwargs)`` (a grads pytree) with ``jax.grad(loss_fn)`` at the same point.

    The argument order of every check: the function first, the hand-derived rule second, then the point
    (as ``check_vjp(f, f_vjp, *args)`` and ``jax.test_util.check_vjp``).  Structure first, then leaf by
    leaf; leaves are named by their paths in ``params`` (``jax.tree_util.keystr``), or by ``leaf_names``.
    ``rtol`` defaults to the params' lowest floating dtype (``RTOL_BY_DTYPE`` of
    :mod:`verification.checker.base.tolerances`, one named constant per dtype), and ``atol`` to ``rtol``
    times the largest entry of the whole autodiff gradient (:func:`default_atol`): a leaf whose entries
    cancel (a bias's sum of deltas) carries the rounding of its terms, not of its small value.  With
    ``finite_differences=True`` the manual gradient is also compared with central differences.  If a
    regulariser strength in ``kwargs`` (named as in ``REG_KWARGS``) is non-zero, the check is run again
    with it set to 0, as cs231n advises, and both runs feed the diagnosis.  With ``taylor=True`` the
    Taylor-remainder test (:func:`verification.taylor_test`) is a second opinion that needs no step size
    and no autodiff.

    When leaves fail, the report says *where* and *why* (docs/checker.md):

    * **At a kink** (relu or abs at exactly 0, a tie in max): a leaf whose every manual entry lies between
      the one-sided differences is a valid subgradient and passes, with a note.
    * **Localisation**: the leaves in the order the backward pass reaches them, the first that fails, the
      last that agrees before it, and the operations and source lines in between.  ``deltas`` maps the
      names of values marked with :func:`verification.tap` in ``loss_fn`` to your hand-derived
      :math:`\partial J/\partial(\text{value})`; each is checked against autodiff's, and the first wrong
      one in backward order is named.
    * **Hypotheses**: autodiff with one derivative rule changed at one equation; every change that
      reproduces the manual gradient is listed.
    * **Patterns** of a whole leaf (a batch size, transposed, L1/L2 terms, swapped leaves, overflow), a
      layer on top of the hypotheses.

    Returns a :class:`GradientReport`: ``str(report)`` is a table with one line per leaf (path, worst
    element, absolute and relative error, cs231n's relative-error band, verdict) and the diagnosis;
    ``report.passed``, ``report.diagnoses`` (each with its ``cause``, a key of ``verification.CAUSES``);
    ``report.to_json()`` follows the schema ``SCHEMA`` (docs/checker.md lists its fields);
    ``report.raise_if_failed()`` for tests (or :func:`assert_gradients_match`).  Works for any loss, not
    only jaxmlp's networks; integer, bool and non-array leaves of ``params`` are held fixed, with a note.
    """
    rtol, atol, precision = _tolerances(loss_fn, manual_fn, params, rtol, atol)
    split = DiffLeaves(params)
    if not split.all_inexact:  # int / bool leaves, functions inside an equinox Module: held fixed, with a note
        return _check_inexact_leaves(split, loss_fn, manual_fn, args, kwargs, leaf_names, precision,
                                     dict(rtol=rtol, atol=atol, finite_differences=finite_differences, taylor=taylor,
                                          diagnose_failures=diagnose_failures, deltas=deltas))
    loss = lambda p: loss_fn(p, *args, **kwargs)  # noqa: E731
    manual, (ref, how) = manual_fn(params, *args, **kwargs), _autodiff(loss_fn, params, args, kwargs)
    atol = default_atol(rtol, ref) if atol is None else atol
    results, structure_error = compare_leaves(manual, ref, rtol, atol, leaf_names)
    report = GradientReport(results, rtol, structure_error, precision=precision)
    if how:
        report.notes.append(how)
    if finite_differences and not structure_error:
        n = sum(int(np.size(l)) for l in jax.tree.leaves(params))
        if n <= sampled.FULL_MAX:
            report.finite_differences = compare_leaves(manual, fd.gradient(loss, params), max(rtol, FD_RTOL), atol,
                                                       leaf_names)[0]
        else:  # random directions, sampled coordinates, narrowing: a few hundred evaluations at any size
            report.finite_differences = sampled.check_leaves(loss, params, manual, [l.path for l in results])
            report.notes.append(sampled.note(n))
    if taylor:
        report.taylor = taylor_test(loss, params, manual)
    reg, off, report.unregularised_passed = _unregularised(loss_fn, manual_fn, params, args, kwargs, rtol, atol)
    if report.passed or not diagnose_failures:
        return report
    blocked = not_finite(params, [l.path for l in results], args, loss)
    if blocked:
        report.notes.append(blocked)
        return report
    if not structure_error:
        ctx = CheckContext(loss, params, manual, ref, rtol, atol, precision, tuple(report.leaves),
                           None if report.finite_differences is None else tuple(report.finite_differences),
                           None if report.taylor is None else report.taylor.passed)
        if _diagnose(report, ctx, (loss_fn, manual_fn, args, kwargs), deltas, leaf_names):
            return report
    report.diagnoses = [_merge(d, report) for d in diagnose(manual, ref, params, args, report, strengths=reg, off=off)]
    if structure_error and LOCATE_BACKWARD and any(  # a leaf left None: the lines that can hand None on
            x is None for x in jax.tree.leaves(manual, is_leaf=lambda x: x is None)):
        leaves, treedef = jax.tree.flatten(params)
        report.backward = _guarded(report, "the backward localisation", lambda: structure.locate(
            lambda *ls: manual_fn(jax.tree.unflatten(treedef, ls), *args, **kwargs), leaves,
            [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path(params)[0]], structure_error))
    worst = max((l.max_rel for l in report.leaves if not l.passed), default=float("inf"))
    if precision == "float64" and worst <= STABILISER_REL:
        report.diagnoses = [Diagnosis(l.path, "stabiliser", causes.stabiliser_sentence(worst)) for l in report.leaves
                            if not l.passed]
        if report.backward is not None:
            report.backward.agree("stabiliser")
    return report


def _diagnose(report: GradientReport, ctx: CheckContext, program, deltas, leaf_names=None) -> bool:
    """The diagnosis stages on the traced loss, in order; each returns what it found and only this writes the
    report.  ``True`` when a stage settles the check (a valid subgradient at a kink, a wrong custom rule)."""
    graph = _guarded(report, "tracing the loss", lambda: jg.trace(ctx.loss, ctx.params, [l.path for l in ctx.leaves]))
    if graph is None:
        return False
    ctx = dataclasses.replace(ctx, graph=graph)
    for stage, run in (("the kink test", kinks.passes_at_kinks), ("the custom rules", blame_rules.blame_rules)):
        found = _guarded(report, stage, lambda: run(ctx))
        if found is None:
            continue
        report.leaves = [dataclasses.replace(l, passed=True) if l.path in found.accepted else l for l in report.leaves]
        report.diagnoses += list(found.diagnoses)
        report.notes += list(found.notes)
        if found.settled:
            return True
    passed = {l.path: l.passed for l in report.leaves}  # leaves accepted at a kink count as agreeing
    report.localization = _guarded(report, "localisation", lambda: localize(graph, passed))
    loss_fn, manual_fn, args, kwargs = program
    if deltas is not None and report.localization is not None:
        checked, first = _check_deltas(loss_fn, ctx.params, args, kwargs, deltas, ctx.rtol)
        report.localization = dataclasses.replace(report.localization, deltas=checked, first_wrong_delta=first)
    # the loss's forward values and true cotangents: what both the hypotheses and the backward localisation read
    point = functools.lru_cache(maxsize=None)(lambda: edit_effects.at_point(graph, jax.tree.leaves(ctx.params)))
    report.hypotheses, report.ranked = _guarded(report, "the hypotheses", lambda: hy.explain(
        graph, jax.tree.leaves(ctx.params), ctx.manual, ctx.reference, FIT_RTOL[ctx.precision], point)) or ([], [])
    if LOCATE_BACKWARD:
        report.backward = _guarded(report, "the backward localisation", lambda: backward_of(
            ctx, graph, loss_fn, manual_fn, args, kwargs, report.hypotheses[0].cause if report.hypotheses else None,
            point()))
    if report.backward is not None and report.hypotheses:
        report.backward.agree(report.hypotheses[0].cause, report.hypotheses[0].where)
    return False


def backward_of(ctx: CheckContext, graph, loss_fn, manual_fn, args, kwargs, hint: Optional[str] = None, point=None):
    """The line of ``manual_fn`` to fix (:mod:`verification.checker.backward`); ``hint``: the cause the loss's
    side names; ``point``: the loss's values and true cotangents, if already computed."""
    leaves, treedef = jax.tree.flatten(ctx.params)
    names = [l.path for l in ctx.leaves]
    point = edit_effects.at_point(graph, leaves) if point is None else point
    user = lambda *ls: jax.tree.leaves(manual_fn(jax.tree.unflatten(treedef, ls), *args, **kwargs))  # noqa: E731
    try:
        params = list(inspect.signature(loss_fn).parameters)[1:]
    except (TypeError, ValueError):
        params = []
    inputs = [(n, a) for n, a in zip(params, args) if hasattr(a, "shape")]
    named = getattr(getattr(manual_fn, "__code__", None), "co_name", "<lambda>") != "<lambda>"  # a lambda
    # that calls the user's function returns nothing itself
    return locate(user, leaves, names, graph, point, jax.tree.leaves(ctx.reference), names,
                  [not l.passed for l in ctx.leaves], ctx.precision, inputs=inputs,
                  returns_at=return_line(manual_fn) if named else None, hint=hint)


def _check_inexact_leaves(split, loss_fn, manual_fn, args, kwargs, names, precision, options) -> GradientReport:
    """The check over the floating leaves of ``params`` only, the others held fixed (:class:`DiffLeaves`)."""
    if not split.leaves:
        raise ValueError(f"params: expected at least one floating-point leaf to differentiate, got none "
                         f"({', '.join(split.skipped[:6])})")
    manual = manual_fn(split.params, *args, **kwargs)
    try:
        selected = split.select(manual)
    except ValueError as e:  # a gradient leaf missing: a structure error, as for any other pytree mismatch
        report = GradientReport([], options["rtol"] or RTOL_BY_DTYPE[precision], str(e), precision=precision)
        report.notes.append(split.note())
        return report
    if names is not None and len(names) == len(split.flat):
        names = [names[k] for k in split.positions]
    loss_d = lambda leaves, *a, **k: loss_fn(split.rebuild(leaves), *a, **k)  # noqa: E731
    def manual_d(leaves, *a, **k):  # at the checked point, the hand gradient already computed
        same = len(a) == len(args) and all(x is y for x, y in zip(a, args)) and k.keys() == kwargs.keys() \
            and all(k[n] is kwargs[n] for n in k)
        if leaves is split.leaves and same:
            return selected
        return split.select(manual_fn(split.rebuild(leaves), *a, **k))

    report = check_gradients(loss_d, manual_d, split.leaves, *args, leaf_names=names or split.names, **options,
                             **kwargs)
    report.notes.insert(0, split.note())
    return report


def not_finite(params, names, args, loss) -> str:
    """A note when the point cannot be judged (a NaN or inf in the params or the arguments, or a loss that
    is not finite there): which leaf and entry; ``""`` when the point is finite."""
    names = ["params" if n == "<root>" else n for n in names]
    for name, x in list(zip(names, jax.tree.leaves(params))) + [(f"args[{k}]", a) for k, a in enumerate(args)]:
        a = np.asarray(x) if hasattr(x, "shape") or isinstance(x, float) else None
        if a is not None and np.issubdtype(a.dtype, np.inexact) and not np.all(np.isfinite(a)):
            bad = np.argwhere(~np.isfinite(a))
            where = [int(i) for i in bad[0]] if a.ndim else []
            return (f"the point cannot be judged: {name} holds {a[tuple(bad[0])] if a.ndim else a} at {where} "
                    f"({len(bad)} non-finite entries); no gradient diagnosis is made")
    value = float(np.asarray(loss(params)))
    if not np.isfinite(value):
        return f"the point cannot be judged: the loss is {value} there; no gradient diagnosis is made"
    return ""


def _guarded(report, stage, fn):
    """``fn()``, or ``None`` with a note when a construct of the loss is beyond the diagnosis: the
    comparison (the verdict) stands, and what could not be said is said, never a raw traceback."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 -- any program: the report says what stopped, and where
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        report.notes.append(f"diagnosis: {stage} stopped ({type(e).__name__}: {first}); the comparison above "
                            "stands, the diagnosis is partial")
        return None


def _tolerances(loss_fn, manual_fn, params, rtol, atol):
    """Checked arguments, and ``(rtol, atol, precision)`` with ``rtol`` from the params' dtype."""
    for name, fn in (("loss_fn", loss_fn), ("manual_fn", manual_fn)):
        if not callable(fn):
            raise TypeError(f"{name}: expected a callable, got {type(fn).__name__}")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if tol is not None and not (isinstance(tol, (int, float)) and tol >= 0):
            raise ValueError(f"{name}: expected a tolerance >= 0, got {tol!r}")
    precision = precision_of(params)
    return (RTOL_BY_DTYPE[precision] if rtol is None else rtol), atol, precision


def _autodiff(loss_fn, params, args, kwargs):
    """``(reference gradient, note)``: ``jax.grad`` of the loss (note ``None``), or forward mode where
    reverse mode has no rule (``lax.while_loop``), with a clear error when ``loss_fn`` does not return a
    scalar (the order ``check_gradients(loss_fn, manual_fn, ...)`` swapped, as it was before version 0.2).

    The gradient is compiled as one program (the array arguments traced, the others fixed), which costs a
    fraction of running it operation by operation; a loss that cannot be traced that way (Python control
    flow on values, a host callback that needs concrete values) runs as it is."""
    loss = lambda p: loss_fn(p, *args, **kwargs)  # noqa: E731
    out = jax.eval_shape(loss, params)
    if jax.tree.structure(out).num_leaves != 1 or jax.tree.leaves(out)[0].shape != ():
        raise TypeError("loss_fn: expected a function returning a scalar loss, got one returning "
                        f"{jax.tree.map(lambda o: o.shape, out)}; the order is check_gradients(loss_fn, manual_fn, "
                        "params, *args) (swapped in verification 0.2)")
    array = lambda a: isinstance(a, (jax.Array, np.ndarray))  # noqa: E731
    fixed = (len(args), tuple((k, a) for k, a in enumerate(args) if not array(a)),
             tuple((n, a) for n, a in sorted(kwargs.items()) if not array(a)))
    arrays = ([a for a in args if array(a)], {n: a for n, a in kwargs.items() if array(a)})
    try:
        return _compiled_grad(loss_fn, fixed, params, arrays), None
    except Exception:  # noqa: BLE001 -- any failure to trace (or an unhashable argument): the eager run says what
        pass
    try:
        return jax.grad(loss)(params), None
    except (TypeError, ValueError) as e:  # integer leaves, a while_loop in reverse mode, ...: say so, not a traceback
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    try:  # a while_loop has no reverse rule but a forward one: one JVP per parameter entry
        return jax.jacfwd(loss)(params), (f"the reference is forward-mode autodiff (jax.jacfwd): jax.grad cannot "
                                          f"differentiate the loss ({first})")
    except (TypeError, ValueError):
        raise ValueError(f"loss_fn: jax.grad cannot differentiate it at params ({first}), nor jax.jacfwd; the "
                         "reference gradient needs float leaves only") from None


@functools.partial(jax.jit, static_argnums=(0, 1))
def _compiled_grad(loss_fn, fixed, params, arrays):
    """``jax.grad`` of ``loss_fn(params, *args, **kwargs)`` as one compiled program: the arguments that are
    arrays traced (``arrays``: positional, keyword), the others fixed (``fixed``, hashable: the same loss
    and fixed arguments reuse the compiled program)."""
    n, fixed_args, fixed_kwargs = fixed
    positional, keyword = iter(arrays[0]), dict(arrays[1])
    at = dict(fixed_args)
    args = [at[k] if k in at else next(positional) for k in range(n)]
    return jax.grad(lambda p: loss_fn(p, *args, **dict(fixed_kwargs), **keyword))(params)


def _unregularised(loss_fn, manual_fn, params, args, kwargs, rtol, atol):
    """With a non-zero regulariser strength in ``kwargs``: the check again with it off.  Returns the
    strengths, ``(manual, autodiff)`` without them and whether they agree (or ``({}, None, None)``)."""
    reg = {k: v for k, v in kwargs.items() if k in REG_KWARGS and np.any(np.asarray(v) != 0)}
    if not reg:
        return reg, None, None
    off = {**kwargs, **{k: 0.0 for k in reg}}
    m0 = manual_fn(params, *args, **off)
    r0 = _autodiff(loss_fn, params, args, off)[0]
    res0, err0 = compare_leaves(m0, r0, rtol, atol)
    return reg, (m0, r0), not err0 and all(l.passed for l in res0)


def _check_deltas(loss_fn, params, args, kwargs, deltas, rtol):
    """Each tapped delta against the true cotangent: ``(results, the first wrong one in backward order)``."""
    names = [t[0] for t in tapped(loss_fn, params, *args, **kwargs)]
    unknown = sorted(set(deltas) - set(names))
    if unknown:
        raise ValueError(f"deltas: no tap named {unknown} in loss_fn; its taps are {names}")
    true = true_cotangents(loss_fn, params, *args, **kwargs)
    checked, first = [], None
    for name in reversed(names):  # backward order
        if name in deltas:
            r = compare_leaf(name, deltas[name], true[name], rtol)
            checked.append({"name": name, "max_rel": r.max_rel, "passed": r.passed, "worst_index": r.worst_index})
            if not r.passed and first is None:
                first = name
    return checked, first


def _merge(d: Diagnosis, report: GradientReport) -> Diagnosis:
    """A leaf's diagnosis: a whole-leaf pattern if one fits, else the best hypothesis; with a site either way."""
    loc, hyps = report.localization, report.hypotheses
    if d.cause == "unknown" and hyps:
        h = hyps[0]
        extra = f" ({len(hyps) - 1} more hypotheses fit, listed below)" if len(hyps) > 1 else ""
        alts = f"; equivalent sites: {', '.join(h.equivalent[:3])}" if h.equivalent else ""
        return Diagnosis(d.leaf, h.cause, h.explanation + alts + extra, h.where)
    if hyps:
        return dataclasses.replace(d, where=hyps[0].where, evidence=f"{d.evidence}; {hyps[0].explanation}")
    if report.ranked and d.cause == "unknown":
        return dataclasses.replace(d, where="; ".join(report.ranked),
                                   evidence=d.evidence + "; no single-rule change reproduces it: the sites are ranked "
                                   "by how much of the error a change there explains")
    if loc is not None and loc.between:
        where = loc.between[0] if d.cause != "unknown" else "; ".join(loc.between[:4])
        return dataclasses.replace(
            d,
            where=where,
            evidence=d.evidence + ("; no single-rule change reproduces it" if d.cause == "unknown" else ""),
        )
    return d


def assert_gradients_match(loss_fn, manual_fn, params, *args, **kwargs) -> GradientReport:
    """pytest helper: :func:`check_gradients` then :meth:`GradientReport.raise_if_failed`."""
    return check_gradients(loss_fn, manual_fn, params, *args, **kwargs).raise_if_failed()
