r"""Hidden-layer activations as forward / derivative pairs.

Each activation is a pair ``(forward, derivative)``.  ``forward(z)`` maps the
pre-activation ``Z`` to ``A = g(Z)`` elementwise; ``derivative(z, a)`` returns
:math:`g'(Z)` in closed form, reusing the cached output ``a`` wherever the
derivative is cheapest to write in terms of it (micrograd style: the derivative
sits next to its forward).  Nothing here calls ``jax.grad``/``jax.vjp``.

relu at exactly zero
--------------------
The source documents disagree on :math:`\mathrm{relu}'(0)`: Batch Backprop (2019-05-06) uses
:math:`\mathbb 1(z \ge 0)` (so 1), the PyTorch tutorial in Matrix Backprop (2019-05-15) zeroes only
``h < 0`` and cs231n in Matrix Backprop (2019-05-15) zeroes ``h <= 0``.  All are valid subgradients.
jaxmlp follows ``jax.nn.relu``, whose derivative at 0 is **0**, i.e.
:math:`\mathbb 1(z > 0)`, and the verification checks against that convention.
leaky_relu follows ``jax.nn.leaky_relu`` (``where(z >= 0, z, 0.01 z)``), whose
derivative at 0 is 1.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

LEAKY_SLOPE = 0.01  # same default as jax.nn.leaky_relu


class Activation(NamedTuple):
    """An activation ``g`` with its closed-form derivative ``g'``."""

    name: str
    forward: Callable[[jax.Array], jax.Array]
    derivative: Callable[[jax.Array, jax.Array], jax.Array]  # (z, a=g(z)) -> g'(z)


def sigmoid(z):
    r""":math:`\sigma(z) = 1/(1+e^{-z})`, evaluated stably (Higham & Higham notes (2024-09-10), eq. for :math:`\sigma`)."""
    return jax.nn.sigmoid(z)


def sigmoid_derivative(z, a):
    r""":math:`\sigma'(z) = \sigma(z)(1-\sigma(z))`, from the cached output (Higham & Higham notes (2024-09-10))."""
    del z
    return a * (1 - a)


def tanh(z):
    r""":math:`\tanh(z)`."""
    return jnp.tanh(z)


def tanh_derivative(z, a):
    r""":math:`\tanh'(z) = 1 - \tanh^2(z)`, from the cached output."""
    del z
    return 1 - a * a


def relu(z):
    r""":math:`\max(z, 0)` (``jax.nn.relu``; derivative 0 at 0)."""
    return jax.nn.relu(z)


def relu_derivative(z, a):
    r""":math:`\mathbb 1(z > 0)`: the subgradient 0 at :math:`z=0`, as ``jax.nn.relu``."""
    del a
    return (z > 0).astype(z.dtype)


def leaky_relu(z):
    r""":math:`z` for :math:`z \ge 0`, else :math:`0.01 z` (``jax.nn.leaky_relu``)."""
    return jnp.where(z >= 0, z, LEAKY_SLOPE * z)


def leaky_relu_derivative(z, a):
    r""":math:`1` for :math:`z \ge 0`, else :math:`0.01`."""
    del a
    return jnp.where(z >= 0, jnp.ones_like(z), jnp.full_like(z, LEAKY_SLOPE))


def softplus(z):
    r""":math:`\log(1 + e^z)`, evaluated stably as ``logaddexp(z, 0)``."""
    return jnp.logaddexp(z, jnp.zeros_like(z))


def softplus_derivative(z, a):
    r""":math:`\mathrm{softplus}'(z) = \sigma(z) = 1 - e^{-a}` with :math:`a = \mathrm{softplus}(z)`.

    Written as ``-expm1(-a)`` so that it stays accurate when :math:`a \to 0`.
    """
    del z
    return -jnp.expm1(-a)


def identity(z):
    """:math:`g(z) = z`."""
    return z


def identity_derivative(z, a):
    """:math:`g'(z) = 1`."""
    del a
    return jnp.ones_like(z)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("sigmoid", sigmoid, sigmoid_derivative),
        Activation("tanh", tanh, tanh_derivative),
        Activation("relu", relu, relu_derivative),
        Activation("leaky_relu", leaky_relu, leaky_relu_derivative),
        Activation("softplus", softplus, softplus_derivative),
        Activation("identity", identity, identity_derivative),
    )
}


def get_activation(name: str) -> Activation:
    """Look an activation up by name; unknown names list the valid ones."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"activation: expected one of {sorted(ACTIVATIONS)}, got unknown name {name!r}"
        ) from None
