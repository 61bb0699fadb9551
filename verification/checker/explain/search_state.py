"""The state of one hypothesis search, named: what the search over single changes, scalings, groups and
pairs shares, instead of matrices passed by position from module to module.

Every effect is a change of the flattened parameter gradient on the entries being judged (the failing
leaves' entries, or all of them), to first order unless it is evaluated exactly by :attr:`Search.exact`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from verification.checker.base.fits import Fitter
from verification.checker.jaxpr.graph import Graph


@dataclasses.dataclass
class Search:
    """One search: the traced loss, the fit test against ``D = M - G``, and the first-order effects."""

    graph: Graph
    fit: Fitter  # the fit test against D = M - G on the judged entries
    reference: np.ndarray  # G, jax.grad's gradient on the judged entries
    exact: Callable[[List[tuple]], np.ndarray]  # [(edits, scales), ...] -> each edited gradient, judged entries
    singles: List[Any]  # rule edits of one equation (derivative_edits.Candidate)
    edit_effects: np.ndarray  # (len(singles), n): first-order effect of each single edit
    allowed: List[int]  # the edges (indices into graph.edges) whose scaling is tried
    edge_effects: np.ndarray  # (n, len(allowed)): scaling edge allowed[c] by a changes the gradient by (a - 1) [:, c]
    groups: Dict[tuple, List[int]] = dataclasses.field(default_factory=dict)  # edges scaled together
    sites: Optional[set] = None  # the equations searched (None: all)

    @functools.cached_property
    def column_of(self) -> Dict[int, int]:
        """Edge index -> its column of :attr:`edge_effects`."""
        return {k: c for c, k in enumerate(self.allowed)}

    def group_effect(self, edges: List[int]) -> np.ndarray:
        """The first-order effect of scaling all of ``edges`` together, per unit ``a - 1``."""
        col = self.column_of
        return self.edge_effects[:, [col[k] for k in edges]].sum(axis=1)
