"""A weight-tied autoencoder: the decoder uses the encoder's matrix transposed.

.. math:: z = \\sigma(xW + b),\\quad \\hat x = zW^\\top + c,\\quad
          J = \\frac{1}{2m}\\sum_i \\lVert \\hat x_i - x_i\\rVert^2
"""
import jax
import jax.numpy as jnp

from verification.catalogue.planted import Planted
from verification.catalogue.data import random_data, random_tree

NAME = "weight-tied autoencoder (W and W^T)"


def loss(p, x, y):
    z = jax.nn.sigmoid(x @ p["W"] + p["b"][None, :])  # site: encode
    xhat = z @ p["W"].T + p["c"][None, :]  # site: decode
    err = xhat - x  # site: err
    half = 0.5 * jnp.sum(err * err, axis=1)  # site: half
    return jnp.mean(half)  # site: mean


def grad(p, x, y, bug=None):
    m = x.shape[0]
    z = jax.nn.sigmoid(x @ p["W"] + p["b"][None, :])
    xhat = z @ p["W"].T + p["c"][None, :]
    e = {"err_sign": x - xhat}.get(bug, xhat - x)  # bwd: err_sign
    d = (2 * e if bug == "half_forgotten" else e) / m  # dJ/dxhat  # bwd: half_forgotten
    dc = d.mean(0) if bug == "c_mean" else d.sum(0)  # bwd: c_mean
    dz = d @ p["W"]
    da = {"sigmoid_at_preactivation": dz * (x @ p["W"] + p["b"][None, :])  # bwd: sigmoid_at_preactivation
          * (1 - (x @ p["W"] + p["b"][None, :])),
          "sigmoid_dropped": dz}.get(bug, dz * z * (1 - z))  # bwd: sigmoid_dropped
    encoder = x.T @ da
    # W^T's gradient is z^T d, so W's is d^T z
    decoder = {"decoder_transposed": z.T @ d}.get(bug, d.T @ z)  # bwd: decoder_transposed
    dW = {"encoder_only": encoder, "decoder_only": decoder}.get(  # bwd: encoder_only, decoder_only
        bug, encoder + decoder)
    return {"W": dW, "b": da.sum(0), "c": dc}


def problem(seed=0):
    p = random_tree({"W": (4, 4), "b": (4,), "c": (4,)}, seed=seed, scale=0.8)
    x, _ = random_data(seed, 6, 4, 4)
    return p, x, x


BUGS = [
    Planted("encoder_only", "the tied weight's decoder contribution forgotten", "path_dropped", "decode"),
    Planted("decoder_only", "the tied weight's encoder contribution forgotten", "path_dropped", "encode"),
    Planted("decoder_transposed", "the decoder's gradient of W^T used for W without transposing",
            "transposed_operand", "decode"),
    Planted("sigmoid_at_preactivation", "sigmoid' = s(1 - s) evaluated at the pre-activation",
            "derivative_at_input", "encode"),
    Planted("sigmoid_dropped", "sigmoid' left out", "derivative_dropped", "encode"),
    Planted("err_sign", "the reconstruction error taken as x - xhat", "sign_flipped", "err"),
    Planted("half_forgotten", "d(1/2 err^2) = 2 err (the 1/2 forgotten)", "factor_2", "half"),
    Planted("c_mean", "dc as the batch mean of the delta (1/m applied twice)", "mean_sum_confused", "decode"),
]
