"""Maxout units, 1-D max pooling over pairs, and a max-norm projection by ``lax.cond``, then softmax
cross-entropy: the selections (``maximum``, ``reduce_max``, a branch) whose backward routes the cotangent.

.. math:: u = \\max(xA, xB),\\quad q_{i,k} = \\max(u_{i,2k}, u_{i,2k+1}),\\quad
          r = q / \\max(1, \\lVert q\\rVert_F),\\quad J = \\frac{1}{m}\\sum_i \\mathrm{CE}(r_i W, y_i)
"""
import jax
import jax.numpy as jnp

from verification.catalogue.planted import Planted
from verification.catalogue.data import random_data, random_tree

NAME = "maxout, max pooling, max-norm (cond)"
M, N_IN, U, N_OUT = 5, 3, 6, 3


def loss(p, x, y):
    a = x @ p["A"]  # site: a
    b = x @ p["B"]  # site: b
    u = jnp.maximum(a, b)  # site: maxout
    windows = u.reshape(x.shape[0], U // 2, 2)
    q = jnp.max(windows, axis=2)  # site: pool
    norm = jnp.sqrt(jnp.sum(q * q))  # site: norm
    r = jax.lax.cond(norm > 1.0, lambda q: q / norm, lambda q: q, q)  # site: project
    s = r @ p["W"]  # site: scores
    logp = jax.nn.log_softmax(s, axis=1)  # site: logp
    return -jnp.mean(jnp.sum(y * logp, axis=1))  # site: ce


def grad(p, x, y, bug=None):
    m = x.shape[0]
    a, b = x @ p["A"], x @ p["B"]
    u = jnp.maximum(a, b)
    w = u.reshape(m, U // 2, 2)
    q = jnp.max(w, axis=2)
    norm = jnp.sqrt(jnp.sum(q * q))
    big = norm > 1.0
    r = jnp.where(big, q / norm, q)
    s = r @ p["W"]
    ds = (jax.nn.softmax(s, axis=1) - y) / m
    dr = ds @ p["W"].T
    if bug == "projection_as_constant":  # the division by the norm treated as a constant scale
        dq = jnp.where(big, dr / norm, dr)  # bwd: projection_as_constant
    else:
        dq = jnp.where(big, dr / norm - q * jnp.sum(dr * q) / norm ** 3, dr)
    if bug == "pool_to_all":
        mask = jnp.ones_like(w)  # bwd: pool_to_all
    elif bug == "pool_to_min":
        mask = (w == jnp.min(w, axis=2, keepdims=True)).astype(w.dtype)  # bwd: pool_to_min
    elif bug == "pool_average":
        mask = jnp.full_like(w, 0.5)  # bwd: pool_average
    else:
        mask = (w == jnp.max(w, axis=2, keepdims=True)).astype(w.dtype)
    du = (mask * dq[:, :, None]).reshape(m, U)
    take_a = (a >= b) if bug != "maxout_mask_inverted" else (a < b)  # bwd: maxout_mask_inverted
    da, db = jnp.where(take_a, du, 0.0), jnp.where(take_a, 0.0, du)
    return {"A": x.T @ da, "B": x.T @ db, "W": r.T @ ds}


def problem(seed=0):
    p = random_tree({"A": (N_IN, U), "B": (N_IN, U), "W": (U // 2, N_OUT)}, seed=seed)
    return (p, *random_data(seed, M, N_IN, N_OUT, classes=True))


BUGS = [
    Planted("pool_to_all", "max pooling's gradient routed to every element of the window", "wrong_selection",
            "pool"),
    Planted("pool_to_min", "max pooling's gradient routed to the window's minimum", "wrong_selection", "pool"),
    Planted("pool_average", "max pooling differentiated as average pooling", "wrong_selection", "pool"),
    Planted("maxout_mask_inverted", "the maxout mask inverted (a < b where a >= b)", "wrong_branch", "maxout"),
    Planted("projection_as_constant", "the max-norm projection's norm treated as a constant", "path_dropped",
            "project"),
]
