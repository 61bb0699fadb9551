"""The context of one gradient check, and what a diagnosis stage returns.

:func:`verification.check_gradients` compares, then runs its diagnosis stages in order (the kink test,
the custom-rule blame, localisation, the hypotheses, the patterns).  Each stage reads one
:class:`CheckContext` and returns a :class:`StageResult`; only ``check_gradients`` writes the report, so a
stage never changes a comparison's result behind the others' backs.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

from verification.checker.base.compare import LeafResult


@dataclasses.dataclass(frozen=True)
class CheckContext:
    """One check's point and its comparison: what every diagnosis stage may read."""

    loss: Callable[[Any], Any]  # params -> the scalar loss, the point's other arguments bound
    params: Any  # floating leaves only
    manual: Any  # the hand-derived gradient, like params
    reference: Any  # jax.grad's (or forward mode's) gradient
    rtol: float
    atol: float
    precision: str  # the dtype the check is judged in
    leaves: Tuple[LeafResult, ...]  # the comparison, leaf by leaf
    finite_differences: Optional[Tuple[LeafResult, ...]] = None
    taylor_passed: Optional[bool] = None
    graph: Any = None  # the traced loss (verification.checker.jaxpr.graph.Graph), once traced

    def failing(self) -> List[LeafResult]:
        return [l for l in self.leaves if not l.passed]


class StageResult(NamedTuple):
    """What one diagnosis stage found: leaves it judges right after all (a valid subgradient at a kink),
    leaf diagnoses, notes, and whether it settles the check (no later stage runs)."""

    accepted: Tuple[str, ...] = ()  # leaf paths
    diagnoses: Tuple[Any, ...] = ()  # verification.Diagnosis
    notes: Tuple[str, ...] = ()
    settled: bool = False
