r"""The dense (affine) layer, forward beside its hand-derived backward.

Batch-first convention (Batch Backprop and Matrix Backprop): rows are examples,

.. math::  Z = A_{\text{prev}} W + \mathbf 1 b^\top,\qquad
           W \in \mathbb R^{n_{l-1}\times n_l},\; b\in\mathbb R^{n_l}.

Backward, by the trace trick (DNN Maths (2020-01-12) / Matrix Backprop (2019-05-15)): from
:math:`dJ = \mathrm{tr}(\delta^\top dZ)` and
:math:`dZ = dA_{\text{prev}} W + A_{\text{prev}} dW + \mathbf 1 db^\top`,

.. math::  \nabla_W J = A_{\text{prev}}^\top \delta,\quad
           \nabla_b J = \delta^\top\mathbf 1 = \textstyle\sum_{\text{rows}}\delta,\quad
           \nabla_{A_{\text{prev}}} J = \delta W^\top .
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp


class Dense(NamedTuple):
    """Parameters of one layer: affine ``W, b`` (``b`` None without bias), and batch norm's ``gamma, beta``.

    ``gamma``/``beta`` are ``None`` unless the model has ``batchnorm=True`` (hidden layers only).
    """

    W: jax.Array  # (n_in, n_out)
    b: Optional[jax.Array] = None  # (n_out,) or None
    gamma: Optional[jax.Array] = None  # (n_out,) batch-norm scale, or None
    beta: Optional[jax.Array] = None  # (n_out,) batch-norm shift, or None


def dense_forward(p: Dense, a_prev: jax.Array) -> jax.Array:
    """:math:`Z = A_{prev} W + b`; ``a_prev`` (m, n_in) -> ``z`` (m, n_out)."""
    z = a_prev @ p.W  # (m, n_out)
    if p.b is not None:
        z = z + p.b[None, :]
    return z


def dense_backward(p: Dense, a_prev: jax.Array, delta: jax.Array):
    r"""Return ``(grads, d_a_prev)`` for :math:`\delta = \partial J/\partial Z` of shape (m, n_out).

    ``grads.W`` = :math:`A_{prev}^\top\delta` (n_in, n_out), ``grads.b`` =
    :math:`\sum_{rows}\delta` (n_out,), ``d_a_prev`` = :math:`\delta W^\top` (m, n_in).
    """
    dW = a_prev.T @ delta  # (n_in, n_out)
    db = None if p.b is None else jnp.sum(delta, axis=0)  # (n_out,)
    return Dense(dW, db), delta @ p.W.T
