"""An Elman recurrent network unrolled with ``lax.scan``, a linear read-out at every step, squared error.

.. math:: h_t = \\tanh(x_t W_x + h_{t-1} W_h + b),\\quad
          J = \\frac{1}{T m}\\sum_{t,i} \\lVert h_{t,i} V - y_{t,i}\\rVert^2

The hand-derived gradient is backpropagation through time, a Python loop over the steps in reverse.
"""
import jax
import jax.numpy as jnp

from verification.catalogue.planted import Planted
from verification.catalogue.data import random_data, random_tree

NAME = "RNN in lax.scan"
T, M, N_IN, H, N_OUT = 4, 3, 3, 4, 2


def loss(p, x, y):
    def step(h, xt):
        z = xt @ p["Wx"] + h @ p["Wh"] + p["b"][None, :]  # site: recurrence
        h = jnp.tanh(z)  # site: act
        return h, h

    h0 = jnp.zeros((x.shape[1], p["Wh"].shape[0]), x.dtype)
    _, hs = jax.lax.scan(step, h0, x)  # hs: (T, m, H)
    out = hs @ p["V"]  # site: readout
    err = out - y  # site: err
    return jnp.mean(jnp.sum(err ** 2, axis=2))  # site: mean


def grad(p, x, y, bug=None):
    steps, m = x.shape[0], x.shape[1]
    hs, h = [], jnp.zeros((m, p["Wh"].shape[0]), x.dtype)
    for t in range(steps):
        h = jnp.tanh(x[t] @ p["Wx"] + h @ p["Wh"] + p["b"][None, :])
        hs.append(h)
    g = {k: jnp.zeros_like(v) for k, v in p.items()}
    dh_next = jnp.zeros_like(hs[0])
    for t in reversed(range(steps)):
        dout = 2 * (hs[t] @ p["V"] - y[t]) / (  # bwd: time_mean_forgotten
            m if bug == "time_mean_forgotten" else steps * m)
        g["V"] = g["V"] + hs[t].T @ dout
        dh = dout @ p["V"].T + (0.0 if bug == "truncated_bptt" else dh_next)  # bwd: truncated_bptt
        if bug == "last_step_tanh_dropped" and t == steps - 1:
            dz = dh  # the first backward step, written before the loop, forgot tanh'  # bwd: last_step_tanh_dropped
        else:
            dz = dh * (1 - hs[t] ** 2)
        h_prev = hs[t - 1] if t > 0 else jnp.zeros_like(hs[0])
        g["Wx"] = g["Wx"] + x[t].T @ dz
        g["Wh"] = g["Wh"] + (hs[t] if bug == "saved_h_next" else h_prev).T @ dz  # bwd: saved_h_next
        g["b"] = g["b"] + dz.sum(0)
        dh_next = dz @ (p["Wh"] if bug == "wh_not_transposed" else p["Wh"].T)  # bwd: wh_not_transposed
    return g


def problem(seed=0):
    p = random_tree({"Wx": (N_IN, H), "Wh": (H, H), "b": (H,), "V": (H, N_OUT)}, seed=seed, scale=0.6)
    return (p, *random_data(seed, M, N_IN, N_OUT, steps=T))


BUGS = [
    Planted("saved_h_next", "dWh accumulated from h_t, the step's own output, instead of h_{t-1}",
            "wrong_saved_operand", "recurrence"),
    Planted("wh_not_transposed", "the hidden state's delta carried back through Wh instead of Wh^T",
            "transposed_operand", "recurrence"),
    Planted("truncated_bptt", "the delta from step t+1 never added to step t (backprop truncated to one step)",
            "path_dropped", "recurrence"),
    Planted("last_step_tanh_dropped", "tanh' left out at the last step only (written apart from the loop)",
            "derivative_dropped", "act"),
    Planted("time_mean_forgotten", "the mean over time steps left out of the read-out delta", "mean_sum_confused",
            "mean"),
]
