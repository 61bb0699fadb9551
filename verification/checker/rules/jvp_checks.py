r"""Check forward-mode rules: ``jax.custom_jvp`` functions and hand-written JVPs.

As for VJPs (:mod:`verification.checker.rules.vjp_checks`), ``jax.jvp`` of a ``custom_jvp`` function runs the rule
itself, so the reference is forward-mode autodiff of the undecorated primal ``f.fun`` (or directional
central differences when it cannot be differentiated).  A block is (output leaf, input leaf): random
tangents on the input leaf, and every unit tangent when it is small (a column block of the Jacobian,
:math:`\dot y = J\dot x`).

>>> import jax, jax.numpy as jnp
>>> @jax.custom_jvp
... def softplus(x):
...     return jnp.logaddexp(x, 0.0)
>>> @softplus.defjvp
... def softplus_jvp(primals, tangents):
...     (x,), (t,) = primals, tangents
...     return softplus(x), -jax.nn.sigmoid(x) * t  # sign error
>>> report = check_custom_jvp(softplus, jnp.linspace(-2.0, 2.0, 4))
>>> report.passed, report.findings[0].cause
(False, 'sign_flipped')
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from verification.checker.base import finite_differences as fd
from verification.checker.rules.args import Args, check_callables, decorated, out_space
from verification.checker.rules.backward_code import agree, custom_jvp_code, guarded, locate_in_jvp
from verification.checker.rules.diagnosis import where_of
from verification.checker.rules.linear_maps import reference_dtype
from verification.checker.rules.report import RuleReport
from verification.checker.rules.skeleton import batched_rows, reference_of, rule_report


def jvp_report(kind, rule_jvp, ref_fn, args: Args, *, rtol=None, where="", force_fd=False) -> RuleReport:
    """The JVP check shared by :func:`check_custom_jvp` and :func:`check_jvp`.

    ``rule_jvp(leaves, tangent_leaves) -> (out, tangent_out)``; ``ref_fn(*leaves)`` is what forward-mode
    autodiff (or directional finite differences) differentiates for the reference.
    """
    ref_leaves = args.upcast()
    ref_out = ref_fn(*ref_leaves)
    zeros = [jnp.zeros_like(l) for l in ref_leaves]
    reference, found = reference_of(lambda: jax.jvp(ref_fn, ref_leaves, zeros), force_fd, "differentiated")

    def reference_t(t):
        if found is None:
            return fd.directional(ref_fn, ref_leaves, t, fd.step_for(reference_dtype()))
        return jax.tree.leaves(jax.jvp(ref_fn, ref_leaves, list(t))[1])

    space, treedef = out_space(ref_out)
    got_out, _ = rule_jvp(args.leaves, [jnp.zeros_like(l) for l in args.leaves])

    def rule(t):
        _, tout = rule_jvp(args.leaves, t)
        leaves = jax.tree.leaves(tout)
        return leaves if len(leaves) == len(space) else [None] * len(space)

    return rule_report(kind, "jvp", args, rule=rule, reference_map=reference_t, space=space, treedef=treedef,
                       got_out=got_out, ref_out=ref_out, reference=reference, fd=found is None, rtol=rtol,
                       where=where)


def _tangents_out(rule_jvp):
    """``(leaves, tangents) -> output tangent leaves`` of ``rule_jvp(leaves, tangents) -> (out, tangent_out)``."""
    return lambda ls, t: jax.tree.leaves(rule_jvp(ls, t)[1])


def check_custom_jvp(f: Callable, *args, rtol=None, finite_differences=False, batched=False) -> RuleReport:
    r"""Check the forward rule of ``f``, a ``jax.custom_jvp`` function (or a jitted one), at ``args``.

    The rule (``jax.jvp`` of ``f``) against forward-mode autodiff of the undecorated ``f.fun`` (or
    directional central differences), with random tangents and, on small inputs, every unit tangent.
    ``nondiff_argnums`` are held fixed.  ``batched=True``: the arguments carry a leading batch axis; the
    rule is checked under ``jax.vmap`` and against per-example calls.

    >>> import jax, jax.numpy as jnp
    >>> @jax.custom_jvp
    ... def f(x):
    ...     return jnp.sin(x)
    >>> _ = f.defjvp(lambda p, t: (jnp.sin(p[0]), jnp.cos(p[0]) * t[0]))
    >>> check_custom_jvp(f, jnp.arange(3.0)).passed
    True
    """
    where, a, one_rule, rule_f, ref_f = decorated(f, "custom_jvp", "jvp", args, batched)
    report = jvp_report("custom_jvp", lambda ls, t: jax.jvp(rule_f, list(ls), list(t)), ref_f, a, rtol=rtol,
                        where=where, force_fd=finite_differences)
    code = custom_jvp_code(f)
    if not report.passed and code is not None and not batched:
        report.backward = guarded(report, lambda: locate_in_jvp(code, ref_f, a, report.rtol))
        agree(report)
    if batched:
        one = lambda ls, t: jax.jvp(one_rule, list(ls), list(t))  # noqa: E731
        report.batched = batched_rows(_tangents_out(one), a, report.rtol)
    return report


def check_jvp(f: Callable, f_jvp: Callable, *args, rtol=None, finite_differences=False, batched=False) -> RuleReport:
    r"""Check a hand-written JVP: ``f_jvp(primals, tangents) -> (out, tangent_out)``.

    The calling convention of ``jax.test_util.check_jvp``: ``primals`` and ``tangents`` are tuples shaped
    like ``args`` (integer leaves get float0 tangents).  The reference is ``jax.jvp(f, ...)``;
    ``finite_differences=True`` uses directional central differences instead.

    >>> import jax.numpy as jnp
    >>> f = lambda x: x / jnp.linalg.norm(x)
    >>> def f_jvp(primals, tangents):
    ...     (x,), (t,) = primals, tangents
    ...     n = jnp.linalg.norm(x)
    ...     return x / n, (t - x * (x @ t) / n ** 2) / n
    >>> check_jvp(f, f_jvp, jnp.array([1.0, 2.0, 2.0])).passed
    True
    """
    check_callables(f=f, f_jvp=f_jvp)
    a = Args(f, args)
    one = lambda ls, t: f_jvp(a.rebuild(ls), a.tangents(t))  # noqa: E731
    ref = lambda *ls: f(*a.rebuild(ls))  # noqa: E731
    report = jvp_report("jvp", jax.vmap(one) if batched else one, jax.vmap(ref) if batched else ref, a, rtol=rtol,
                        where=where_of(f_jvp), force_fd=finite_differences)
    if not report.passed and not batched:
        report.backward = guarded(report, lambda: locate_in_jvp(lambda xs, ts: f_jvp(xs, ts)[1], ref, a,
                                                                 report.rtol))
        agree(report)
    if batched:
        report.batched = batched_rows(_tangents_out(one), a, report.rtol)
    return report


def assert_custom_jvp_correct(f, *args, **kw) -> RuleReport:
    """pytest helper: :func:`check_custom_jvp` then :meth:`RuleReport.raise_if_failed`."""
    return check_custom_jvp(f, *args, **kw).raise_if_failed()


def assert_jvp_correct(f, f_jvp, *args, **kw) -> RuleReport:
    """pytest helper: :func:`check_jvp` then :meth:`RuleReport.raise_if_failed`."""
    return check_jvp(f, f_jvp, *args, **kw).raise_if_failed()
