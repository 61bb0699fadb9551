"""Softmax regression with a temperature and an L2 penalty: one linear layer, cross-entropy.

.. math:: J = \\frac{1}{m}\\sum_i \\Big(\\log\\sum_k e^{z_{ik}} - y_i^\\top z_i\\Big) + \\frac{\\lambda}{2}\\lVert W\\rVert^2,
          \\quad z = (xW + b)/T
"""
import jax
import jax.numpy as jnp

from verification.catalogue.planted import Planted
from verification.catalogue.data import random_data, random_tree

NAME = "softmax regression"
T = 3.0  # temperature
LAM = 0.02  # L2 strength


def loss(p, x, y):
    s = x @ p["W"] + p["b"][None, :]  # site: scores
    z = s / T  # site: temperature
    lse = jax.nn.logsumexp(z, axis=1)  # site: lse
    fit = jnp.sum(y * z, axis=1)  # site: fit
    data = jnp.mean(lse - fit)  # site: mean
    return data + 0.5 * LAM * jnp.sum(p["W"] ** 2)  # site: l2


def grad(p, x, y, bug=None):
    m = x.shape[0]
    z = (x @ p["W"] + p["b"][None, :]) / T
    P = jax.nn.softmax(z, axis=1)
    dz = {"label_dropped": P, "label_sign": P + y,  # bwd: label_dropped, label_sign
          "softmax_diagonal_only": -y * (1 - P)}.get(bug, P - y)  # dJ/dz times m  # bwd: softmax_diagonal_only
    dz = dz if bug == "no_mean" else dz / m  # bwd: no_mean
    ds = dz if bug == "temperature_forgotten" else dz / T  # bwd: temperature_forgotten
    reg = {"l2_forgotten": 0.0, "l2_doubled": 2 * LAM}.get(bug, LAM)
    db = ds.mean(0) if bug == "bias_mean" else ds.sum(0)  # bwd: bias_mean
    return {"W": x.T @ ds + reg * p["W"], "b": db}  # bwd: l2_forgotten, l2_doubled


def problem(seed=0):
    p = random_tree({"W": (4, 3), "b": (3,)}, seed=seed)
    return (p, *random_data(seed, 6, 4, 3, classes=True, x_scale=2.0))


BUGS = [
    Planted("no_mean", "the gradient not divided by m", "mean_sum_confused", "mean"),
    Planted("label_dropped", "dz = P instead of P - Y", "path_dropped", "mean"),
    Planted("label_sign", "dz = P + Y", "sign_flipped", "mean"),
    Planted("temperature_forgotten", "the 1/T of the temperature left out of the backward", "wrong_constant",
            "temperature"),
    Planted("l2_forgotten", "the L2 term forgotten", "path_dropped", "l2"),
    Planted("l2_doubled", "the L2 term as 2 lam W", "factor_2", "l2"),
    Planted("bias_mean", "db as the batch mean (1/m applied twice)", "mean_sum_confused", "scores"),
    Planted("softmax_diagonal_only", "the softmax Jacobian's diagonal only: dz = -Y (1 - P)", "unknown", "lse"),
]
