"""Localisation: where in the backward pass a hand-derived gradient first goes wrong.

From the traced loss (:mod:`verification.checker.jaxpr.graph`) each parameter leaf has the equations that read
it, with the user's source lines.  The backward pass reaches the leaves latest-use first; walking them in
that order, the first leaf that disagrees with autodiff and the last one before it that agrees bracket
the backward step where the error enters: the equations between the two leaves' entries.

With :func:`tap`, a user marks intermediate values in the loss; their hand-derived deltas are then each
checked against the true cotangent at that point, and the first wrong one in backward order is exact.

>>> import jax.numpy as jnp
>>> def loss(w, x):
...     z = tap("z", x @ w)          # the identity, except while the checker probes it
...     return jnp.sum(jnp.tanh(z))
>>> w, x = jnp.ones(2), jnp.eye(2)
>>> float(true_cotangents(loss, w, x)["z"][0])  # dJ/dz = 1 - tanh(z)^2 at z = 1
0.41997434161402614
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Any, Dict, List, NamedTuple, Optional

import jax
import jax.numpy as jnp

from verification.checker.jaxpr import graph as jg

class _Taps(NamedTuple):
    """What :func:`tap` does while the checker runs a loss: record each tap, or add a probe to it."""

    seen: Optional[List[tuple]]  # (name, shape, dtype) in call order, while recording
    probes: Dict[str, Any]  # name -> additive probe


_ACTIVE: contextvars.ContextVar[Optional[_Taps]] = contextvars.ContextVar("verification_taps", default=None)


@contextlib.contextmanager
def _tapping(taps: _Taps):
    token = _ACTIVE.set(taps)
    try:
        yield taps
    finally:
        _ACTIVE.reset(token)


def tap(name: str, x):
    """Mark ``x`` as the intermediate ``name`` (identity outside the checker).

    Inside a loss given to :func:`verification.check_gradients`, pass your hand-derived
    ``dJ/dx`` as ``deltas={name: ...}``: each marked value's delta is compared with
    autodiff's cotangent there, and the report's localisation names the first wrong one in backward
    order (``first_wrong_delta``).  Public as ``verification.tap``.
    """
    taps = _ACTIVE.get()
    if taps is None:
        return x
    if taps.seen is not None:
        taps.seen.append((name, jnp.shape(x), jnp.result_type(x)))
    probe = taps.probes.get(name)
    return x if probe is None else x + probe


def tapped(loss, params, *args, **kwargs) -> List[tuple]:
    """``(name, shape, dtype)`` of every :func:`tap` in ``loss``, in forward order."""
    with _tapping(_Taps([], {})) as taps:
        jax.eval_shape(lambda p: loss(p, *args, **kwargs), params)
    return list(taps.seen)


def true_cotangents(loss, params, *args, **kwargs) -> Dict[str, jax.Array]:
    """``dJ/d(intermediate)`` at every :func:`tap` of ``loss``, by autodiff."""
    taps = tapped(loss, params, *args, **kwargs)
    zeros = {name: jnp.zeros(shape, dtype) for name, shape, dtype in taps}

    def probed(probes):
        with _tapping(_Taps(None, probes)):
            return loss(params, *args, **kwargs)

    return jax.grad(probed)(zeros)


@dataclasses.dataclass
class Localization:
    """Where the backward pass first goes wrong, as far as the leaves (and any tapped deltas) tell."""

    order: List[str]  # leaves in the order the backward pass reaches them
    entries: Dict[str, List[str]]  # leaf -> the equations (op at file:line) that read it
    first_wrong: Optional[str]  # the first failing leaf in backward order
    last_right: Optional[str]  # the last agreeing leaf before it (None: the error is at the start)
    between: List[str]  # the equations between the two entries: where the error enters
    deltas: List[dict] = dataclasses.field(default_factory=list)  # tapped deltas: name, max_rel, passed
    first_wrong_delta: Optional[str] = None

    def lines(self) -> List[str]:
        out = [f"backward order: {' -> '.join(self.order)}"]
        if self.first_wrong is None:
            return out
        after = f"after {self.last_right} agrees" if self.last_right else "before any leaf agrees"
        out.append(f"first wrong leaf: {self.first_wrong} ({after}); it enters at "
                   f"{', '.join(self.entries.get(self.first_wrong, [])) or 'an unknown place'}")
        if self.between:
            out.append("the error enters between: " + "; ".join(self.between))
        for d in self.deltas:
            out.append(f"delta {d['name']}: max rel {d['max_rel']:.2e} {'PASS' if d['passed'] else 'FAIL'}")
        if self.first_wrong_delta:
            out.append(f"first wrong delta: {self.first_wrong_delta}")
        return out


def localize(graph: jg.Graph, passed: Dict[str, bool]) -> Localization:
    """Bracket the first failing leaf (in backward order) with the last agreeing one."""
    order = graph.backward_order()
    names = graph.leaf_names
    entries = {names[k]: [graph.describe(i, instance=True) for i in graph.uses[k]] for k in order}
    first, last = None, None
    for k in order:
        if not passed.get(names[k], True):
            first = k
            break
        last = k
    if first is None:
        return Localization([names[k] for k in order], entries, None, None, [])
    lo = min(graph.uses[first], default=0)
    hi = max(graph.uses[last], default=len(graph.eqns) - 1) if last is not None else len(graph.eqns) - 1
    between, seen = [], set()
    for i in range(hi, lo - 1, -1):  # in backward order
        eqn = graph.eqns[i]
        if eqn.primitive.name in jg.PLUMBING:
            continue
        d = graph.describe(i, instance=True)
        if d not in seen:
            seen.add(d)
            between.append(d)
    return Localization([names[k] for k in order], entries, names[first],
                        None if last is None else names[last], between)
