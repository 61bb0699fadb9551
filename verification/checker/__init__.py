"""The general checker, in five rooms by role (docs/layout.md), imported in one direction:

* :mod:`~verification.checker.base`: tolerances, the comparator, reports and findings, the fit test,
  differentiable leaves, a check's context, finite and sampled differences, the Taylor test;
* :mod:`~verification.checker.jaxpr`: a program as one list of equations, and the one interpreter;
* :mod:`~verification.checker.explain`: edits of the traced loss and the search for the one that
  reproduces a mistake (imports base and jaxpr);
* :mod:`~verification.checker.rules`: custom rules and hand-written VJPs, JVPs and curvature products
  (imports base and jaxpr);
* :mod:`~verification.checker.gradients`: ``check_gradients`` (imports every room).

It imports jax and numpy only (never jaxmlp or optax), and nothing from :mod:`verification.suite` or
:mod:`verification.catalogue`.  Its public names are re-exported, explicitly, by :mod:`verification`;
the modules here are internal and may change.
"""
