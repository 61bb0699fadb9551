r"""The Jacobian of the residuals, derived by hand: the delta recursion seeded with a unit vector.

For a least-squares head with network output :math:`F = h(Z^L)` (``h`` = sigmoid
or identity), the residuals are :math:`r = \mathrm{vec}(Y - F(X))`, row-major:
entry :math:`i n_L + k` is example ``i``, output unit ``k``.  Row :math:`(i,k)`
of :math:`J = \partial r/\partial p` is minus the gradient of the single
output :math:`F_{ik}`.  Backpropagating that one output (Lemma 1 of Higham & Higham notes (2024-09-10)
with the cost replaced by :math:`F_{ik}`):

.. math::
   \delta^L_i &= -h'(z^L_i)\odot e_k\\
   \delta^{l-1}_i &= (\delta^l_i (W^l)^\top)\odot g'(z^{l-1}_i)\\
   \partial r_{ik}/\partial W^l &= (a^{l-1}_i)^\top\delta^l_i\ \ (\text{an outer product}),\qquad
   \partial r_{ik}/\partial b^l = \delta^l_i.

Every example keeps its own row (no sum over the batch), and all ``n_L`` unit
seeds run at once.  Columns follow ``jax.flatten_util.ravel_pytree(params)``:
``W^1`` (row-major), ``b^1``, ``W^2``, ``b^2``, ...
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmlp import checks
from jaxmlp.dense import Dense
from jaxmlp.heads import HEADS, get_head
from jaxmlp.network import backward, forward


def check_least_squares(model):
    """Refuse models whose loss is not a sum of squared residuals of independent examples."""
    if model.batchnorm:
        raise ValueError("model.batchnorm: the residual Jacobian is per example, but batch norm couples the examples")
    if not get_head(model.head).least_squares:
        valid = sorted(name for name, h in HEADS.items() if h.least_squares)
        raise ValueError(
            f"model.head: Levenberg-Marquardt needs a least-squares head {valid}, "
            f"got {model.head!r}: its loss is not a sum of squared residuals Y - F(X), so J^T J is not its Gauss-Newton matrix")


def residuals(model, params, x, y, *, check=True):
    """:math:`r = \\mathrm{vec}(Y - F(X))`, shape (m * n_L,), row-major."""
    check_least_squares(model)
    x, y = checks.check_all(model, params, x, y, check=check)
    zs, _ = forward(model, params, x)
    return (y - get_head(model.head).output(zs[-1])).reshape(-1)


def per_example_dense_backward(p: Dense, a_prev, delta):
    """:func:`jaxmlp.dense.dense_backward` without the sum over the batch: one gradient row per example.

    Returns ``(Dense(dW (m, n_{l-1} n_l), db (m, n_l)), d_a_prev (m, n_{l-1}))``.
    """
    m = delta.shape[0]
    dW = jnp.einsum("mi,mj->mij", a_prev, delta).reshape(m, -1)  # (m, n_{l-1} n_l): outer products
    return Dense(dW, delta if p.b is not None else None), delta @ p.W.T


def jacobian(model, params, x, *, check=True):
    """:math:`J = \\partial r/\\partial p`, shape (m * n_L, n_params), columns in ``ravel_pytree`` order."""
    check_least_squares(model)
    x, _ = checks.check_all(model, params, x, None, check=check)
    zs, as_ = forward(model, params, x)
    head = get_head(model.head)
    out_d = head.output_derivative(zs[-1], head.output(zs[-1]))  # (m, n_L)
    m, n_out = out_d.shape

    def one_unit(k):
        delta = -out_d * jax.nn.one_hot(k, n_out, dtype=out_d.dtype)[None, :]  # (m, n_L)
        grads = backward(model, params, zs, as_, delta, layer_backward=per_example_dense_backward).grads
        return jnp.concatenate(jax.tree.leaves(grads), axis=1)  # (m, n): W^1, b^1, W^2, ... as ravel_pytree

    per_unit = jax.vmap(one_unit)(jnp.arange(n_out))  # (n_L, m, n)
    return jnp.transpose(per_unit, (1, 0, 2)).reshape(m * n_out, -1)
