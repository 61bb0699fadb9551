"""One verification row's comparison: the worst leaf of a pytree comparison, built on the checker's
:func:`verification.checker.base.compare.compare_leaves`.

>>> import jax.numpy as jnp
>>> c = compare_trees({"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([1.0, 2.0 + 1e-9])}, rtol=1e-6)
>>> c.ok, c.where
(True, "['w'][1]")
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from verification.checker.base.compare import compare_leaves


@dataclasses.dataclass
class Comparison:
    """Worst-leaf summary of a pytree comparison (one verification row)."""

    max_abs: float
    max_rel: float
    ok: bool
    where: str = ""  # leaf path and index of the worst element, or the structure mismatch

    def merge(self, other: "Comparison") -> "Comparison":
        worst = self if self.max_rel >= other.max_rel else other
        return Comparison(max(self.max_abs, other.max_abs), max(self.max_rel, other.max_rel),
                          self.ok and other.ok, worst.where if worst.where else self.where)


def compare_trees(checked: Any, reference: Any, rtol: float) -> Comparison:
    """The worst normwise relative error over the leaves, and where it sits."""
    leaves, structure_error = compare_leaves(checked, reference, rtol)
    if structure_error:
        return Comparison(np.inf, np.inf, False, structure_error)
    leaves = [l for l in leaves if np.prod(l.shape) > 0]
    if not leaves:
        return Comparison(0.0, 0.0, True, "no leaves")
    worst = max(leaves, key=lambda l: l.max_rel)
    return Comparison(max(l.max_abs for l in leaves), worst.max_rel, all(l.passed for l in leaves), worst.where)
