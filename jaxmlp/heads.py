r"""Output heads: the last activation fused with the loss, and the fused delta.

A head turns the last pre-activation :math:`Z^L` (shape ``(m, n_L)``) and the
targets :math:`Y` (same shape; integer class labels are one-hot encoded before
they reach here) into the scalar data loss :math:`J` and the fused delta
:math:`\delta^L = \partial J / \partial Z^L`.  Fusing the last activation with
its loss is what makes the deltas short and stable (DNN Maths (2020-01-12), "softmax +
cross-entropy gives dz = softmax(z) - y").

Every head is either a *mean* head, :math:`J = \frac1m\sum_i C_i`, or a *sum*
head, :math:`J = \sum_i C_i`; :func:`jaxmlp.lemma1` uses that to rebuild the
batch gradient from per-example deltas.

=====================  =====================================================  ==============================
head                   :math:`J`                                              :math:`\delta^L`
=====================  =====================================================  ==============================
softmax_cross_entropy  :math:`\frac1m\sum_i(\mathrm{lse}(z_i)-y_i\cdot z_i)`  :math:`(P-Y)/m`
sigmoid_quadratic      :math:`\frac1m\sum_i\frac12\|y_i-\sigma(z_i)\|^2`      :math:`\sigma'(Z)\odot(A-Y)/m`
sum_squares            :math:`\|Z-Y\|_F^2`                                    :math:`2(Z-Y)`
mse                    :math:`\frac1{m n_L}\|Z-Y\|_F^2`                       :math:`2(Z-Y)/(m n_L)`
sigmoid_bce            :math:`\frac1m\sum(\mathrm{softplus}(Z)-Y\odot Z)`     :math:`(\sigma(Z)-Y)/m`
=====================  =====================================================  ==============================

``sigmoid_quadratic`` is Higham & Higham's eq. (6); ``sum_squares`` is the loss of the PyTorch tutorial
program in Matrix Backprop (2019-05-15).  Labels ``y`` are targets of shape (m, n_L), or, for a head
with ``classes`` (``softmax_cross_entropy``), integer classes of shape (m,) (one-hot encoded).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from jaxmlp.activations import identity, identity_derivative, sigmoid, sigmoid_derivative


class Head(NamedTuple):
    """The output activation fused with its loss."""

    name: str
    output: Callable[[jax.Array], jax.Array]  # Z^L -> network output F (probabilities, ...)
    output_derivative: Callable[[jax.Array, jax.Array], jax.Array]  # (Z^L, F) -> dF/dZ^L elementwise
    loss: Callable[[jax.Array, jax.Array], jax.Array]  # (Z^L, Y) -> scalar J
    delta: Callable[[jax.Array, jax.Array], jax.Array]  # (Z^L, Y) -> dJ/dZ^L
    target_delta: Callable[[jax.Array, jax.Array], jax.Array]  # (Z^L, Y) -> dJ/dY (for custom_vjp rules)
    reduction: str  # "mean" or "sum" over the m examples
    classes: bool  # accepts integer class labels (one-hot encoded)
    # c(m, n_L) in J = (c/2)||r||^2 for residuals r = vec(Y - output(Z)) (the Gauss-Newton scale G = c J_r^T J_r);
    # None for a head that is not least squares
    residual_scale: Optional[Callable[[int, int], float]] = None

    @property
    def least_squares(self) -> bool:
        """J is a sum or mean of squared residuals ``Y - output(Z)`` (Levenberg-Marquardt, Gauss-Newton)."""
        return self.residual_scale is not None

    def __repr__(self):
        return f"Head({self.name!r})"


def _rows(z):
    return z.shape[0]


# --- softmax + cross-entropy (DNN Maths and Batch Backprop and Backprop Derivation and cs231n spiral) -------------------
def softmax_cross_entropy_loss(z, y):
    r""":math:`J = \frac1m\sum_i\big(\log\sum_k e^{z_{ik}} - \sum_k y_{ik} z_{ik}\big)`.

    Equal to :math:`-\frac1m\sum_{ik} y_{ik}\log p_{ik}` for one-hot (or any
    row-stochastic) :math:`Y`; the log-sum-exp form never overflows (Matrix Backprop (2019-05-15)'s
    ``np.exp(scores)`` does at logits of ~89 in float32).
    """
    lse = jax.nn.logsumexp(z, axis=1)  # (m,)
    return jnp.mean(lse - jnp.sum(y * z, axis=1))


def softmax_cross_entropy_delta(z, y):
    r""":math:`\delta^L = (\mathrm{softmax}(Z) - Y)/m` (DNN Maths (2020-01-12) trace trick; Batch Backprop (2019-05-06) with the 1/m)."""
    return (jax.nn.softmax(z, axis=1) - y) / _rows(z)


# --- sigmoid + Higham's quadratic cost (Higham & Higham notes (2024-09-10), eq. (6) and Lemma 1.1) ----
def sigmoid_quadratic_loss(z, y):
    r""":math:`C = \frac1N\sum_i \frac12\|y_i - \sigma(z_i)\|_2^2` (Higham & Higham eq. (6))."""
    a = jax.nn.sigmoid(z)
    return jnp.sum((y - a) ** 2) / (2 * _rows(z))


def sigmoid_quadratic_delta(z, y):
    r""":math:`\delta^L = \sigma'(Z)\odot(A - Y)/N` with :math:`\sigma' = A(1-A)` (Higham & Higham notes (2024-09-10), Lemma 1, (1.1))."""
    a = jax.nn.sigmoid(z)
    return a * (1 - a) * (a - y) / _rows(z)


# --- identity + sum of squares (the PyTorch tutorial program in Matrix Backprop (2019-05-15)) ---------------------------------
def sum_squares_loss(z, y):
    r""":math:`J = \|\hat Y - Y\|_F^2` (the PyTorch tutorial program in Matrix Backprop (2019-05-15); the squared Frobenius norm)."""
    return jnp.sum((z - y) ** 2)


def sum_squares_delta(z, y):
    r""":math:`\delta^L = 2(\hat Y - Y)` (the PyTorch tutorial program in Matrix Backprop (2019-05-15), ``grad_y_pred``)."""
    return 2 * (z - y)


# --- identity + mean squared error ------------------------------------------
def mse_loss(z, y):
    r""":math:`J = \frac{1}{m n_L}\|\hat Y - Y\|_F^2` (mean over every element, as PyTorch's MSELoss)."""
    return jnp.mean((z - y) ** 2)


def mse_delta(z, y):
    r""":math:`\delta^L = 2(\hat Y - Y)/(m n_L)`."""
    return 2 * (z - y) / z.size


# --- sigmoid + binary cross-entropy -----------------------------------------
def sigmoid_bce_loss(z, y):
    r""":math:`J = \frac1m\sum_{ij}\big(\mathrm{softplus}(z_{ij}) - y_{ij} z_{ij}\big)`.

    This is :math:`-\frac1m\sum[y\log\sigma(z) + (1-y)\log(1-\sigma(z))]` with
    :math:`\log\sigma(z) = -\mathrm{softplus}(-z)` evaluated stably.
    """
    sp = jnp.logaddexp(z, jnp.zeros_like(z))
    return jnp.sum(sp - y * z) / _rows(z)


def sigmoid_bce_delta(z, y):
    r""":math:`\delta^L = (\sigma(Z) - Y)/m`."""
    return (jax.nn.sigmoid(z) - y) / _rows(z)


# --- dJ/dY: the targets' cotangent, for jaxmlp.loss_with_manual_vjp ------------------------
def linear_target_delta(z, y):
    r""":math:`\partial J/\partial Y = -Z/m`: softmax cross-entropy and sigmoid BCE are linear in Y."""
    return -z / _rows(z)


def sigmoid_quadratic_target_delta(z, y):
    r""":math:`\partial J/\partial Y = (Y - \sigma(Z))/m`."""
    return (y - jax.nn.sigmoid(z)) / _rows(z)


def sum_squares_target_delta(z, y):
    r""":math:`\partial J/\partial Y = -2(\hat Y - Y)`."""
    return -2 * (z - y)


def mse_target_delta(z, y):
    r""":math:`\partial J/\partial Y = -2(\hat Y - Y)/(m n_L)`."""
    return -2 * (z - y) / z.size


def _softmax(z):
    return jax.nn.softmax(z, axis=1)


def _no_elementwise_derivative(z, f):
    raise ValueError("head: softmax's derivative is a full Jacobian per row, not elementwise; "
                     "only least-squares heads have an elementwise output derivative")


HEADS: dict[str, Head] = {
    h.name: h
    for h in (
        Head(name="softmax_cross_entropy", output=_softmax, output_derivative=_no_elementwise_derivative,
             loss=softmax_cross_entropy_loss, delta=softmax_cross_entropy_delta,
             target_delta=linear_target_delta, reduction="mean", classes=True),
        Head(name="sigmoid_quadratic", output=sigmoid, output_derivative=sigmoid_derivative,
             loss=sigmoid_quadratic_loss, delta=sigmoid_quadratic_delta,
             target_delta=sigmoid_quadratic_target_delta, reduction="mean", classes=False,
             residual_scale=lambda m, n: 1.0 / m),
        Head(name="sum_squares", output=identity, output_derivative=identity_derivative, loss=sum_squares_loss,
             delta=sum_squares_delta, target_delta=sum_squares_target_delta, reduction="sum", classes=False,
             residual_scale=lambda m, n: 2.0),
        Head(name="mse", output=identity, output_derivative=identity_derivative, loss=mse_loss, delta=mse_delta,
             target_delta=mse_target_delta, reduction="mean", classes=False,
             residual_scale=lambda m, n: 2.0 / (m * n)),
        Head(name="sigmoid_bce", output=sigmoid, output_derivative=sigmoid_derivative, loss=sigmoid_bce_loss,
             delta=sigmoid_bce_delta, target_delta=linear_target_delta, reduction="mean", classes=False),
    )
}


def weighted_loss_and_delta(head: Head, z, y, weights):
    r"""The head's :math:`J` and :math:`\delta^L` over the rows of weight 1 only (``weights`` (m,) of 0 and 1:
    padding rows weigh 0), exactly as if the padding were not there:

    .. math::  J = \tfrac1n\textstyle\sum_i w_i C_i \ (\text{mean heads}),\qquad
               J = \textstyle\sum_i w_i C_i \ (\text{sum heads}),\qquad
               \delta^L_i = w_i\,\tfrac mn\,\delta^{\text{head}}_i \ (\text{mean}),\ w_i\,\delta^{\text{head}}_i \ (\text{sum}),

    with :math:`n = \sum_i w_i`, :math:`C_i` the head's loss of row :math:`i` alone, and
    :math:`\delta^{\text{head}}` the head's own fused delta of all :math:`m` rows (which carries
    :math:`1/m` for a mean head).  ``weights=None``: every row counts (the head's own loss and delta).
    """
    if weights is None:
        return head.loss(z, y), head.delta(z, y)
    w = jnp.asarray(weights, z.dtype)
    per_row = jax.vmap(lambda zi, yi: head.loss(zi[None], yi[None]))(z, y)  # (m,) C_i
    if head.reduction == "mean":
        n = jnp.sum(w)
        return jnp.sum(w * per_row) / n, ((z.shape[0] / n) * w)[:, None] * head.delta(z, y)
    return jnp.sum(w * per_row), w[:, None] * head.delta(z, y)


def get_head(name: str) -> Head:
    """Look a head up by name; unknown names list the valid ones."""
    try:
        return HEADS[name]
    except (KeyError, TypeError):
        raise ValueError(f"head: expected one of {sorted(HEADS)}, got unknown name {name!r}") from None
