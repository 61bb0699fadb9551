"""A loss function as a list of equations: where each parameter leaf enters, with the user's source lines,
and an interpreter that re-runs the equations with one derivative rule edited.

The equations come from ``jax.make_jaxpr`` (which inlines ``jit``); higher-order equations
(``custom_jvp_call``, ``custom_vjp_call``, control flow) stay whole units.  Edits never change the
forward values, only the derivatives, by the stop-gradient identity

.. math::  y' = \\mathrm{sg}(y) + L\\big(x - \\mathrm{sg}(x)\\big),

whose value is :math:`y` and whose derivative with respect to :math:`x` is the linear map :math:`L` of our
choice: autodiff of the edited program is autodiff with exactly one rule changed.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from verification.checker.jaxpr import inline
from verification.checker.jaxpr.source_lines import library_line, user_line

# Shape and bookkeeping primitives: never worth naming as "where the error enters".
PLUMBING = {"broadcast_in_dim", "reshape", "convert_element_type", "squeeze", "expand_dims", "transpose", "copy",
            "stop_gradient", "is_finite", "sign", "iota", "eq", "ne", "lt", "le", "gt", "ge",
            "pjit", "jit", "slice", "concatenate", "reduce_max", "argmax"}



def op_name(eqn) -> str:
    """The primitive's name; a custom rule is named by its function (``custom_jvp_call[relu]``)."""
    name = eqn.primitive.name
    inner = eqn.params.get("call_jaxpr") or eqn.params.get("fun_jaxpr")
    info = getattr(getattr(inner, "jaxpr", inner), "debug_info", None)
    fname = getattr(info, "func_name", None)
    return f"{name}[{fname}]" if fname and name.startswith("custom") else name


@dataclasses.dataclass
class Graph:
    """The traced loss ``f(params) -> scalar``: its equations, and where each parameter leaf enters."""

    closed: Any  # jax.core.ClosedJaxpr
    leaf_names: List[str]
    treedef: Any
    uses: Dict[int, List[int]]  # leaf index -> indices of the equations that read it directly
    edges: List[tuple]  # (equation, input position) of every floating input that depends on the params
    producer: Dict[Any, int]  # var -> index of the equation that computes it
    _by_line: Optional[Dict[tuple, List[int]]] = dataclasses.field(default=None, repr=False)

    @property
    def eqns(self):
        return self.closed.jaxpr.eqns

    @property
    def live(self) -> set:
        """Indices of the equations with a floating input that depends on the params."""
        return {i for i, _ in self.edges}

    def user_line(self, i: int) -> Optional[str]:
        return user_line(self.eqns[i])

    def key(self, i: int) -> tuple:
        """The same line of a loop body (or of a Python loop): op, user line, input shapes, and the value of
        each scalar literal (``2 * k2`` and ``dt / 6 * s`` on one line are different ops)."""
        e = self.eqns[i]
        lits = tuple(float(v.val) if isinstance(v, jcore.Literal) and np.ndim(v.val) == 0
                     and np.issubdtype(np.asarray(v.val).dtype, np.number) else None for v in e.invars)
        return (op_name(e), user_line(e), library_line(e), tuple(tuple(getattr(v.aval, "shape", ())) for v in e.invars), lits)

    def describe(self, i: int, instance: bool = False) -> str:
        """``op at file:line`` (with the library line it ran, ``(in equinox/nn/_mlp.py:25)``).  With
        ``instance``, where one line serves several equations (a Python loop over layers, a module called
        per layer) it adds which one: ``[3 of 24: params[2]['W']]``, named by the leaf that enters there or
        last before it."""
        e = self.eqns[i]
        where, library = user_line(e), library_line(e)
        text = f"{op_name(e)} at {where}" if where else op_name(e)
        if library:
            text += f" (in {library})"
        if instance and where:
            same = self._instances().get(self.key(i)[:3], [i])
            if len(same) > 1:
                leaf = self.nearest_leaf(i)
                text += f" [{same.index(i) + 1} of {len(same)}{': ' + leaf if leaf else ''}]"
        return text

    def _instances(self) -> Dict[tuple, List[int]]:
        if self._by_line is None:
            self._by_line = {}
            for k in range(len(self.eqns)):
                self._by_line.setdefault(self.key(k)[:3], []).append(k)
        return self._by_line

    def nearest_leaf(self, i: int) -> Optional[str]:
        """The parameter leaf read at equation ``i``, or else the one read last before it."""
        best = max(((max(u for u in uses if u <= i), k) for k, uses in self.uses.items() if any(u <= i for u in uses)),
                   default=None)
        return None if best is None or best[1] >= len(self.leaf_names) else self.leaf_names[best[1]]

    def backward_order(self) -> List[int]:
        """Leaf indices in the order the backward pass reaches them: latest use first."""
        return sorted(self.uses, key=lambda k: -max(self.uses[k], default=-1))


def trace(loss: Callable, params, leaf_names: Sequence[str]) -> Graph:
    """Trace ``loss(params)``; ``leaf_names`` name the flattened leaves of ``params``.

    Short loops are unrolled (tracing under ``jax.disable_jit``): every iteration is its own equations,
    with its own line and instance.  Where the program's scans would unroll into more than
    :data:`verification.checker.jaxpr.inline.UNROLL_MAX` equations, each scan stays one equation, its body
    edited as a whole (:mod:`verification.checker.explain.loop_bodies`): the cost no longer grows with the number
    of iterations."""
    leaves, treedef = jax.tree.flatten(params)
    f = lambda *ls: loss(jax.tree.unflatten(treedef, ls))  # noqa: E731
    closed = jax.make_jaxpr(f)(*leaves)
    if inline.scan_size(closed.jaxpr) <= inline.UNROLL_MAX:
        with jax.disable_jit():  # inline jit and unroll scan / fori_loop: their ops are visible, with their lines
            closed = jax.make_jaxpr(f)(*leaves)
    if inline.needs_inlining(closed.jaxpr):  # jit, cond, while_loop, checkpoint: the program run at this point
        closed = inline.inline(closed, leaves)
    return graph_of(closed, leaf_names, treedef)


def graph_of(closed, leaf_names: Sequence[str], treedef=None) -> Graph:
    """The :class:`Graph` of a closed jaxpr whose inputs are the leaves named ``leaf_names``."""
    invars = closed.jaxpr.invars
    index = {v: k for k, v in enumerate(invars)}
    uses: Dict[int, List[int]] = {k: [] for k in range(len(invars))}
    live, edges, producer = set(invars), [], {}
    for i, eqn in enumerate(closed.jaxpr.eqns):
        carries = False
        for j, v in enumerate(eqn.invars):
            if isinstance(v, jcore.Var) and v in live and is_float(v):
                edges.append((i, j))
                carries = True
                if v in index and i not in uses[index[v]]:
                    uses[index[v]].append(i)
                    if eqn.primitive.name in PLUMBING and len(eqn.outvars) == 1:
                        index[eqn.outvars[0]] = index[v]  # a reshaped or broadcast leaf is the leaf
        if carries:
            live.update(eqn.outvars)
        for v in eqn.outvars:
            producer[v] = i
    return Graph(closed, list(leaf_names), treedef, uses, edges, producer)


def _sg_dev(x):
    """``x - sg(x)``: value 0, derivative identity."""
    return x - jax.lax.stop_gradient(x)


def read_atom(values, v):
    """The value of ``v`` in ``values``, or a literal's own value."""
    return v.val if isinstance(v, jcore.Literal) else values[v]


def is_float(v) -> bool:
    return isinstance(v, jcore.Var) and jnp.issubdtype(v.aval.dtype, jnp.inexact)


Edit = Callable[[Any, List[Any], List[Any], Callable], List[Any]]  # (eqn, invals, outvals, read) -> new outvals
# An edit may carry ``edit.delta(eqn, invals, g) -> {input position: change of its cotangent}``: the change
# of the rule in closed form, for output cotangent ``g``, so that its effect needs no autodiff of the edit.


def evaluate(graph: Graph, leaves: Sequence[Any], *, edits: Optional[Dict[int, Edit]] = None,
             scales: Optional[Dict[tuple, Any]] = None, switched: Optional[Dict[int, List[tuple]]] = None,
             switch=None, frozen=(), probes: Optional[Dict[Any, Any]] = None, outputs: Sequence[Any] = (),
             known: Optional[Dict[Any, Any]] = None):
    """Run the equations on ``leaves``.

    ``edits[i]`` replaces equation ``i``'s outputs by an edited version (same values, other derivatives);
    ``scales[(i, j)]`` multiplies the cotangent that equation ``i`` sends to its input ``j`` by a scalar
    (``a x + (1 - a) sg(x)``: value ``x``, derivative ``a``).  ``switched[i]`` lists ``(k, edit)`` pairs
    whose edit is weighted by ``switch[k]``: with a one-hot ``switch``, exactly edit ``k`` is on, so one
    program, vmapped over the rows of the identity, gives every edit's gradient.  An integer ``switch``
    selects edit ``switch`` alone (``lax.switch``: the others are never computed, for a loop over many).  Variables in ``frozen``
    pass no cotangent (a max-shift whose true cotangent is zero stays zero under any edit); ``probes[v]``
    is added to ``v`` (zeros: their gradient is ``v``'s true cotangent).  With ``outputs``, returns
    ``(loss, [value of each var in outputs])``.  ``known`` holds values of this same point that an
    edit may read before their equation runs (a value saved later in a loop body); a program with several
    outputs (a loop body) returns all of them.
    """
    env = {}
    jaxpr = graph.closed.jaxpr

    def read(v):
        if isinstance(v, jcore.Literal):
            return v.val
        return env[v] if v in env or known is None else known[v]

    select = switch is not None and jnp.issubdtype(jnp.result_type(switch), jnp.integer)
    for v, c in zip(jaxpr.constvars, graph.closed.consts):
        env[v] = c
    for v, x in zip(jaxpr.invars, leaves):
        env[v] = x
    for i, eqn in enumerate(jaxpr.eqns):
        invals = [read(v) for v in eqn.invars]
        if scales:
            for j, v in enumerate(eqn.invars):
                a = scales.get((i, j))
                if a is not None:
                    x = invals[j]
                    invals[j] = a.astype(x.dtype) * x + (1 - a).astype(x.dtype) * jax.lax.stop_gradient(x)
        out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
        outs = list(out) if eqn.primitive.multiple_results else [out]
        if edits and i in edits:
            outs = edits[i](eqn, invals, outs, read)
        if switched and i in switched and select:  # only the edit whose index is ``switch`` runs
            ks = jnp.asarray([k for k, _ in switched[i]])
            which = jnp.sum(jnp.where(ks == switch, jnp.arange(1, len(ks) + 1), 0))
            fns = [lambda base=outs: base] + [lambda e=e, base=outs: e(eqn, invals, base, read) for _, e in switched[i]]
            outs = list(jax.lax.switch(which, fns))
        elif switched and i in switched:
            base = outs
            for k, edit in switched[i]:
                w = switch[k]
                outs = [o + w.astype(o.dtype) * (e - b) for o, e, b in zip(outs, edit(eqn, invals, base, read), base)]
        for v, o in zip(eqn.outvars, outs):
            if v in frozen:
                o = jax.lax.stop_gradient(o)
            if probes and v in probes:
                o = o + probes[v]
            env[v] = o
    out = read(jaxpr.outvars[0]) if len(jaxpr.outvars) == 1 else [read(v) for v in jaxpr.outvars]
    return (out, [read(v) for v in outputs]) if outputs else out


def unary_edit(derivative: Callable, position: int = 0) -> Edit:
    """An edit of an elementwise equation of one variable input (at ``position``; the others are literals):
    its derivative becomes ``derivative(x, y)``."""

    def edit(eqn, invals, outs, read):
        x, y = invals[position], outs[0]
        d = jax.lax.stop_gradient(derivative(jax.lax.stop_gradient(x), jax.lax.stop_gradient(y)))
        return [jax.lax.stop_gradient(y) + d * _sg_dev(x)]

    def delta(eqn, invals, g):
        x = invals[position]
        y = _bind(eqn, invals)
        return {position: g * (derivative(x, y) - local_derivative(eqn, x))}

    edit.delta = delta
    return edit


def _bind(eqn, invals):
    out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
    return out[0] if eqn.primitive.multiple_results else out


def local_derivative(eqn, x):
    """The elementwise derivative at ``x`` of an equation with one variable input (the rest literals)."""
    bind_params = eqn.primitive.get_bind_params(eqn.params)

    def f(u):
        args = [u if isinstance(v, jcore.Var) else v.val for v in eqn.invars]
        out = eqn.primitive.bind(*args, **bind_params)
        return out[0] if eqn.primitive.multiple_results else out

    if eqn.primitive.name.startswith("custom_vjp"):  # no forward rule: elementwise, its pullback of ones is the same
        y, pullback = jax.vjp(f, x)
        return pullback(jnp.ones_like(y))[0]
    return jax.jvp(f, (x,), (jnp.ones_like(x),))[1]


def product_edit(operand: int, factor: Callable) -> Edit:
    """An edit of ``a * b``: the cotangent to operand ``operand`` is multiplied by ``factor(a, b)`` (from the
    saved values) instead of by the other operand; the other operand keeps its rule."""

    def edit(eqn, invals, outs, read):
        saved = [jax.lax.stop_gradient(v) for v in invals]
        keep = saved[operand] * _sg_dev(invals[1 - operand])
        changed = factor(*saved) * _sg_dev(invals[operand])
        return [jax.lax.stop_gradient(outs[0]) + keep + changed]

    return edit


def linear_with_transpose(backward: Callable, y, x):
    """A term with value 0 whose reverse-mode rule sends the cotangent ``g`` of ``y`` to ``backward(g)`` at ``x``."""
    forward = jax.linear_transpose(backward, jnp.zeros_like(y))  # dx -> L(dx), the map whose transpose is backward
    return forward(_sg_dev(x))[0]
