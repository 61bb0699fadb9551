r"""The hand-derived backward pass as a ``jax.custom_vjp`` of :func:`jaxmlp.loss`.

``jax.grad`` (and anything built on it: ``optax``, ``jax.hessian``'s outer reverse pass, a user's own
training step) then runs the hand-derived recursion of :mod:`jaxmlp.network` instead of JAX's:

.. math::
   \bar p = \bar J\,\nabla_p J,\quad \bar X = \bar J\,\delta^1 (W^1)^\top,\quad
   \bar Y = \bar J\,\partial J/\partial Y,\quad \bar\lambda_1 = \bar J \textstyle\sum_l\|W^l\|_1,\quad
   \bar\lambda_2 = \bar J\,\tfrac12\textstyle\sum_l\|W^l\|_F^2 ,

with :math:`\bar J` the incoming cotangent and :math:`\partial J/\partial Y` the head's target
derivative (:mod:`jaxmlp.heads`).  ``verification`` checks the rule with
``verification.check_custom_vjp(jaxmlp.loss_with_manual_vjp, model, params, x, y, l1, l2)``.

>>> import jax, jax.numpy as jnp, jaxmlp
>>> model = jaxmlp.MLP((2, 3, 2), "sigmoid", "sigmoid_quadratic")
>>> params = jaxmlp.init(model, jax.random.key(0), dtype=jnp.float32)
>>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 2))
>>> g = jax.grad(jaxmlp.loss_with_manual_vjp, argnums=1)(model, params, x, y)
>>> bool(jnp.allclose(g[0].W, jax.grad(lambda p: jaxmlp.loss(model, p, x, y))(params)[0].W, rtol=1e-5))
True
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxmlp import checks
from jaxmlp.network import loss, value_and_input_grads
from jaxmlp.regularizers import penalty


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def manual_vjp_loss(model, params, x, y, l1=0.0, l2=0.0):
    """:func:`jaxmlp.loss` (no entry checks; ``y`` as one-hot or targets) with the hand-derived rule."""
    return loss(model, params, x, y, l1=l1, l2=l2, check=False)


def _fwd(model, params, x, y, l1, l2):
    value, grads, dx, dy = value_and_input_grads(model, params, x, y, l1=l1, l2=l2, check=False)
    one = jnp.ones((), jnp.result_type(value))
    return value, (grads, dx, dy, penalty(params, one, 0.0), penalty(params, 0.0, one), l1, l2)


def _bwd(model, res, g):
    grads, dx, dy, d_l1, d_l2, l1, l2 = res
    scale = lambda t: None if t is None else g * t  # noqa: E731
    return (jax.tree.map(scale, grads), g * dx, g * dy,
            jnp.asarray(g * d_l1, jnp.result_type(l1)), jnp.asarray(g * d_l2, jnp.result_type(l2)))


manual_vjp_loss.defvjp(_fwd, _bwd)


@functools.wraps(manual_vjp_loss)
def loss_with_manual_vjp(model, params, x, y, l1=0.0, l2=0.0, *, check=True):
    r""":func:`jaxmlp.loss` whose derivative, under ``jax.grad`` / ``jax.vjp``, is the hand-derived one.

    The same entry checks as :func:`jaxmlp.loss` run first (skip them with ``check=False``); integer
    labels become one-hot rows (their cotangent is then that of the one-hot targets).  Every argument
    but ``model`` is differentiable: params, ``x``, float targets ``y``, ``l1`` and ``l2``.
    """
    x, y = checks.check_all(model, params, x, y, l1, l2, check)
    return manual_vjp_loss(model, params, x, y, l1, l2)
