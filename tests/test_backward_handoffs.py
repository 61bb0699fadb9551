"""The backward-code localisation where the mistake computes nothing the trace can show: a leaf of the wrong
shape, a size taken from the wrong axis, a wrong argument at a call site, a right value returned for another
result (verification/checker/backward/sizes.py, handoffs.py).  Each line to fix is found in the user's
source, and each bug is written the way people write it."""
import json

import jax
import jax.numpy as jnp

from verification import check_gradients
from verification.catalogue.backward import line_of, ranked

M, N, H, C = 6, 4, 5, 3
X = jax.random.normal(jax.random.PRNGKey(0), (M, N))
Y = jax.random.normal(jax.random.PRNGKey(1), (M, C))
P = {"W1": 0.5 * jax.random.normal(jax.random.PRNGKey(2), (N, H)), "b1": 0.1 * jnp.ones(H),
     "W2": 0.5 * jax.random.normal(jax.random.PRNGKey(3), (H, C)), "b2": jnp.zeros(C)}
L1, L2 = 0.01, 0.1


def loss(p, x, y):
    h = jnp.tanh(x @ p["W1"] + p["b1"][None, :])
    z = h @ p["W2"] + p["b2"][None, :]
    return 0.5 * jnp.mean(jnp.sum((z - y) ** 2, axis=1)) + jnp.sum(L2 / 2 * p["W1"] ** 2 + L1 * jnp.abs(p["W1"]))


def penalty(w, l1, l2):
    return l2 * w + l1 * jnp.sign(w)


def weight_grad(x, da, w, bug):
    if bug == "argument":
        return x.T @ da + penalty(w, L1, L1)
    return x.T @ da + penalty(w, L1, L2)


def grad(p, x, y, bug=None):
    m = x.shape[1] if bug == "size" else x.shape[0]
    h = jnp.tanh(x @ p["W1"] + p["b1"][None, :])
    dz = (h @ p["W2"] + p["b2"][None, :] - y) / m
    da = (dz @ p["W2"].T) * (1 - h ** 2)
    db1 = jnp.sum(da, axis=1) if bug == "axis" else jnp.sum(da, axis=0)
    dW1 = weight_grad(x, da, p["W1"], bug)
    dW2 = dz.T @ h if bug == "transposed" else h.T @ dz
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": jnp.sum(dz, axis=0)}


def check(bug):
    assert check_gradients(loss, grad, P, X, Y).passed
    report = check_gradients(loss, lambda p, x, y: grad(p, x, y, bug), P, X, Y)
    assert not report.passed and report.backward is not None, report
    return report


def test_a_sum_over_the_wrong_axis_gives_a_leaf_of_the_wrong_shape():
    r = check("axis")
    assert ranked(r)[0] == line_of(grad, "db1 = "), r.backward.lines
    assert r.backward.cause == "wrong_axis" and "axis 0" in r.backward.explanation
    leaf = next(l for l in json.loads(r.to_json())["leaves"] if l["leaf"] == "['b1']")
    assert leaf["reference_shape"] == [H] and leaf["shape"] == [M] and "reference's shape is (5,)" in str(r)


def test_a_leaf_transposed_to_another_shape():
    r = check("transposed")
    assert ranked(r)[0] == line_of(grad, "dW2 = ") and r.backward.cause == "transposed", r.backward.lines


def test_a_size_taken_from_the_wrong_axis_names_its_assignment():
    r = check("size")
    assert ranked(r)[0] == line_of(grad, "m = x.shape"), r.backward.lines
    assert r.backward.cause == "wrong_size" and f"m = {N}" in r.backward.explanation
    assert f"m = {M}" in r.backward.explanation


def test_a_wrong_argument_names_the_call_site():
    """``penalty`` is right for what it is given: the call passes ``L1`` for both constants."""
    r = check("argument")
    assert ranked(r)[0] == line_of(weight_grad, "penalty(w, L1, L1)"), r.backward.lines
    assert line_of(penalty, "return l2 * w") in ranked(r)[:3]


def affine_loss(p, x, y):
    u = x @ p["W"]
    return 0.5 * jnp.mean(jnp.sum((u * p["s"][None, :] + p["t"][None, :] - y) ** 2, axis=1))


def affine_backward(u, dz):
    ds = jnp.sum(dz * u, axis=0)
    dt = jnp.sum(dz, axis=0)  # noqa: F841 -- the slip: dt is computed and ds returned twice
    return ds, ds


def affine_grad(p, x, y):
    u = x @ p["W"]
    dz = (u * p["s"][None, :] + p["t"][None, :] - y) / x.shape[0]
    ds, dt = affine_backward(u, dz)
    return {"W": x.T @ (dz * p["s"][None, :]), "s": ds, "t": dt}


def test_a_right_value_returned_for_another_result_names_the_return():
    q = {"W": P["W1"][:, :C], "s": jnp.linspace(0.5, 1.5, C), "t": 0.1 * jnp.ones(C)}
    r = check_gradients(affine_loss, affine_grad, q, X, Y)
    assert not r.passed and ranked(r)[0] == line_of(affine_backward, "return ds, ds"), r.backward.lines
    assert r.backward.cause == "wrong_leaf" and "['s']" in r.backward.explanation


# square weights: one layer's gradient fits the other's leaf
SQ = {"W1": 0.5 * jax.random.normal(jax.random.PRNGKey(5), (N, N)),
      "W2": 0.5 * jax.random.normal(jax.random.PRNGKey(6), (N, N))}


def square_loss(p, x, y):
    h = jnp.tanh(x @ p["W1"])
    return 0.5 * jnp.mean(jnp.sum((h @ p["W2"] - x) ** 2, axis=1))


def square_grad(p, x, y, bug=None):
    """The layers' gradients gathered in a list by a loop, as a layer loop writes them."""
    h = jnp.tanh(x @ p["W1"])
    d2 = (h @ p["W2"] - x) / x.shape[0]
    d1 = (d2 @ p["W2"].T) * (1 - h ** 2)
    grads = [None] * 2
    for l in range(2, 1 if bug == "range" else 0, -1):
        g = (x if l == 1 else h).T @ (d1 if l == 1 else d2)
        grads[l - 2 if bug == "index" else l - 1] = g
    return {"W1": grads[0], "W2": grads[1]}


def test_a_right_gradient_stored_at_the_wrong_index_names_the_store():
    assert check_gradients(square_loss, square_grad, SQ, X, X).passed
    r = check_gradients(square_loss, lambda p, x, y: square_grad(p, x, y, "index"), SQ, X, X)
    assert not r.passed and ranked(r)[0] == line_of(square_grad, "grads[l - 2 if"), r.backward.lines


def test_a_loop_that_leaves_a_slot_none_names_its_store_and_its_range():
    r = check_gradients(square_loss, lambda p, x, y: square_grad(p, x, y, "range"), SQ, X, X)
    assert not r.passed and r.backward.cause == "structure", r.backward
    assert line_of(square_grad, "for l in range(2,") in ranked(r)[:3], r.backward.lines
