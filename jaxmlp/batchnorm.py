r"""Batch normalisation (DNN Maths (2020-01-12), corrected with epsilon and a learned scale and shift), forward beside backward.

Per feature, over the m rows of the batch (train mode):

.. math::
   \mu = \tfrac1m\textstyle\sum_i z_i,\quad \sigma^2 = \tfrac1m\sum_i (z_i-\mu)^2,\quad
   \hat x = (z - \mu)/\sqrt{\sigma^2+\epsilon},\quad y = \gamma\hat x + \beta .

Backward.  With :math:`s = (\sigma^2+\epsilon)^{-1/2}`, :math:`d\hat x = \gamma\,dy`; since
:math:`\partial\mu/\partial z_i = 1/m` and :math:`\partial\sigma^2/\partial z_i = 2(z_i-\mu)/m`,

.. math::
   \frac{\partial J}{\partial z_i}
   = s\,d\hat x_i - \frac sm\sum_j d\hat x_j - \frac{s}{m}\hat x_i\sum_j d\hat x_j\hat x_j
   = \frac{\gamma s}{m}\Big(m\,dy_i - \sum_j dy_j - \hat x_i\sum_j dy_j\hat x_j\Big),

.. math::  \partial J/\partial\gamma = \textstyle\sum_i dy_i\odot\hat x_i,\qquad \partial J/\partial\beta = \sum_i dy_i .

Running statistics (eval mode uses them): :math:`r \leftarrow \rho\, r + (1-\rho)\,b` with
``momentum`` :math:`\rho` the weight of the *old* value, as flax.linen.BatchNorm
(default 0.99).  PyTorch's ``momentum`` is the weight of the *new* value
(default 0.1, i.e. :math:`\rho = 0.9`) and PyTorch stores the unbiased variance
:math:`\frac{m}{m-1}\sigma^2` in its running estimate (``unbiased=True`` here);
flax stores the biased one.  The DNN Maths (2020-01-12) formula has no :math:`\epsilon` (0/0 on
a constant feature) and no :math:`\gamma, \beta`: see ``python -m verification --errata``.
A dense bias before BN is redundant (:math:`\beta` absorbs it, :math:`\mu` removes it):
build such models with ``use_bias=False``.

In a model (``MLP(..., batchnorm=True)``) batch norm follows every hidden affine layer, before its
activation, with ``Dense(W, b, gamma, beta)`` holding :math:`\gamma, \beta`.  Train mode uses the batch
statistics, so a training batch of 1 row is an error; :func:`jaxmlp.value_grad_and_state` returns the
running statistics updated (:func:`jaxmlp.value_and_grad` does not take them).  Eval mode
(:func:`jaxmlp.predict` with ``state=``) uses the running statistics and accepts any batch size.
Lemma 1 and the Levenberg-Marquardt Jacobian are per example, so they refuse batch-norm models.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class BatchNorm(NamedTuple):
    """Learned scale and shift of one batch-norm layer."""

    gamma: jax.Array  # (n,)
    beta: jax.Array  # (n,)


class BNState(NamedTuple):
    """Running statistics of one batch-norm layer (not trained by the optimizer)."""

    mean: jax.Array  # (n,)
    var: jax.Array  # (n,)


def bn_forward(p: BatchNorm, z, eps):
    """Train mode: returns ``(y, (xhat, inv_std), (batch_mean, batch_var))``; ``z`` (m, n)."""
    mu = jnp.mean(z, axis=0)  # (n,)
    var = jnp.mean((z - mu[None, :]) ** 2, axis=0)  # (n,) biased
    inv_std = jax.lax.rsqrt(var + eps)  # (n,)
    xhat = (z - mu[None, :]) * inv_std[None, :]
    return p.gamma[None, :] * xhat + p.beta[None, :], (xhat, inv_std), (mu, var)


def bn_backward(p: BatchNorm, cache, dy):
    """``(BatchNorm(dgamma, dbeta), dz)`` by the compact closed form; ``dy`` (m, n)."""
    xhat, inv_std = cache
    m = dy.shape[0]
    sum_dy = jnp.sum(dy, axis=0)  # (n,)
    sum_dy_xhat = jnp.sum(dy * xhat, axis=0)  # (n,)
    dz = (p.gamma * inv_std / m)[None, :] * (m * dy - sum_dy[None, :] - xhat * sum_dy_xhat[None, :])
    return BatchNorm(sum_dy_xhat, sum_dy), dz


def bn_eval(p: BatchNorm, s: BNState, z, eps):
    """Eval mode: normalise with the running statistics; any batch size."""
    return p.gamma[None, :] * (z - s.mean[None, :]) * jax.lax.rsqrt(s.var + eps)[None, :] + p.beta[None, :]


def update_running(s: BNState, batch_mean, batch_var, m, momentum, unbiased=False) -> BNState:
    r""":math:`r \leftarrow \rho r + (1-\rho) b` (flax convention); ``unbiased`` stores :math:`\frac{m}{m-1}\sigma^2` (PyTorch)."""
    var = batch_var * (m / (m - 1)) if unbiased else batch_var
    return BNState(momentum * s.mean + (1 - momentum) * batch_mean, momentum * s.var + (1 - momentum) * var)
