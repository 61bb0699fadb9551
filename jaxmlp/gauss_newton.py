r"""Hand-derived Gauss–Newton-vector products for the least-squares heads, without forming :math:`J`.

For residuals :math:`r = \mathrm{vec}(Y - F(X))` and a loss :math:`J = \frac c2\|r\|^2`
(``sum_squares``: :math:`c = 2`; ``mse``: :math:`c = 2/(m n_L)`; ``sigmoid_quadratic``: :math:`c = 1/m`),
the Gauss–Newton matrix is :math:`G = c\,J_r^\top J_r`.  The product :math:`Gv` takes one forward
tangent pass and one backward pass:

.. math::
   \dot Z^1 &= X\,\dot W^1 + \dot b^1,\qquad
   \dot Z^l = \big(g'(Z^{l-1})\odot\dot Z^{l-1}\big)W^l + A^{l-1}\dot W^l + \dot b^l,\\
   J_r v &= -h'(Z^L)\odot\dot Z^L,\qquad
   Gv = c\,J_r^\top(J_r v) = \text{backward}\big(\delta^L = c\,h'(Z^L)^2\odot\dot Z^L\big),

where ``backward`` is :func:`jaxmlp.backward` (the delta recursion, with :math:`\nabla_{W^l} = (A^{l-1})^\top
\delta^l`), since :math:`J_r^\top u` is the gradient of :math:`-\langle u, F\rangle`.  The verification
checks it with ``verification.check_hvp(..., kind="gauss_newton")``.

>>> import jax, jax.numpy as jnp, jaxmlp
>>> model = jaxmlp.MLP((2, 3, 1), "tanh", "sum_squares")
>>> params = jaxmlp.init(model, jax.random.key(0), dtype=jnp.float32)
>>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
>>> gv = gauss_newton_product(model, params, params, x, y)
>>> jax.tree.structure(gv) == jax.tree.structure(params)
True
"""
from __future__ import annotations

from jaxmlp import checks
from jaxmlp.activations import get_activation
from jaxmlp.heads import get_head
from jaxmlp.network import backward, forward
from jaxmlp.least_squares import check_least_squares


def tangent_forward(model, params, v, x, zs, as_):
    r""":math:`\dot Z^L`: the forward tangent of the pre-activations along the parameter direction ``v``."""
    g_prime = get_activation(model.activation).derivative
    dz = None
    for l, (p, dp) in enumerate(zip(params, v), start=1):
        a_prev = as_[l - 1]
        dz_new = a_prev @ dp.W
        if dz is not None:
            dz_new = dz_new + (g_prime(zs[l - 2], as_[l - 1]) * dz) @ p.W
        if dp.b is not None:
            dz_new = dz_new + dp.b[None, :]
        dz = dz_new  # (m, n_l)
    return dz


def gauss_newton_product(model, params, v, x, y, *, check=True):
    r""":math:`Gv = c\,J_r^\top J_r v` for a least-squares head, shaped like ``params``; ``y`` is unused
    beyond the entry checks (:math:`G` does not depend on the targets)."""
    check_least_squares(model)
    x, y = checks.check_all(model, params, x, y, check=check)
    checks.check_params(model, v)
    zs, as_ = forward(model, params, x)
    head = get_head(model.head)
    h_prime = head.output_derivative(zs[-1], head.output(zs[-1]))  # (m, n_L)
    dz = tangent_forward(model, params, v, x, zs, as_)
    c = head.residual_scale(*zs[-1].shape)
    return backward(model, params, zs, as_, c * h_prime * h_prime * dz).grads
