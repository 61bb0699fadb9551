"""Networks without biases (``use_bias=False``): Lemma 1 and the matrix form against jax.grad.

Every row of the grid has biases, so without these a Lemma 1 that treats a missing bias wrongly (``+ 1``
for the absent bias, or the bias gradient where the delta belongs, which is ``None`` without biases)
survives the suite (docs/mutation.md: the mutation run's survivors).
"""
from __future__ import annotations

import jax

import jaxmlp
from verification.checker.base.tolerances import F64_RTOL
from verification.suite.comparison import compare_trees
from verification.suite.problems import mlp_problem
from verification.suite.rows import Row

NO_BIAS = "Lemma 1 (1.1)-(1.4) and the matrix recursion with use_bias=False: no bias term, no bias gradient"


def no_bias_rows():
    """Every head, one activation each, depth 3 without biases, with L1 and L2: (Lemma 1, value_and_grad)."""
    acts = list(jaxmlp.ACTIVATIONS)
    for i, head in enumerate(jaxmlp.HEADS):
        act = acts[(i + 2) % len(acts)]
        model, params, x, y = mlp_problem((3, 4, 3, 2), act, head, m=5, seed=70 + i, use_bias=False)
        ref = jax.grad(lambda p, model=model, x=x, y=y: jaxmlp.loss(model, p, x, y, l1=0.01, l2=0.1))(params)
        got = (jaxmlp.lemma1_grad(model, params, x, y, l1=0.01, l2=0.1),
               jaxmlp.value_and_grad(model, params, x, y, l1=0.01, l2=0.1)[1])
        yield Row.from_comparison(f"net/no_bias/{act}/{head}", NO_BIAS, compare_trees(got, (ref, ref), F64_RTOL),
                                  F64_RTOL)
