r"""Finite differences that cost a few hundred loss evaluations at any size: random directions, sampled
coordinates, and a search that narrows a failing direction down to the entry responsible.

Central differences of every coordinate cost :math:`2n` evaluations of the loss: fine at :math:`10^3`
parameters, an hour at :math:`10^6`.  Above :data:`FULL_MAX` parameters, each leaf :math:`\ell` of the
hand gradient :math:`m` is tested instead (torch's ``gradcheck(fast_mode=True)`` does the same for one
direction of the whole Jacobian):

* **along** :data:`DIRECTIONS` **random unit directions** :math:`v` supported on the leaf:
  :math:`m_\ell \cdot v` against :math:`(J(\theta + h v) - J(\theta - h v)) / 2h`.  A wrong leaf
  :math:`m_\ell = g_\ell + \delta` gives :math:`\delta \cdot v \sim N(0, \|\delta\|^2 / n_\ell)`, the same
  order as the directional derivative itself (:math:`\|g_\ell\| / \sqrt{n_\ell}`): an error that is
  :math:`r` times the tolerance escapes one direction with probability
  :math:`P(|Z| < 1/r) \approx 0.8 / r`, and all :data:`DIRECTIONS` with about :math:`(0.8/r)^{k}`;
* **at** :data:`COORDINATES` **coordinates**: the largest entries of :math:`m_\ell` and random ones, by
  central differences (an error confined to a few entries);
* **narrowing**: a failing direction is halved, and the half whose directional error is larger is
  followed, down to one entry (:math:`2\log_2 n_\ell` evaluations): the report names that entry.

>>> import jax.numpy as jnp
>>> loss = lambda p: jnp.sum(jnp.tanh(p["W"]) ** 2) + jnp.sum(p["b"] ** 3)
>>> p = {"W": jnp.linspace(-1.0, 1.0, 6000).reshape(60, 100), "b": jnp.linspace(0.0, 1.0, 10)}
>>> m = {"W": 2 * jnp.tanh(p["W"]) * (1 - jnp.tanh(p["W"]) ** 2), "b": 3 * p["b"] ** 2}
>>> [r.passed for r in check_leaves(loss, p, {**m, "b": 2 * p["b"] ** 2}, ["W", "b"])]
[True, False]
"""
from __future__ import annotations

from typing import Callable, List, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from verification.checker.base.compare import LeafResult
from verification.checker.base import finite_differences as fd

FULL_MAX = 4096  # parameters up to which every coordinate is differenced (2n loss evaluations)
DIRECTIONS = 2  # random unit directions per leaf
COORDINATES = 16  # sampled coordinates per leaf: a quarter the largest entries of the hand gradient, the rest random
# A directional test passes when |m.v - fd| <= SAMPLED_RTOL * ||m_leaf|| / sqrt(n_leaf) (the typical size of
# m.v for a random unit v) + the rounding of the differences.  In float64 with a step of 6e-6 along v the
# truncation and cancellation errors are ~1e-10 of the loss: ~1e-7 of that scale at a million entries.
SAMPLED_RTOL = 1e-5
NOISE_EPS = 64 * np.finfo(np.float64).eps  # the rounding of a loss evaluation, relative to |J|


def loss_on(loss: Callable, params):
    """``(flat float64 point, pair)``: ``pair(x, v, h) -> (J(x + h v), J(x - h v))`` for the loss of the flat
    parameter vector, and ``pair.batch`` over the rows of a probe matrix: compiled once for every direction
    (eager when the loss cannot be jitted)."""
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(params)
    dtype = flat.dtype
    f = lambda v: loss(unravel(v.astype(dtype)))  # noqa: E731
    both = lambda x, v, h: (f(x + h * v), f(x - h * v))  # noqa: E731
    x = flat.astype(jnp.float64)
    pair = jax.jit(both)
    try:
        pair(x, jnp.zeros_like(x), 0.0)
    except Exception:  # noqa: BLE001 -- a loss that cannot be jitted (Python control flow on values): eager
        batch = lambda x, V, hs: tuple(np.array(t) for t in zip(*[both(x, v, h) for v, h in zip(V, hs)]))  # noqa: E731
        return x, Pair(both, batch)
    return x, Pair(pair, jax.jit(jax.vmap(both, in_axes=(None, 0, 0))))


class Pair(NamedTuple):
    """``one(x, v, h) -> (J(x + h v), J(x - h v))``, and ``batch(x, V, hs)`` over the rows of ``V``."""

    one: Callable
    batch: Callable


def _directional(J, x, h, idx, v):
    """``(J(x + h v) - J(x - h v)) / 2h`` for ``v`` supported on the flat indices ``idx``, and the rounding."""
    dense = np.zeros(x.shape[0])
    dense[np.asarray(idx)] = np.asarray(v)
    a, b = (float(t) for t in J.one(x, jnp.asarray(dense), h))
    return (a - b) / (2 * h), NOISE_EPS * (abs(a) + abs(b)) / (2 * h)


def _narrow(J, x, idx, v, m, h):
    """Halve the support of a failing direction, following the larger error, down to one entry of ``idx``."""
    lo, hi = 0, len(idx)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        errs = []
        for a, b in ((lo, mid), (mid, hi)):
            d, _ = _directional(J, x, h, idx[a:b], v[a:b])
            errs.append(abs(float(np.dot(m[a:b], v[a:b])) - d))
        lo, hi = (lo, mid) if errs[0] >= errs[1] else (mid, hi)
    return lo


def check_leaves(loss: Callable, params, manual, names: Sequence[str], seed: int = 0,
                 evaluator=None) -> List[LeafResult]:
    """Each leaf of ``manual`` against sampled central differences of ``loss`` at ``params`` (module doc).
    ``evaluator``: the ``(point, J)`` of :func:`loss_on` for this loss and point, reused across checks."""
    leaves = jax.tree.leaves(params)
    m_leaves = [np.asarray(l, np.float64).ravel() for l in jax.tree.leaves(manual)]
    x, J = evaluator or loss_on(loss, params)
    offsets = np.cumsum([0] + [int(np.size(l)) for l in leaves])
    rng = np.random.default_rng(seed)
    out = []
    for k, (name, leaf, m) in enumerate(zip(names, leaves, m_leaves)):
        n, start = m.size, int(offsets[k])
        shape = tuple(np.shape(leaf))
        if n == 0:
            out.append(LeafResult(name, shape, 0.0, 0.0, 0.0, (), True))
            continue
        scale = max(float(np.linalg.norm(m)) / np.sqrt(n), float(np.max(np.abs(m))) * 1e-3, 1e-300)
        top = np.argsort(-np.abs(m))[:max(1, COORDINATES // 4)]
        coords = np.unique(np.concatenate([top, rng.integers(0, n, COORDINATES - len(top))]))
        V = np.zeros((DIRECTIONS + len(coords), x.shape[0]))  # every probe of the leaf: one batched evaluation
        dirs = rng.standard_normal((DIRECTIONS, n))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        V[:DIRECTIONS, start:start + n] = dirs
        V[DIRECTIONS + np.arange(len(coords)), start + coords] = 1.0
        steps = np.r_[
            np.full(DIRECTIONS, fd.step_for(jnp.float64, "direction")),
            np.full(len(coords), fd.step_for(jnp.float64)),
        ]
        up, down = (np.asarray(t, np.float64) for t in J.batch(x, jnp.asarray(V), jnp.asarray(steps)))
        d, noise = (up - down) / (2 * steps), NOISE_EPS * (np.abs(up) + np.abs(down)) / (2 * steps)
        err = np.abs(np.r_[dirs @ m, m[coords]] - d)
        rel = np.maximum(err - noise, 0.0) / np.r_[np.full(DIRECTIONS, scale),
                                                    np.full(len(coords), max(float(np.max(np.abs(m))), 1e-300))]
        w = int(np.argmax(rel))
        worst, worst_abs = float(rel[w]), float(err[w])
        if w >= DIRECTIONS:
            worst_at = np.unravel_index(int(coords[w - DIRECTIONS]), shape)
        elif worst > SAMPLED_RTOL:
            worst_at = np.unravel_index(
                _narrow(J, x, np.arange(start, start + n), dirs[w], m, fd.step_for(jnp.float64, "direction")),
                shape,
            )
        else:
            worst_at = ()
        out.append(LeafResult(name, shape, worst_abs, worst, worst, tuple(int(i) for i in worst_at),
                              bool(worst <= SAMPLED_RTOL)))
    return out


def note(n_params: int) -> str:
    """The report's note on a sampled check: what was tested, and its false-negative probability."""
    return (f"finite differences sampled ({n_params} parameters > {FULL_MAX}): per leaf {DIRECTIONS} random unit "
            f"directions, {COORDINATES} coordinates, and a failing direction narrowed to one entry; an error r times "
            f"the tolerance ({SAMPLED_RTOL:g}) escapes with probability about (0.8/r)^{DIRECTIONS}")
