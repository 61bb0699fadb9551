"""A Gaussian process's negative log marginal likelihood with an RBF kernel, through a Cholesky factor;
the parameters are the log length-scale, log signal variance and log noise.

.. math:: K = \\sigma^2 e^{-r^2 / 2\\ell^2} + s^2 I,\\quad
          J = \\tfrac12 y^\\top K^{-1} y + \\textstyle\\sum_i \\log L_{ii},\\quad
          \\frac{\\partial J}{\\partial\\theta} = \\tfrac12\\mathrm{tr}\\big((K^{-1} - \\alpha\\alpha^\\top)
          \\tfrac{\\partial K}{\\partial\\theta}\\big)
"""
import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve

from verification.catalogue.planted import Planted

NAME = "GP marginal likelihood (Cholesky)"
N = 6


def loss(p, x, y):
    r2 = (x[:, None] - x[None, :]) ** 2
    ell2 = jnp.exp(2 * p["log_ell"])  # site: ell
    k = jnp.exp(p["log_sf2"]) * jnp.exp(-0.5 * r2 / ell2)  # site: kernel
    k = k + jnp.exp(p["log_sn2"]) * jnp.eye(x.shape[0])  # site: noise
    chol = jnp.linalg.cholesky(k)  # site: cholesky
    alpha = cho_solve((chol, True), y)  # site: solve
    fit = 0.5 * y @ alpha  # site: fit
    logdet = jnp.sum(jnp.log(jnp.diag(chol)))  # site: logdet
    return fit + logdet  # site: nll


def grad(p, x, y, bug=None):
    r2 = (x[:, None] - x[None, :]) ** 2
    ell2 = jnp.exp(2 * p["log_ell"])
    rbf = jnp.exp(p["log_sf2"]) * jnp.exp(-0.5 * r2 / ell2)
    k = rbf + jnp.exp(p["log_sn2"]) * jnp.eye(x.shape[0])
    kinv = jnp.linalg.inv(k)
    alpha = kinv @ y
    fit_weight = -1.0 if bug == "fit_sign" else 1.0
    logdet_weight = 2.0 if bug == "logdet_half_dropped" else 1.0
    inner = logdet_weight * kinv - fit_weight * jnp.outer(alpha, alpha)  # bwd: logdet_half_dropped, fit_sign
    dk_dell = rbf * r2 / ell2 * (2.0 if bug != "lengthscale_chain_half" else 1.0) / 2  # bwd: lengthscale_chain_half
    dk_dsf = rbf
    dk_dsn = jnp.exp(p["log_sn2"]) * jnp.eye(x.shape[0])
    tr = lambda a: 0.5 * jnp.sum(inner * a)  # noqa: E731  (1/2) tr(inner a), a symmetric
    return {"log_ell": tr(dk_dell), "log_sf2": tr(dk_dsf), "log_sn2": tr(dk_dsn)}


def problem(seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed + 100), 3)
    p = {"log_ell": 0.3 * jax.random.normal(k3, (), jnp.float64), "log_sf2": jnp.asarray(0.1, jnp.float64),
         "log_sn2": jnp.asarray(-1.0, jnp.float64)}
    x = jnp.sort(jax.random.uniform(k1, (N,), jnp.float64, -2.0, 2.0))
    return p, x, jnp.sin(2 * x) + 0.1 * jax.random.normal(k2, (N,), jnp.float64)


BUGS = [
    Planted("logdet_half_dropped", "the log-determinant's gradient tr(K^-1 dK) without the 1/2", "factor_2",
            "logdet"),
    Planted("fit_sign", "the data-fit term's gradient with the wrong sign", "sign_flipped", "fit"),
    Planted("lengthscale_chain_half", "d/d log(ell) of r^2 / 2 ell^2 taken as r^2 / 2 ell^2 (the chain's 2 lost)",
            "factor_2", "ell"),
]
