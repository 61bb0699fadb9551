"""Regression with the Huber loss (quadratic within ``DELTA`` of the target, linear beyond) on a tanh net.

.. math:: \\ell(r) = \\begin{cases} r^2/2 & |r| \\le \\delta \\\\ \\delta(|r| - \\delta/2) & \\text{else}\\end{cases},
          \\quad \\ell'(r) = \\begin{cases} r & |r| \\le \\delta \\\\ \\delta\\,\\mathrm{sign}(r) & \\text{else}\\end{cases}
"""
import jax.numpy as jnp

from verification.catalogue.planted import Planted
from verification.catalogue.data import random_data, random_tree

NAME = "Huber-loss regression"
DELTA = 0.3


def loss(p, x, y):
    z = x @ p["W1"] + p["b1"][None, :]  # site: z
    h = jnp.tanh(z)  # site: hidden
    out = h @ p["W2"] + p["b2"][None, :]  # site: out
    r = out - y  # site: residual
    a = jnp.abs(r)  # site: abs
    quad = 0.5 * r ** 2  # site: quad
    lin = DELTA * (a - 0.5 * DELTA)  # site: lin
    per = jnp.where(a <= DELTA, quad, lin)  # site: where
    return jnp.mean(per)  # site: mean


def grad(p, x, y, bug=None):
    h = jnp.tanh(x @ p["W1"] + p["b1"][None, :])
    z = x @ p["W1"] + p["b1"][None, :]
    out = h @ p["W2"] + p["b2"][None, :]
    r = {"residual_sign": y - out}.get(bug, out - y)  # bwd: residual_sign
    inner = jnp.abs(r) <= DELTA
    quad = 2 * r if bug == "quad_half" else r  # bwd: quad_half
    lin = (1.0 if bug == "delta_forgotten" else DELTA) * jnp.sign(r)  # bwd: delta_forgotten
    d = {"always_quadratic": quad, "always_linear": lin,  # bwd: always_quadratic, always_linear
         "branches_swapped": jnp.where(inner, lin, quad)}.get(  # bwd: branches_swapped
        bug, jnp.where(inner, quad, lin))
    d = d if bug == "no_mean" else d / r.size  # bwd: no_mean
    dz = d @ p["W2"].T * (1 - (z if bug == "tanh_at_z" else h) ** 2)  # bwd: tanh_at_z
    return {"W1": x.T @ dz, "b1": dz.sum(0), "W2": h.T @ d, "b2": d.sum(0)}


def problem(seed=0):
    p = random_tree({"W1": (3, 4), "b1": (4,), "W2": (4, 2), "b2": (2,)}, seed=seed, scale=0.5)
    return (p, *random_data(seed, 8, 3, 2))


BUGS = [
    Planted("always_quadratic", "the quadratic branch's derivative r used everywhere", "wrong_branch", "where"),
    Planted("always_linear", "the linear branch's derivative used everywhere", "wrong_branch", "where"),
    Planted("branches_swapped", "the two branches' derivatives swapped", "wrong_branch", "where"),
    Planted("delta_forgotten", "sign(r) for delta sign(r) in the linear branch", "wrong_constant", "lin"),
    Planted("quad_half", "d(r^2 / 2) = 2 r", "factor_2", "quad"),
    Planted("residual_sign", "the residual taken as y - out", "sign_flipped", "residual"),
    Planted("tanh_at_z", "tanh' = 1 - h^2 evaluated at z", "derivative_at_input", "hidden"),
    Planted("no_mean", "the mean's 1/(m n) left out", "mean_sum_confused", "mean"),
]
