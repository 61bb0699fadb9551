r"""Lemma 1 of Higham & Higham (Higham & Higham notes (2024-09-10)), written literally for one example.

Column convention with :math:`W_{col}^l = (W^l)^\top \in\mathbb R^{n_l\times n_{l-1}}`
and :math:`z^l = W_{col}^l a^{l-1} + b^l`:

.. math::
   \delta^L &= \sigma'(z^L)\odot(a^L - y)                       &(1.1)\\
   \delta^l &= g'(z^l)\odot (W_{col}^{l+1})^\top\delta^{l+1}      &(1.2)\\
   \partial C/\partial b^l_j &= \delta^l_j                        &(1.3)\\
   \partial C/\partial w^l_{jk} &= \delta^l_j a^{l-1}_k            &(1.4)

(1.1) is the quadratic-cost head; for the other heads :math:`\delta^L` is that
head's per-example delta.  The per-example gradients are ``vmap``-ed over the
batch and averaged (mean heads) or summed (sum heads); the penalty gradient is
added once.  This is an independent second derivation used by the verification.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmlp import checks
from jaxmlp.activations import get_activation
from jaxmlp.dense import Dense
from jaxmlp.heads import get_head
from jaxmlp.model import MLP
from jaxmlp.regularizers import add_penalty_grad


def _one_example(model: MLP, params, x, y):
    """Gradient of :math:`C_i` for one example; ``x`` (n_0,), ``y`` (n_L,)."""
    act, head = get_activation(model.activation), get_head(model.head)
    W_col = [p.W.T for p in params]  # (n_l, n_{l-1})
    a, zs, as_ = x, [], [x]
    for l in range(model.depth):
        z = W_col[l] @ a + (params[l].b if params[l].b is not None else 0)  # (n_l,)
        zs.append(z)
        a = act.forward(z)
        as_.append(a)
    # (1.1): the head's per-example delta (a batch of one).
    delta = head.delta(zs[-1][None, :], y[None, :])[0]  # (n_L,)
    grads = [None] * model.depth
    for l in range(model.depth - 1, -1, -1):
        dW_col = jnp.outer(delta, as_[l])  # (1.4): (n_l, n_{l-1})
        db = delta if params[l].b is not None else None  # (1.3)
        grads[l] = Dense(dW_col.T, db)
        if l > 0:
            delta = act.derivative(zs[l - 1], as_[l]) * (W_col[l].T @ delta)  # (1.2)
    return tuple(grads)


def lemma1_grad(model: MLP, params, x, y, *, l1=0.0, l2=0.0, check=True):
    """The same gradient as :func:`jaxmlp.value_and_grad`, by Higham & Higham's Lemma 1 one example at a
    time (``vmap``-ped over the batch), plus the penalty.  Per example, so it refuses batch-norm models."""
    if model.batchnorm:
        raise ValueError("model.batchnorm: Lemma 1 is per example, but batch norm couples the examples of a batch")
    x, y = checks.check_all(model, params, x, y, l1, l2, check)
    per_example = jax.vmap(lambda xi, yi: _one_example(model, params, xi, yi))(x, y)
    reduce = jnp.mean if get_head(model.head).reduction == "mean" else jnp.sum
    grads = jax.tree.map(lambda g: reduce(g, axis=0), per_example)
    return tuple(add_penalty_grad(g, p, l1, l2) for g, p in zip(grads, params))
