"""The backward localisation where the trace cannot see the mistake: a name handed on where an operation
was meant (``du = dr``), a term set to zero, a right quantity returned in the wrong place, and a line that
computes a right quantity for another role."""
import inspect

import jax
import jax.numpy as jnp

from verification import check_custom_vjp, check_gradients
from verification.catalogue.backward import line_of

M, N, H, C = 6, 4, 5, 3
X = jax.random.normal(jax.random.PRNGKey(0), (M, N))
Y = jax.random.normal(jax.random.PRNGKey(3), (M, C))
P = {"W1": 0.5 * jax.random.normal(jax.random.PRNGKey(1), (N, H)), "W2": 0.5 * jax.random.normal(
    jax.random.PRNGKey(2), (H, H)), "W3": 0.5 * jax.random.normal(jax.random.PRNGKey(4), (H, C))}


def first_line(report):
    return report.backward.lines[0].split()[0].split("/")[-1]


def loss(p, x, y):
    h = jnp.tanh(x @ p["W1"])
    r = h + jnp.tanh(h @ p["W2"])  # a residual block
    return 0.5 * jnp.mean(jnp.sum((r @ p["W3"] - y) ** 2, axis=1))


def grad_block(p, x, y):
    """The block's tanh' forgotten by a rename: du and dr are one value, read on one line by both names."""
    h = jnp.tanh(x @ p["W1"])
    t = jnp.tanh(h @ p["W2"])
    r = h + t
    d_out = (r @ p["W3"] - y) / x.shape[0]
    dr = d_out @ p["W3"].T
    du = dr
    dh = dr + du @ p["W2"].T
    dz1 = dh * (1 - h ** 2)
    return {"W1": x.T @ dz1, "W2": h.T @ du, "W3": r.T @ d_out}


def test_a_rename_where_an_operation_was_meant_is_named_even_when_both_names_share_a_line():
    rep = check_gradients(loss, grad_block, P, X, Y)
    assert not rep.passed and first_line(rep) == line_of(grad_block, "du = dr"), rep.backward.lines
    assert rep.backward.cause == "derivative_dropped" and "tanh" in rep.backward.explanation


def grad_zero(p, x, y):
    """The skip connection's term set to zero."""
    h = jnp.tanh(x @ p["W1"])
    t = jnp.tanh(h @ p["W2"])
    r = h + t
    d_out = (r @ p["W3"] - y) / x.shape[0]
    dr = d_out @ p["W3"].T
    du = dr * (1 - t ** 2)
    skip = 0.0
    dh = skip - du @ p["W2"].T * -1.0
    dz1 = dh * (1 - h ** 2)
    return {"W1": x.T @ dz1, "W2": h.T @ du, "W3": r.T @ d_out}


def test_a_term_set_to_zero_is_named_at_its_assignment():
    rep = check_gradients(loss, grad_zero, P, X, Y)
    assert not rep.passed and first_line(rep) == line_of(grad_zero, "skip = 0.0"), rep.backward.lines


def grad_no_derivative(p, x, y):
    """The block's output cotangent used as its input's: right for another role."""
    h = jnp.tanh(x @ p["W1"])
    t = jnp.tanh(h @ p["W2"])
    r = h + t
    d_out = (r @ p["W3"] - y) / x.shape[0]
    dr = d_out @ p["W3"].T
    du = dr @ jnp.eye(H)
    dh = dr + du @ p["W2"].T
    dz1 = dh * (1 - h ** 2)
    return {"W1": x.T @ dz1, "W2": h.T @ du, "W3": r.T @ d_out}


def test_a_line_that_computes_a_right_quantity_for_another_role():
    rep = check_gradients(loss, grad_no_derivative, P, X, Y)
    assert not rep.passed and first_line(rep) == line_of(grad_no_derivative, "du = dr @"), rep.backward.lines
    assert rep.backward.cause == "derivative_dropped", rep.backward.explanation
    assert "where ∂L/∂" in rep.backward.explanation


@jax.custom_vjp
def softmax_rows(x):
    return jax.nn.softmax(x, axis=1)


def _fwd(x):
    s = jax.nn.softmax(x, axis=1)
    return s, s


softmax_rows.defvjp(_fwd, lambda s, g: (s,))  # bwd: the cotangent forgotten, the residual handed back
BWD_LINE = f"test_backward_renames.py:{inspect.getsourcelines(_fwd)[1] + 5}"


def test_a_bwd_that_hands_back_its_residual_is_named_at_its_return():
    rep = check_custom_vjp(softmax_rows, X)
    assert not rep.passed and rep.backward is not None
    assert first_line(rep) == BWD_LINE and "defvjp" in rep.backward.lines[0], rep.backward.lines


def test_a_leaf_left_none_is_named_at_the_conditional_that_hands_it_on():
    """A pytree mismatch (a bias gradient left ``None`` by an inverted condition): no value is wrong, so the
    lines come from the source: the conditional whose array branch never ran is first."""
    def loss_b(p, x, y):
        return 0.5 * jnp.mean(jnp.sum((jnp.tanh(x @ p["W"] + p["b"][None, :]) - y) ** 2, axis=1))

    def grad_b(p, x, y):
        h = jnp.tanh(x @ p["W"] + p["b"][None, :])
        dz = (h - y) * (1 - h ** 2) / x.shape[0]
        db = None if p["b"] is not None else jnp.sum(dz, axis=0)
        return {"W": x.T @ dz, "b": db}

    p = {"W": P["W1"][:, :C], "b": jnp.ones(C)}
    r = check_gradients(loss_b, grad_b, p, X, Y)
    assert not r.passed and r.structure_error and r.backward is not None, str(r)
    assert first_line(r) == line_of(grad_b, "db = None") and r.backward.cause == "structure", str(r)
