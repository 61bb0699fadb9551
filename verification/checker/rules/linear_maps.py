r"""The one engine behind the rule checks: a hand-written linear map against its reference, block by block.

A VJP, a JVP and a Hessian-vector product are each a linear map from *probe* vectors (output cotangents,
input tangents, parameter directions) to *result* vectors.  A block is one (output leaf, input leaf) pair:
the probes live on one leaf (zero on every other) and the results are read on the other.  For each block
the rule and the reference are applied to the same probes,

* ``PROBES`` random standard-normal probes, always: a rule that is right only for a cotangent of 1 fails;
* every unit vector of the probe leaf too, when it has at most ``BASIS_MAX`` entries: the full Jacobian
  block, so no direction is missed on small problems;

and the stacked results, shape ``(probes, *result_shape)``, go through the checker's comparator
(:func:`verification.checker.base.compare.compare_leaf`), with ``atol`` = ``rtol`` times the largest reference
entry of the whole map (as :func:`verification.check_gradients` does).

>>> import jax.numpy as jnp
>>> space = [Leaf("x", (3,), jnp.float64)]
>>> results = [Leaf("out", (3,), jnp.float64)]
>>> twice = lambda probe: [2 * probe[0]]
>>> blocks = compare_maps(twice, twice, space, results, rtol=1e-12, probe_is_input=True)
>>> [(b.output, b.input, b.result.passed) for b in blocks]
[('out', 'x', True)]
"""
from __future__ import annotations

import dataclasses
from typing import Callable, List, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from verification.checker.base.compare import LeafResult, compare_leaf
from verification.checker.base.tolerances import default_atol

PROBES = 3  # random probes per block: enough to expose a rule that ignores or mishandles the probe
BASIS_MAX = 64  # a probe leaf with at most this many entries also gets every unit vector (the full block)
PROBE_SEED = 0


class Leaf(NamedTuple):
    """One leaf of a probe or result space: its name in the report, shape and the dtype the rule uses."""

    name: str
    shape: tuple
    dtype: object


@dataclasses.dataclass
class Block:
    """One (output leaf, input leaf) block of the map: rule against reference on the same probes."""

    output: str
    input: str
    result: LeafResult  # over the stacked probes: index 0 of worst_index is the probe
    rule: np.ndarray  # (probes, *result_shape), float64
    reference: np.ndarray  # the same, from the reference
    probes: np.ndarray  # (probes, *probe_shape), float64
    atol: float = 0.0  # rtol x the largest reference entry of the whole map

    @property
    def passed(self) -> bool:
        return self.result.passed

    def judged_rel(self, rtol: float) -> float:
        """The error as judged: relative to the block's largest entry, or to the whole map's scale
        (``atol / rtol``) when the block's own entries cancel to less."""
        r = self.result
        return min(r.max_rel, r.max_abs * rtol / self.atol) if self.atol > 0 else r.max_rel


def reference_dtype():
    """float64 when x64 is on, else float32: the dtype every reference is computed in."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def probe_set(leaf: Leaf, seed: int) -> np.ndarray:
    """The probes on one leaf, float64, shape ``(k, *leaf.shape)``: random, then unit vectors if small."""
    size = int(np.prod(leaf.shape))
    rand = np.asarray(jax.random.normal(jax.random.key(seed), (PROBES, *leaf.shape), reference_dtype()), np.float64)
    if 0 < size <= BASIS_MAX:
        rand = np.concatenate([rand, np.eye(size).reshape(size, *leaf.shape)])
    return rand


def embed(space: Sequence[Leaf], j: int, value, dtype=None) -> List[jax.Array]:
    """A probe vector over ``space`` that is ``value`` on leaf ``j`` and zero elsewhere, in the rule's dtypes
    (or ``dtype``)."""
    return [jnp.asarray(value if k == j else np.zeros(l.shape), dtype or l.dtype) for k, l in enumerate(space)]


def compare_maps(rule: Callable, reference: Callable, space: Sequence[Leaf], results: Sequence[Leaf], rtol: float,
                 *, probe_is_input: bool, ref_dtype=None, atol=None, seed=PROBE_SEED) -> List[Block]:
    """Every block of ``rule`` against ``reference``.

    ``rule(probe) -> results`` and ``reference(probe) -> results`` take and return lists of leaves (the
    probe in ``space``'s dtypes for the rule, in ``ref_dtype`` for the reference).  With
    ``probe_is_input`` (JVP, HVP) a probe leaf is the block's input; otherwise (VJP) its output.
    """
    per_probe = []
    for j, leaf in enumerate(space):
        probes = probe_set(leaf, seed + j)
        got = [[np.asarray(r, np.float64) if r is not None else None for r in rule(embed(space, j, p))]
               for p in probes]
        ref = [[np.asarray(r, np.float64) for r in reference(embed(space, j, p, ref_dtype))] for p in probes]
        per_probe.append((probes, got, ref))
    if atol is None:
        atol = default_atol(rtol, [ref for _, _, ref in per_probe])
    blocks = []
    for j, (probes, got, ref) in enumerate(per_probe):
        for i, res in enumerate(results):
            r_ref = np.stack([rs[i] for rs in ref])
            if any(g[i] is None for g in got):
                r_got = np.full((len(got), 0), np.nan)
            else:
                shapes = {g[i].shape for g in got}
                r_got = np.stack([g[i] for g in got]) if len(shapes) == 1 else np.full((len(got), 0), np.nan)
            out, inp = (res.name, space[j].name) if probe_is_input else (space[j].name, res.name)
            cmp = compare_leaf(f"{out} | {inp}", r_got, r_ref, rtol, atol)
            blocks.append(Block(out, inp, cmp, r_got, r_ref, probes, atol))
    return blocks
