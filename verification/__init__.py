"""verification: a checker for anyone's hand-derived gradients and custom rules, and jaxmlp's proofs.

Three parts, imported in one direction (docs/layout.md):

* ``verification`` (this namespace, from :mod:`verification.checker`): the general checker.  It imports
  jax and numpy only, never jaxmlp or optax.  :func:`check_gradients` compares a hand-derived gradient
  with ``jax.grad`` and says where and why it differs; :func:`check_custom_vjp`,
  :func:`check_custom_jvp`, :func:`check_vjp`, :func:`check_jvp` and :func:`check_hvp` check
  ``custom_vjp`` / ``custom_jvp`` rules, hand-written VJPs and JVPs and curvature products, and
  :func:`check_rules` every custom rule reachable from a model, where it runs.  Every check
  takes the function first, the hand-derived rule second, then the point:
  ``check_gradients(loss_fn, manual_fn, params, *args)``, ``check_vjp(f, f_vjp, *args)``,
  ``check_jvp(f, f_jvp, *args)``, ``check_hvp(loss_fn, hvp_fn, params, *args)``, and
  ``check_custom_vjp(f, *args)`` / ``check_custom_jvp(f, *args)`` for a decorated function (its rule
  is inside).  Each has a pytest helper that raises on failure (``assert_gradients_match``,
  ``assert_custom_vjp_correct``, ...).  What is listed in ``__all__`` is the public interface; the
  modules under :mod:`verification.checker` are internal.
* :mod:`verification.catalogue`: planted bugs in model families written as people write them, and
  wrong rules; ``python -m verification --bugs`` scores the checker on them.
* :mod:`verification.suite`: the rows that prove jaxmlp's formulas (``python -m verification``).

:func:`configure` switches on float64 and the strict numerics the checks are judged under.

Tolerances and causes: a check's default ``rtol`` comes from the lowest floating dtype of its params or
arguments, through ``RTOL_BY_DTYPE`` (``F64_RTOL``, ``F32_RTOL``, ``F16_RTOL``, ``BF16_RTOL``);
``FD_RTOL`` is the tolerance against central differences.  Each is defined once, with its reason, in
:mod:`verification.checker.base.tolerances` (the API reference renders them, values and reasons, as a
table).  ``CAUSES`` is the one vocabulary of cause codes, shared by gradient reports and rule reports
(docs/checker.md gives the mapping from the codes of older schemas).
"""
import jax

from verification.checker.base.causes import CAUSES
from verification.checker.base.compare import LeafResult
from verification.checker.base.findings import Diagnosis, Hypothesis, RuleFinding
from verification.checker.rules.check_rules import RulesReport, check_rules
from verification.checker.rules.curvature import assert_hvp_correct, check_hvp
from verification.checker.gradients.check import assert_gradients_match, check_gradients
from verification.checker.gradients.report import GradientReport
from verification.checker.rules.jvp_checks import assert_custom_jvp_correct, assert_jvp_correct, check_custom_jvp, check_jvp
from verification.checker.explain.localize import Localization, tap
from verification.checker.base.report import CheckReport
from verification.checker.rules.report import RuleReport
from verification.checker.base.taylor import TaylorResult, taylor_test
from verification.checker.base.tolerances import BF16_RTOL, F16_RTOL, F32_RTOL, F64_RTOL, FD_RTOL, RTOL_BY_DTYPE
from verification.checker.rules.vjp_checks import assert_custom_vjp_correct, assert_vjp_correct, check_custom_vjp, check_vjp

__version__ = "0.2.0"


def configure():
    """x64, strict dtype promotion, rank promotion raises (the verification's numerics)."""
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_numpy_rank_promotion", "raise")


__all__ = [
    "BF16_RTOL",
    "CAUSES",
    "CheckReport",
    "Diagnosis",
    "F16_RTOL",
    "F32_RTOL",
    "F64_RTOL",
    "FD_RTOL",
    "GradientReport",
    "Hypothesis",
    "LeafResult",
    "Localization",
    "RTOL_BY_DTYPE",
    "RuleFinding",
    "RuleReport",
    "RulesReport",
    "TaylorResult",
    "assert_custom_jvp_correct",
    "assert_custom_vjp_correct",
    "assert_gradients_match",
    "assert_hvp_correct",
    "assert_jvp_correct",
    "assert_vjp_correct",
    "check_custom_jvp",
    "check_custom_vjp",
    "check_gradients",
    "check_hvp",
    "check_jvp",
    "check_rules",
    "check_vjp",
    "configure",
    "tap",
    "taylor_test",
]
