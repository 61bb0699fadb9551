r"""Weight penalties and their gradients.  Weights only, never biases (as the source documents).

.. math::  R(W) = \frac{\lambda_2}{2}\sum_l\|W^l\|_F^2 + \lambda_1\sum_l\sum|W^l_{ij}|,
           \qquad \nabla_{W^l} R = \lambda_2 W^l + \lambda_1\,\mathrm{sign}(W^l).

DNN Maths (2020-01-12) prints the L1 gradient as :math:`dW_{orig} + \lambda` (an erratum):
the correct term is :math:`\lambda\,\mathrm{sign}(W)`.  ``sign(0) = 0`` is the
subgradient chosen at 0.  ``jax.grad(jnp.abs)(0.)`` is 1, so the penalty is
written as :math:`|W| = W\,\mathrm{sign}(W)` (same value; ``sign`` has zero
derivative), whose autodiff gradient is exactly :math:`\mathrm{sign}(W)`.
"""
from __future__ import annotations

import jax.numpy as jnp

from jaxmlp.values import is_static_zero
from jaxmlp.dense import Dense


def is_active(l1, l2) -> bool:
    """False when both coefficients are static zeros (:func:`jaxmlp.values.is_static_zero`): the terms are skipped."""
    return not (is_static_zero(l1) and is_static_zero(l2))


def penalty(params, l1=0.0, l2=0.0):
    r""":math:`\frac{\lambda_2}{2}\sum\|W\|^2 + \lambda_1\sum|W|` over every layer's ``W``."""
    total = 0.0
    if not is_active(l1, l2):
        return total
    for p in params:
        total = total + 0.5 * l2 * jnp.sum(p.W * p.W) + l1 * jnp.sum(p.W * jnp.sign(p.W))
    return total


def penalty_grad(p: Dense, l1=0.0, l2=0.0):
    r""":math:`\lambda_2 W + \lambda_1\,\mathrm{sign}(W)` for one layer's ``W``."""
    return l2 * p.W + l1 * jnp.sign(p.W)


def add_penalty_grad(g: Dense, p: Dense, l1=0.0, l2=0.0) -> Dense:
    r"""``g`` with :math:`\lambda_2 W + \lambda_1\mathrm{sign}(W)` added to its ``W`` (``g`` itself when both are 0)."""
    return g._replace(W=g.W + penalty_grad(p, l1, l2)) if is_active(l1, l2) else g
