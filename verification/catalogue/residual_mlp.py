"""A residual MLP: a tanh layer, a tanh block with a skip connection, a linear output, squared error.

.. math:: h = \\tanh(xW_1 + b_1),\\quad r = h + \\tanh(hW_2 + b_2),\\quad
          J = \\frac{1}{m}\\sum_i \\lVert r_i W_3 + b_3 - y_i\\rVert^2
"""
import jax.numpy as jnp

from verification.catalogue.planted import Planted
from verification.catalogue.data import random_data, random_tree

NAME = "residual MLP with a skip connection"


def loss(p, x, y):
    h = jnp.tanh(x @ p["W1"] + p["b1"][None, :])  # site: layer1
    u = h @ p["W2"] + p["b2"][None, :]  # site: u
    r = h + jnp.tanh(u)  # site: skip
    out = r @ p["W3"] + p["b3"][None, :]  # site: out
    err = out - y  # site: err
    sq = jnp.sum(err ** 2, axis=1)  # site: square
    return jnp.mean(sq)  # site: mean


def grad(p, x, y, bug=None):
    m = x.shape[0]
    h = jnp.tanh(x @ p["W1"] + p["b1"][None, :])
    u = h @ p["W2"] + p["b2"][None, :]
    t = jnp.tanh(u)
    r = h + t
    out = r @ p["W3"] + p["b3"][None, :]
    e = {"err_sign": y - out}.get(bug, out - y)  # bwd: err_sign
    d_out = (e if bug == "square_half" else 2 * e) / m  # d/d out of mean(sum(err^2))  # bwd: square_half
    dW3 = (h if bug == "saved_skip_input" else r).T @ d_out  # bwd: saved_skip_input
    dr = d_out @ p["W3"].T
    du = {"tanh_at_u": dr * (1 - u ** 2),  # bwd: tanh_at_u
          "block_tanh_dropped": dr}.get(bug, dr * (1 - t ** 2))  # bwd: block_tanh_dropped
    skip = {"skip_forgotten": 0.0, "skip_twice": 2.0}.get(bug, 1.0)
    dh = skip * dr + du @ p["W2"].T  # bwd: skip_forgotten, skip_twice
    dz1 = dh if bug == "layer1_tanh_dropped" else dh * (1 - h ** 2)  # bwd: layer1_tanh_dropped
    return {"W1": x.T @ dz1, "b1": dz1.sum(0), "W2": h.T @ du, "b2": du.sum(0), "W3": dW3, "b3": d_out.sum(0)}


def problem(seed=0):
    p = random_tree({"W1": (3, 4), "b1": (4,), "W2": (4, 4), "b2": (4,), "W3": (4, 2), "b3": (2,)},
                    seed=seed, scale=0.7)
    return (p, *random_data(seed, 6, 3, 2))


BUGS = [
    Planted("skip_forgotten", "the skip connection's gradient forgotten: dh = du W2^T only", "path_dropped", "skip"),
    Planted("skip_twice", "the skip connection's gradient added twice", "factor_2", "skip"),
    Planted("tanh_at_u", "tanh' = 1 - t^2 evaluated at u instead of t = tanh(u)", "derivative_at_input", "skip"),
    Planted("block_tanh_dropped", "the block's tanh' left out", "derivative_dropped", "skip"),
    Planted("layer1_tanh_dropped", "the first layer's tanh' left out", "derivative_dropped", "layer1"),
    Planted("square_half", "d(err^2) = err instead of 2 err", "factor_2", "square"),
    Planted("err_sign", "the residual taken as y - out", "sign_flipped", "err"),
    Planted("saved_skip_input", "dW3 from h, the skip's input, instead of r", "wrong_saved_operand", "out"),
]
