"""verification: proofs that jaxmlp's hand-derived formulas equal autodiff and finite differences.

Run ``python -m verification`` for the report.  :func:`configure` switches on
float64 and the strict numerics this package is checked under.  The checker
(:func:`check_gradients`) is for anyone's hand-derived gradient, not only jaxmlp's.
"""
import jax

from verification.checker import Report, assert_gradients_match, check_gradients
from verification.compare import Comparison, LeafResult, compare_leaves, compare_trees
from verification.registry import CHECKS, run_checks
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
    "TaylorResult",
    "assert_gradients_match",
    "check_gradients",
    "compare_leaves",
    "compare_trees",
    "configure",
    "run_checks",
    "taylor_test",
]
