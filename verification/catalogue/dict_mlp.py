"""A 2-layer net with dict params: sigmoid hidden layer, softmax cross-entropy, L2 on the weights.

The loss is written as people write it, one operation per line; ``grad`` is its hand-derived gradient,
and ``grad(..., bug=NAME)`` the same derivation with one mistake from :data:`BUGS`.
"""
import jax
import jax.numpy as jnp

from verification.catalogue.planted import Planted
from verification.catalogue.data import random_data, random_tree

NAME = "dict-params 2-layer net"
LAM = 0.01  # L2 strength


def loss(p, x, y):
    z1 = x @ p["W1"] + p["b1"][None, :]  # site: z1
    h = jax.nn.sigmoid(z1)  # site: act
    z2 = h @ p["W2"] + p["b2"][None, :]  # site: z2
    lse = jax.nn.logsumexp(z2, axis=1)  # site: lse
    fit = jnp.sum(y * z2, axis=1)  # site: fit
    per = lse - fit  # site: per
    data = jnp.mean(per)  # site: mean
    penalty = jnp.sum(p["W1"] ** 2) + jnp.sum(p["W2"] ** 2)  # site: squares
    return data + 0.5 * LAM * penalty  # site: l2


def grad(p, x, y, bug=None):
    m = x.shape[0]
    z1 = x @ p["W1"] + p["b1"][None, :]
    h = jax.nn.sigmoid(z1)
    z2 = h @ p["W2"] + p["b2"][None, :]
    P = jax.nn.softmax(z2, axis=1)
    d2 = {"label_dropped": P / m, "label_sign": (P + y) / m,  # bwd: label_dropped, label_sign
          "no_mean": P - y}.get(bug, (P - y) / m)  # bwd: no_mean
    dW2 = (z1 if bug == "saved_preactivation" else h).T @ d2  # bwd: saved_preactivation
    dh = d2 @ p["W2"].T
    d1 = {"sigmoid_at_z": dh * z1 * (1 - z1),  # bwd: sigmoid_at_z
          "sigmoid_dropped": dh}.get(bug, dh * h * (1 - h))  # bwd: sigmoid_dropped
    db1 = d1.mean(0) if bug == "bias_mean" else d1.sum(0)  # bwd: bias_mean
    reg = {"l2_forgotten": 0.0, "l2_doubled": 2 * LAM}.get(bug, LAM)
    return {"W1": x.T @ d1 + reg * p["W1"],  # bwd: l2_forgotten, l2_doubled
            "b1": db1, "W2": dW2 + LAM * p["W2"], "b2": d2.sum(0)}


def problem(seed=0):
    p = random_tree({"W1": (3, 5), "b1": (5,), "W2": (5, 4), "b2": (4,)}, seed=seed)
    return (p, *random_data(seed, 6, 3, 4, classes=True))


BUGS = [
    Planted("label_dropped", "output delta P/m instead of (P - Y)/m", "path_dropped", "per"),
    Planted("label_sign", "output delta (P + Y)/m", "sign_flipped", "per"),
    Planted("no_mean", "output delta not divided by m", "mean_sum_confused", "mean"),
    Planted("saved_preactivation", "dW2 from the pre-activation z1 instead of h", "wrong_saved_operand", "z2"),
    Planted("sigmoid_at_z", "sigmoid' = s(1 - s) evaluated at z instead of s", "derivative_at_input", "act"),
    Planted("sigmoid_dropped", "sigmoid' left out", "derivative_dropped", "act"),
    Planted("bias_mean", "db1 as the mean over the batch instead of the sum", "mean_sum_confused", "z1"),
    Planted("l2_forgotten", "the L2 term of W1 forgotten", "path_dropped", "squares"),
    Planted("l2_doubled", "the L2 term of W1 as 2 lam W1 (the 1/2 forgotten)", "factor_2", "squares"),
]
