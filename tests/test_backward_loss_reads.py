"""The slip is in the loss, not in the hand gradient: the loss reads one value where another belongs (an
argument repeated at a call, the row weights read where the per-row losses belong), and the hand gradient
is exactly the gradient of the loss the user meant (verification/checker/backward/loss_reads.py).  The
line to fix is the loss's, and the cause says that autodiff is the wrong side."""

import jax
import jax.numpy as jnp

from verification import check_gradients
from verification.catalogue.backward import line_of, ranked

M, N, C = 6, 4, 3
X = jax.random.normal(jax.random.PRNGKey(0), (M, N))
Y = jax.random.normal(jax.random.PRNGKey(1), (M, C))
W = jnp.asarray([1.0, 1.0, 0.0, 1.0, 0.0, 1.0])  # (m,) padding rows weigh 0
P = {"W": 0.5 * jax.random.normal(jax.random.PRNGKey(2), (N, C)), "b": 0.1 * jnp.ones(C)}


def squared_error(pred, target):
    return jnp.sum((pred - target) ** 2, axis=1)  # (m,)


def loss_repeated(p, x, y):
    z = x @ p["W"] + p["b"][None, :]  # noqa: F841 -- computed, then not passed
    return 0.5 * jnp.mean(squared_error(y, y))  # the slip: y passed for the prediction


def loss_weights(p, x, y):
    z = x @ p["W"] + p["b"][None, :]
    per_row = 0.5 * squared_error(z, y)  # noqa: F841 -- (m,) computed, then not read
    return jnp.sum(W * W) / jnp.sum(W)  # the slip: the weights read where the per-row losses belong


def grad_mean(p, x, y):
    """Right for ``0.5 * mean(|z - y|^2)``."""
    delta = (x @ p["W"] + p["b"][None, :] - y) / x.shape[0]  # (m, C)
    return {"W": x.T @ delta, "b": jnp.sum(delta, axis=0)}


def grad_weighted(p, x, y):
    """Right for ``sum(W * per_row) / sum(W)``."""
    delta = W[:, None] * (x @ p["W"] + p["b"][None, :] - y) / jnp.sum(W)  # (m, C)
    return {"W": x.T @ delta, "b": jnp.sum(delta, axis=0)}


def test_an_argument_repeated_in_the_loss_names_the_call_not_the_hand_gradient():
    rep = check_gradients(loss_repeated, grad_mean, P, X, Y)
    assert not rep.passed and rep.backward.cause == "loss_operand", rep.backward
    assert ranked(rep)[0] == line_of(loss_repeated, "squared_error(y, y)"), rep.backward.lines
    assert "hand gradient is exactly the gradient of the loss" in rep.backward.explanation


def test_the_weights_read_where_the_per_row_losses_belong_names_that_line():
    rep = check_gradients(loss_weights, grad_weighted, P, X, Y)
    assert not rep.passed and rep.backward.cause == "loss_operand", rep.backward
    assert ranked(rep)[0] == line_of(loss_weights, "jnp.sum(W * W)"), rep.backward.lines


def test_a_wrong_hand_gradient_of_a_right_loss_is_not_blamed_on_the_loss():
    def loss(p, x, y):
        return 0.5 * jnp.mean(squared_error(x @ p["W"] + p["b"][None, :], y))

    def grad_sign(p, x, y):
        delta = (y - x @ p["W"] - p["b"][None, :]) / x.shape[0]  # the sign flipped
        return {"W": x.T @ delta, "b": jnp.sum(delta, axis=0)}

    rep = check_gradients(loss, grad_sign, P, X, Y)
    assert not rep.passed and rep.backward.cause != "loss_operand", rep.backward
    assert ranked(rep)[0] == line_of(grad_sign, "delta = (y - x"), rep.backward.lines


def test_a_metric_the_loss_computes_and_drops_does_not_turn_a_hand_slip_into_a_loss_slip():
    """An unreturned accuracy is a value the loss never reads, but it reaches the parameters only through
    ``argmax``: read in the penalty's place it would only drop a term, the hand code's own slip here."""
    def loss(p, x, y):
        z = x @ p["W"] + p["b"][None, :]
        acc = jnp.mean(jnp.argmax(z, 1) == jnp.argmax(y, 1))  # noqa: F841 -- a metric, computed, not returned
        return 0.5 * jnp.mean(squared_error(z, y)) + 0.3 * jnp.mean(z ** 2)

    def grad_penalty_dropped(p, x, y):
        delta = (x @ p["W"] + p["b"][None, :] - y) / x.shape[0]  # the activation penalty's term dropped
        return {"W": x.T @ delta, "b": jnp.sum(delta, axis=0)}

    rep = check_gradients(loss, grad_penalty_dropped, P, X, Y)
    assert not rep.passed and rep.backward.cause != "loss_operand", rep.backward
    assert ranked(rep)[0] == line_of(grad_penalty_dropped, "delta = (x @"), rep.backward.lines
