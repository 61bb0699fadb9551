"""A hypothesis, and the test of whether it fits: it reproduces the mistake, not just the right answer.

For a failing gradient ``M`` (manual) against ``G`` (``jax.grad``), a hypothesis ``H`` *fits* when
``||M - H|| <= fit_rtol * ||M - G||`` (:class:`Fitter`, on the difference ``D = M - G``).
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional

import numpy as np


@dataclasses.dataclass
class Hypothesis:
    cause: str  # a code of the documented vocabulary (verification.CAUSES)
    eqn: int  # equation index in the traced loss
    where: str  # "tanh at model.py:12"
    explanation: str  # "manual equals autodiff if ..."
    residual: float  # ||M - H|| / ||M - G||
    scale: Optional[float] = None  # for scalings: the fitted a
    equivalent: List[str] = dataclasses.field(default_factory=list)  # other sites with the same effect
    also_at: List[str] = dataclasses.field(default_factory=list)  # the same change made at these sites too
    sites: List[int] = dataclasses.field(default_factory=list)  # every equation index named above
    changes: int = 1  # distinct rule changes: 2 for a two-site (or two-operand) pair

    def as_dict(self):
        return dataclasses.asdict(self)


class Fitter:
    """Residuals against the difference ``D``: ``||D - effect|| / ||D||``."""

    def __init__(self, D, fit_rtol):
        self.D, self.nD, self.fit_rtol = D, float(np.linalg.norm(D)), fit_rtol

    def residual(self, effect):
        return float(np.linalg.norm(self.D - effect) / self.nD)

    def fits(self, effect):
        return self.residual(effect) <= self.fit_rtol and np.linalg.norm(effect) > 0
