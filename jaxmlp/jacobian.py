r"""The Jacobian of the residuals, derived by hand: the delta recursion seeded with a unit vector.

For a least-squares head with network output :math:`F = h(Z^L)` (``h`` = sigmoid
or identity), the residuals are :math:`r = \mathrm{vec}(Y - F(X))`, row-major:
entry :math:`i n_L + k` is example ``i``, output unit ``k``.  Row :math:`(i,k)`
of :math:`J = \partial r/\partial p` is minus the gradient of the single
output :math:`F_{ik}`.  Backpropagating that one output (Lemma 1 of seed 002
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

from jaxmlp import _checks
from jaxmlp.activations import get_activation
from jaxmlp.backprop import forward
from jaxmlp.heads import get_head

_OUTPUT_DERIVATIVE = {"sigmoid_quadratic": lambda z, a: a * (1 - a), "sum_squares": lambda z, a: jnp.ones_like(z),
                      "mse": lambda z, a: jnp.ones_like(z)}


def check_least_squares(model):
    if model.batchnorm:
        raise ValueError("model.batchnorm: the residual Jacobian is per example, but batch norm couples the examples")
    head = get_head(model.head)
    if not head.least_squares:
        raise ValueError(
            f"model.head: Levenberg-Marquardt needs a least-squares head {sorted(_OUTPUT_DERIVATIVE)}, "
            f"got {model.head!r}: its loss is not a sum of squared residuals Y - F(X), so J^T J is not its Gauss-Newton matrix")


def residuals(model, params, x, y, *, check=True):
    """:math:`r = \\mathrm{vec}(Y - F(X))`, shape (m * n_L,), row-major."""
    check_least_squares(model)
    x, y = _checks.check_all(model, params, x, y, check=check)
    zs, _ = forward(model, params, x)
    return (y - get_head(model.head).output(zs[-1])).reshape(-1)


def jacobian(model, params, x, *, check=True):
    """:math:`J = \\partial r/\\partial p`, shape (m * n_L, n_params), columns in ``ravel_pytree`` order."""
    check_least_squares(model)
    x, _ = _checks.check_all(model, params, x, None, check=check)
    act = get_activation(model.activation)
    zs, as_ = forward(model, params, x)
    head = get_head(model.head)
    out_d = _OUTPUT_DERIVATIVE[model.head](zs[-1], head.output(zs[-1]))  # (m, n_L)
    m, n_out = out_d.shape

    def one_unit(k):
        delta = -out_d * jax.nn.one_hot(k, n_out, dtype=out_d.dtype)[None, :]  # (m, n_L)
        cols = [None] * model.depth
        for l in range(model.depth, 0, -1):
            p = params[l - 1]
            dW = jnp.einsum("mi,mj->mij", as_[l - 1], delta).reshape(m, -1)  # (m, n_{l-1} n_l)
            cols[l - 1] = [dW] + ([delta] if p.b is not None else [])
            if l > 1:
                delta = (delta @ p.W.T) * act.derivative(zs[l - 2], as_[l - 1])
        return jnp.concatenate([c for layer in cols for c in layer], axis=1)  # (m, n)

    per_unit = jax.vmap(one_unit)(jnp.arange(n_out))  # (n_L, m, n)
    return jnp.transpose(per_unit, (1, 0, 2)).reshape(m * n_out, -1)
