"""A linear-chain CRF's negative log-likelihood: linear emissions, a transition matrix, and the log
partition by the forward algorithm (a ``logsumexp`` in ``lax.scan``).

.. math:: \\alpha_t = \\mathrm{LSE}_i(\\alpha_{t-1,i} + A_{ij}) + E_{t,j},\\quad
          J = \\mathrm{LSE}(\\alpha_{T}) - \\sum_t E_{t,y_t} - \\sum_{t>0} A_{y_{t-1} y_t}

The hand-derived gradient is the forward-backward one: node and edge marginals from the beta recursion.
"""
import jax
import jax.numpy as jnp

from verification.catalogue.planted import Planted
from verification.catalogue.data import random_tree

NAME = "CRF forward algorithm (logsumexp in scan)"
T, N_IN, K = 5, 3, 3


def loss(p, x, y):
    e = x @ p["W"]  # site: emissions
    a = p["A"]

    def step(alpha, et):
        scores = alpha[:, None] + a  # site: transition
        alpha = jax.nn.logsumexp(scores, axis=0) + et  # site: recursion
        return alpha, None

    alpha, _ = jax.lax.scan(step, e[0], e[1:])
    log_z = jax.nn.logsumexp(alpha)  # site: partition
    gold_e = jnp.sum(e * y)  # site: gold_emission
    gold_a = jnp.sum(a * (y[:-1].T @ y[1:]))  # site: gold_transition
    return log_z - gold_e - gold_a  # site: nll


def grad(p, x, y, bug=None):
    e, a = x @ p["W"], p["A"]
    alphas = [e[0]]
    for t in range(1, T):
        alphas.append(jax.nn.logsumexp(alphas[-1][:, None] + a, axis=0) + e[t])
    log_z = jax.nn.logsumexp(alphas[-1])
    betas = [jnp.zeros(K, x.dtype)]
    for t in reversed(range(1, T)):
        betas.insert(0, jax.nn.logsumexp(a + (e[t] + betas[0])[None, :], axis=1))
    norm = 0.0 if bug == "marginals_unnormalised" else log_z
    node = jnp.exp(jnp.stack(alphas) + jnp.stack(betas) - norm)  # (T, K) node marginals  # bwd: marginals_unnormalised
    edge = jnp.zeros_like(a)
    for t in range(1, T):
        later = betas[t] if bug != "beta_off_by_one" else betas[min(t + 1, T - 1)]
        edge = edge + jnp.exp(alphas[t - 1][:, None] + a + (e[t] + later)[None, :] - norm)  # bwd: beta_off_by_one
    gold_sign = -1.0 if bug == "gold_sign" else 1.0
    de = node - gold_sign * y  # bwd: gold_sign
    da = edge - (0.0 if bug == "gold_transition_forgotten" else y[:-1].T @ y[1:])  # bwd: gold_transition_forgotten
    return {"W": x.T @ de, "A": da}


def problem(seed=0):
    p = random_tree({"W": (N_IN, K), "A": (K, K)}, seed=seed)
    k1, k2 = jax.random.split(jax.random.key(seed + 100))
    x = jax.random.normal(k1, (T, N_IN), jnp.float64)
    return p, x, jax.nn.one_hot(jax.random.randint(k2, (T,), 0, K), K, dtype=jnp.float64)


BUGS = [
    Planted("marginals_unnormalised", "the marginals not divided by the partition function Z", "wrong_constant",
            "partition"),
    Planted("beta_off_by_one", "the edge marginals use beta_{t+1} for beta_t", "unknown", "transition"),
    Planted("gold_sign", "the gold path's emissions added instead of subtracted", "sign_flipped", "gold_emission"),
    Planted("gold_transition_forgotten", "the gold path's transition term forgotten", "path_dropped",
            "gold_transition"),
]
