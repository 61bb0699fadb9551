"""A net with layer norm: linear, layer norm with gain and bias, tanh, linear, squared error.

.. math:: \\hat h = \\frac{h - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}},\\quad a = \\gamma \\odot \\hat h + \\beta

Its hand-derived backward is the usual compact form
:math:`\\partial h = \\frac{1}{s}\\big(\\partial\\hat h - \\overline{\\partial\\hat h} - \\hat h\\,
\\overline{\\partial\\hat h \\odot \\hat h}\\big)`, bars being means over the features.
"""
import jax.numpy as jnp

from verification.catalogue.planted import Planted
from verification.catalogue.data import random_data, random_tree

NAME = "layer-norm net"
EPS = 1e-5


def loss(p, x, y):
    h = x @ p["W1"] + p["b1"][None, :]  # site: linear
    mu = jnp.mean(h, axis=1, keepdims=True)  # site: mu
    c = h - mu  # site: center
    var = jnp.mean(c * c, axis=1, keepdims=True)  # site: var
    s = jnp.sqrt(var + EPS)  # site: std
    n = c / s  # site: normalize
    a = p["gamma"][None, :] * n + p["beta"][None, :]  # site: affine
    r = jnp.tanh(a)  # site: act
    out = r @ p["W2"] + p["b2"][None, :]  # site: out
    return 0.5 * jnp.mean(jnp.sum((out - y) ** 2, axis=1))  # site: loss


def grad(p, x, y, bug=None):
    m, k = x.shape[0], p["W1"].shape[1]
    h = x @ p["W1"] + p["b1"][None, :]
    c = h - jnp.mean(h, axis=1, keepdims=True)
    s = jnp.sqrt(jnp.mean(c * c, axis=1, keepdims=True) + EPS)
    n = c / s
    r = jnp.tanh(p["gamma"][None, :] * n + p["beta"][None, :])
    out = r @ p["W2"] + p["b2"][None, :]
    dout = (2.0 if bug == "half_forgotten" else 1.0) * (out - y) / m  # bwd: half_forgotten
    da = dout @ p["W2"].T * (1.0 if bug == "tanh_dropped" else 1 - r ** 2)  # bwd: tanh_dropped
    dn = da if bug == "gamma_forgotten" else da * p["gamma"][None, :]  # bwd: gamma_forgotten
    mean_dn = 0.0 if bug == "mean_path_dropped" else jnp.mean(dn, axis=1, keepdims=True)  # bwd: mean_path_dropped
    var_term = jnp.sum(dn * n, axis=1, keepdims=True) / (  # bwd: unbiased_variance
        k - 1 if bug == "unbiased_variance" else k)
    dh = (dn - mean_dn - (0.0 if bug == "variance_path_dropped" else n * var_term)) / s  # bwd: variance_path_dropped
    dgamma = jnp.sum(da * (c if bug == "gamma_unnormalised" else n), axis=0)  # bwd: gamma_unnormalised
    dbeta = jnp.mean(da, axis=0) if bug == "beta_mean" else jnp.sum(da, axis=0)  # bwd: beta_mean
    return {"W1": x.T @ dh, "b1": dh.sum(0), "gamma": dgamma, "beta": dbeta, "W2": r.T @ dout,
            "b2": dout.sum(0)}


def problem(seed=0):
    p = random_tree({"W1": (3, 5), "b1": (5,), "gamma": (5,), "beta": (5,), "W2": (5, 2), "b2": (2,)}, seed=seed)
    return (p, *random_data(seed, 6, 3, 2))


BUGS = [
    Planted("mean_path_dropped", "the mean treated as a constant in the layer norm's backward", "path_dropped",
            "center"),
    Planted("variance_path_dropped", "the standard deviation treated as a constant", "path_dropped", "normalize"),
    Planted("unbiased_variance", "the variance's derivative with 1/(k-1) where the forward uses 1/k",
            "wrong_constant", "var"),
    Planted("gamma_unnormalised", "dgamma from the centred, not the normalised, features", "wrong_saved_operand",
            "affine"),
    Planted("gamma_forgotten", "the gain left out of the normalised features' delta", "derivative_dropped",
            "affine"),
    Planted("beta_mean", "dbeta as the batch mean", "mean_sum_confused", "affine"),
    Planted("tanh_dropped", "tanh' left out", "derivative_dropped", "act"),
    Planted("half_forgotten", "d(1/2 err^2) = 2 err", "factor_2", "loss"),
]
