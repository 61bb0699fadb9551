r"""The static model description and parameter initialisation.

The model is a frozen (hashable) dataclass, so it can be a ``jax.jit`` static
argument or be closed over.  Parameters are a tuple with one
:class:`~jaxmlp.dense.Dense` per layer.

Notation (this project is batch-first, rows are examples):

==============  ========================================  ========================  ====================================================
quantity        jaxmlp (Batch Backprop, Matrix Backprop)  DNN Maths (2020-01-12)    Higham & Higham notes, Backprop Derivation (columns)
==============  ========================================  ========================  ====================================================
pre-activation  :math:`Z^l = A^{l-1}W^l+b^l`              :math:`z = W^\top a + b`  :math:`z = W_{col} a + b`
weight shape    :math:`(n_{l-1}, n_l)`                    :math:`(n_{l-1}, n_l)`    :math:`(n_l, n_{l-1})`
relation        :math:`W`                                 :math:`W`                 :math:`W_{col} = W^\top`
==============  ========================================  ========================  ====================================================

Higham & Higham notes (2024-09-10) numbers the input as layer 1; here the input is layer 0 and layer
``l`` (1-based) is ``params[l-1]``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Tuple

import jax
import jax.numpy as jnp

from jaxmlp.activations import get_activation
from jaxmlp.dense import Dense
from jaxmlp.heads import get_head
from jaxmlp.values import as_key, check_int

INIT_SCHEMES = ("higham", "cs231n", "normal", "xavier", "glorot", "he")


@dataclasses.dataclass(frozen=True)
class MLP:
    """Static, hashable description of a multilayer perceptron: a ``jax.jit`` static argument.

    Args:
      sizes: layer widths ``(n_0, n_1, ..., n_L)``; ``n_0`` is the input width.
      activation: hidden activation name (see :data:`jaxmlp.activations.ACTIVATIONS`).
      head: output head name (see :data:`jaxmlp.heads.HEADS`).
      use_bias: whether the affine layers carry a bias (the PyTorch tutorial program in Matrix Backprop (2019-05-15) has none; redundant before batch norm).
      batchnorm: batch normalisation after every hidden affine layer, before its activation (DNN Maths (2020-01-12)).
      bn_eps: batch norm's epsilon.
      bn_momentum: weight of the old running statistic (flax convention; PyTorch's 0.1 is 0.9 here).
      bn_unbiased: store the unbiased batch variance in the running estimate (PyTorch) instead of the biased one (flax).
    """

    sizes: Tuple[int, ...]
    activation: str = "relu"
    head: str = "softmax_cross_entropy"
    use_bias: bool = True
    batchnorm: bool = False
    bn_eps: float = 1e-5
    bn_momentum: float = 0.99
    bn_unbiased: bool = False

    def __post_init__(self):
        sizes = tuple(self.sizes) if isinstance(self.sizes, (list, tuple)) else self.sizes
        if not isinstance(sizes, tuple) or len(sizes) < 2:
            raise ValueError(f"sizes: expected a sequence of at least 2 layer widths, got {self.sizes!r}")
        for i, n in enumerate(sizes):
            check_int(f"sizes[{i}]", n, lo=1)
        object.__setattr__(self, "sizes", sizes)
        get_activation(self.activation)
        get_head(self.head)
        for name in ("use_bias", "batchnorm", "bn_unbiased"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}: expected a bool, got {getattr(self, name)!r}")
        if self.batchnorm and len(sizes) < 3:
            raise ValueError(f"batchnorm: needs at least one hidden layer, got sizes {sizes}")
        if not (isinstance(self.bn_eps, (int, float)) and self.bn_eps > 0):
            raise ValueError(f"bn_eps: expected a number > 0, got {self.bn_eps!r}")
        if not (isinstance(self.bn_momentum, (int, float)) and 0 <= self.bn_momentum < 1):
            raise ValueError(f"bn_momentum: expected a number in [0, 1), got {self.bn_momentum!r}")

    @property
    def depth(self) -> int:
        """Number of affine layers ``L``."""
        return len(self.sizes) - 1

    @property
    def n_in(self) -> int:
        return self.sizes[0]

    @property
    def n_out(self) -> int:
        return self.sizes[-1]

    def param_shapes(self):
        """``[(W shape, b shape or None), ...]`` for each layer."""
        return [((a, b), (b,) if self.use_bias else None) for a, b in zip(self.sizes[:-1], self.sizes[1:])]

    def has_bn(self, l: int) -> bool:
        """Whether layer ``l`` (1-based) is followed by batch norm (hidden layers of a batchnorm model)."""
        return self.batchnorm and l < self.depth

    @property
    def num_params(self) -> int:
        bn = sum(2 * n for l, n in enumerate(self.sizes[1:], start=1) if self.has_bn(l))
        return sum(math.prod(w) + (b[0] if b else 0) for w, b in self.param_shapes()) + bn


def init(model: MLP, key: jax.Array, scheme: str = "xavier", dtype=jnp.float32):
    r"""Initial parameters for ``model``.

    Schemes (``fan_in = n_{l-1}``, ``fan_out = n_l``):

    * ``"higham"``: :math:`W, b \sim 0.5\,\mathcal N(0,1)` (Higham & Higham, Higham & Higham notes (2024-09-10)).
    * ``"cs231n"``: :math:`W \sim 0.01\,\mathcal N(0,1)`, :math:`b=0` (the cs231n program in Matrix Backprop (2019-05-15)).
    * ``"normal"``: :math:`W \sim \mathcal N(0,1)`, :math:`b=0` (the PyTorch tutorial program in Matrix Backprop (2019-05-15), ``np.random.randn``).
    * ``"xavier"`` / ``"glorot"``: :math:`W\sim\mathcal N(0, 2/(fan_{in}+fan_{out}))`, :math:`b=0`.
    * ``"he"``: :math:`W\sim\mathcal N(0, 2/fan_{in})`, :math:`b=0`.

    Batch-norm layers start at :math:`\gamma = 1, \beta = 0`.

    Returns:
      a tuple of one :class:`~jaxmlp.dense.Dense` ``(W, b, gamma, beta)`` per layer: ``W``
      :math:`(n_{l-1}, n_l)`, ``b`` :math:`(n_l,)` (``None`` without bias), ``gamma`` and ``beta``
      :math:`(n_l,)` on batch-norm layers (else ``None``).
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected a jaxmlp.MLP, got {type(model).__name__}")
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"scheme: expected an init scheme in {list(INIT_SCHEMES)}, got unknown {scheme!r}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype: expected a floating dtype, got {jnp.dtype(dtype)}")
    if jnp.dtype(dtype) == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype: float64 needs JAX's x64 mode; got it off. Add the one line "
                         "jax.config.update('jax_enable_x64', True) at the start of the program "
                         "(the CLI's --dtype float64 does it itself)")
    key = as_key("key", key)
    params = []
    for k, ((n_in, n_out), b_shape) in zip(jax.random.split(key, model.depth), model.param_shapes()):
        kw, kb = jax.random.split(k)
        std = {
            "higham": 0.5,
            "cs231n": 0.01,
            "normal": 1.0,
            "xavier": math.sqrt(2.0 / (n_in + n_out)),
            "glorot": math.sqrt(2.0 / (n_in + n_out)),
            "he": math.sqrt(2.0 / n_in),
        }[scheme]
        W = std * jax.random.normal(kw, (n_in, n_out), dtype)
        if b_shape is None:
            b = None
        elif scheme == "higham":
            b = std * jax.random.normal(kb, b_shape, dtype)
        else:
            b = jnp.zeros(b_shape, dtype)
        l = len(params) + 1
        gamma, beta = (jnp.ones((n_out,), dtype), jnp.zeros((n_out,), dtype)) if model.has_bn(l) else (None, None)
        params.append(Dense(W, b, gamma, beta))
    return tuple(params)


def init_state(model: MLP, dtype=jnp.float32):
    """Batch-norm running statistics (mean 0, variance 1) for each hidden layer; ``None`` entries elsewhere.

    Batch norm's state is threaded functionally: :func:`jaxmlp.value_grad_and_state` returns it updated,
    :func:`jaxmlp.predict` (``state=``) evaluates with it, and :func:`jaxmlp.train.train` (``state=``)
    carries it through every step.
    """
    from jaxmlp.batchnorm import BNState

    return tuple(BNState(jnp.zeros((n,), dtype), jnp.ones((n,), dtype)) if model.has_bn(l) else None
                 for l, n in enumerate(model.sizes[1:], start=1))
