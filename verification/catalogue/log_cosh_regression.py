"""Regression with the log-cosh loss on a sigmoid net: :math:`\\ell(r) = \\log\\cosh r`, :math:`\\ell' = \\tanh r`."""
import jax
import jax.numpy as jnp

from verification.catalogue.planted import Planted
from verification.catalogue.data import random_data, random_tree

NAME = "log-cosh regression"


def loss(p, x, y):
    z = x @ p["W1"] + p["b1"][None, :]  # site: z
    h = jax.nn.sigmoid(z)  # site: hidden
    out = h @ p["W2"] + p["b2"][None, :]  # site: out
    r = out - y  # site: residual
    c = jnp.cosh(r)  # site: cosh
    per = jnp.log(c)  # site: log
    return jnp.mean(jnp.sum(per, axis=1))  # site: mean


def grad(p, x, y, bug=None):
    m = x.shape[0]
    z = x @ p["W1"] + p["b1"][None, :]
    h = jax.nn.sigmoid(z)
    out = h @ p["W2"] + p["b2"][None, :]
    r = {"residual_sign": y - out}.get(bug, out - y)  # bwd: residual_sign
    d = {"cosh_chain_dropped": 1 / jnp.cosh(r), "log_dropped": jnp.sinh(r),  # bwd: cosh_chain_dropped, log_dropped
         "cosh_derivative_sign": -jnp.tanh(r),  # bwd: cosh_derivative_sign
         "tanh_derivative": 1 - jnp.tanh(r) ** 2}.get(bug, jnp.tanh(r))  # bwd: tanh_derivative
    d = d if bug == "no_mean" else d / m  # bwd: no_mean
    dW2 = (z if bug == "saved_preactivation" else h).T @ d  # bwd: saved_preactivation
    dz = d @ p["W2"].T * (z * (1 - z) if bug == "sigmoid_at_z" else h * (1 - h))  # bwd: sigmoid_at_z
    return {"W1": x.T @ dz, "b1": dz.sum(0), "W2": dW2, "b2": d.sum(0)}


def problem(seed=0):
    p = random_tree({"W1": (3, 5), "b1": (5,), "W2": (5, 2), "b2": (2,)}, seed=seed)
    return (p, *random_data(seed, 6, 3, 2))


BUGS = [
    Planted("cosh_chain_dropped", "d log cosh r = 1 / cosh r (the chain through cosh forgotten)",
            "derivative_dropped", "cosh"),
    Planted("log_dropped", "d log cosh r = sinh r (the log's 1/u forgotten)", "derivative_dropped", "log"),
    Planted("cosh_derivative_sign", "cosh' = -sinh (as cos' = -sin)", "sign_flipped", "cosh"),
    Planted("residual_sign", "the residual taken as y - out", "sign_flipped", "residual"),
    Planted("tanh_derivative", "log-cosh's derivative tanh r confused with tanh's, 1 - tanh^2 r", "unknown",
            "log"),
    Planted("sigmoid_at_z", "sigmoid' = s(1 - s) evaluated at z", "derivative_at_input", "hidden"),
    Planted("no_mean", "the gradient not divided by m", "mean_sum_confused", "mean"),
    Planted("saved_preactivation", "dW2 from the pre-activation z instead of h", "wrong_saved_operand", "out"),
]
