"""A single-channel 2-D convolution with stride 2, written as a Python loop of strided shifted slices
(the im2col-free form people write first), a tanh, a linear read-out of the flattened map, squared error.

.. math:: z_{i,j} = \\sum_{a,b} x_{2i+a,\\,2j+b}\\,w_{a,b} + c,\\quad J = \\frac{1}{m}\\sum\\lVert
          \\mathrm{vec}(\\tanh z)\\,V - y\\rVert^2
"""
import jax
import jax.numpy as jnp

from verification.catalogue.planted import Planted
from verification.catalogue.data import random_tree

NAME = "strided 2-D convolution (shifted slices)"
M, SIDE, K, S, N_OUT = 3, 7, 3, 2, 2
OUT = (SIDE - K) // S + 1  # 3


def loss(p, x, y):
    z = jnp.zeros((x.shape[0], OUT, OUT), x.dtype)
    for a in range(K):
        for b in range(K):
            patch = x[:, a:a + S * OUT:S, b:b + S * OUT:S]  # (m, OUT, OUT)
            z = z + patch * p["w"][a, b]  # site: conv
    z = z + p["c"]  # site: bias
    h = jnp.tanh(z)  # site: act
    flat = h.reshape(x.shape[0], OUT * OUT)
    out = flat @ p["V"]  # site: readout
    return jnp.mean(jnp.sum((out - y) ** 2, axis=1))  # site: loss


def grad(p, x, y, bug=None):
    m = x.shape[0]
    z = jnp.zeros((m, OUT, OUT), x.dtype) + p["c"]
    for a in range(K):
        for b in range(K):
            z = z + x[:, a:a + S * OUT:S, b:b + S * OUT:S] * p["w"][a, b]
    h = jnp.tanh(z)
    flat = h.reshape(m, OUT * OUT)
    dout = 2 * (flat @ p["V"] - y) / m
    dflat = dout @ p["V"].T
    dz = dflat.reshape(m, OUT, OUT) * (1.0 if bug == "tanh_dropped" else 1 - h ** 2)  # bwd: tanh_dropped
    dw = jnp.zeros_like(p["w"])
    for a in range(K):
        for b in range(K):
            if bug == "kernel_flipped":  # convolution and correlation confused
                patch = x[:, K - 1 - a:K - 1 - a + S * OUT:S, K - 1 - b:K - 1 - b + S * OUT:S]  # bwd: kernel_flipped
            elif bug == "stride_forgotten":  # the backward's windows taken with stride 1
                patch = x[:, a:a + OUT, b:b + OUT]  # bwd: stride_forgotten
            else:
                patch = x[:, a:a + S * OUT:S, b:b + S * OUT:S]
            dw = dw.at[a, b].set(jnp.sum(patch * dz))
    dc = jnp.mean(dz) * m if bug == "bias_mean" else jnp.sum(dz)  # bwd: bias_mean
    dV = ((flat.T @ dout) if bug != "readout_pre_activation"
          else z.reshape(m, -1).T @ dout)  # bwd: readout_pre_activation
    return {"w": dw, "c": dc, "V": dV}


def problem(seed=0):
    p = random_tree({"w": (K, K), "c": (), "V": (OUT * OUT, N_OUT)}, seed=seed, scale=0.5)
    k1, k2 = jax.random.split(jax.random.key(seed + 100))
    return p, jax.random.normal(k1, (M, SIDE, SIDE), jnp.float64), jax.random.normal(k2, (M, N_OUT), jnp.float64)


BUGS = [
    Planted("kernel_flipped", "the kernel's gradient from the flipped patch (convolution and correlation confused)",
            "wrong_saved_operand", "conv"),
    Planted("stride_forgotten", "the kernel's gradient from stride-1 windows", "unknown", "conv"),
    Planted("tanh_dropped", "tanh' left out", "derivative_dropped", "act"),
    Planted("bias_mean", "the shared bias's gradient as the mean over positions (times m)", "mean_sum_confused",
            "bias"),
    Planted("readout_pre_activation", "dV from the pre-activation map instead of tanh of it", "wrong_saved_operand",
            "readout"),
]
