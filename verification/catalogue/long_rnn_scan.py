"""An Elman recurrent network over a long sequence (100 steps), its read-out and squared error inside the
``lax.scan`` body, as research code writes it for sequences too long to unroll.

.. math:: h_t = \\tanh(x_t W_x + h_{t-1} W_h + b),\\quad
          J = \\frac{1}{2 T m}\\sum_{t,i} \\lVert h_{t,i} V - y_{t,i}\\rVert^2

The hand-derived gradient is backpropagation through time written as a reverse ``lax.scan`` over the
saved forward states, the way one writes it when a Python loop over the steps would be too slow to
compile.  The checker keeps such a scan whole (it would unroll into about a thousand equations), so
every bug here is explained by a change made at every iteration of the scan body.

Written bugs first, from how BPTT goes wrong by hand (2026-12-04), before the checker was run on them.
"""
import jax
import jax.numpy as jnp

from verification.catalogue.data import random_data, random_tree
from verification.catalogue.planted import Planted

NAME = "long RNN in lax.scan (100 steps, kept whole)"
T, M, N_IN, H, N_OUT = 100, 3, 3, 5, 2


def loss(p, x, y):
    def step(h, inputs):
        xt, yt = inputs
        z = xt @ p["Wx"] + h @ p["Wh"] + p["b"][None, :]  # site: recurrence
        h = jnp.tanh(z)  # site: act
        out = h @ p["V"]  # site: readout
        err = out - yt  # site: err
        return h, jnp.sum(err ** 2)

    h0 = jnp.zeros((x.shape[1], p["Wh"].shape[0]), x.dtype)
    _, se = jax.lax.scan(step, h0, (x, y))  # se: (T,)
    return 0.5 * jnp.mean(se) / x.shape[1]  # site: mean


def grad(p, x, y, bug=None):
    steps, m = x.shape[0], x.shape[1]

    def forward(h, xt):
        z = xt @ p["Wx"] + h @ p["Wh"] + p["b"][None, :]
        h_new = jnp.tanh(z)
        return h_new, (h, z, h_new)

    h0 = jnp.zeros((m, p["Wh"].shape[0]), x.dtype)
    _, (h_prev, zs, hs) = jax.lax.scan(forward, h0, x)  # each (T, m, H)
    scale = 1.0 / (m if bug == "time_mean_forgotten" else steps * m)
    if bug == "half_forgotten":
        scale = 2 * scale  # d(0.5 e^2)/de taken as 2e
    err = (y - hs @ p["V"]) if bug == "err_sign_flipped" else (hs @ p["V"] - y)  # bwd: err_sign_flipped
    dout = scale * err  # (T, m, N_OUT)  # bwd: time_mean_forgotten, half_forgotten
    g_v = jnp.einsum("tmh,tmo->ho", h_prev if bug == "readout_from_h_prev" else hs, dout)  # bwd: readout_from_h_prev

    def backward(dh_next, saved):
        h_before, z, h_new, xt, d = saved
        dh = d @ p["V"].T + (0.0 if bug == "truncated_bptt" else dh_next)  # bwd: truncated_bptt
        if bug == "tanh_prime_dropped":
            dz = dh  # bwd: tanh_prime_dropped
        else:
            dz = dh * (1 - (z if bug == "tanh_prime_from_z" else h_new) ** 2)  # bwd: tanh_prime_from_z
        g_wh = (h_new if bug == "saved_h_next" else h_before).T @ dz  # bwd: saved_h_next
        dh_prev = dz @ (p["Wh"] if bug == "wh_not_transposed" else p["Wh"].T)  # bwd: wh_not_transposed
        return dh_prev, (xt.T @ dz, g_wh, dz.sum(0))

    _, (g_wx, g_wh, g_b) = jax.lax.scan(backward, jnp.zeros_like(h0), (h_prev, zs, hs, x, dout), reverse=True)
    return {"Wx": g_wx.sum(0), "Wh": g_wh.sum(0), "b": g_b.sum(0), "V": g_v}


def problem(seed=0):
    p = random_tree({"Wx": (N_IN, H), "Wh": (H, H), "b": (H,), "V": (H, N_OUT)}, seed=seed, scale=0.5)
    return (p, *random_data(seed, M, N_IN, N_OUT, steps=T))


BUGS = [
    Planted("tanh_prime_from_z", "tanh' written as 1 - a^2 but given the pre-activation z", "derivative_at_input",
            "act"),
    Planted("tanh_prime_dropped", "tanh' left out of every step's delta", "derivative_dropped", "act"),
    Planted("saved_h_next", "dWh accumulated from h_t, the step's own output, instead of h_{t-1}",
            "wrong_saved_operand", "recurrence"),
    Planted("wh_not_transposed", "the hidden delta carried back through Wh instead of Wh^T", "transposed_operand",
            "recurrence"),
    Planted("truncated_bptt", "the delta from step t+1 never added to step t (backprop truncated to one step)",
            "path_dropped", "recurrence"),
    Planted("readout_from_h_prev", "dV accumulated from h_{t-1} instead of h_t (the saved states off by one)",
            "wrong_saved_operand", "readout"),
    Planted("err_sign_flipped", "the residual taken as y - yhat", "sign_flipped", "err"),
    Planted("time_mean_forgotten", "the mean over the time steps left out of the read-out delta",
            "mean_sum_confused", "mean"),
    Planted("half_forgotten", "d(e^2/2)/de taken as 2e (the 1/2 dropped)", "factor_2", "mean"),
]
