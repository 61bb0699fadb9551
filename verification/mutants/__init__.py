"""Mutation testing of the verification suite on jaxmlp's hand-derived formulas (``python -m verification
--mutants``; docs/mutation.md).

:mod:`~verification.mutants.operators` (the ``ast`` mutator, span replacement), :mod:`~verification.mutants.targets`
(what is mutated, which checks run), :mod:`~verification.mutants.probes` and
:mod:`~verification.mutants.equivalence` (equivalent mutants by evaluation), :mod:`~verification.mutants.worker`
(one process per batch), :mod:`~verification.mutants.run` (batches, time limits),
:mod:`~verification.mutants.checker_score` (the checker on killed mutants), :mod:`~verification.mutants.report`.
Importing this package imports neither jax's model code nor jaxmlp: workers load jaxmlp.
"""
from verification.mutants.operators import OPERATORS, Mutant, apply, mutants_of
from verification.mutants.targets import BACKWARD, CHECKS, TARGETS

__all__ = ["BACKWARD", "CHECKS", "OPERATORS", "TARGETS", "Mutant", "apply", "mutants_of"]
