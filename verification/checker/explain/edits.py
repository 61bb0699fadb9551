r"""Edits of one equation's derivative, and the traced loss re-run with them.

An edit never changes a forward value, only a derivative, by the stop-gradient identity

.. math::  y' = \mathrm{sg}(y) + L\big(x - \mathrm{sg}(x)\big),

whose value is :math:`y` and whose derivative with respect to :math:`x` is the linear map :math:`L` of our
choice: autodiff of the edited program is autodiff with exactly one rule changed.  :func:`deviation` is
:math:`x - \mathrm{sg}(x)` and :func:`scaled` the edge scaling :math:`a x + (1 - a)\,\mathrm{sg}(x)` (value
:math:`x`, derivative :math:`a`); :func:`evaluate` runs the loss through the one interpreter
(:func:`verification.checker.jaxpr.interpreter.run`) with :class:`Changes`: edits, scalings, switches, probes.

>>> import jax, jax.numpy as jnp
>>> f = lambda x: scaled(x, jnp.asarray(3.0)) ** 2
>>> float(f(jnp.asarray(2.0))), float(jax.grad(f)(jnp.asarray(2.0)))
(4.0, 12.0)
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

import jax
import jax.extend.core as jcore
import jax.numpy as jnp

from verification.checker.jaxpr import interpreter
from verification.checker.jaxpr.graph import Graph


def deviation(x):
    """``x - sg(x)``: value 0, derivative identity."""
    return x - jax.lax.stop_gradient(x)


def scaled(x, a):
    """``a x + (1 - a) sg(x)``: value ``x``, derivative ``a`` (a scalar)."""
    a = jnp.asarray(a)
    return a.astype(x.dtype) * x + (1 - a).astype(x.dtype) * jax.lax.stop_gradient(x)


class Edit(NamedTuple):
    """One equation's rule changed.

    ``apply(eqn, invals, outs, read)`` returns the equation's new outputs: the same values, the changed
    derivative.  ``delta(eqn, invals, g)``, where known, is the change in closed form: ``{input position:
    change of its cotangent}`` for output cotangent ``g``, so that its effect needs no autodiff of the edit.
    ``input_deltas()``, for a change made inside a kept loop, is ``{input variable: change}`` computed with
    the loop's other changes in one pass.
    """

    apply: Callable[[Any, List[Any], List[Any], Callable], List[Any]]
    delta: Optional[Callable[[Any, List[Any], Any], Dict[int, Any]]] = None
    input_deltas: Optional[Callable[[], Dict[Any, Any]]] = None

    def __call__(self, eqn, invals, outs, read):
        return self.apply(eqn, invals, outs, read)


class Changes(NamedTuple):
    """What :func:`evaluate` changes in the traced loss (nothing, by default).

    ``edits[i]`` replaces equation ``i``'s outputs by an edited version (same values, other derivatives);
    ``scales[(i, j)]`` multiplies the cotangent that equation ``i`` sends to its input ``j`` by a scalar
    (:func:`scaled`).  ``switched[i]`` lists ``(k, edit)`` pairs whose edit is weighted by ``switch[k]``:
    with a one-hot ``switch``, exactly edit ``k`` is on, so one program, vmapped over the rows of the
    identity, gives every edit's gradient.  An integer ``switch`` selects edit ``switch`` alone
    (``lax.switch``: the others are never computed, for a loop over many).  Variables in ``frozen`` pass no
    cotangent (a max-shift whose true cotangent is zero stays zero under any edit); ``probes[v]`` is added
    to ``v`` (zeros: their gradient is ``v``'s true cotangent).
    """

    edits: Optional[Dict[int, Edit]] = None
    scales: Optional[Dict[tuple, Any]] = None
    switched: Optional[Dict[int, List[tuple]]] = None
    switch: Any = None
    frozen: Any = ()
    probes: Optional[Dict[Any, Any]] = None


def evaluate(graph: Graph, leaves: Sequence[Any], changes: Changes = Changes(), *,
             known: Optional[Dict[Any, Any]] = None):
    """The loss at ``leaves`` with ``changes`` made (a program with several outputs, a loop body: all of
    them).  ``known`` holds values of this same point that an edit may read before their equation runs (a
    value saved later in a loop body)."""
    env = _run(graph, leaves, changes, known)
    outs = interpreter.outputs(graph.closed, env)
    return outs[0] if len(outs) == 1 else outs


def evaluate_outputs(graph: Graph, leaves: Sequence[Any], outputs: Sequence[Any], changes: Changes = Changes()):
    """``(loss, [value of each variable in outputs])`` with ``changes`` made."""
    env = _run(graph, leaves, changes, None)
    outs = interpreter.outputs(graph.closed, env)
    return (outs[0] if len(outs) == 1 else outs), [interpreter.read(env, v) for v in outputs]


def _run(graph, leaves, changes: Changes, known):
    """The environment of the edited run (:func:`verification.checker.jaxpr.interpreter.run`)."""
    edits, scales, switched, switch, frozen, probes = changes
    select = switch is not None and jnp.issubdtype(jnp.result_type(switch), jnp.integer)

    def on_eqn(i, eqn, invals, env):
        read = lambda v: interpreter.read(env, v)  # noqa: E731
        if scales:
            invals = [scaled(x, scales[(i, j)]) if (i, j) in scales else x for j, x in enumerate(invals)]
        outs = interpreter.bind(eqn, invals)
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
        for n, v in enumerate(eqn.outvars):
            if v in frozen:
                outs[n] = jax.lax.stop_gradient(outs[n])
            if probes and v in probes:
                outs[n] = outs[n] + probes[v]
        return outs

    return interpreter.run(graph.closed, leaves, on_eqn, env=dict(known) if known else None)


def local_derivative(eqn, x):
    """The elementwise derivative at ``x`` of an equation with one variable input (the rest literals)."""

    def f(u):
        return interpreter.bind(eqn, [u if isinstance(v, jcore.Var) else v.val for v in eqn.invars])[0]

    if eqn.primitive.name.startswith("custom_vjp"):  # no forward rule: elementwise, its pullback of ones is the same
        y, pullback = jax.vjp(f, x)
        return pullback(jnp.ones_like(y))[0]
    return jax.jvp(f, (x,), (jnp.ones_like(x),))[1]


def unary_edit(derivative: Callable, position: int = 0) -> Edit:
    """An edit of an elementwise equation of one variable input (at ``position``; the others are literals):
    its derivative becomes ``derivative(x, y)``."""

    def apply(eqn, invals, outs, read):
        x, y = invals[position], outs[0]
        d = jax.lax.stop_gradient(derivative(jax.lax.stop_gradient(x), jax.lax.stop_gradient(y)))
        return [jax.lax.stop_gradient(y) + d * deviation(x)]

    def delta(eqn, invals, g):
        x = invals[position]
        y = interpreter.bind(eqn, invals)[0]
        return {position: g * (derivative(x, y) - local_derivative(eqn, x))}

    return Edit(apply, delta)


def product_edit(operand: int, factor: Callable) -> Edit:
    """An edit of ``a * b``: the cotangent to operand ``operand`` is multiplied by ``factor(a, b)`` (from the
    saved values) instead of by the other operand; the other operand keeps its rule."""

    def apply(eqn, invals, outs, read):
        saved = [jax.lax.stop_gradient(v) for v in invals]
        keep = saved[operand] * deviation(invals[1 - operand])
        changed = factor(*saved) * deviation(invals[operand])
        return [jax.lax.stop_gradient(outs[0]) + keep + changed]

    def delta(eqn, invals, g):  # the cotangent g * factor(a, b) in place of g * (the other operand)
        return {operand: g * (factor(*invals) - invals[1 - operand])}

    return Edit(apply, delta)


def linear_with_transpose(backward: Callable, y, x):
    """A term with value 0 whose reverse-mode rule sends the cotangent ``g`` of ``y`` to ``backward(g)`` at ``x``."""
    forward = jax.linear_transpose(backward, jnp.zeros_like(y))  # dx -> L(dx), the map whose transpose is backward
    return forward(deviation(x))[0]
