"""The one tree comparator of the verification: structure first, then leaf by leaf.

Each leaf's error is *normwise*, ``max|a - b| / max(max|b|, tiny)``, so that a
leaf whose entries are near zero does not turn rounding noise into a huge
elementwise ratio.  A non-finite entry of ``a`` where ``b`` is finite counts as
an infinite error.  :func:`compare_leaves` gives the per-leaf results (the
gradient checker's table); the suite folds them into one worst-leaf row
(:func:`verification.suite.comparison.compare_trees`).

>>> import jax.numpy as jnp
>>> a, b = {"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([1.0, 2.0 + 1e-9])}
>>> leaves, structure_error = compare_leaves(a, b, rtol=1e-6)
>>> leaves[0].passed, leaves[0].where, structure_error
(True, "['w'][1]", '')
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

TINY = np.finfo(np.float64).tiny  # the floor of a leaf's scale: an all-zero reference leaf
FUSED_MIN = 1 << 16  # leaves this large are compared in one compiled pass (numpy's temporaries cost more)


def leaf_name(path) -> str:
    """The user's own name of a leaf: ``jax.tree_util.keystr`` of its path (``"['W']"``, ``"[1].b"``), or
    ``"<root>"`` for a bare array."""
    return jax.tree_util.keystr(path) or "<root>"


def cs231n_band(rel: float) -> str:
    """cs231n's reading of an elementwise relative error ``max|a-b| / max(|a|, |b|)``."""
    if not np.isfinite(rel) or rel > 1e-2:
        return "wrong (>1e-2)"
    if rel > 1e-4:
        return "uncomfortable (1e-4..1e-2)"
    if rel > 1e-7:
        return "ok with kinks (1e-7..1e-4)"
    return "good (<1e-7)"


@dataclasses.dataclass
class LeafResult:
    """One leaf of a comparison."""

    path: str
    shape: tuple
    max_abs: float
    max_rel: float  # normwise: max|a-b| / max|b|
    elem_rel: float  # cs231n elementwise: max |a-b| / max(|a|, |b|)
    worst_index: tuple
    passed: bool
    reference_shape: Optional[tuple] = None  # set where the checked leaf's shape is not the reference's

    @property
    def band(self):
        return cs231n_band(self.elem_rel)

    @property
    def where(self) -> str:
        return f"{self.path}[{', '.join(str(i) for i in self.worst_index)}]" if self.worst_index else self.path


def compare_leaf(path: str, a, b, rtol: float, atol: float = 0.0) -> LeafResult:
    """Compare one leaf ``a`` (checked) against ``b`` (reference), in float64."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.shape != b64.shape:
        return LeafResult(path, tuple(a64.shape), np.inf, np.inf, np.inf, (), False, tuple(b64.shape))
    if a64.size == 0:
        return LeafResult(path, a64.shape, 0.0, 0.0, 0.0, (), True)
    if a64.size >= FUSED_MIN and jax.config.jax_enable_x64:  # one fused pass instead of numpy's temporaries
        max_abs, flat_idx, big, elem_max = (float(v) if k != 1 else int(v) for k, v in enumerate(_stats(a64, b64)))
    else:
        err = np.abs(a64 - b64)
        err = np.where(np.isfinite(a64), err, np.inf)
        flat_idx = int(np.argmax(err))
        max_abs, big = float(err.reshape(-1)[flat_idx]), float(np.max(np.abs(b64)))
        with np.errstate(invalid="ignore", divide="ignore"):
            elem = np.where(err == 0, 0.0, err / np.maximum(np.abs(a64), np.abs(b64)))
        elem_max = float(np.max(np.where(np.isnan(elem), np.inf, elem)))
    idx = np.unravel_index(flat_idx, a64.shape)
    max_rel = max_abs / max(big, TINY)
    return LeafResult(path, a64.shape, max_abs, max_rel, elem_max, tuple(int(i) for i in idx),
                      bool(max_rel <= rtol or max_abs <= atol))


@jax.jit
def _stats(a, b):
    """``(max |a - b|, its flat index, max |b|, max elementwise relative error)`` in one pass, float64;
    a non-finite entry of ``a`` is an infinite error."""
    err = jnp.where(jnp.isfinite(a), jnp.abs(a - b), jnp.inf).ravel()
    k = jnp.argmax(err)
    denom = jnp.maximum(jnp.abs(a), jnp.abs(b)).ravel()
    elem = jnp.where(err == 0, 0.0, err / jnp.where(denom == 0, 1.0, denom))
    elem = jnp.where(jnp.isnan(elem) | ((denom == 0) & (err > 0)), jnp.inf, elem)
    return err[k], k, jnp.max(jnp.abs(b)), jnp.max(elem)


def leaf_names(tree) -> List[str]:
    """:func:`leaf_name` of every leaf of ``tree``, in ``jax.tree.leaves`` order."""
    return [leaf_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def compare_leaves(checked, reference, rtol: float, atol: float = 0.0, names=None) -> Tuple[List[LeafResult], str]:
    """Leaf results of ``checked`` against ``reference``; returns ``(results, structure_error)``.

    Leaves are named by ``names`` (one per leaf) or by their paths in ``checked`` (:func:`leaf_name`).
    A structure mismatch returns no leaves and says how the structures differ.
    """
    s_a, s_b = jax.tree.structure(checked), jax.tree.structure(reference)
    if s_a != s_b:
        return [], f"structure differs: {s_a} vs reference {s_b}"
    names = leaf_names(checked) if names is None else list(names)
    return [compare_leaf(name, a, b, rtol, atol)
            for name, a, b in zip(names, jax.tree.leaves(checked), jax.tree.leaves(reference))], ""
