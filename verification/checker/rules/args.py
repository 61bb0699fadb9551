"""What every rule check shares: the differentiable leaves of the arguments, the reference dtype, the
tolerance and the precision line of the report.

>>> import jax.numpy as jnp
>>> a = Args(lambda params, n: None, ({"W": jnp.ones((2, 2)), "k": jnp.arange(2)}, 3), nondiff=(1,))
>>> a.names
["params['W']"]
"""
from __future__ import annotations

import inspect
from typing import Any, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from verification.checker.base.compare import compare_leaf, leaf_name
from verification.checker.base.leaves import DiffLeaves, is_inexact_array, put
from verification.checker.jaxpr import rule_calls
from verification.checker.rules.diagnosis import where_of
from verification.checker.rules.linear_maps import Leaf, reference_dtype
from verification.checker.base.tolerances import FD_RTOL_BY_DTYPE, RTOL_BY_DTYPE, default_atol, precision_of


def unwrap(f):
    """A jitted rule is checked as it is; its ``custom_vjp``/``custom_jvp`` object is found underneath."""
    g = f
    while not hasattr(g, "fun") and hasattr(g, "__wrapped__"):
        g = g.__wrapped__
    return g


def _join(base: str, sub: str) -> str:
    """'params' + "['W']" -> "params['W']"; 'params' + 'layer 1, W' -> 'params: layer 1, W'."""
    return base + sub if not sub or sub[0] in "[." else f"{base}: {sub}"


def decorated(f, kind: str, rule_attr: str, args, batched: bool):
    """For a ``jax.custom_vjp`` / ``custom_jvp`` function ``f`` (or a jitted one), or any callable that calls
    exactly one such rule (a lambda, a ``functools.partial``, a jitted model): ``(where, Args, one_rule,
    rule_f, ref_f)``, where ``one_rule`` calls ``f`` (the rule applies) and ``ref_f`` the undecorated
    primal (``obj.fun``, or ``f`` with its rule replaced by its primal), both over the differentiable
    leaves, vmapped when ``batched``; ``where`` names the rule function."""
    obj = unwrap(f)
    if hasattr(obj, "fun") and hasattr(obj, rule_attr):
        a = Args(obj.fun, args, obj.nondiff_argnums)
        primal, where = obj.fun, where_of(getattr(obj, rule_attr))
    else:
        if not callable(f):
            raise TypeError(f"f: expected a jax.{kind} function or a callable, got {type(f).__name__}")
        example = tuple(jax.tree.map(lambda l: l[0], args)) if batched else tuple(args)
        where = rule_calls.the_one_rule(f, example, kind).rule
        a = Args(f, args)
        primal = rule_calls.without_rules(f, example)
    one_rule = lambda *ls: f(*a.rebuild(ls))  # noqa: E731
    one_ref = lambda *ls: primal(*a.rebuild(ls))  # noqa: E731
    rule_f, ref_f = (jax.vmap(one_rule), jax.vmap(one_ref)) if batched else (one_rule, one_ref)
    return where, a, one_rule, rule_f, ref_f


class Args(DiffLeaves):
    """The differentiable leaves of ``args`` (inexact leaves outside ``nondiff``), named by the primal's
    parameter names, and the way back to the full argument tuple (:meth:`rebuild`, a tuple)."""

    def __init__(self, fn, args, nondiff=()):
        self.args, self.nondiff = tuple(args), tuple(nondiff)
        try:
            params = list(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            params = []

        def name(path):
            pos, sub = path[0].idx, path[1:]
            return _join(params[pos] if pos < len(params) else f"arg{pos}", leaf_name(sub) if sub else "")

        super().__init__(self.args, name=name, held=lambda path: path[0].idx in self.nondiff)
        if not self.leaves:
            raise ValueError("args: expected at least one floating-point argument to differentiate, got none "
                             f"(dtypes {[getattr(a, 'dtype', type(a).__name__) for a in self.args]})")

    def cotangents(self, per_arg):
        """The differentiable leaves of a tuple shaped like ``args`` (a pullback's cotangents: one per
        argument, with the leaves of its argument wherever that has a differentiable one), or None."""
        if not isinstance(per_arg, (tuple, list)) or len(per_arg) != len(self.args):
            return None
        flat, start, chosen = [], 0, set(self.positions)
        for c, a in zip(per_arg, self.args):
            n = len(jax.tree.leaves(a))
            if chosen & set(range(start, start + n)):
                flat += jax.tree.leaves(c)
                if len(flat) != start + n:
                    return None
            else:
                flat += self.flat[start:start + n]
            start += n
        return self.select(jax.tree.unflatten(self.treedef, flat))

    def tangents(self, leaves) -> tuple:
        """A tangent tuple shaped like ``args``: ``leaves`` at the differentiable leaves, float0 zeros at
        integer leaves, zeros at held floats (the convention of ``jax.jvp``)."""
        zeros = [jnp.zeros_like(x) if is_inexact_array(x) else np.zeros(np.shape(x), jax.dtypes.float0)
                 for x in self.flat]
        return jax.tree.unflatten(self.treedef, put(zeros, self.positions, leaves))

    def space(self) -> List[Leaf]:
        return [Leaf(n, l.shape, l.dtype) for n, l in zip(self.names, self.leaves)]

    def upcast(self) -> list:
        return [l.astype(reference_dtype()) for l in self.leaves]

    @property
    def precision(self) -> str:
        return precision_of(self.leaves)


def out_space(out) -> Tuple[List[Leaf], Any]:
    """The leaves of a function's output (``out``, ``out[0]``, ``out['a']``) and its treedef."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(out)
    return [
        Leaf(_join("out", leaf_name(p) if p else ""), tuple(jnp.shape(l)), jnp.result_type(l))
        for p, l in flat
    ], treedef


def primal_row(got_out, ref_out, tol: float):
    """The rule's primal output against the reference's, flattened (atol = tol x the largest entry)."""
    flat_ref = np.asarray(ravel_pytree(ref_out)[0], np.float64)
    return compare_leaf("primal", ravel_pytree(got_out)[0], flat_ref, tol, default_atol(tol, flat_ref))


def primal_values(args: Args, space, ref_out) -> dict:
    """Every primal input and output leaf by name, float64: what a missing term may be proportional to."""
    values = {n: np.asarray(l, np.float64) for n, l in zip(args.names, args.leaves)}
    values.update({s.name: np.asarray(o, np.float64) for s, o in zip(space, jax.tree.leaves(ref_out))})
    return values


def tolerance(precision: str, rtol, fd: bool) -> float:
    """``rtol`` if given, else the rule's dtype's (``RTOL_BY_DTYPE``), loosened to the finite-difference
    tolerance of the reference dtype when the reference is finite differences."""
    if rtol is not None:
        if not (isinstance(rtol, (int, float)) and rtol >= 0):
            raise ValueError(f"rtol: expected a tolerance >= 0, got {rtol!r}")
        return float(rtol)
    tol = RTOL_BY_DTYPE[precision]
    return max(tol, FD_RTOL_BY_DTYPE[jnp.dtype(reference_dtype()).name]) if fd else tol


def precision_line(precision: str, reference: str) -> str:
    return f"{precision} rule vs {jnp.dtype(reference_dtype()).name} reference ({reference})"


def check_callables(**fns):
    for name, fn in fns.items():
        if not callable(fn):
            raise TypeError(f"{name}: expected a callable, got {type(fn).__name__}")
