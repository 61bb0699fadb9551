"""verification: proofs that jaxmlp's hand-derived formulas equal autodiff and finite differences.

Run ``python -m verification`` for the report.  :func:`configure` switches on
float64 and the strict numerics this package is checked under.
"""
import jax

from verification.compare import Comparison, compare_trees
from verification import rows
from verification.checker import Report, assert_gradients_match, check_gradients
from verification.rows import CHECKS, Row
from verification.tolerances import F32_RTOL, F64_RTOL, FD_RTOL


def configure():
    """x64, strict dtype promotion, rank promotion raises (the verification's numerics)."""
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_numpy_rank_promotion", "raise")


def run_checks(selected=None):
    """Import every check module and yield its rows (optionally only names starting with ``selected``)."""
    from verification import batchnorm, layers, lm, network, optimizers  # noqa: F401  (registers the checks)

    for fn in CHECKS:
        if not rows.selected(fn, selected):
            continue
        for row in fn():
            if selected is None or any(row.name.startswith(s) for s in selected):
                yield row


__all__ = ["CHECKS", "Comparison", "Report", "assert_gradients_match", "check_gradients", "F32_RTOL", "F64_RTOL", "FD_RTOL", "Row", "compare_trees", "configure", "run_checks"]
