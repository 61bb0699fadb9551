"""The checker on a killed mutant, as a user would run it: ``check_gradients`` with jaxmlp's loss (its forward,
differentiated by ``jax.grad``) against the mutated hand gradient (``jaxmlp.value_and_grad``, or
``lemma1_grad`` for Lemma 1), or ``check_custom_vjp`` of ``loss_with_manual_vjp`` where the mutant sits in the
rule's pieces (the manual VJP, the targets' derivatives, the input gradient).  The user's problem is the
first of a fixed list (the mutated function's own activation or head first) on which the mutated gradient
differs from autodiff; the score reuses :func:`verification.catalogue.backward.line_hits`.
"""
from __future__ import annotations

import itertools

from verification.mutants.operators import Mutant

__all__ = ["DIFFERS_RTOL", "score"]

# The pre-screen that picks the user's problem: a gradient that differs from autodiff by more than this (relative
# to the largest entry) is wrong at that problem; float64 rounding of these small networks stays below 1e-12.
DIFFERS_RTOL = 1e-9

_RULE_FUNCTIONS = ("_fwd", "_bwd", "value_and_input_grads", "linear_target_delta", "sigmoid_quadratic_target_delta",
                   "sum_squares_target_delta", "mse_target_delta")


def _problems(jm, mutant: Mutant):
    """(model, params, x, y, l1, l2, weights) candidates, the mutated function's activation / head first."""
    import jax
    import jax.numpy as jnp

    acts, heads = list(jm.ACTIVATIONS), list(jm.HEADS)
    fn = mutant.function
    acts.sort(key=lambda a: not fn.startswith(a + "_"))
    heads.sort(key=lambda h: not fn.startswith(h + "_"))
    bn = mutant.module == "batchnorm.py"
    if bn:
        acts = [a for a in acts if a != "identity"]
    for i, (head, act, weighted) in enumerate(itertools.product(heads, acts, (False, True))):
        model = jm.MLP((3, 4, 3, 2), act, head, use_bias=not bn, batchnorm=bn)
        k = jax.random.split(jax.random.key(100 + i), 3)
        params = jm.init(model, k[0], "higham", dtype=jnp.float64)
        x = jax.random.normal(k[1], (5, 3), jnp.float64)
        y = (jax.random.randint(k[2], (5,), 0, 2) if jm.get_head(head).classes
             else jax.random.uniform(k[2], (5, 2), jnp.float64))
        w = jnp.asarray([1.0, 1.0, 0.0, 1.0, 1.0], jnp.float64) if weighted else None
        yield model, params, x, y, 0.01, 0.1, w


def _differs(a, b) -> bool:
    import jax
    import numpy as np

    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    if jax.tree.structure(a) != jax.tree.structure(b):
        return True
    scale = max(float(np.max(np.abs(np.asarray(t)), initial=0.0)) for t in lb) or 1.0
    return any(np.shape(u) != np.shape(v) or not np.all(np.abs(np.asarray(u) - np.asarray(v)) <= DIFFERS_RTOL * scale)
               for u, v in zip(la, lb))


def score(jm, mutant: Mutant) -> dict:
    """``{"first", "top3", "explained", "cause", "problem"}`` for ``mutant`` (or ``"skipped"`` with why)."""
    import jax

    import verification
    from verification.catalogue.backward import line_hits

    rule = mutant.module == "manual_vjp.py" or mutant.function in _RULE_FUNCTIONS
    for model, params, x, y, l1, l2, w in _problems(jm, mutant):
        if rule and w is not None:
            continue
        try:
            if rule:
                if jm.get_head(model.head).classes:
                    y = jax.nn.one_hot(y, 2, dtype=x.dtype)
                args = (params, x, y, l1, l2)
                got = jax.grad(lambda *a, model=model: jm.loss_with_manual_vjp(model, *a, check=False),
                               argnums=(0, 1, 2, 3, 4))(*args)
                ref = jax.grad(lambda *a, model=model: jm.loss(model, *a[:3], l1=a[3], l2=a[4], check=False),
                               argnums=(0, 1, 2, 3, 4))(*args)
            else:
                lossf = lambda p, x, y, model=model, l1=l1, l2=l2, w=w: jm.loss(model, p, x, y, l1=l1, l2=l2, weights=w)
                if mutant.module == "lemma1.py":
                    if w is not None:
                        continue
                    grad = lambda p, x, y, model=model, l1=l1, l2=l2: jm.lemma1_grad(model, p, x, y, l1=l1, l2=l2)
                else:
                    grad = (lambda p, x, y, model=model, l1=l1, l2=l2, w=w:
                            jm.value_and_grad(model, p, x, y, l1=l1, l2=l2, weights=w)[1])
                got, ref = grad(params, x, y), jax.grad(lossf)(params, x, y)
        except Exception as e:  # noqa: BLE001 -- a raising gradient: the user sees the exception, not a report
            return {"skipped": f"the gradient raises {type(e).__name__}"}
        if not _differs(got, ref):
            continue
        problem = f"{model.activation}/{model.head}{'/weighted' if w is not None else ''}"
        if rule:
            report = verification.check_custom_vjp(jm.loss_with_manual_vjp, model, params, x, y, l1, l2)
            causes = [f.cause for f in report.findings]
        else:
            report = verification.check_gradients(lossf, grad, params, x, y)
            causes = [h.cause for h in report.hypotheses] or [f.cause for f in getattr(report, "findings", [])]
        backward = getattr(report, "backward", None)  # the cause the report leads with, at the line to fix
        causes += [backward.cause] if backward is not None else []
        first, top3 = line_hits(report, mutant.line)
        cause = next((c for c in causes if c != "unknown"), causes[0] if causes else "(none)")
        return {"first": first, "top3": top3, "explained": not report.passed and cause not in ("unknown", "(none)"),
                "cause": cause, "problem": problem, "passed": report.passed}
    return {"skipped": "no problem of the list sees the mutant"}
