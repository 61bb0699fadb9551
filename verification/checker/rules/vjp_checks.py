r"""Check reverse-mode rules: ``jax.custom_vjp`` functions and hand-written VJPs.

``jax.grad`` of a ``custom_vjp`` function uses the custom rule itself, so comparing with autodiff of the
decorated function proves nothing.  :func:`check_custom_vjp` compares the rule with autodiff of the
*undecorated* primal (``f.fun``), or with finite differences when that cannot be reverse-differentiated
(a ``while_loop``), block by block (:mod:`verification.checker.rules.linear_maps`), and explains a failing block
(:mod:`verification.checker.rules.diagnosis`).  The rule runs in the arguments' own dtype; the reference in
float64 when x64 is on (float32 otherwise); the tolerance comes from the arguments' lowest precision.

>>> import jax, jax.numpy as jnp
>>> @jax.custom_vjp
... def logsumexp(x):
...     m = jnp.max(x)
...     return m + jnp.log(jnp.sum(jnp.exp(x - m)))
>>> def fwd(x):
...     y = logsumexp(x)
...     return y, jnp.exp(x - y)
>>> logsumexp.defvjp(fwd, lambda p, g: (g * p,))
>>> check_custom_vjp(logsumexp, jnp.array([1.0, 2.0, 3.0])).passed
True
>>> bad = jax.custom_vjp(logsumexp.fun)
>>> bad.defvjp(fwd, lambda p, g: (p,))  # forgets g
>>> report = check_custom_vjp(bad, jnp.array([1.0, 2.0, 3.0]))
>>> report.passed, report.findings[0].cause
(False, 'ignores_probe')
>>> print(report.findings[0].explanation)
correct only when the cotangent is 1: the rule ignores the cotangent
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from verification.checker.base.finite_differences import jacobian as fd_jacobian
from verification.checker.rules.args import Args, check_callables, decorated, out_space
from verification.checker.rules.backward_code import custom_vjp_code, custom_vjp_primal, locate_vjp
from verification.checker.rules.diagnosis import where_of
from verification.checker.rules.linear_maps import Leaf, reference_dtype
from verification.checker.rules.report import RuleReport
from verification.checker.rules.skeleton import batched_rows, reference_of, rule_report


def pullback_of(fn, example_leaves):
    """``(leaves, ct_leaves) -> input cotangent leaves`` by ``jax.vjp`` of ``fn`` (a custom rule applies)."""
    _, treedef = out_space(jax.eval_shape(fn, *example_leaves))
    return lambda ls, ct: list(jax.vjp(fn, *ls)[1](jax.tree.unflatten(treedef, ct)))


def linearized(fn, leaves):
    """``(out, ct_leaves -> input cotangent leaves)``: one ``jax.vjp`` of ``fn`` at ``leaves``, reused for
    every probe."""
    out, pb = jax.vjp(fn, *leaves)
    treedef = jax.tree.structure(out)
    return out, lambda ct: list(pb(jax.tree.unflatten(treedef, ct)))


def vjp_report(kind, rule_pb, got_out, ref_fn, args: Args, *, rtol=None, where="", force_fd=False) -> RuleReport:
    """The VJP check shared by :func:`check_custom_vjp` and :func:`check_vjp`.

    ``rule_pb(ct_leaves)`` returns the input cotangent leaves at ``args`` (None if malformed) and
    ``got_out`` is the rule's primal output there; ``ref_fn(*leaves)`` is what autodiff (or finite
    differences) differentiates for the reference.
    """
    ref_leaves = args.upcast()

    def autodiff():
        ref_out, pb = jax.vjp(ref_fn, *ref_leaves)
        pb(jax.tree.map(jnp.zeros_like, ref_out))  # a while_loop fails only here, at transposition
        return ref_out, pb

    reference, found = reference_of(autodiff, force_fd, "reverse-differentiated")
    ref_out, pb = found if found is not None else (None, None)
    if pb is None:
        jac, ref_out = fd_jacobian(ref_fn, ref_leaves)
    space, treedef = out_space(ref_out)
    if jax.tree.structure(got_out) == treedef:
        space = [Leaf(s.name, s.shape, jnp.result_type(l)) for s, l in zip(space, jax.tree.leaves(got_out))]
    unravel_in = ravel_pytree(ref_leaves)[1]
    malformed = []

    def reference_ct(ct):
        if pb is not None:
            return list(pb(jax.tree.unflatten(treedef, ct)))
        return unravel_in(jnp.asarray(jac.T @ np.asarray(ravel_pytree(ct)[0], np.float64), reference_dtype()))

    def rule(ct):
        res = rule_pb(ct)
        if res is None:
            malformed.append(True)
        return res if res is not None else [None] * len(args.leaves)

    def structure_error():
        return (f"the pullback must return a tuple with one cotangent per argument ({len(args.args)}), "
                "shaped like the arguments") if malformed else ""

    return rule_report(kind, "vjp", args, rule=rule, reference_map=reference_ct, space=space,
                       treedef=treedef, got_out=got_out, ref_out=ref_out, reference=reference, fd=pb is None,
                       rtol=rtol, where=where, structure_error=structure_error)


def check_custom_vjp(f: Callable, *args, rtol=None, finite_differences=False, batched=False) -> RuleReport:
    r"""Check the backward rule of ``f``, a ``jax.custom_vjp`` function (or a jitted one), at ``args``.

    The rule (``jax.vjp`` of ``f``, which runs its ``fwd`` and ``bwd``) is compared with autodiff of the
    undecorated primal ``f.fun``: :math:`\bar x = J^\top \bar y`.  Finite differences replace autodiff
    when ``f.fun`` cannot be reverse-differentiated (a ``while_loop``) or ``finite_differences=True``;
    the report says which.  ``nondiff_argnums`` are held fixed; pytree arguments are checked leaf by
    leaf.  Each (output leaf, input leaf) block gets random cotangents and, when small, every unit
    cotangent (the full Jacobian).  With ``batched=True`` the arguments carry a leading batch axis: the
    rule is checked under ``jax.vmap``, and the vmapped pullbacks against per-example calls.  ``f`` may
    also be any callable that calls exactly one ``custom_vjp`` rule; with several it raises and points to
    :func:`verification.check_rules`.

    Returns a :class:`verification.RuleReport`: one row per block (and the primal output), ``findings``
    that explain the failing blocks (causes from ``verification.CAUSES``), ``to_json()`` and
    ``raise_if_failed()``.  The default ``rtol`` is that of the arguments' lowest floating dtype
    (``RTOL_BY_DTYPE`` of :mod:`verification.checker.base.tolerances`).

    >>> import jax, jax.numpy as jnp
    >>> @jax.custom_vjp
    ... def softplus(x):
    ...     return jnp.logaddexp(x, 0.0)
    >>> softplus.defvjp(lambda x: (softplus(x), x), lambda x, g: (g * jax.nn.sigmoid(x),))
    >>> check_custom_vjp(softplus, jnp.linspace(-3.0, 3.0, 5)).passed
    True
    """
    where, a, one_rule, rule_f, ref_f = decorated(f, "custom_vjp", "bwd", args, batched)
    report = vjp_report("custom_vjp", *linearized(rule_f, a.leaves)[::-1], ref_f, a, rtol=rtol,
                        where=where, force_fd=finite_differences)
    code = custom_vjp_code(f)
    if not report.passed and code is not None and not batched:
        locate_vjp(report, code, custom_vjp_primal(f), ref_f, a)
    if batched:
        one = [l[0] for l in a.leaves]
        space = out_space(jax.eval_shape(one_rule, *one))[0]
        report.batched = batched_rows(pullback_of(one_rule, one), a, report.rtol, out=space)
    return report


def check_vjp(f: Callable, f_vjp: Callable, *args, rtol=None, finite_differences=False, batched=False) -> RuleReport:
    r"""Check a hand-written VJP: ``f_vjp(*args) -> (out, pullback)``, ``pullback(ct) -> cotangents of args``.

    The calling convention of ``jax.test_util.check_vjp``.  The reference is ``jax.vjp(f, *args)``;
    ``finite_differences=True`` uses central differences of ``f`` instead (a second opinion).
    ``batched=True`` as in :func:`check_custom_vjp`.

    >>> import jax.numpy as jnp
    >>> f = lambda W, x: x @ W
    >>> f_vjp = lambda W, x: (x @ W, lambda g: (x.T @ g, g @ W.T))
    >>> W, x = jnp.ones((3, 2)), jnp.arange(6.0).reshape(2, 3)
    >>> check_vjp(f, f_vjp, W, x).passed
    True
    """
    check_callables(f=f, f_vjp=f_vjp)
    a = Args(f, args)
    one = [l[0] for l in a.leaves] if batched else a.leaves

    def one_ct(ls, ct):
        _, td = out_space(jax.eval_shape(lambda *q: f(*a.rebuild(q)), *ls))
        return a.cotangents(f_vjp(*a.rebuild(ls))[1](jax.tree.unflatten(td, ct)))

    ref = lambda *ls: f(*a.rebuild(ls))  # noqa: E731
    if batched:
        rule_pb = lambda ct: jax.vmap(one_ct)(a.leaves, ct)  # noqa: E731
        got_out = jax.vmap(lambda ls: f_vjp(*a.rebuild(ls))[0])(a.leaves)
    else:
        got_out, pb = f_vjp(*a.args)  # one call: its pullback serves every probe
        td = jax.tree.structure(got_out)
        rule_pb = lambda ct: a.cotangents(pb(jax.tree.unflatten(td, ct)))  # noqa: E731
    report = vjp_report("vjp", rule_pb, got_out, jax.vmap(ref) if batched else ref, a, rtol=rtol,
                        where=where_of(f_vjp), force_fd=finite_differences)
    if not report.passed and not batched:
        locate_vjp(report, lambda xs, g: f_vjp(*xs)[1](g), lambda xs: f_vjp(*xs)[0], ref, a)
    if batched:
        report.batched = batched_rows(one_ct, a, report.rtol, out=out_space(jax.eval_shape(ref, *one))[0])
    return report


def assert_custom_vjp_correct(f, *args, **kw) -> RuleReport:
    """pytest helper: :func:`check_custom_vjp` then :meth:`RuleReport.raise_if_failed`."""
    return check_custom_vjp(f, *args, **kw).raise_if_failed()


def assert_vjp_correct(f, f_vjp, *args, **kw) -> RuleReport:
    """pytest helper: :func:`check_vjp` then :meth:`RuleReport.raise_if_failed`."""
    return check_vjp(f, f_vjp, *args, **kw).raise_if_failed()
