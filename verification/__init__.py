"""verification: proofs that jaxmlp's hand-derived formulas equal autodiff and finite differences.

Run ``python -m verification`` for the report.  :func:`configure` switches on
float64 and the strict numerics this package is checked under.  The checker
(:func:`check_gradients`) is for anyone's hand-derived gradient, not only jaxmlp's; the rule checks
(:func:`check_custom_vjp`, :func:`check_custom_jvp`, :func:`check_vjp`, :func:`check_jvp`,
:func:`check_hvp`) are for anyone's ``custom_vjp`` / ``custom_jvp`` rules and curvature products.
"""
import jax

from verification.checker import Report, assert_gradients_match, check_gradients
from verification.compare import Comparison, LeafResult, compare_leaves, compare_trees
from verification.curvature import assert_hvp_correct, check_hvp
from verification.jvp_checks import assert_custom_jvp_correct, assert_jvp_correct, check_custom_jvp, check_jvp
from verification.registry import CHECKS, run_checks
from verification.rule_report import RuleReport
from verification.vjp_checks import assert_custom_vjp_correct, assert_vjp_correct, check_custom_vjp, check_vjp
from verification.rows import Row
from verification.taylor import TaylorResult, taylor_test
from verification.tolerances import F32_RTOL, F64_RTOL, FD_RTOL


def configure():
    """x64, strict dtype promotion, rank promotion raises (the verification's numerics)."""
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_numpy_rank_promotion", "raise")


__all__ = [
    "CHECKS",
    "Comparison",
    "F32_RTOL",
    "F64_RTOL",
    "FD_RTOL",
    "LeafResult",
    "Report",
    "Row",
    "RuleReport",
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
    "check_vjp",
    "compare_leaves",
    "compare_trees",
    "configure",
    "run_checks",
    "taylor_test",
]
