"""jaxmlp's proof suite: the rows of ``python -m verification``, their registry, the standard problems and the
source documents' errata.  The one part of :mod:`verification` that imports jaxmlp (and optax).

>>> from verification.suite import CHECKS
>>> "layer/dense" in CHECKS[0].prefixes
True
"""
from verification.suite.registry import CHECKS, Check, run_checks
from verification.suite.rows import Row

__all__ = ["CHECKS", "Check", "Row", "run_checks"]
