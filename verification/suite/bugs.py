"""A catalogue of planted hand-derivation bugs; the checker must name each one's cause.

Every entry is ``(architecture, bug, expected cause)``.  A buggy gradient is
jaxmlp's own backward with one mistake put in, the kind people make by hand.
``python -m verification --bugs`` runs the catalogue and prints the accuracy.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict

import jax
import jax.numpy as jnp

import jaxmlp
from jaxmlp.heads import get_head
from jaxmlp.network import backward, forward
from verification.checker.gradients.check import check_gradients
from verification.suite.problems import mlp_problem

PLANTED_LAMBDA = 0.05  # the strength of a planted extra penalty term

ARCHS = {  # name: (sizes, activation, head)
    "relu 3-5-2 softmax": ((3, 5, 2), "relu", "softmax_cross_entropy"),
    "relu 4-4-4-3 softmax": ((4, 4, 4, 3), "relu", "softmax_cross_entropy"),
    "sigmoid 2-3-3-2 quadratic": ((2, 3, 3, 2), "sigmoid", "sigmoid_quadratic"),
    "tanh 5-6-1 mse": ((5, 6, 1), "tanh", "mse"),
}


def _vg(model, params, x, y, l1=0.0, l2=0.0):
    return jaxmlp.value_and_grad(model, params, x, y, l1=l1, l2=l2, check=False)[1]


def _leafmap(fn):
    return lambda g: jax.tree.map(fn, g)


def manual_with(model, params, x, y, l1, l2, derivative=None, naive_softmax=False):
    """jaxmlp's hand-derived gradient with one piece replaced: the activation derivative, or the softmax delta."""
    zs, as_ = forward(model, params, x)
    yy = jax.nn.one_hot(y, model.n_out, dtype=x.dtype) if y.ndim == 1 else y
    if naive_softmax:
        e = jnp.exp(zs[-1])  # overflows at large logits: np.exp(scores) as in the cs231n program
        delta = (e / jnp.sum(e, axis=1, keepdims=True) - yy) / x.shape[0]
    else:
        delta = get_head(model.head).delta(zs[-1], yy)
    return backward(model, params, zs, as_, delta, l1=l1, l2=l2, derivative=derivative).grads


def _swap_first_two_W(g):
    return (g[0]._replace(W=g[1].W), g[1]._replace(W=g[0].W)) + tuple(g[2:])


def _transpose_W(layer):
    return lambda g: tuple(d._replace(W=d.W.T) if i == layer else d for i, d in enumerate(g))


@dataclasses.dataclass
class Bug:
    name: str
    cause: str
    manual: Callable  # (model, params, x, y, l1, l2) -> grads
    kwargs: Dict = dataclasses.field(default_factory=dict)  # regulariser strengths given to both sides
    applies: Callable = lambda model: True
    x_scale: float = 1.0
    zero_rows: bool = False


BUGS = [
    Bug("gradient not divided by m", "mean_sum_confused", lambda M, p, x, y, l1, l2: _leafmap(lambda t: x.shape[0] * t)(_vg(M, p, x, y))),
    Bug("sign flipped", "sign_flipped", lambda M, p, x, y, l1, l2: _leafmap(lambda t: -t)(_vg(M, p, x, y, l1, l2)),
        {"l2": 0.1}),
    Bug("1/2 of the loss dropped", "factor_2", lambda M, p, x, y, l1, l2: _leafmap(lambda t: 2 * t)(_vg(M, p, x, y))),
    Bug("layer 1 W transposed", "transposed", lambda M, p, x, y, l1, l2: _transpose_W(0)(_vg(M, p, x, y))),
    Bug("layer 2 W transposed", "transposed", lambda M, p, x, y, l1, l2: _transpose_W(1)(_vg(M, p, x, y)),
        applies=lambda M: M.depth >= 3),
    Bug("L2 term forgotten", "l2_missing", lambda M, p, x, y, l1, l2: _vg(M, p, x, y, l1, 0.0), {"l2": 0.1}),
    Bug("L2 term added twice", "l2_extra", lambda M, p, x, y, l1, l2: _vg(M, p, x, y, l1, l2 + PLANTED_LAMBDA), {"l2": 0.1}),
    Bug("L1 term forgotten", "l1_missing", lambda M, p, x, y, l1, l2: _vg(M, p, x, y, 0.0, l2), {"l1": 0.03}),
    Bug("stray L1 term", "l1_extra", lambda M, p, x, y, l1, l2: _vg(M, p, x, y, l1 + PLANTED_LAMBDA, l2)),
    Bug("layers 1 and 2 W swapped", "wrong_leaf", lambda M, p, x, y, l1, l2: _swap_first_two_W(_vg(M, p, x, y)),
        applies=lambda M: M.depth >= 3 and M.sizes[0] == M.sizes[1] == M.sizes[2]),
    Bug("relu'(0) = 1 (Batch Backprop (2019-05-06)'s 1(z >= 0))", "kink",
        lambda M, p, x, y, l1, l2: manual_with(M, p, x, y, l1, l2,
                                                              derivative=lambda z, a: (z >= 0).astype(z.dtype)),
        # one hidden layer: zero rows of x put every hidden unit of row 0 on the kink; in deeper nets the
        # kinks chain, and node-wise subgradient conventions need not compose into one-sided bounds
        applies=lambda M: M.activation == "relu" and M.depth == 2, zero_rows=True),
    Bug("naive softmax exp, inputs scaled by 1e5", "overflow",
        lambda M, p, x, y, l1, l2: manual_with(M, p, x, y, l1, l2, naive_softmax=True),
        applies=lambda M: M.head == "softmax_cross_entropy", x_scale=1e5),
]


def problem(arch, bug, seed=0):
    sizes, act, head = ARCHS[arch]
    # xavier: zero biases, so zero rows of x give relu inputs of exactly 0
    return mlp_problem(sizes, act, head, m=6, seed=seed, init="xavier", x_scale=bug.x_scale,
                       zero_rows=1 if bug.zero_rows else 0)


def catalogue_cases():
    """Every applicable ``(arch, bug)`` pair, without running anything (a test collects them cheaply)."""
    for arch in ARCHS:
        for bug in BUGS:
            if bug.applies(jaxmlp.MLP(*ARCHS[arch])):
                yield arch, bug


def run_case(arch, bug):
    """The checker's report on one planted bug of one architecture."""
    model, params, x, y = problem(arch, bug)

    def manual(p, x, y, l1=0.0, l2=0.0):
        return bug.manual(model, p, x, y, l1, l2)

    def loss(p, x, y, l1=0.0, l2=0.0):
        return jaxmlp.loss(model, p, x, y, l1=l1, l2=l2, check=False)

    return check_gradients(loss, manual, params, x, y, **bug.kwargs)


def run_catalogue():
    """Yield ``(arch, bug, report, diagnosed causes)`` for every applicable pair."""
    for arch, bug in catalogue_cases():
        report = run_case(arch, bug)
        yield arch, bug, report, {d.cause for d in report.diagnoses}
