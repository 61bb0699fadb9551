"""Levenberg-Marquardt checks: the hand-derived Jacobian, the two step forms, and Higham & Higham notes (2024-09-10)'s Woodbury errata."""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import jaxmlp
from jaxmlp.least_squares import jacobian, residuals
from jaxmlp.levenberg_marquardt import lm_step
from verification.suite.comparison import compare_trees
from verification.suite.rows import Row
from verification.checker.base.tolerances import F64_RTOL
from verification.suite.tolerances import ERRATUM_MIN_REL, LM_STEP_RTOL

F64 = jnp.float64
LS_HEADS = tuple(name for name, head in jaxmlp.HEADS.items() if head.least_squares)


def jacobians(select=None):
    """Every activation x least-squares head, every fourth without biases; with ``select``
    (``select(act, head) -> bool``; the test suite's sample), the pairs it keeps."""
    for i, (act, head) in enumerate(itertools.product(jaxmlp.ACTIVATIONS, LS_HEADS)):
        if select is not None and not select(act, head):
            continue
        model = jaxmlp.MLP((3, 4, 3, 2), act, head, use_bias=i % 4 != 3)
        k1, k2, k3 = jax.random.split(jax.random.key(40 + i), 3)
        params = jaxmlp.init(model, k1, "higham", dtype=F64)
        x = jax.random.normal(k2, (5, 3), F64)
        y = jax.random.uniform(k3, (5, 2), F64)
        flat, unravel = ravel_pytree(params)
        r = lambda f: residuals(model, unravel(f), x, y, check=False)  # noqa: E731
        J = jacobian(model, params, x)
        cmp = compare_trees(J, jax.jacrev(r)(flat), F64_RTOL).merge(compare_trees(J, jax.jacfwd(r)(flat), F64_RTOL))
        yield Row.from_comparison(f"lm/jacobian/{act}/{head}", "delta recursion seeded with -h'(z^L) e_k, per example",
                                  cmp, F64_RTOL)


def step_forms():
    for rows, n in ((30, 20), (20, 20), (20, 30), (20, 23)):
        k1, k2 = jax.random.split(jax.random.key(rows * 100 + n))
        J = jax.random.normal(k1, (rows, n), F64)
        r = jax.random.normal(k2, (rows,), F64)
        for mu in (1e-3, 1.0):
            dense = jnp.linalg.solve(J.T @ J + mu * jnp.eye(n, dtype=F64), -(J.T @ r))
            normal, wood = lm_step(J, r, mu, "normal"), lm_step(J, r, mu, "woodbury")
            cmp = compare_trees(normal, dense, LM_STEP_RTOL).merge(compare_trees(wood, dense, LM_STEP_RTOL)).merge(
                compare_trees(wood, normal, LM_STEP_RTOL))
            yield Row.from_comparison(f"lm/step/rows{rows}_n{n}_mu{mu:g}",
                                      "(J^TJ+mu I)^-1 J^T r = J^T(JJ^T+mu I)^-1 r = dense solve (Higham & Higham notes (2024-09-10), corrected)",
                                      cmp, LM_STEP_RTOL)


def woodbury_cases():
    k = jax.random.split(jax.random.key(7), 4)
    n, q = 6, 3
    A = jnp.diag(jax.random.uniform(k[0], (n,), F64, 1.0, 2.0))
    U = jax.random.normal(k[1], (n, q), F64)
    C = jnp.diag(jax.random.uniform(k[2], (q,), F64, 1.0, 2.0))
    V = jax.random.normal(k[3], (q, n), F64)
    inv = jnp.linalg.inv
    truth = inv(A + U @ C @ V)
    inner = inv(inv(C) + V @ inv(A) @ U)
    J = jax.random.normal(k[0], (4, n), F64)
    lam = 0.7
    I_n, I_r = jnp.eye(n, dtype=F64), jnp.eye(4, dtype=F64)
    lm_truth = inv(lam * I_n + J.T @ J)
    small = inv(lam * I_r + J @ J.T)
    return [
        ("woodbury_general", "Higham & Higham notes (2024-09-10) Woodbury identity", truth,
         inv(A) @ U @ inner @ V @ inv(A),  # printed: the leading "A^{-1} -" is missing
         inv(A) - inv(A) @ U @ inner @ V @ inv(A)),
        ("woodbury_lm", "Higham & Higham notes (2024-09-10) (lambda I + J^T J)^{-1}", lm_truth,
         I_n / lam - (J.T @ small @ J) / lam / lam,  # printed: one lambda^{-1} too many
         (I_n - J.T @ small @ J) / lam),
    ]


def woodbury_errata():
    """Higham & Higham notes (2024-09-10)'s printed identities must differ from the truth; the corrected ones must equal it."""
    for name, where, truth, printed, corrected in woodbury_cases():
        bad = compare_trees(printed, truth, F64_RTOL)
        yield Row(f"lm/erratum/{name}_printed_fails", f"{where}, as printed: must differ by >= tol",
                  bad.max_abs, bad.max_rel, ERRATUM_MIN_REL, bad.max_rel >= ERRATUM_MIN_REL,
                  f"printed form off by {bad.max_rel:.2e} at {bad.where}")
        yield Row.from_comparison(f"lm/woodbury/{name}_corrected", f"{where}, corrected",
                                  compare_trees(corrected, truth, LM_STEP_RTOL), LM_STEP_RTOL)
