"""The one fit test: a candidate explains a mistake when it reproduces it, not just the right answer.

``x`` *fits* ``y`` when they have the same shape and ``norm(x - y) <= rtol * norm(y)`` (:func:`fits`).
Every explanation of the checker is judged by it:

* a hypothesis on the traced loss (:class:`Fitter`): its effect ``H - G`` against the difference
  ``D = M - G`` of the manual gradient ``M`` and ``jax.grad``'s ``G``, so that
  ``||M - H|| <= fit_rtol * ||M - G||``;
* a whole-leaf pattern (:mod:`verification.checker.explain.patterns`): a leaf against a transform of the
  reference, or the difference against the least-squares multiple of a basis (:func:`least_squares`);
* a rule's block (:mod:`verification.checker.rules.diagnosis`): the rule's results against a transform of
  the reference's, in the largest entry (``norm=max_norm``), since a block's probes differ in size.

>>> import numpy as np
>>> fits(np.array([1.0, 2.0]), np.array([1.0, 2.001]), 1e-2), fits(np.ones(2), np.ones(3), 1.0)
(True, False)
>>> alpha, res = least_squares(np.array([2.0, 4.0]), np.array([1.0, 2.0]))
>>> float(alpha), res
(2.0, 0.0)
"""
from __future__ import annotations

import numpy as np

TINY = 1e-300  # the floor of a reference's size: a zero reference is fitted only exactly


def max_norm(x) -> float:
    """The largest entry of ``|x|`` (0 for an empty array)."""
    return float(np.max(np.abs(x))) if np.size(x) else 0.0


def residual(x, y, norm=np.linalg.norm, size=None) -> float:
    """``norm(x - y) / norm(y)``: what is left of ``y`` when ``x`` stands for it (``size``: ``norm(y)``
    when it is known; floored at :data:`TINY`)."""
    return float(norm(x - y)) / max(float(norm(y) if size is None else size), TINY)


def fits(x, y, rtol: float, norm=np.linalg.norm, size=None) -> bool:
    """The one fit test: ``x`` has ``y``'s shape and ``residual(x, y) <= rtol``."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return x.shape == y.shape and residual(x, y, norm, size) <= rtol


def least_squares(d, basis):
    """Least-squares ``d ≈ α basis``: ``(α, residual)``, the residual relative to ``d``; ``(0, inf)``
    for a zero basis."""
    d, basis = np.ravel(d).astype(np.float64), np.ravel(basis).astype(np.float64)
    nb = basis @ basis
    if nb == 0:
        return 0.0, np.inf
    alpha = (d @ basis) / nb
    return alpha, residual(alpha * basis, d)


class Fitter:
    """The fit test against the difference ``D`` of a gradient check, ``||D||`` computed once: a hypothesis
    whose effect is ``effect`` fits when :func:`fits` ``(effect, D)`` and it changes something."""

    def __init__(self, D, fit_rtol):
        self.D, self.nD, self.fit_rtol = D, float(np.linalg.norm(D)), fit_rtol

    def residual(self, effect):
        return residual(effect, self.D, size=self.nD)

    def fits(self, effect):
        return fits(effect, self.D, self.fit_rtol, size=self.nD) and np.linalg.norm(effect) > 0
