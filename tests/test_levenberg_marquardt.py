"""Levenberg-Marquardt: Jacobian, step forms, the jitted loop, heads, bad arguments."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jaxmlp
from jaxmlp.least_squares import jacobian, residuals
from jaxmlp.levenberg_marquardt import levenberg_marquardt, lm_step

X, Y = (jnp.asarray(a, jnp.float64) for a in jaxmlp.data.higham_points())
MODEL = jaxmlp.MLP((2, 2, 3, 2), "sigmoid", "sigmoid_quadratic")


def test_jacobian_columns_follow_ravel_pytree_and_match_jacfwd():
    params = jaxmlp.init(MODEL, jax.random.key(0), "higham", dtype=jnp.float64)
    flat, unravel = ravel_pytree(params)
    J = jax.jit(lambda p: jacobian(MODEL, p, X))(params)
    ref = jax.jacfwd(lambda f: residuals(MODEL, unravel(f), X, Y))(flat)
    assert J.shape == (20, 23)
    np.testing.assert_allclose(J, ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("rows, n", [(30, 20), (20, 20), (20, 30)])
def test_step_forms_agree(rows, n):
    J = jax.random.normal(jax.random.key(rows + n), (rows, n), jnp.float64)
    r = jax.random.normal(jax.random.key(1), (rows,), jnp.float64)
    a, b = lm_step(J, r, 0.1, "normal"), lm_step(J, r, 0.1, "woodbury")
    # the two forms round differently: bounded relative to the step's largest entry (one entry of 30 can be
    # 1e-4 of the others, where an entry-wise bound would measure rounding of the others' size)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * float(np.max(np.abs(b))))
    np.testing.assert_allclose(lm_step(J, r, 0.1), a if n <= rows else b)


@pytest.mark.parametrize("damping", ["trainlm", "nielsen"])
@pytest.mark.parametrize("form", ["normal", "woodbury"])
def test_lm_reaches_the_paper_cost_jitted(damping, form):
    solve = jax.jit(lambda p: levenberg_marquardt(MODEL, p, X, Y, max_iters=300, damping=damping, form=form,
                                                  cost_tol=7.3e-4, check=False))
    r = solve(jaxmlp.init(MODEL, jax.random.key(2), "higham", dtype=jnp.float64))
    n = int(r.n_iters)
    cost = np.asarray(r.cost)
    assert int(r.reason) == 1 and cost[n] <= 7.3e-4
    assert np.all(np.diff(cost[: n + 1]) <= 0)  # only accepted steps change the cost
    final = residuals(MODEL, r.params, X, Y)
    np.testing.assert_allclose(final @ final, cost[n], rtol=1e-12)
    assert np.isnan(cost[n + 1:]).all() and bool(np.asarray(r.accepted)[:n].any())


def test_trainlm_damping_schedule():
    r = levenberg_marquardt(MODEL, jaxmlp.init(MODEL, jax.random.key(3), "higham", dtype=jnp.float64), X, Y,
                            max_iters=20)
    mu, acc = np.asarray(r.mu), np.asarray(r.accepted)
    assert mu[0] == 1e-3
    np.testing.assert_allclose(mu[1:], np.where(acc[:-1], 0.1, 10.0) * mu[:-1], rtol=1e-12)


def test_non_least_squares_head_is_refused():
    model = jaxmlp.MLP((2, 3, 2), "relu", "softmax_cross_entropy")
    params = jaxmlp.init(model, jax.random.key(0))
    with pytest.raises(ValueError, match="model.head: Levenberg-Marquardt needs a least-squares head.*softmax_cross_entropy.*not a sum of squared residuals"):
        levenberg_marquardt(model, params, X, jnp.array([0, 1] * 5))


@pytest.mark.parametrize("kw, msg", [({"damping": "marquardt"}, "damping: expected one of"),
                                     ({"form": "qr"}, "form: expected one of"),
                                     ({"max_iters": 0}, "max_iters: expected an int >= 1, got 0"),
                                     ({"mu0": -1.0}, "mu0: expected a damping > 0, got -1.0")])
def test_bad_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg):
        levenberg_marquardt(MODEL, jaxmlp.init(MODEL, jax.random.key(0), dtype=jnp.float64), X, Y, **kw)
