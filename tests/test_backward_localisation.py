"""The backward-code localisation: the line of the user's own gradient code to fix, what it should compute
and why (verification/checker/backward/), on each construct a hand gradient is written with."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from verification import check_custom_vjp, check_gradients, check_jvp
from verification.catalogue.backward import line_of
from verification.checker.backward import derivatives as bd

KEY = jax.random.PRNGKey(0)
M, N, H, C = 6, 4, 5, 3
X = jax.random.normal(KEY, (M, N))
Y = jax.nn.one_hot(jnp.arange(M) % C, C)
P = {"W1": 0.5 * jax.random.normal(jax.random.PRNGKey(1), (N, H)), "b1": 0.1 * jnp.ones(H),
     "W2": 0.5 * jax.random.normal(jax.random.PRNGKey(2), (H, C)), "b2": jnp.zeros(C)}


def loss(p, x, y):
    h = jax.nn.sigmoid(x @ p["W1"] + p["b1"][None, :])
    z = h @ p["W2"] + p["b2"][None, :]
    return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(z), axis=1))


def first_line(report):
    return report.backward.lines[0].split()[0].split("/")[-1]


def grad(p, x, y, bug=None, fold=False):
    m = x.shape[0]
    h = jax.nn.sigmoid(x @ p["W1"] + p["b1"][None, :])
    probs = jax.nn.softmax(h @ p["W2"] + p["b2"][None, :])
    dz = (probs - y) if fold else (probs - y) / m
    dh = dz @ p["W2"].T
    dsig = 1 - h ** 2 if bug == "tanh" else h * (1 - h)
    da = dh * dsig
    dW1 = x.T @ da * (2.0 if bug == "two" else 1.0)
    g = {"W1": dW1, "b1": da.sum(0), "W2": h.T @ dz, "b2": dz.sum(0)}
    return {k: v / m for k, v in g.items()} if fold else g


def test_straight_line_code_names_the_derivative_line_and_the_cause():
    r = check_gradients(loss, lambda p, x, y: grad(p, x, y, "tanh"), P, X, Y)
    assert not r.passed and first_line(r) == line_of(grad, "dsig = 1 - h ** 2")
    b = r.backward
    assert b.cause == "wrong_derivative" and "tanh" in b.explanation and "sigmoid" in b.explanation
    assert b.line.endswith(line_of(grad, "da = dh * dsig")) and "∂L/∂" in b.should_equal
    assert any(s.startswith("dh = ") for s in b.inputs_ok)
    text = str(r)
    assert text.splitlines()[0].startswith("wrong_derivative: fix ")  # the report leads with the answer
    d = r.to_json()
    assert '"backward"' in d and '"first_wrong"' in d


def test_a_factor_and_the_1_over_m_folded_at_the_end():
    assert check_gradients(loss, lambda p, x, y: grad(p, x, y, fold=True), P, X, Y).passed
    r = check_gradients(loss, lambda p, x, y: grad(p, x, y, "two", fold=True), P, X, Y)
    assert first_line(r) == line_of(grad, "dW1 = x.T @ da")
    assert r.backward.cause == "factor_2"


def grad_loop(params, x, y, bug_layer=None):
    """A Python loop over layers (tanh), squared error: the same lines serve every layer."""
    hs = [x]
    for W in params:
        hs.append(jnp.tanh(hs[-1] @ W))
    d = 2 * (hs[-1] - y) / x.shape[0]
    grads = []
    for k in reversed(range(len(params))):
        da = d * (1 - hs[k + 1] ** 2) if k != bug_layer else d * (1 - hs[k + 1])
        grads.append(hs[k].T @ da)
        d = da @ params[k].T
    return grads[::-1]


def loss_loop(params, x, y):
    h = x
    for W in params:
        h = jnp.tanh(h @ W)
    return jnp.sum((h - y) ** 2) / x.shape[0]


def test_a_python_loop_over_layers():
    ps = [0.5 * jax.random.normal(jax.random.PRNGKey(k), s) for k, s in enumerate([(N, 5), (5, 5), (5, C)])]
    assert check_gradients(loss_loop, grad_loop, ps, X, Y).passed
    r = check_gradients(loss_loop, lambda p, x, y: grad_loop(p, x, y, bug_layer=1), ps, X, Y)
    assert first_line(r) == line_of(grad_loop, "da = d * (1 - hs[k + 1] ** 2)")
    assert r.backward.cause in ("wrong_derivative", "derivative_at_input")


def test_jit_and_vmap_in_the_gradient_code():
    @jax.jit
    def per_example(p, x, y):  # the gradient of one example, vmapped over the batch
        h = jax.nn.sigmoid(x @ p["W1"] + p["b1"])
        probs = jax.nn.softmax(h @ p["W2"] + p["b2"])
        dz = probs - y
        da = (dz @ p["W2"].T) * h * (1 - h)
        return {"W1": jnp.outer(x, da), "b1": da, "W2": jnp.outer(h, dz), "b2": -dz}

    def g(p, x, y):
        return jax.tree.map(lambda a: jnp.mean(a, axis=0), jax.vmap(per_example, (None, 0, 0))(p, x, y))

    r = check_gradients(loss, g, P, X, Y)
    assert not r.passed and r.backward is not None
    assert r.backward.lines and r.backward.cause == "sign_flipped"


def test_a_bug_on_a_line_that_matches_nothing():
    """``s`` is the user's own shortcut (m times the cotangent, with the wrong sign): it matches no right
    quantity, and the line that first computes a wrong value from it is named with ``s``'s line first."""
    def g(p, x, y):
        m = x.shape[0]
        h = jax.nn.sigmoid(x @ p["W1"] + p["b1"][None, :])
        probs = jax.nn.softmax(h @ p["W2"] + p["b2"][None, :])
        s = y - probs
        dz = s / m
        da = (dz @ p["W2"].T) * h * (1 - h)
        return {"W1": x.T @ da, "b1": da.sum(0), "W2": h.T @ dz, "b2": dz.sum(0)}

    r = check_gradients(loss, g, P, X, Y)
    top = [l.split()[0].split("/")[-1] for l in r.backward.lines[:3]]
    assert line_of(g, "s = y - probs") in top and r.backward.cause == "sign_flipped"


def test_non_finite_inputs_get_a_note_not_a_diagnosis():
    p = dict(P, W2=P["W2"].at[1, 2].set(jnp.nan))
    r = check_gradients(loss, lambda p, x, y: grad(p, x, y), p, X, Y)
    assert any("cannot be judged" in n and "['W2']" in n and "[1, 2]" in n for n in r.notes)
    assert not r.diagnoses and r.backward is None


PAIRS = [(a, b) for a in bd.TABLE for b in bd.TABLE if a.name != b.name and a.form == b.form]


@pytest.mark.parametrize("form", ["input", "output"])
def test_every_pair_of_table_derivatives_is_told_apart(form):
    """Each derivative of the table, evaluated where the other one belongs, is named as itself (so a swap
    of any two is a wrong_derivative with both names), at the input form and the output form."""
    signed = np.linspace(-0.85, 0.85, 10)  # both sides of every kink, never 0
    for d in [d for d in bd.TABLE if d.form == form]:
        a = np.abs(signed) if d.name in ("sqrt", "log") and d.form == "input" else signed  # their domain
        found = bd.identify(d.fn(a), {"a": a})
        assert found and found[0][0].name == d.name, (d.name, [(f.name, f.form) for f, _ in found])
    assert any(p[0].form == form for p in PAIRS)


def test_a_gelu_gradient_with_the_exact_forms_terms_for_the_tanh_approximation():
    a = np.linspace(-2, 2, 11)
    exact = bd.TABLE_BY_NAME["gelu (exact, erf)"][0].fn(a)
    found = bd.identify(exact, {"z": a})
    assert found[0][0].name == "gelu (exact, erf)"
    assert not np.allclose(exact, bd.TABLE_BY_NAME["gelu (tanh approximation)"][0].fn(a), rtol=1e-6)


def test_a_stabiliser_is_not_a_wrong_constant():
    """An eps in the rule's row sum moves it by ~1e-10: a verdict of its own, not wrong_constant."""
    eps = 1e-10

    @jax.custom_vjp
    def rows(x):
        return x / jnp.sum(x, axis=1, keepdims=True)

    def fwd(x):
        s = jnp.sum(x, axis=1, keepdims=True) + eps
        return x / s, (x, s)

    rows.defvjp(fwd, lambda res, g: (g / res[1] - jnp.sum(g * res[0], axis=1, keepdims=True) / res[1] ** 2,))
    x = jax.random.uniform(KEY, (3, 4)) + 0.5
    r = check_custom_vjp(rows, x)
    assert not r.passed and {f.cause for f in r.findings} == {"stabiliser"}
    assert r.backward is None or r.backward.cause == "stabiliser"


def test_rule_code_lines_vjp_and_jvp():
    @jax.custom_vjp
    def sq(x):
        return x ** 2

    sq.defvjp(lambda x: (x ** 2, x), lambda x, g: (g * x,))  # the 2 of 2x forgotten
    r = check_custom_vjp(sq, jnp.linspace(0.5, 2.0, 4))
    assert r.backward.cause == "factor_2" and "lambda x, g: (g * x,)" in r.backward.lines[0]

    def f(x):
        return jnp.sin(x) * x

    def f_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return f(x), (jnp.cos(x) * x - jnp.sin(x)) * t  # the product rule's sign

    r = check_jvp(f, f_jvp, jnp.linspace(0.5, 2.0, 4))
    assert not r.passed and r.backward is not None
    assert r.backward.lines[0].split()[0].endswith(line_of(f_jvp, "return f(x)"))


L2 = 0.1
P2 = {"W1": P["W1"], "W2": 0.5 * jax.random.normal(jax.random.PRNGKey(3), (H, 2))}


def penalised_loss(p, x, y):
    """A weight penalty: each weight is read on two lines, its layer's and the penalty's."""
    h = jnp.tanh(x @ p["W1"])
    out = h @ p["W2"]
    data = 0.5 * jnp.mean(jnp.sum((out - y) ** 2, axis=1))
    return data + 0.5 * L2 * (jnp.sum(p["W1"] ** 2) + jnp.sum(p["W2"] ** 2))


def penalty_grad(w, bug):
    if bug == "sign":
        return -L2 * w
    return (2 * L2 if bug == "factor" else L2) * w


def penalised_grad(p, x, y, bug=None):
    """The penalty's share added per layer by one helper (a mistake there is in every layer's gradient)."""
    h = jnp.tanh(x @ p["W1"])
    d_out = (h @ p["W2"] - y) / x.shape[0]
    dz = (d_out @ p["W2"].T) * (1 - h ** 2)
    return {"W1": x.T @ dz + penalty_grad(p["W1"], bug), "W2": h.T @ d_out + penalty_grad(p["W2"], bug)}


@pytest.mark.parametrize("bug, text, cause", [("sign", "return -L2 * w", "sign_flipped"),
                                              ("factor", "return (2 * L2", "factor_2")])
def test_a_helper_called_per_layer_is_named_by_the_share_of_its_line(bug, text, cause):
    """Each layer's instance of the helper is wrong on its own leaf only: the instances are replaced at once,
    each by the share of its weight's cotangent that the penalty's line sends (a right quantity)."""
    assert check_gradients(penalised_loss, penalised_grad, P2, X, Y[:, :2]).passed
    rep = check_gradients(penalised_loss, lambda p, x, y: penalised_grad(p, x, y, bug), P2, X, Y[:, :2])
    assert not rep.passed and first_line(rep) == line_of(penalty_grad, text), rep.backward.lines
    assert rep.backward.cause == cause, rep.backward.explanation
    assert "through `return data + 0.5 * L2" in rep.backward.should_equal, rep.backward.should_equal


SLOPE = 0.1


def leaky_loss(p, x, y):
    h = jax.nn.leaky_relu(x @ p["W1"], SLOPE)
    return 0.5 * jnp.mean(jnp.sum((h @ p["W2"] - y) ** 2, axis=1))


def leaky_grad(p, x, y, bug=None):
    a = x @ p["W1"]
    h = jnp.where(a >= 0, a, SLOPE * a)
    dh = ((h @ p["W2"] - y) / x.shape[0]) @ p["W2"].T
    slope = {"swapped": jnp.where(a >= 0, SLOPE, 1.0),
             "threshold": jnp.where(a >= 0.5, 1.0, SLOPE),
             "never": jnp.where(a >= 100.0, 1.0, 0.0)}.get(bug, jnp.where(a >= 0, 1.0, SLOPE))
    da = dh * slope
    return {"W1": x.T @ da, "W2": h.T @ ((h @ p["W2"] - y) / x.shape[0])}


@pytest.mark.parametrize("bug, cause", [("swapped", "wrong_branch"), ("threshold", "wrong_threshold"),
                                        ("never", "path_dropped")])
def test_a_mask_from_the_wrong_condition_is_named_at_its_line(bug, cause):
    """A step's derivative written as a mask: its branches swapped, its threshold moved, or a condition that
    never holds here (the product is zero: the mask is still the line to fix, not the product's)."""
    assert check_gradients(leaky_loss, leaky_grad, P2, X, Y[:, :2]).passed
    rep = check_gradients(leaky_loss, lambda p, x, y: leaky_grad(p, x, y, bug), P2, X, Y[:, :2])
    assert not rep.passed and first_line(rep) == line_of(leaky_grad, f'"{bug}": '), rep.backward.lines
    assert rep.backward.cause == cause, rep.backward.explanation


def huber_loss(p, x, y):
    r = x @ p["W1"] @ p["W2"] - y
    return jnp.mean(jnp.where(jnp.abs(r) <= 0.5, 0.5 * r ** 2, 0.5 * (jnp.abs(r) - 0.25)))


def huber_grad(p, x, y):
    """The where's two branches swapped: the linear branch's derivative inside the band."""
    h = x @ p["W1"]
    r = h @ p["W2"] - y
    quad = r  # the quadratic branch's derivative: a rename, right
    lin = 0.5 * jnp.sign(r)
    d = jnp.where(jnp.abs(r) <= 0.5, lin, quad) / r.size
    return {"W1": x.T @ (d @ p["W2"].T), "W2": h.T @ d}


def test_a_where_with_its_branches_swapped_is_named_at_the_where_not_at_a_rename_it_reads():
    p = {"W1": P["W1"], "W2": P["W2"]}
    rep = check_gradients(huber_loss, huber_grad, p, X, Y)
    assert not rep.passed and first_line(rep) == line_of(huber_grad, "jnp.where(jnp.abs(r) <= 0.5, lin"), \
        rep.backward.lines
    assert rep.backward.cause == "wrong_branch", rep.backward
