"""A variational autoencoder's loss with the reparameterisation trick: a linear encoder to a mean and a
log-variance, ``z = mu + exp(logvar / 2) * eps`` with fixed noise, a tanh decoder, squared error plus the
Gaussian KL term.

.. math:: J = \\frac{1}{m}\\sum_i \\Big(\\lVert \\tanh(z_i D) - x_i\\rVert^2
          - \\tfrac12\\sum_k (1 + \\ell_{ik} - \\mu_{ik}^2 - e^{\\ell_{ik}})\\Big)
"""
import jax
import jax.numpy as jnp

from verification.catalogue.planted import Planted
from verification.catalogue.data import random_tree

NAME = "VAE (reparameterisation + KL)"
M, N, Z = 4, 5, 2


def loss(p, x, eps):
    mu = x @ p["Em"]  # site: mu
    logvar = x @ p["Ev"]  # site: logvar
    std = jnp.exp(0.5 * logvar)  # site: std
    z = mu + std * eps  # site: reparam
    recon = jnp.tanh(z @ p["D"])  # site: decode
    rec = jnp.sum((recon - x) ** 2, axis=1)  # site: rec
    kl = -0.5 * jnp.sum(1 + logvar - mu ** 2 - jnp.exp(logvar), axis=1)  # site: kl
    return jnp.mean(rec + kl)  # site: mean


def grad(p, x, eps, bug=None):
    m = x.shape[0]
    mu, logvar = x @ p["Em"], x @ p["Ev"]
    std = jnp.exp(0.5 * logvar)
    z = mu + std * eps
    recon = jnp.tanh(z @ p["D"])
    drec = 2 * (recon - x) / m
    dpre = drec * (1 - recon ** 2)
    dz = dpre @ p["D"].T
    dmu = dz + (0.0 if bug == "kl_mu_forgotten" else mu / m)  # bwd: kl_mu_forgotten
    half = 1.0 if bug in ("std_half_dropped", "all_halves_dropped") else 0.5
    from_rec = (0.0 if bug == "noise_path_dropped"  # bwd: noise_path_dropped
                else dz * eps * std * half)  # bwd: std_half_dropped
    kl_lv = -0.5 * (1 - jnp.exp(logvar)) / m
    dlv = from_rec + {"kl_sign": -kl_lv, "kl_half_dropped": 2 * kl_lv,  # bwd: kl_sign, kl_half_dropped
                      "all_halves_dropped": 2 * kl_lv}.get(bug, kl_lv)  # bwd: all_halves_dropped
    return {"Em": x.T @ dmu, "Ev": x.T @ dlv, "D": z.T @ dpre}


def problem(seed=0):
    p = random_tree({"Em": (N, Z), "Ev": (N, Z), "D": (Z, N)}, seed=seed, scale=0.5)
    k1, k2 = jax.random.split(jax.random.key(seed + 100))
    return p, jax.random.normal(k1, (M, N), jnp.float64), jax.random.normal(k2, (M, Z), jnp.float64)


BUGS = [
    Planted("std_half_dropped", "d std / d logvar = std, the 1/2 forgotten", "factor_2", "std"),
    Planted("noise_path_dropped", "logvar gets the KL term's gradient only (the path through z forgotten)",
            "path_dropped", "reparam"),
    Planted("kl_sign", "the KL term's gradient in logvar with the wrong sign", "sign_flipped", "kl"),
    Planted("kl_half_dropped", "the KL term's 1/2 forgotten in logvar's gradient", "factor_2", "kl"),
    Planted("all_halves_dropped", "every 1/2 forgotten: in d std / d logvar and in the KL term", "factor_2", "std",
            also="kl"),
    Planted("kl_mu_forgotten", "the KL term's mu^2 part forgotten", "path_dropped", "kl"),
]
