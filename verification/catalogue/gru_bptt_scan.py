"""A GRU over a sequence in ``lax.scan``, a linear read-out and squared error at every step; the hand
gradient is backpropagation through time written as a reverse ``lax.scan`` over the saved gates.

.. math:: z = \\sigma(x_t W_z + h U_z + b_z),\\ r = \\sigma(x_t W_r + h U_r + b_r),\\
          n = \\tanh(x_t W_n + (r \\odot h) U_n + b_n),\\ h_t = (1 - z) \\odot n + z \\odot h,\\quad
          J = \\frac{1}{2 T m}\\sum_{t,i} \\lVert h_{t,i} V - y_{t,i}\\rVert^2

Written bugs first (2026-12-06), from how BPTT through gates goes wrong by hand, before the checker was
run on them; the line of the backward scan's body where each bug is written carries ``# bwd: NAME``.
"""
import jax
import jax.numpy as jnp

from verification.catalogue.data import random_data, random_tree
from verification.catalogue.planted import Planted

NAME = "GRU, BPTT as a reverse lax.scan"
T, M, N_IN, H, N_OUT = 8, 3, 3, 4, 2


def loss(p, x, y):
    def step(h, inputs):
        xt, yt = inputs
        az = xt @ p["Wz"] + h @ p["Uz"] + p["bz"][None, :]  # site: update_pre
        z = jax.nn.sigmoid(az)  # site: update_gate
        ar = xt @ p["Wr"] + h @ p["Ur"] + p["br"][None, :]  # site: reset_pre
        r = jax.nn.sigmoid(ar)  # site: reset_gate
        rh = r * h  # site: reset
        an = xt @ p["Wn"] + rh @ p["Un"] + p["bn"][None, :]  # site: candidate_pre
        n = jnp.tanh(an)  # site: candidate
        h = (1.0 - z) * n + z * h  # site: blend
        err = h @ p["V"] - yt  # site: readout
        return h, jnp.sum(err ** 2)

    h0 = jnp.zeros((x.shape[1], p["Uz"].shape[0]), x.dtype)
    _, se = jax.lax.scan(step, h0, (x, y))  # se: (T,)
    return 0.5 * jnp.mean(se) / x.shape[1]  # site: mean


def grad(p, x, y, bug=None):
    steps, m = x.shape[0], x.shape[1]

    def forward(h, xt):
        z = jax.nn.sigmoid(xt @ p["Wz"] + h @ p["Uz"] + p["bz"][None, :])
        r = jax.nn.sigmoid(xt @ p["Wr"] + h @ p["Ur"] + p["br"][None, :])
        an = xt @ p["Wn"] + (r * h) @ p["Un"] + p["bn"][None, :]
        n = jnp.tanh(an)
        h_new = (1.0 - z) * n + z * h
        return h_new, (h, z, r, an, n, h_new)

    h0 = jnp.zeros((m, p["Uz"].shape[0]), x.dtype)
    _, saved = jax.lax.scan(forward, h0, x)  # each (T, m, H)
    hs = saved[-1]
    dout = (hs @ p["V"] - y) / (steps * m)  # (T, m, N_OUT)
    g_v = jnp.einsum("tmh,tmo->ho", hs, dout)

    def backward(dh_next, inputs):
        (h_prev, z, r, an, n, h_new), xt, d = inputs
        dh = d @ p["V"].T + (0.0 if bug == "carry_dropped" else dh_next)  # bwd: carry_dropped
        dn = dh if bug == "one_minus_z_dropped" else dh * (1.0 - z)  # bwd: one_minus_z_dropped
        dz = dh * ((n - h_prev) if bug == "update_gate_sign" else (h_prev - n))  # bwd: update_gate_sign
        dan = dn * (1.0 - (an if bug == "tanh_prime_at_preactivation" else n) ** 2)  # bwd: tanh_prime_at_preactivation
        drh = dan @ (p["Un"] if bug == "un_not_transposed" else p["Un"].T)  # bwd: un_not_transposed
        dar = drh * h_prev * r * (1.0 - r)
        daz = dz * ((1.0 - z ** 2) if bug == "sigmoid_prime_as_tanh" else z * (1.0 - z))  # bwd: sigmoid_prime_as_tanh
        dh_prev = 0.0 if bug == "skip_path_dropped" else dh * z  # bwd: skip_path_dropped
        dh_prev = dh_prev + (0.0 if bug == "reset_path_dropped" else drh * r)  # bwd: reset_path_dropped
        dh_prev = dh_prev + daz @ p["Uz"].T + dar @ p["Ur"].T
        rh = h_prev if bug == "dun_without_reset" else r * h_prev  # bwd: dun_without_reset
        g_uz = (h_new if bug == "h_t_for_h_prev" else h_prev).T @ daz  # bwd: h_t_for_h_prev
        return dh_prev, {"Wz": xt.T @ daz, "Uz": g_uz, "bz": daz.sum(0), "Wr": xt.T @ dar, "Ur": h_prev.T @ dar,
                         "br": dar.sum(0), "Wn": xt.T @ dan, "Un": rh.T @ dan, "bn": dan.sum(0)}

    _, g = jax.lax.scan(backward, jnp.zeros_like(h0), (saved, x, dout), reverse=True)
    g = {k: v.sum(0) for k, v in g.items()}
    g["V"] = g_v
    return g


def problem(seed=0):
    shapes = {"Wz": (N_IN, H), "Uz": (H, H), "bz": (H,), "Wr": (N_IN, H), "Ur": (H, H), "br": (H,),
              "Wn": (N_IN, H), "Un": (H, H), "bn": (H,), "V": (H, N_OUT)}
    p = random_tree(shapes, seed=seed, scale=0.6)
    return (p, *random_data(seed, M, N_IN, N_OUT, steps=T))


BUGS = [
    Planted("h_t_for_h_prev", "dUz accumulated from h_t, the step's own output, instead of h_{t-1}",
            "wrong_saved_operand", "update_pre"),
    Planted("sigmoid_prime_as_tanh", "the update gate's sigmoid' written as tanh's 1 - z^2", "wrong_derivative",
            "update_gate"),
    Planted("update_gate_sign", "d/dz of (1 - z) n + z h written as n - h", "sign_flipped", "blend"),
    Planted("one_minus_z_dropped", "the candidate's delta taken as dh, the gate (1 - z) left out",
            "derivative_dropped", "blend"),
    Planted("skip_path_dropped", "the direct path z * h_{t-1} left out of dh_{t-1}", "path_dropped", "blend"),
    Planted("carry_dropped", "the cotangent from step t+1 not carried into step t", "path_dropped", "blend"),
    Planted("tanh_prime_at_preactivation", "the candidate's tanh' written as 1 - n^2 but given its pre-activation",
            "derivative_at_input", "candidate"),
    Planted("un_not_transposed", "the candidate's delta carried back through Un instead of Un^T",
            "transposed_operand", "candidate_pre"),
    Planted("dun_without_reset", "dUn from h_{t-1} instead of r * h_{t-1}", "wrong_saved_operand", "candidate_pre"),
    Planted("reset_path_dropped", "the path through r * h_{t-1} to h_{t-1} left out", "path_dropped", "reset"),
]
