"""A layer norm with gain and bias as a ``jax.custom_vjp`` whose ``bwd`` is the staged derivation (the
course-notes form, one intermediate per line) with three outputs: dx, dgamma, dbeta.

.. math:: \\hat x = \\frac{x - \\mu}{s},\\ s = \\sqrt{\\sigma^2 + \\epsilon},\\quad
          y = \\gamma \\odot \\hat x + \\beta

It is a rule family: ``rule(bug)`` builds the decorated function, ``args(seed, dtype)`` its arguments,
and it is checked with :func:`verification.check_custom_vjp` (the correct rule must pass in float64 and
float32).  Every bug is a single-term edit inside the bwd.  Written bugs first (2026-12-06), before the
checker was run on them; the bwd line where each is written carries ``# bwd: NAME``, and the ``# site:``
marks are on the primal's lines.
"""
import jax
import jax.numpy as jnp

from verification.catalogue.data import F64
from verification.catalogue.planted import Planted

NAME = "layer norm custom_vjp (staged bwd: dx, dgamma, dbeta)"
KIND = "custom_vjp"
M, N = 4, 6
EPS = 1e-5


def rule(bug=None):
    @jax.custom_vjp
    def layer_norm(x, gamma, beta):
        mu = jnp.mean(x, axis=1, keepdims=True)  # site: mean
        xc = x - mu  # site: center
        var = jnp.mean(xc ** 2, axis=1, keepdims=True)  # site: var
        s = jnp.sqrt(var + EPS)  # site: std
        xhat = xc / s  # site: normalize
        return gamma[None, :] * xhat + beta[None, :]  # site: affine

    def fwd(x, gamma, beta):
        xc = x - jnp.mean(x, axis=1, keepdims=True)
        s = jnp.sqrt(jnp.mean(xc ** 2, axis=1, keepdims=True) + EPS)
        xhat = xc / s
        return gamma[None, :] * xhat + beta[None, :], (xc, xhat, s, gamma)

    def bwd(res, g):
        xc, xhat, s, gamma = res
        n = xc.shape[1]
        dbeta = jnp.mean(g, axis=0) if bug == "dbeta_mean" else jnp.sum(g, axis=0)  # bwd: dbeta_mean
        dgamma = jnp.sum(g * (xc if bug == "dgamma_from_centered" else xhat), axis=0)  # bwd: dgamma_from_centered
        dxhat = g if bug == "gamma_not_applied" else g * gamma[None, :]  # bwd: gamma_not_applied
        dinv = jnp.sum(dxhat * xc, axis=1, keepdims=True)  # dL/d(1/s)
        ds = (dinv if bug == "inv_sign" else -dinv) / s ** 2  # bwd: inv_sign
        dvar = ds / s if bug == "sqrt_half_dropped" else 0.5 * ds / s  # bwd: sqrt_half_dropped
        direct = dxhat if bug == "direct_not_over_s" else dxhat / s  # bwd: direct_not_over_s
        dxc = direct + 2.0 * xc * dvar / {"extra_over_n": n * n, "var_biased": n - 1}.get(bug, n)  # bwd: extra_over_n, var_biased
        dmu = -jnp.sum(dxc, axis=0 if bug == "mean_wrong_axis" else 1, keepdims=True)  # bwd: mean_wrong_axis
        dx = dxc if bug == "mean_path_dropped" else dxc + dmu / n  # bwd: mean_path_dropped
        return dx, dgamma, dbeta

    layer_norm.defvjp(fwd, bwd)
    return layer_norm


def args(seed=0, dtype=F64):
    kx, kg, kb = jax.random.split(jax.random.key(seed + 200), 3)
    x = 1.5 * jax.random.normal(kx, (M, N), F64) + 0.5
    gamma = 1.0 + 0.3 * jax.random.normal(kg, (N,), F64)
    beta = 0.5 * jax.random.normal(kb, (N,), F64)
    return tuple(a.astype(dtype) for a in (x, gamma, beta))


BUGS = [
    Planted("dbeta_mean", "dbeta as the batch mean", "mean_sum_confused", "affine"),
    Planted("dgamma_from_centered", "dgamma from the centred x - mu instead of the normalised x-hat",
            "wrong_saved_operand", "affine"),
    Planted("gamma_not_applied", "the gain left out of d x-hat", "derivative_dropped", "affine"),
    Planted("inv_sign", "d(1/s)/ds written as +1/s^2", "sign_flipped", "normalize"),
    Planted("direct_not_over_s", "the direct term of dx not divided by s", "derivative_dropped", "normalize"),
    Planted("sqrt_half_dropped", "d sqrt(v)/dv written as 1/sqrt(v) (the 1/2 dropped)", "factor_2", "std"),
    Planted("extra_over_n", "the variance term divided by n twice", "mean_sum_confused", "var"),
    Planted("var_biased", "the variance's derivative with 1/(n-1) where the forward uses 1/n", "wrong_constant",
            "var"),
    Planted("mean_wrong_axis", "dmu summed over the batch axis instead of the features", "unknown", "center"),
    Planted("mean_path_dropped", "the mean's term dmu / n left out of dx", "path_dropped", "center"),
]
