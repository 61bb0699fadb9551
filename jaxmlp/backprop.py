r"""The network: forward pass, objective, and the hand-derived gradient.

Forward (batch-first, seed 001):

.. math::  A^0 = X,\qquad Z^l = A^{l-1}W^l + b^l,\qquad A^l = g(Z^l)\ (l<L),

and the head turns :math:`Z^L` into the loss.  The objective is

.. math::  J = \text{head}(Z^L, Y) + \frac{\lambda_2}{2}\sum_l\|W^l\|_F^2 + \lambda_1\sum_l\|W^l\|_1 .

Backward, the batched matrix recursion (seed 001 "小结"; seed 000 by matrix
differentials), with :math:`\delta^l = \partial J/\partial Z^l`:

.. math::
   \delta^L &= \text{fused head delta}\\
   \nabla_{W^l}J &= (A^{l-1})^\top\delta^l + \lambda_2 W^l + \lambda_1\mathrm{sign}(W^l)\\
   \nabla_{b^l}J &= \textstyle\sum_{\text{rows}}\delta^l\\
   \delta^{l-1} &= (\delta^l (W^l)^\top)\odot g'(Z^{l-1}).

The 1/m of a mean loss lives in :math:`\delta^L` alone (seed 001 writes the
loss as a sum but the gradients with 1/m; here the two agree).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmlp import _checks
from jaxmlp.activations import get_activation
from jaxmlp.dense import dense_backward, dense_forward
from jaxmlp.heads import get_head
from jaxmlp.model import MLP
from jaxmlp.regularizers import penalty, penalty_grad


def forward(model: MLP, params, x):
    """Forward pass keeping the cache: returns ``(zs, as_)`` with ``as_[0] = x``.

    ``zs[l-1]`` is :math:`Z^l` (m, n_l) and ``as_[l]`` is :math:`A^l`; the last
    entry of ``zs`` is the head's input :math:`Z^L`.  No input checks (internal).
    """
    g = get_activation(model.activation).forward
    a, zs, as_ = x, [], [x]
    for l, p in enumerate(params, start=1):
        z = dense_forward(p, a)  # (m, n_l)
        zs.append(z)
        if l < model.depth:
            a = g(z)
            as_.append(a)
    return zs, as_


def loss(model: MLP, params, x, y, *, l1=0.0, l2=0.0, check=True):
    r"""The scalar objective :math:`J` (data loss of the head + weight penalties).

    Plain ``jnp``; this is the function that ``jax.grad`` differentiates in the
    verification.  ``y`` may be integer class labels (m,) for classification
    heads or targets of shape (m, n_L).
    """
    x, y = _checks.check_all(model, params, x, y, l1, l2, check)
    zs, _ = forward(model, params, x)
    return get_head(model.head).loss(zs[-1], y) + penalty(params, l1, l2)


def backward(model: MLP, params, zs, as_, delta_L, *, l1=0.0, l2=0.0):
    r"""The batched delta recursion from a given :math:`\delta^L` (m, n_L); returns grads.

    Exposed so that other objectives (e.g. one output unit at a time, for a
    Jacobian) can reuse the recursion.
    """
    act = get_activation(model.activation)
    grads = [None] * model.depth
    delta = delta_L  # (m, n_L)
    for l in range(model.depth, 0, -1):
        p = params[l - 1]
        g, d_a_prev = dense_backward(p, as_[l - 1], delta)
        grads[l - 1] = g._replace(W=g.W + penalty_grad(p, l1, l2))
        if l > 1:
            z_prev = zs[l - 2]
            delta = d_a_prev * act.derivative(z_prev, as_[l - 1])  # (m, n_{l-1})
    return tuple(grads)


def value_and_grad(model: MLP, params, x, y, *, l1=0.0, l2=0.0, check=True):
    """``(J, grads)`` by the hand-derived backward pass; grads mirror ``params``."""
    x, y = _checks.check_all(model, params, x, y, l1, l2, check)
    head = get_head(model.head)
    zs, as_ = forward(model, params, x)
    value = head.loss(zs[-1], y) + penalty(params, l1, l2)
    grads = backward(model, params, zs, as_, head.delta(zs[-1], y), l1=l1, l2=l2)
    return value, grads


def predict(model: MLP, params, x, *, check=True):
    """Network output: the head's output activation of :math:`Z^L` (probabilities, sigmoid, or identity)."""
    x, _ = _checks.check_all(model, params, x, None, check=check)
    zs, _ = forward(model, params, x)
    return get_head(model.head).output(zs[-1])
