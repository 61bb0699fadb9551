"""One head of causal self-attention with the usual max-shifted softmax, an output projection, squared
error: the matrix products of every orientation a hand derivation must transpose.

.. math:: S = \\frac{QK^\\top}{\\sqrt{d}},\\ Q = XW_q,\\ K = XW_k,\\ V = XW_v,\\quad
          P = \\mathrm{softmax}(S + \\text{mask}),\\quad J = \\frac{1}{T}\\lVert P V W_o - Y\\rVert^2
"""
import jax
import jax.numpy as jnp

from verification.catalogue.planted import Planted
from verification.catalogue.data import random_data, random_tree

NAME = "causal self-attention"
T, D, DK, N_OUT = 5, 4, 3, 2
NEG = -1e9  # the masked score


def loss(p, x, y):
    q = x @ p["Wq"]  # site: q
    k = x @ p["Wk"]  # site: k
    v = x @ p["Wv"]  # site: v
    s = q @ k.T  # site: scores
    s = s / jnp.sqrt(float(q.shape[1]))  # site: scale
    causal = jnp.tril(jnp.ones((x.shape[0], x.shape[0]), bool))
    s = jnp.where(causal, s, NEG)  # site: mask
    shifted = s - jnp.max(s, axis=1, keepdims=True)  # site: shift
    e = jnp.exp(shifted)  # site: exp
    pr = e / jnp.sum(e, axis=1, keepdims=True)  # site: normalise
    o = pr @ v  # site: mix
    out = o @ p["Wo"]  # site: out
    return jnp.sum((out - y) ** 2) / x.shape[0]  # site: loss


def grad(p, x, y, bug=None):
    n = x.shape[0]
    q, k, v = x @ p["Wq"], x @ p["Wk"], x @ p["Wv"]
    s = jnp.where(jnp.tril(jnp.ones((n, n), bool)), q @ k.T / jnp.sqrt(float(DK)), NEG)
    pr = jax.nn.softmax(s, axis=1)
    o = pr @ v
    dout = 2 * (o @ p["Wo"] - y) / n
    do = dout @ p["Wo"].T
    dpr = do @ v.T
    dv = (s if bug == "dv_from_scores" else pr).T @ do  # bwd: dv_from_scores
    if bug == "softmax_no_normaliser":
        ds = pr * dpr  # bwd: softmax_no_normaliser
    else:
        ds = pr * (dpr - jnp.sum(dpr * pr, axis=1, keepdims=True))
    ds = ds if bug == "scale_forgotten" else ds / jnp.sqrt(float(DK))  # bwd: scale_forgotten
    dq = (ds.T if bug in ("dq_transposed_delta", "roles_swapped")  # bwd: dq_transposed_delta, roles_swapped
          else ds) @ k
    dq = dq * jnp.sqrt(float(DK)) if bug == "scale_forgotten_in_dq" else dq  # bwd: scale_forgotten_in_dq
    dk = (ds @ q) if bug in ("dk_untransposed_delta", "roles_swapped") else ds.T @ q  # bwd: dk_untransposed_delta
    return {"Wq": x.T @ dq, "Wk": x.T @ dk, "Wv": x.T @ dv, "Wo": o.T @ dout}


def problem(seed=0):
    p = random_tree({"Wq": (D, DK), "Wk": (D, DK), "Wv": (D, DK), "Wo": (DK, N_OUT)}, seed=seed, scale=0.7)
    return (p, *random_data(seed, T, D, N_OUT))


BUGS = [
    Planted("softmax_no_normaliser", "the softmax's backward without the normaliser's term: dS = P * dP",
            "path_dropped", "normalise"),
    Planted("scale_forgotten", "the 1/sqrt(d) of the scores left out of the backward", "wrong_constant", "scale"),
    Planted("dq_transposed_delta", "dQ = dS^T K: the scores' delta transposed", "transposed_cotangent", "scores"),
    Planted("dk_untransposed_delta", "dK = dS Q where dS^T Q belongs", "transposed_cotangent", "scores"),
    Planted("scale_forgotten_in_dq", "the 1/sqrt(d) left out of dQ only", "wrong_constant", "scores"),
    Planted("roles_swapped", "dQ = dS^T K and dK = dS Q: the query's and key's deltas swapped in orientation",
            "transposed_cotangent", "scores", also="scores"),
    Planted("dv_from_scores", "dV from the scores instead of the attention weights", "wrong_saved_operand", "mix"),
]
