"""A two-layer sigmoid network with softmax cross-entropy and a straight-line hand gradient of about
twenty lines, as a course exercise writes it.

.. math:: h = \\sigma(xW_1 + b_1),\\quad z = hW_2 + b_2,\\quad
          J = -\\frac{1}{m}\\sum_i y_i^\\top \\log\\mathrm{softmax}(z_i)

Written bugs first (2026-12-06), from the commonest hand-derivation mistakes, before the checker was run
on them.  The line of the hand gradient where each bug is written carries ``# bwd: NAME``.  The variant
``fold_m_at_end`` is correct (the 1/m applied to every leaf at the end instead of to the delta) and must
pass.
"""
import jax
import jax.numpy as jnp

from verification.catalogue.data import random_data, random_tree
from verification.catalogue.planted import Planted

NAME = "sigmoid MLP, softmax cross-entropy"
M, N_IN, H, C = 5, 5, 5, 3  # square W1 and m = H: a transposed dW1 or a bias summed over rows keeps its shape
CORRECT_VARIANTS = ("fold_m_at_end",)


def loss(p, x, y):
    z1 = x @ p["W1"] + p["b1"][None, :]  # site: linear1
    h = jax.nn.sigmoid(z1)  # site: act
    z2 = h @ p["W2"] + p["b2"][None, :]  # site: linear2
    shifted = z2 - jnp.max(z2, axis=1, keepdims=True)  # site: shift
    logp = shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=1, keepdims=True))  # site: log_softmax
    return -jnp.mean(jnp.sum(y * logp, axis=1))  # site: loss


def grad(p, x, y, bug=None):
    m = x.shape[0]
    z1 = x @ p["W1"] + p["b1"][None, :]
    h = 1.0 / (1.0 + jnp.exp(-z1))
    z2 = h @ p["W2"] + p["b2"][None, :]
    e = jnp.exp(z2 - jnp.max(z2, axis=1, keepdims=True))
    probs = e / jnp.sum(e, axis=1, keepdims=True)
    if bug == "softmax_sign":
        dz2 = (y - probs) / m  # bwd: softmax_sign
    elif bug == "label_term_dropped":
        dz2 = probs / m  # bwd: label_term_dropped
    elif bug in ("one_over_m_forgotten", "fold_m_at_end"):
        dz2 = probs - y  # bwd: one_over_m_forgotten
    else:
        dz2 = (probs - y) / m
    dW2 = (x if bug == "dw2_from_input" else h).T @ dz2  # bwd: dw2_from_input
    db2 = dz2.sum(axis=0) / m if bug == "b2_divided_twice" else dz2.sum(axis=0)  # bwd: b2_divided_twice
    dh = dz2 @ p["W2"].T
    if bug == "tanh_derivative_for_sigmoid":
        dsig = 1 - h ** 2  # bwd: tanh_derivative_for_sigmoid
    elif bug == "sigmoid_prime_at_preactivation":
        dsig = z1 * (1 - z1)  # bwd: sigmoid_prime_at_preactivation
    else:
        dsig = h * (1 - h)
    da = dh * dsig
    if bug == "dw1_doubled":
        dW1 = x.T @ da * 2  # bwd: dw1_doubled
    elif bug == "dw1_transposed":
        dW1 = da.T @ x  # bwd: dw1_transposed
    else:
        dW1 = x.T @ da
    db1 = da.sum(axis=1) if bug == "b1_wrong_axis" else da.sum(axis=0)  # bwd: b1_wrong_axis
    g = {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
    if bug == "fold_m_at_end":
        g = {k: v / m for k, v in g.items()}
    return g


def problem(seed=0):
    p = random_tree({"W1": (N_IN, H), "b1": (H,), "W2": (H, C), "b2": (C,)}, seed=seed)
    return (p, *random_data(seed, M, N_IN, C, classes=True))


BUGS = [
    Planted("tanh_derivative_for_sigmoid", "sigmoid' written as tanh's derivative 1 - h^2", "wrong_derivative",
            "act"),
    Planted("sigmoid_prime_at_preactivation", "h(1 - h) written with the pre-activation z1 for h",
            "derivative_at_input", "act"),
    Planted("dw1_doubled", "dW1 = x.T @ da * 2 (a stray 2 from a squared-error template)", "factor_2", "linear1"),
    Planted("dw1_transposed", "dW1 = da.T @ x: the product written the wrong way round", "transposed", "linear1"),
    Planted("b1_wrong_axis", "db1 summed over the hidden units instead of the batch", "unknown", "linear1"),
    Planted("one_over_m_forgotten", "the delta P - Y not divided by the batch size", "mean_sum_confused", "loss"),
    Planted("softmax_sign", "the delta written as Y - P", "sign_flipped", "loss"),
    Planted("label_term_dropped", "the delta written as P / m: the label term dropped", "path_dropped", "loss"),
    Planted("dw2_from_input", "dW2 from the input x instead of the hidden activation h", "wrong_saved_operand",
            "linear2"),
    Planted("b2_divided_twice", "db2 divided by m again (the delta already carries 1/m)", "mean_sum_confused",
            "linear2"),
]
