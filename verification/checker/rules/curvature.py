r"""Check curvature products: Hessian-vector and generalised Gauss–Newton-vector products.

``check_hvp(loss_fn, hvp_fn, params, *args, kind=...)`` compares ``hvp_fn(params, v, *args)`` (a pytree
like ``params``) with

* ``kind="hessian"``: :math:`Hv`, by ``jax.jvp(jax.grad(loss_fn))`` (forward over reverse);
* ``kind="gauss_newton"``: the generalised Gauss–Newton product of the loss's linearisation.  Pass
  ``loss_fn`` as a pair ``(model_fn, outer_loss)`` with
  :math:`L(p) = \ell(f(p, \ldots), \ldots)`; then :math:`Gv = J_f^\top\, \nabla^2\ell\; J_f v`
  (a JVP of ``model_fn``, a Hessian-vector product of ``outer_loss`` at the output, a VJP back),
  without forming :math:`J_f` (Schraudolph, 2002).

A product checked as a Hessian that matches the Gauss–Newton product instead (the model's own
curvature left out), or the other way round, is named.  Blocks are (output leaf, direction leaf), with
random directions and every unit direction on small leaves.

>>> import jax, jax.numpy as jnp
>>> loss = lambda w, x: jnp.sum(jnp.tanh(x @ w) ** 2)
>>> def hvp(w, v, x):  # by hand: d/dw of x^T (2 t (1 - t^2)) along v
...     t = jnp.tanh(x @ w)
...     return x.T @ ((2 - 6 * t ** 2) * (1 - t ** 2) * (x @ v))
>>> w, x = jnp.array([0.3, -0.2]), jnp.array([[1.0, 2.0], [0.5, -1.0], [2.0, 0.1]])
>>> check_hvp(loss, hvp, w, x).passed
True
"""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from verification.checker.rules.linear_maps import compare_maps
from verification.checker.rules.args import Args, check_callables, precision_line, reference_dtype, tolerance
from verification.checker.rules.backward_code import agree, guarded, locate_in_jvp
from verification.checker.base.findings import RuleFinding
from verification.checker.base.leaves import is_inexact_array
from verification.checker.rules.diagnosis import explain, where_of
from verification.checker.rules.report import RuleReport
from verification.checker.base.tolerances import FIT_RTOL

KINDS = ("hessian", "gauss_newton")


def gauss_newton_product(model_fn, outer_loss, params, v, *args):
    r""":math:`J^\top \nabla^2\ell\, J v` for :math:`L = \ell(f(p))`, by jvp, hvp and vjp (no :math:`J` formed)."""
    z, jv = jax.jvp(lambda p: model_fn(p, *args), (params,), (v,))
    hjv = jax.jvp(jax.grad(lambda zz: outer_loss(zz, *args)), (z,), (jv,))[1]
    return jax.vjp(lambda p: model_fn(p, *args), params)[1](hjv)[0]


def hessian_product(loss, params, v, *args):
    """:math:`Hv` by forward-over-reverse autodiff."""
    return jax.jvp(lambda p: jax.grad(loss)(p, *args), (params,), (v,))[1]


def check_hvp(loss_fn, hvp_fn: Callable, params, *args, kind: str = "hessian", rtol=None) -> RuleReport:
    r"""Check ``hvp_fn(params, v, *args)`` against the Hessian or the Gauss–Newton product of ``loss_fn``.

    ``loss_fn`` is ``loss_fn(params, *args) -> scalar``, or the pair ``(model_fn, outer_loss)`` with
    ``loss = outer_loss(model_fn(params, *args), *args)``; the pair is required for
    ``kind="gauss_newton"``, and with ``kind="hessian"`` it lets the report say when the product is the
    Gauss–Newton one instead.  The other arguments are held fixed.

    >>> import jax.numpy as jnp
    >>> model = lambda w, x: jnp.tanh(x @ w)
    >>> outer = lambda z, x: 0.5 * jnp.sum(z ** 2)
    >>> def gn(w, v, x):  # J^T J v with J = diag(1 - t^2) x
    ...     t = model(w, x)
    ...     return x.T @ ((1 - t ** 2) ** 2 * (x @ v))
    >>> w, x = jnp.array([0.3, -0.2]), jnp.array([[1.0, 2.0], [0.5, -1.0], [2.0, 0.1]])
    >>> check_hvp((model, outer), gn, w, x, kind="gauss_newton").passed
    True
    >>> r = check_hvp((model, outer), gn, w, x, kind="hessian")
    >>> r.passed, r.findings[0].cause
    (False, 'gauss_newton_not_hessian')
    """
    model_fn, outer, loss = _split_loss(loss_fn, hvp_fn, kind)
    a = Args(lambda params: None, (params,))
    product = _reference_products(a, args, loss, model_fn, outer)

    def rule(v_leaves):
        out = jax.tree.leaves(hvp_fn(params, a.rebuild(v_leaves)[0], *args))
        return out if len(out) == len(a.leaves) else [None] * len(a.leaves)

    tol = tolerance(a.precision, rtol, False)
    label = "Hv by jax.jvp(jax.grad)" if kind == "hessian" else "the Gauss–Newton product J^T H_l J v"
    results = [l._replace(name="hvp" + l.name[len("params"):]) for l in a.space()]  # hvp['W'] | params['W']
    compare = lambda which: compare_maps(rule, product(which), a.space(), results, tol,  # noqa: E731
                                         probe_is_input=True, ref_dtype=reference_dtype())
    report = RuleReport(f"hvp/{kind}", label, compare(kind), tol, precision_line(a.precision, label))
    if report.passed:
        return report
    if model_fn is None or not _is_the_other_product(report, compare, kind, hvp_fn):
        primals = {n: np.asarray(l, np.float64) for n, l in zip(a.names, a.leaves)}
        report.findings = explain(report.blocks, rule, product(kind), a.space(), [l.name for l in results],
                                  mode="hvp", fit=FIT_RTOL[a.precision], primals=primals, where=where_of(hvp_fn))
    if model_fn is None:
        report.notes.append("if hvp_fn is meant as a Gauss–Newton product, pass loss_fn as the pair "
                            "(model_fn, outer_loss): the report then says whether it is that product instead")
    wide = _upcast(args)
    report.backward = guarded(report, lambda: locate_in_jvp(lambda ps, vs: hvp_fn(ps[0], vs[0], *args),
                                                            _gradient_map(a, wide, loss, model_fn, outer, kind),
                                                            a, report.rtol,
                                                            [(f"args[{k}]", x) for k, x in enumerate(wide)
                                                             if is_inexact_array(x)]))
    agree(report)
    return report


def _gradient_map(a: Args, args, loss, model_fn, outer, kind):
    r"""``leaves -> gradient leaves`` whose tangent along ``v`` is the product of ``kind``: the gradient of
    the loss (the Hessian), or :math:`J(\bar p)^\top \nabla\ell(f(\bar p) + J(\bar p)(p - \bar p))`
    with :math:`\bar p` the point held by ``stop_gradient`` (Gauss–Newton).  A hand product is a tangent
    rule of this map (:func:`verification.checker.rules.backward_code.locate_in_jvp`); the model's own lines
    compute its forward values."""
    if kind == "hessian":
        return lambda *ls: jax.tree.leaves(jax.grad(loss)(a.rebuild(ls)[0], *args))

    def gauss_newton(*ls):
        p = a.rebuild(ls)[0]
        held = jax.lax.stop_gradient(p)
        model = lambda q: model_fn(q, *args)  # noqa: E731
        z, jv = jax.jvp(model, (held,), (jax.tree.map(lambda x, y: x - y, p, held),))
        return jax.tree.leaves(jax.vjp(model, held)[1](jax.grad(lambda zz: outer(zz, *args))(z + jv))[0])

    return gauss_newton


def _split_loss(loss_fn, hvp_fn, kind):
    """``(model_fn, outer_loss, loss)`` from a loss or a ``(model_fn, outer_loss)`` pair (``None``s for a
    plain loss), with the arguments checked."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {list(KINDS)}, got {kind!r}")
    if not isinstance(loss_fn, tuple):
        check_callables(loss_fn=loss_fn, hvp_fn=hvp_fn)
        if kind == "gauss_newton":
            raise ValueError("loss_fn: kind='gauss_newton' expected the pair (model_fn, outer_loss) whose "
                             "linearisation defines the product, got one callable")
        return None, None, loss_fn
    if len(loss_fn) != 2:
        raise ValueError(f"loss_fn: expected a callable or a pair (model_fn, outer_loss), got {len(loss_fn)} items")
    model_fn, outer = loss_fn
    check_callables(model_fn=model_fn, outer_loss=outer, hvp_fn=hvp_fn)
    return model_fn, outer, lambda p, *xs: outer(model_fn(p, *xs), *xs)


def _upcast(args) -> tuple:
    """The held arguments in the reference dtype."""
    return tuple(jax.tree.map(lambda x: x.astype(reference_dtype()) if is_inexact_array(x) else x, args))


def _reference_products(a: Args, args, loss, model_fn, outer):
    """``which -> (direction leaves -> product leaves)`` in the reference dtype, ``which`` a kind."""
    ref_args = _upcast(args)
    p_ref = a.rebuild(a.upcast())[0]

    def product(which):
        def apply(v_leaves):
            v = a.rebuild(v_leaves)[0]
            out = (hessian_product(loss, p_ref, v, *ref_args) if which == "hessian"
                   else gauss_newton_product(model_fn, outer, p_ref, v, *ref_args))
            return jax.tree.leaves(out)
        return apply

    return product


def _is_the_other_product(report, compare, kind, hvp_fn) -> bool:
    """A failing product that equals the other kind (a "Hessian" that is Gauss–Newton, or the reverse):
    the one finding, named."""
    other = "gauss_newton" if kind == "hessian" else "hessian"
    if not all(b.passed for b in compare(other)):
        return False
    text = ("the product equals the Gauss–Newton product J^T H_l J v: the second-derivative term of the "
            "model (sum_k dl/dz_k Hess z_k) is left out" if kind == "hessian" else
            "the product equals the full Hessian, not the Gauss–Newton product")
    report.findings = [RuleFinding("all", "all", f"{other}_not_{kind}", text, where_of(hvp_fn))]
    return True


def assert_hvp_correct(loss_fn, hvp_fn, params, *args, **kw) -> RuleReport:
    """pytest helper: :func:`check_hvp` then :meth:`RuleReport.raise_if_failed`."""
    return check_hvp(loss_fn, hvp_fn, params, *args, **kw).raise_if_failed()
