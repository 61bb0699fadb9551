"""jaxmlp: multilayer perceptrons with hand-derived backprop, verified against autodiff.

``__all__`` is the network, its derivatives and the least-squares solver, plus two namespaces:
:mod:`jaxmlp.optim` (the optimizers) and :mod:`jaxmlp.train` (``train.train``, ``train.manual_grad``,
``train.autodiff_grad``, ``train.Checkpointer``).  The other submodules are loaded too, so that
``jaxmlp.data.spiral()`` or ``jaxmlp.population.train_population`` work after ``import jaxmlp``, and
are documented as modules: :mod:`jaxmlp.data`, :mod:`jaxmlp.checkpoint`, :mod:`jaxmlp.population`,
:mod:`jaxmlp.distributed`, :mod:`jaxmlp.sharding`, :mod:`jaxmlp.samplers`, :mod:`jaxmlp.loop`.
"""
from jaxmlp.activations import ACTIVATIONS, Activation, get_activation
from jaxmlp import optim, train
from jaxmlp import checkpoint, data, distributed, loop, population, samplers, sharding  # noqa: F401 -- modules, not in __all__
from jaxmlp.network import (Backward, ValueAndInputGrads, backward, batch_stats_update, forward, loss, predict,
                            value_and_grad, value_and_input_grads, value_grad_and_state)
from jaxmlp.batchnorm import BatchNorm, BNState, bn_backward, bn_forward
from jaxmlp.dense import Dense, dense_backward, dense_forward
from jaxmlp.heads import HEADS, Head, get_head
from jaxmlp.least_squares import jacobian as residual_jacobian
from jaxmlp.least_squares import residuals
from jaxmlp.lemma1 import lemma1_grad
from jaxmlp.manual_vjp import loss_with_manual_vjp
from jaxmlp.gauss_newton import gauss_newton_product
from jaxmlp.levenberg_marquardt import LMResult, StopReason, levenberg_marquardt, lm_step
from jaxmlp.model import INIT_SCHEMES, MLP, init, init_state
from jaxmlp.regularizers import penalty, penalty_grad

__version__ = "0.2.0"

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "BNState",
    "Backward",
    "BatchNorm",
    "Dense",
    "HEADS",
    "Head",
    "StopReason",
    "INIT_SCHEMES",
    "LMResult",
    "MLP",
    "backward",
    "batch_stats_update",
    "bn_backward",
    "bn_forward",
    "dense_backward",
    "dense_forward",
    "forward",
    "gauss_newton_product",
    "get_activation",
    "get_head",
    "init",
    "init_state",
    "lemma1_grad",
    "levenberg_marquardt",
    "lm_step",
    "loss",
    "loss_with_manual_vjp",
    "optim",
    "penalty",
    "penalty_grad",
    "predict",
    "residual_jacobian",
    "residuals",
    "train",
    "value_and_grad",
    "value_and_input_grads",
    "value_grad_and_state",
    "ValueAndInputGrads",
]
