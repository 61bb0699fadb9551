r"""The network: forward pass, objective, and the hand-derived gradient.

Forward (batch-first, Batch Backprop (2019-05-06)):

.. math::  A^0 = X,\qquad Z^l = A^{l-1}W^l + b^l,\qquad A^l = g(Z^l)\ (l<L),

and the head turns :math:`Z^L` into the loss.  The objective is

.. math::  J = \text{head}(Z^L, Y) + \frac{\lambda_2}{2}\sum_l\|W^l\|_F^2 + \lambda_1\sum_l\|W^l\|_1 .

Backward, the batched matrix recursion (Batch Backprop (2019-05-06) "summary"; DNN Maths (2020-01-12) by matrix
differentials), with :math:`\delta^l = \partial J/\partial Z^l`:

.. math::
   \delta^L &= \text{fused head delta}\\
   \nabla_{W^l}J &= (A^{l-1})^\top\delta^l + \lambda_2 W^l + \lambda_1\mathrm{sign}(W^l)\\
   \nabla_{b^l}J &= \textstyle\sum_{\text{rows}}\delta^l\\
   \delta^{l-1} &= (\delta^l (W^l)^\top)\odot g'(Z^{l-1}).

The 1/m of a mean loss lives in :math:`\delta^L` alone (Batch Backprop (2019-05-06) writes the
loss as a sum but the gradients with 1/m; here the two agree).

The pieces sit beside their derivatives: :func:`forward` and :func:`backward` here,
:func:`jaxmlp.dense.dense_forward` / :func:`~jaxmlp.dense.dense_backward`, the activations of
:data:`jaxmlp.activations.ACTIVATIONS`, the heads of :data:`jaxmlp.heads.HEADS`, and
:func:`jaxmlp.regularizers.penalty` / :func:`~jaxmlp.regularizers.penalty_grad`.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from jaxmlp import checks
from jaxmlp.activations import get_activation
from jaxmlp.batchnorm import BatchNorm, bn_backward, bn_eval, bn_forward, update_running
from jaxmlp.dense import dense_backward, dense_forward
from jaxmlp.heads import get_head, weighted_loss_and_delta
from jaxmlp.model import MLP
from jaxmlp.regularizers import add_penalty_grad, penalty


def _forward(model: MLP, params, x, state=None, train=True):
    """Forward pass with batch norm: ``(zs, as_, bn_caches, bn_stats)``."""
    g = get_activation(model.activation).forward
    a, zs, as_, caches, stats = x, [], [x], [], []
    for l, p in enumerate(params, start=1):
        z = dense_forward(p, a)  # (m, n_l)
        if model.has_bn(l):
            bn = BatchNorm(p.gamma, p.beta)
            if train:
                z, cache, batch = bn_forward(bn, z, model.bn_eps)
                caches.append(cache)
                stats.append(batch)
            else:
                z = bn_eval(bn, state[l - 1], z, model.bn_eps)
        zs.append(z)
        if l < model.depth:
            a = g(z)
            as_.append(a)
    return zs, as_, caches, stats


def forward(model: MLP, params, x, *, state=None, train=True):
    """Forward pass keeping the cache: returns ``(zs, as_)`` with ``as_[0] = x``.

    ``zs[l-1]`` is the activation input of layer ``l`` (:math:`Z^l`, or its
    batch-normalised value for a batchnorm model) and ``as_[l]`` is
    :math:`A^l`; the last entry of ``zs`` is the head's input :math:`Z^L`.
    ``train=False`` normalises with the running statistics ``state``.  No input checks.
    """
    zs, as_, _, _ = _forward(model, params, x, state, train)
    return zs, as_


def loss(model: MLP, params, x, y, *, l1=0.0, l2=0.0, check=True, state=None, train=True, weights=None):
    r"""The scalar objective :math:`J` (data loss of the head + weight penalties).

    Plain ``jnp``; this is the function that ``jax.grad`` differentiates in the
    verification.  ``y`` may be integer class labels (m,) for classification
    heads or targets of shape (m, n_L).  Batch-norm models use the batch
    statistics (``train=True``) or the running ``state`` (``train=False``).  ``weights`` (m,) of 0 and 1
    leaves the rows of weight 0 out of the data loss (padding: :func:`jaxmlp.heads.weighted_loss_and_delta`).
    """
    x, y = checks.check_all(model, params, x, y, l1, l2, check, state=state, train=train, weights=weights)
    zs, _ = forward(model, params, x, state=state, train=train)
    return weighted_loss_and_delta(get_head(model.head), zs[-1], y, weights)[0] + penalty(params, l1, l2)


class Backward(NamedTuple):
    r"""What :func:`backward` returns: the grads (mirroring ``params``) and :math:`\partial J/\partial X`."""

    grads: Any
    input_grad: Any  # (m, n_0): delta^1 (W^1)^T


class ValueAndInputGrads(NamedTuple):
    """What :func:`value_and_input_grads` returns: ``(value, grads, input_grad, target_grad)``."""

    value: Any
    grads: Any
    input_grad: Any  # dJ/dX, (m, n_0)
    target_grad: Any  # dJ/dY at the one-hot (or given) targets, (m, n_L)


def backward(model: MLP, params, zs, as_, delta_L, *, l1=0.0, l2=0.0, bn_caches=(), derivative=None,
             layer_backward=dense_backward) -> Backward:
    r"""The batched delta recursion from a given :math:`\delta^L` (m, n_L): ``Backward(grads, input_grad)``.

    For a batch-norm layer the delta at the activation input goes through
    :func:`jaxmlp.batchnorm.bn_backward` first (giving :math:`d\gamma, d\beta`
    and the delta at the affine output).

    This is the one backward recursion of the project; two hooks let other
    objectives reuse it:

    * ``derivative(z, a) -> g'(z)``: the hidden activation's derivative
      (default: the model's own).  The bug catalogue swaps in wrong ones.
    * ``layer_backward(p, a_prev, delta) -> (Dense grads, d_a_prev)``: the
      affine layer's backward (default :func:`jaxmlp.dense.dense_backward`,
      which sums over the batch).  The residual Jacobian passes a per-example
      one, which keeps a row per example.

    ``input_grad`` is :math:`\partial J/\partial X = \delta^1 (W^1)^\top`, the last layer backward's
    output (free: the recursion computes it anyway).
    """
    act = get_activation(model.activation)
    derivative = act.derivative if derivative is None else derivative
    grads = [None] * model.depth
    delta = delta_L  # (m, n_L)
    for l in range(model.depth, 0, -1):
        p = params[l - 1]
        dbn = None
        if model.has_bn(l):
            dbn, delta = bn_backward(BatchNorm(p.gamma, p.beta), bn_caches[l - 1], delta)
        g, d_a_prev = layer_backward(p, as_[l - 1], delta)
        g = add_penalty_grad(g, p, l1, l2)
        grads[l - 1] = g if dbn is None else g._replace(gamma=dbn.gamma, beta=dbn.beta)
        if l > 1:
            delta = d_a_prev * derivative(zs[l - 2], as_[l - 1])  # (m, n_{l-1})
    return Backward(tuple(grads), d_a_prev)


def _new_state(model, state, stats, m):
    it = iter(stats)
    return tuple(update_running(s, *next(it), m, model.bn_momentum, model.bn_unbiased) if model.has_bn(l) else None
                 for l, s in enumerate(state, start=1))


def value_and_grad(model: MLP, params, x, y, *, l1=0.0, l2=0.0, check=True, weights=None):
    r"""``(J, grads)`` by the hand-derived backward pass, always (never ``jax.grad``); grads mirror ``params``.

    A batch-norm model trains on batch statistics here; :func:`value_grad_and_state` also returns the
    running statistics updated, and :func:`value_and_input_grads` the derivatives in ``x`` and ``y``.
    ``weights`` (m,) of 0 and 1 leaves the rows of weight 0 out (padding rows of multi-process data):
    the loss is the mean over the rows of weight 1, and so is the gradient, by a weighted
    :math:`\delta^L` (:func:`jaxmlp.heads.weighted_loss_and_delta`) through the same backward recursion.
    """
    x, y = checks.check_all(model, params, x, y, l1, l2, check, train=True, weights=weights)
    value, back, _, _ = _value_and_backward(model, params, x, y, l1, l2, weights)
    return value, back.grads


def value_grad_and_state(model: MLP, params, x, y, state, *, l1=0.0, l2=0.0, check=True):
    """``(J, grads, new_state)``: :func:`value_and_grad` on batch statistics, and batch norm's running
    ``state`` updated with them."""
    x, y = checks.check_all(model, params, x, y, l1, l2, check, state=state, train=True)
    value, back, stats, _ = _value_and_backward(model, params, x, y, l1, l2)
    return value, back.grads, _new_state(model, state, stats, x.shape[0])


def value_and_input_grads(model: MLP, params, x, y, *, l1=0.0, l2=0.0, check=True) -> ValueAndInputGrads:
    """``ValueAndInputGrads(J, grads, dJ/dX, dJ/dY)``; ``dJ/dY`` is the head's target derivative at the
    one-hot (or given) targets."""
    x, y = checks.check_all(model, params, x, y, l1, l2, check, train=True)
    value, back, _, z_L = _value_and_backward(model, params, x, y, l1, l2)
    return ValueAndInputGrads(value, back.grads, back.input_grad, get_head(model.head).target_delta(z_L, y))


def _value_and_backward(model, params, x, y, l1, l2, weights=None):
    """The loss, the :class:`Backward`, the batch statistics and :math:`Z^L`, on checked ``x`` and ``y``."""
    zs, as_, caches, stats = _forward(model, params, x)
    data_loss, delta_L = weighted_loss_and_delta(get_head(model.head), zs[-1], y, weights)
    value = data_loss + penalty(params, l1, l2)
    back = backward(model, params, zs, as_, delta_L, l1=l1, l2=l2, bn_caches=_per_layer(model, caches))
    return value, back, stats, zs[-1]


def _per_layer(model, caches):
    it = iter(caches)
    return tuple(next(it) if model.has_bn(l) else None for l in range(1, model.depth + 1))


def batch_stats_update(model: MLP, params, x, state):
    """The running statistics after one train-mode forward pass on ``x`` (for autodiff-based loops)."""
    _, _, _, stats = _forward(model, params, x)
    return _new_state(model, state, stats, x.shape[0])


def predict(model: MLP, params, x, *, check=True, state=None):
    """Network output: the head's output activation of :math:`Z^L` (probabilities, sigmoid, or identity).

    Batch-norm models predict in eval mode and need their running ``state``
    (:func:`jaxmlp.init_state`, updated by :func:`value_grad_and_state`); any batch size works there.
    """
    if getattr(model, "batchnorm", False) and state is None:
        raise ValueError("state: a batchnorm model predicts with its running statistics; pass state=...")
    x, _ = checks.check_all(model, params, x, None, check=check, state=state, train=False)
    zs, _ = forward(model, params, x, state=state, train=False)
    return get_head(model.head).output(zs[-1])
