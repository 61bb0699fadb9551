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

from verification.compare import LeafResult, compare_leaves
from verification.diagnose import Diagnosis, diagnose
from verification.tolerances import F32_RTOL, F64_RTOL, FD_RTOL, FD_STEP

REG_KWARGS = ("l1", "l2", "reg", "lam", "weight_decay")  # regulariser strengths switched off in the second run


@dataclasses.dataclass
class Report:
    """What :func:`check_gradients` found."""

    leaves: List[LeafResult]
    rtol: float
    structure_error: str = ""
    diagnoses: List[Diagnosis] = dataclasses.field(default_factory=list)
    finite_differences: Optional[List[LeafResult]] = None
    unregularised_passed: Optional[bool] = None

    @property
    def passed(self) -> bool:
        ok = not self.structure_error and all(l.passed for l in self.leaves)
        return ok and all(l.passed for l in (self.finite_differences or []))

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
        if self.unregularised_passed is not None:
            lines.append(f"with the regulariser off: {'PASS' if self.unregularised_passed else 'FAIL'}")
        lines.append(f"overall: {'PASS' if self.passed else 'FAIL'} (rtol {self.rtol:g})")
        for d in self.diagnoses:
            lines.append(f"diagnosis: {d.leaf}: {d.cause} -- {d.evidence}")
        return "\n".join(lines)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["passed"] = self.passed
        return json.dumps(d, default=lambda o: o if np.isfinite(o) else str(o) if isinstance(o, float) else str(o))

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


def check_gradients(manual_fn: Callable[..., Any], loss_fn: Callable[..., Any], params, *args, rtol=None, atol=None,
                    finite_differences=False, diagnose_failures=True, **kwargs) -> Report:
    """Compare ``manual_fn(params, *args, **kwargs)`` (a grads pytree) with ``jax.grad(loss_fn)`` at the same point.

    Structure first, then leaf by leaf.  ``rtol`` defaults to 1e-12 for
    float64 params and 1e-5 otherwise (``verification.tolerances``).  With
    ``finite_differences=True`` the manual gradient is also compared with
    central differences (float64 needs ``jax_enable_x64``).  If a regulariser
    strength in ``kwargs`` (named as in ``REG_KWARGS``) is non-zero, the check is
    run again with it set to 0, as cs231n advises, and both runs feed the diagnosis.
    """
    for name, fn in (("manual_fn", manual_fn), ("loss_fn", loss_fn)):
        if not callable(fn):
            raise TypeError(f"{name}: expected a callable, got {type(fn).__name__}")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if tol is not None and not (isinstance(tol, (int, float)) and tol >= 0):
            raise ValueError(f"{name}: expected a tolerance >= 0, got {tol!r}")
    leaves = jax.tree.leaves(params)
    f64 = bool(leaves) and all(jnp.result_type(l) == jnp.float64 for l in leaves)
    rtol = (F64_RTOL if f64 else F32_RTOL) if rtol is None else rtol
    atol = 0.0 if atol is None else atol
    manual = manual_fn(params, *args, **kwargs)
    ref = jax.grad(lambda p: loss_fn(p, *args, **kwargs))(params)
    results, structure_error = compare_leaves(manual, ref, rtol, atol)
    report = Report(results, rtol, structure_error)
    if finite_differences:
        fd = central_differences(lambda p: loss_fn(p, *args, **kwargs), params)
        report.finite_differences = compare_leaves(manual, fd, max(rtol, FD_RTOL), atol)[0]
    reg = {k: v for k, v in kwargs.items() if k in REG_KWARGS and np.any(np.asarray(v) != 0)}
    off = None
    if reg:
        off = {**kwargs, **{k: 0.0 for k in reg}}
        m0 = manual_fn(params, *args, **off)
        r0 = jax.grad(lambda p: loss_fn(p, *args, **off))(params)
        res0, err0 = compare_leaves(m0, r0, rtol, atol)
        report.unregularised_passed = not err0 and all(l.passed for l in res0)
        off = (m0, r0)
    if diagnose_failures and not report.passed:
        report.diagnoses = diagnose(manual, ref, params, args, report,
                                    rerun=lambda p: (manual_fn(p, *args, **kwargs),
                                                     jax.grad(lambda q: loss_fn(q, *args, **kwargs))(p)),
                                    strengths=reg, off=off)
    return report


def assert_gradients_match(manual_fn, loss_fn, params, *args, **kwargs) -> Report:
    """pytest helper: :func:`check_gradients` then :meth:`Report.raise_if_failed`."""
    return check_gradients(manual_fn, loss_fn, params, *args, **kwargs).raise_if_failed()
