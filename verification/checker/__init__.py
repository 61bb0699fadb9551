"""The general checker: gradients, rules, the jaxpr machinery, comparison, tolerances and reports.

It imports jax and numpy only (never jaxmlp or optax), and nothing from :mod:`verification.suite` or
:mod:`verification.catalogue`.  Its public names are re-exported, explicitly, by :mod:`verification`;
the modules here are internal and may change.
"""
