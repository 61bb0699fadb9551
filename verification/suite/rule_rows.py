"""Verification rows of jaxmlp's own rules, checked by the rule checkers it ships.

* ``rules/loss_with_manual_vjp``: the hand-derived backward as a ``custom_vjp`` of :func:`jaxmlp.loss`
  (params, x, targets, l1 and l2), every activation x head, and a batch-norm net;
* ``rules/layer``: every layer backward through :func:`verification.check_vjp` (dense, activations,
  batch norm, the heads' fused deltas with their target derivatives);
* ``rules/gauss_newton``: :func:`jaxmlp.gauss_newton_product` against the generalised Gauss–Newton
  product of the loss's linearisation (:func:`verification.check_hvp`).
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

import jaxmlp
from jaxmlp.batchnorm import BatchNorm, bn_backward, bn_forward
from jaxmlp.dense import Dense, dense_backward, dense_forward
from verification.suite.comparison import Comparison
from verification.checker.rules.curvature import check_hvp
from verification.catalogue.data import random_data
from verification.suite.levenberg_marquardt import LS_HEADS
from verification.suite.problems import grid_problem, mlp_problem
from verification.suite.rows import Row
from verification.checker.rules.vjp_checks import check_custom_vjp, check_vjp

F64 = jnp.float64
MANUAL_VJP = "custom_vjp of loss: hand-derived backward (params, dX = delta^1 W^1T, dY, dl1, dl2) vs autodiff of loss"


def _row(name, derivation, report) -> Row:
    worst = next((b for b in report.blocks if not b.passed), max(report.blocks, key=lambda b: b.result.max_rel))
    where = report.findings[0].explanation if report.findings else worst.result.where
    return Row.from_comparison(name, derivation, Comparison(max(b.result.max_abs for b in report.blocks),
                                                            report.max_rel, report.passed, where), report.rtol)


def manual_vjp_rows(select=None):
    """Every activation x head, and a batch-norm net; with ``select`` (``select(act, head) -> bool``; the test
    suite's sample), the pairs it keeps, and the batch-norm net."""
    for i, (act, head) in enumerate(itertools.product(jaxmlp.ACTIVATIONS, jaxmlp.HEADS)):
        if select is not None and not select(act, head):
            continue
        model, params, x, y = grid_problem(act, head, 3, 3, 4, seed=40 + i)
        report = check_custom_vjp(jaxmlp.loss_with_manual_vjp, model, params, x, y, 0.01, 0.1)
        yield _row(f"rules/loss_with_manual_vjp/{act}/{head}", MANUAL_VJP, report)
    p = mlp_problem((3, 4, 2), "relu", "softmax_cross_entropy", m=6, batchnorm=True, seed=3)
    report = check_custom_vjp(jaxmlp.loss_with_manual_vjp, p.model, p.params, p.x, p.y, 0.0, 0.05)
    yield _row("rules/loss_with_manual_vjp/batchnorm", MANUAL_VJP + " (batch statistics)", report)


def layer_rows():
    k = jax.random.split(jax.random.key(50), 4)
    p = Dense(jax.random.normal(k[0], (4, 3), F64), jax.random.normal(k[1], (3,), F64))
    a = jax.random.normal(k[2], (5, 4), F64)
    yield _row("rules/layer/dense", "dW=A^T d, db=sum d, dA=d W^T",
               check_vjp(dense_forward, lambda p, a: (dense_forward(p, a), lambda g: dense_backward(p, a, g)), p, a))
    for name, act in jaxmlp.ACTIVATIONS.items():
        z = (3 * jax.random.normal(k[3], (4, 3), F64)).at[0, 0].set(0.0)

        def act_vjp(z, act=act):
            a = act.forward(z)
            return a, lambda g: (g * act.derivative(z, a),)

        yield _row(f"rules/layer/activation/{name}", f"{name}' closed form (relu'(0)=0)", check_vjp(act.forward, act_vjp, z))
    bn = BatchNorm(jax.random.normal(k[0], (3,), F64), jax.random.normal(k[1], (3,), F64))

    def bn_vjp(p, z):
        out, cache, _ = bn_forward(p, z, 1e-5)
        return out, lambda g: bn_backward(p, cache, g)

    yield _row("rules/layer/batchnorm", "dz = gamma inv_std/m (m dy - sum dy - xhat sum dy xhat)",
               check_vjp(lambda p, z: bn_forward(p, z, 1e-5)[0], bn_vjp, bn, jax.random.normal(k[2], (6, 3), F64)))
    for name, head in jaxmlp.HEADS.items():
        z, y = random_data(60, 5, 3, 3, classes=head.classes)

        def head_vjp(z, y, head=head):
            return head.loss(z, y), lambda g: (g * head.delta(z, y), g * head.target_delta(z, y))

        yield _row(f"rules/head/{name}", "fused delta dJ/dZ and target derivative dJ/dY",
                   check_vjp(head.loss, head_vjp, z, y))


# Each least-squares head's loss written out again in its residuals r = vec(Y - F): J = (c/2)||r||^2 (the
# reference for the Gauss-Newton rows, independent of the heads' own residual_scale; a new least-squares
# head without an entry here fails the rows with a KeyError).
OUTER = {"sum_squares": lambda r, m, n: jnp.sum(r ** 2), "mse": lambda r, m, n: jnp.sum(r ** 2) / (m * n),
         "sigmoid_quadratic": lambda r, m, n: jnp.sum(r ** 2) / (2 * m)}


def gauss_newton_rows(select=None):
    """Three activations x every least-squares head; with ``select`` (``select(act, head) -> bool``; the test
    suite's sample), the pairs it keeps."""
    for i, (act, head) in enumerate(itertools.product(("tanh", "relu", "sigmoid"), LS_HEADS)):
        if select is not None and not select(act, head):
            continue
        model, params, x, y = grid_problem(act, head, 3, 3, 5, seed=70 + i, n_out=2)
        residuals = lambda p, x, y, model=model: jaxmlp.residuals(model, p, x, y, check=False)  # noqa: E731
        outer = lambda r, x, y, head=head: OUTER[head](r, *y.shape)  # noqa: E731
        gn = lambda p, v, x, y, model=model: jaxmlp.gauss_newton_product(model, p, v, x, y, check=False)  # noqa: E731
        yield _row(f"rules/gauss_newton/{act}/{head}", "Gv = c J^T (J v): tangent forward, then the delta recursion",
                   check_hvp((residuals, outer), gn, params, x, y, kind="gauss_newton"))
