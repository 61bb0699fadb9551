"""A GELU network with the tanh approximation, written out line by line, and squared error.

.. math:: u = c\\,(z + a z^3),\\quad \\mathrm{gelu}(z) = \\tfrac12 z\\,(1 + \\tanh u),\\quad
          c = \\sqrt{2/\\pi},\\ a = 0.044715,\\quad J = \\frac{1}{2m}\\lVert \\mathrm{gelu}(xW_1 + b_1)W_2 + b_2 - Y\\rVert^2

The hand gradient is the product rule through the tanh form.  One bug is found in real code: the exact
(erf) form's derivative :math:`\\Phi(z) + z\\varphi(z)` used for the tanh approximation, off by about
1e-3 relative.  Written bugs first (2026-12-06), before the checker was run on them; the line of the
hand gradient where each bug is written carries ``# bwd: NAME``.
"""
import math

import jax.numpy as jnp
from jax.scipy.special import erf

from verification.catalogue.data import random_data, random_tree
from verification.catalogue.planted import Planted

NAME = "GELU (tanh approximation) MLP"
C = math.sqrt(2.0 / math.pi)
A = 0.044715
M, N_IN, H, N_OUT = 6, 3, 5, 2


def loss(p, x, y):
    z1 = x @ p["W1"] + p["b1"][None, :]  # site: linear1
    u = C * (z1 + A * z1 ** 3)  # site: inner
    t = jnp.tanh(u)  # site: tanh
    a1 = 0.5 * z1 * (1.0 + t)  # site: gelu
    out = a1 @ p["W2"] + p["b2"][None, :]  # site: linear2
    return 0.5 * jnp.mean(jnp.sum((out - y) ** 2, axis=1))  # site: loss


def grad(p, x, y, bug=None):
    m = x.shape[0]
    z1 = x @ p["W1"] + p["b1"][None, :]
    u = C * (z1 + A * z1 ** 3)
    t = jnp.tanh(u)
    a1 = 0.5 * z1 * (1.0 + t)
    out = a1 @ p["W2"] + p["b2"][None, :]
    dout = (2.0 if bug == "half_forgotten" else 1.0) * (out - y) / m  # bwd: half_forgotten
    da1 = dout @ p["W2"].T
    dt = da1 * 0.5 * (a1 if bug == "dt_from_activation" else z1)  # bwd: dt_from_activation
    du = dt if bug == "tanh_prime_dropped" else dt * (1.0 - (u if bug == "tanh_prime_at_u" else t) ** 2)  # bwd: tanh_prime_dropped, tanh_prime_at_u
    dudz = (1.0 if bug == "c_forgotten" else C) * (1.0 + (1.0 if bug == "cubic_3_dropped" else 3.0) * A * z1 ** 2)  # bwd: c_forgotten, cubic_3_dropped
    direct = da1 * (1.0 if bug == "half_dropped_in_direct" else 0.5) * (1.0 + t)  # bwd: half_dropped_in_direct
    dz1 = du * dudz if bug == "direct_term_dropped" else direct + du * dudz  # bwd: direct_term_dropped
    if bug == "erf_form_derivative":
        dz1 = da1 * (0.5 * (1.0 + erf(z1 / math.sqrt(2.0))) + z1 * jnp.exp(-0.5 * z1 ** 2) / math.sqrt(2.0 * math.pi))  # bwd: erf_form_derivative
    db1 = dz1.mean(axis=0) if bug == "b1_mean" else dz1.sum(axis=0)  # bwd: b1_mean
    dW2 = (z1 if bug == "dw2_from_preactivation" else a1).T @ dout  # bwd: dw2_from_preactivation
    return {"W1": x.T @ dz1, "b1": db1, "W2": dW2, "b2": dout.sum(axis=0)}


def problem(seed=0):
    p = random_tree({"W1": (N_IN, H), "b1": (H,), "W2": (H, N_OUT), "b2": (N_OUT,)}, seed=seed)
    return (p, *random_data(seed, M, N_IN, N_OUT))


BUGS = [
    Planted("erf_form_derivative", "the exact GELU's derivative Phi(z) + z phi(z) used for the tanh approximation",
            "wrong_derivative", "gelu"),
    Planted("tanh_prime_at_u", "tanh' written as 1 - t^2 but given the argument u", "derivative_at_input", "tanh"),
    Planted("tanh_prime_dropped", "tanh' left out of the inner path", "derivative_dropped", "tanh"),
    Planted("c_forgotten", "the sqrt(2/pi) of the inner polynomial left out", "wrong_constant", "inner"),
    Planted("cubic_3_dropped", "d(z^3)/dz written as z^2 (the 3 dropped) in the inner derivative", "unknown",
            "inner"),
    Planted("half_dropped_in_direct", "the 1/2 of 0.5 z (1 + t) dropped in the direct term only", "factor_2",
            "gelu"),
    Planted("direct_term_dropped", "only the tanh path kept: the product rule's direct term 0.5 (1 + t) left out",
            "path_dropped", "gelu"),
    Planted("dt_from_activation", "the tanh path's factor 0.5 z taken with the activation a1 for z",
            "wrong_saved_operand", "gelu"),
    Planted("dw2_from_preactivation", "dW2 from the pre-activation z1 instead of the GELU output",
            "wrong_saved_operand", "linear2"),
    Planted("b1_mean", "db1 as the batch mean", "mean_sum_confused", "linear1"),
    Planted("half_forgotten", "d(e^2/2)/de taken as 2e", "factor_2", "loss"),
]
