"""A neural ODE integrated by classical Runge-Kutta in ``lax.fori_loop``, each step rematerialised with
``jax.checkpoint``, squared error of the final state.

.. math:: f(u) = \\tanh(uW + b),\\quad u_{n+1} = u_n + \\tfrac{h}{6}(k_1 + 2k_2 + 2k_3 + k_4),\\quad
          J = \\frac{1}{m}\\lVert u_N - y\\rVert^2

The hand-derived gradient is the discrete adjoint: each RK4 step backpropagated stage by stage.
"""
import jax
import jax.numpy as jnp

from verification.catalogue.planted import Planted
from verification.catalogue.data import random_data, random_tree

NAME = "RK4 neural ODE (fori_loop, checkpoint)"
M, D, N_STEPS, DT = 3, 3, 3, 0.25


def loss(p, x, y):
    def f(u):
        return jnp.tanh(u @ p["W"] + p["b"][None, :])  # site: field

    @jax.checkpoint
    def rk4(u):
        k1 = f(u)
        k2 = f(u + 0.5 * DT * k1)  # site: stage
        k3 = f(u + 0.5 * DT * k2)
        k4 = f(u + DT * k3)
        return u + DT / 6 * (k1 + 2 * k2 + 2 * k3 + k4)  # site: combine

    u = jax.lax.fori_loop(0, N_STEPS, lambda n, u: rk4(u), x)
    return jnp.sum((u - y) ** 2) / x.shape[0]  # site: loss


def _field_vjp(p, u, g, bug):
    """(d f / d u)^T g and the parameter gradients of f at u."""
    k = jnp.tanh(u @ p["W"] + p["b"][None, :])
    dz = g if bug == "field_tanh_dropped" else g * (1 - k ** 2)  # bwd: field_tanh_dropped
    return (dz @ (p["W"] if bug == "field_w_not_transposed" else p["W"].T),  # bwd: field_w_not_transposed
            u.T @ dz, dz.sum(0))


def grad(p, x, y, bug=None):
    f = lambda u: jnp.tanh(u @ p["W"] + p["b"][None, :])  # noqa: E731
    us = [x]
    for _ in range(N_STEPS):
        u = us[-1]
        k1 = f(u)
        k2 = f(u + 0.5 * DT * k1)
        k3 = f(u + 0.5 * DT * k2)
        k4 = f(u + DT * k3)
        us.append(u + DT / 6 * (k1 + 2 * k2 + 2 * k3 + k4))
    gu = 2 * (us[-1] - y) / x.shape[0]
    gW, gb = jnp.zeros_like(p["W"]), jnp.zeros_like(p["b"])
    w2 = 1.0 if bug == "stage_weight_one" else 2.0
    for n in reversed(range(N_STEPS)):
        u = us[n]
        k1 = f(u)
        k2 = f(u + 0.5 * DT * k1)
        k3 = f(u + 0.5 * DT * k2)
        stages = [u, u + 0.5 * DT * k1, u + 0.5 * DT * k2, u + DT * k3]
        # cotangents of k1..k4
        gk = [DT / 6 * gu, w2 * DT / 6 * gu, w2 * DT / 6 * gu, DT / 6 * gu]  # bwd: stage_weight_one
        gu_new = gu
        for s, back in ((3, DT), (2, 0.5 * DT), (1, 0.5 * DT), (0, None)):
            gin, dW, db = _field_vjp(p, stages[s], gk[s], bug)
            gW, gb = gW + dW, gb + db
            gu_new = gu_new + gin
            if back is not None:  # stage s's input is u + back * k_{s}: k_{s} gets back * gin
                gk[s - 1] = gk[s - 1] + (  # bwd: stage_chain_dropped
                    0.0 if bug == "stage_chain_dropped" else back) * gin
        gu = gu_new
    return {"W": gW, "b": gb}


def problem(seed=0):
    p = random_tree({"W": (D, D), "b": (D,)}, seed=seed, scale=0.8)
    return (p, *random_data(seed, M, D, D))


BUGS = [
    Planted("field_tanh_dropped", "tanh' left out of the vector field's backward", "derivative_dropped", "field"),
    Planted("field_w_not_transposed", "the field's input delta through W instead of W^T", "transposed_operand",
            "field"),
    Planted("stage_weight_one", "the RK4 weights 1, 1, 1, 1 in the backward where 1, 2, 2, 1 belong",
            "factor_2", "combine"),
    # First written as path_dropped at the field's line; the error enters at the three stage lines (k2, k3,
    # k4 = f(u + c k)), so no one- or two-site change explains it: unknown, ranked at the first stage line.
    Planted("stage_chain_dropped", "each stage's dependence on the previous stage left out", "unknown", "stage"),
]
