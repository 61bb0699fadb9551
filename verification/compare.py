"""Compare two pytrees: structure first, then leaf by leaf (normwise relative error)."""
from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax
import numpy as np


@dataclasses.dataclass
class Comparison:
    """Worst-leaf summary of a pytree comparison."""

    max_abs: float
    max_rel: float
    ok: bool
    where: str = ""  # leaf path and index of the worst element, or the structure mismatch

    def merge(self, other: "Comparison") -> "Comparison":
        worst = self if self.max_rel >= other.max_rel else other
        return Comparison(max(self.max_abs, other.max_abs), max(self.max_rel, other.max_rel),
                          self.ok and other.ok, worst.where if worst.where else self.where)


def leaf_name(path) -> str:
    """'[1].W' -> 'layer 2, W' for jaxmlp params; other trees keep jax's key string."""
    s = jax.tree_util.keystr(path)
    m = re.fullmatch(r"\[(\d+)\]\.(\w+)", s)
    return f"layer {int(m.group(1)) + 1}, {m.group(2)}" if m else (s or "<root>")


def compare_trees(manual: Any, reference: Any, rtol: float) -> Comparison:
    """Return the worst normwise relative error over the leaves and where it sits."""
    s_man, s_ref = jax.tree.structure(manual), jax.tree.structure(reference)
    if s_man != s_ref:
        return Comparison(np.inf, np.inf, False, f"structure differs: manual {s_man} vs reference {s_ref}")
    out = None
    ref_leaves = jax.tree.leaves(reference)
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(manual)[0], ref_leaves):
        a, b = np.asarray(a), np.asarray(b)
        name = leaf_name(path)
        if a.shape != b.shape:
            return Comparison(np.inf, np.inf, False, f"{name}: shape {a.shape} vs reference {b.shape}")
        if a.size == 0:
            continue
        err = np.abs(a.astype(np.float64) - b.astype(np.float64))
        if not np.all(np.isfinite(a)):
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
            return Comparison(np.inf, np.inf, False, f"{name}[{', '.join(map(str, idx))}]: non-finite {a[idx]}")
        idx = np.unravel_index(int(np.argmax(err)), err.shape)
        scale = max(float(np.max(np.abs(b))), float(np.finfo(b.dtype).tiny))
        abs_e = float(err[idx])
        rel_e = abs_e / scale
        leaf = Comparison(abs_e, rel_e, rel_e <= rtol,
                          f"{name}[{', '.join(str(int(i)) for i in idx)}]")
        out = leaf if out is None else out.merge(leaf)
    return out if out is not None else Comparison(0.0, 0.0, True, "no leaves")
