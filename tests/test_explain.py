"""The checker locates and explains bugs outside its pattern list: the issue's three examples, and tapped deltas."""
import jax
import jax.numpy as jnp
import pytest

from verification import check_gradients
from verification.checker.explain.localize import tap


def loss(p, x, y):
    h = jnp.tanh(x @ p["W1"] + p["b1"][None, :])
    z = tap("z2", h @ p["W2"] + p["b2"][None, :])
    return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.sum(y * z, axis=1))


def manual(p, x, y, bug=None, with_deltas=False):
    m = x.shape[0]
    z1 = x @ p["W1"] + p["b1"][None, :]
    h = jnp.tanh(z1)
    d2 = jax.nn.softmax(h @ p["W2"] + p["b2"][None, :], axis=1)
    d2 = d2 / m if bug == "label_term_dropped" else (d2 - y) / m
    dh = d2 @ p["W2"].T
    d1 = {"tanh_prime_at_z": dh * (1 - z1 ** 2), "derivative_left_out": dh}.get(bug, dh * (1 - h ** 2))
    g = {"W1": x.T @ d1, "b1": d1.sum(0), "W2": h.T @ d2, "b2": d2.sum(0)}
    return (g, {"z2": d2}) if with_deltas else g


def _problem():
    k = jax.random.split(jax.random.key(0), 5)
    f = jnp.float64
    p = {"W1": jax.random.normal(k[0], (3, 4), f), "b1": jax.random.normal(k[1], (4,), f),
         "W2": jax.random.normal(k[2], (4, 2), f), "b2": jnp.zeros(2, f)}
    x = jax.random.normal(k[3], (5, 3), f)
    y = jax.nn.one_hot(jax.random.randint(k[4], (5,), 0, 2), 2, dtype=f)
    return p, x, y


@pytest.mark.parametrize("bug, cause, op", [("label_term_dropped", "path_dropped", "sub"),
                                            ("tanh_prime_at_z", "derivative_at_input", "tanh"),
                                            ("derivative_left_out", "derivative_dropped", "tanh")])
def test_issue_examples_are_located_and_explained(bug, cause, op):
    p, x, y = _problem()
    r = check_gradients(loss, lambda p, x, y: manual(p, x, y, bug), p, x, y)
    assert not r.passed
    assert r.hypotheses and r.hypotheses[0].cause == cause, str(r)
    assert r.hypotheses[0].where.startswith(op) and "test_explain.py:" in r.hypotheses[0].where
    assert {d.cause for d in r.diagnoses} == {cause}
    assert r.localization.order == ["['b2']", "['W2']", "['b1']", "['W1']"]
    assert "manual equals autodiff if" in str(r)


def test_correct_gradient_passes_without_diagnosis():
    p, x, y = _problem()
    r = check_gradients(loss, manual, p, x, y)
    assert r.passed and not r.hypotheses and r.localization is None


def test_tapped_deltas_name_the_first_wrong_step():
    p, x, y = _problem()
    g, deltas = manual(p, x, y, "label_term_dropped", with_deltas=True)
    r = check_gradients(loss, lambda p, x, y: g, p, x, y, deltas=deltas)
    assert r.localization.first_wrong_delta == "z2"
    _, good = manual(p, x, y, "tanh_prime_at_z", with_deltas=True)
    r = check_gradients(loss, lambda p, x, y: manual(p, x, y, "tanh_prime_at_z"), p, x, y, deltas=good)
    assert r.localization.deltas[0]["passed"] and r.localization.first_wrong_delta is None
    with pytest.raises(ValueError, match="deltas: no tap named"):
        check_gradients(loss, lambda p, x, y: g, p, x, y, deltas={"nope": g["b2"]})


def test_every_closed_form_cotangent_change_equals_autodiff_of_its_edit():
    """An edit's ``delta`` (its cotangent change in closed form, which spares an eager VJP per candidate) is
    the difference of the equation's local cotangents with and without the edit, for every candidate of a
    loss with elementwise, product and matrix-product equations."""
    import numpy as np

    from verification.checker.explain import derivative_edits, edit_effects
    from verification.checker.jaxpr import graph as jg
    from verification.checker.jaxpr import interpreter

    p, x, y = _problem()
    graph = jg.trace(lambda q: loss(q, x, y) + jnp.sum(jnp.tanh(q["W1"]) * q["W1"] ** 2), p, list(p))
    point = edit_effects.at_point(graph, jax.tree.leaves(p))
    live = {graph.eqns[i].invars[j] for i, j in graph.edges}
    seen = set()
    for i, eqn in enumerate(graph.eqns):
        g = point.cotangents.get(eqn.outvars[0])
        invals = [interpreter.read(point.values, v) for v in eqn.invars]
        for c in derivative_edits.at_equation(graph, point.values, i, live):
            edit = c.edits[i]
            if edit.delta is None or g is None:
                continue
            true = edit_effects.local_cotangents(eqn, invals, [g])
            new = edit_effects.local_cotangents(eqn, invals, [g], edit)
            for j, d in edit.delta(eqn, invals, g).items():
                np.testing.assert_allclose(d, new[j] - true[j], rtol=1e-12, atol=1e-15, err_msg=c.text)
            seen.add(jg.op_name(eqn))
    assert {"tanh", "mul", "dot_general"} <= seen, seen


def test_chained_changes_by_pullback_rounds_equal_the_edited_program(monkeypatch):
    """A change at several equations (every instance of a loop body's line, a scaling of several edges, an
    edit and a scaling at two sites) evaluated by rounds of the shared pullback equals autodiff of the
    program with those rules edited, to rounding; an edit left out of a round would not."""
    import numpy as np

    from verification.checker.explain import derivative_edits, edit_effects, first_order
    from verification.checker.explain.first_order import Effects
    from verification.checker.jaxpr import graph as jg

    monkeypatch.setattr(first_order, "SHARED_PULLBACK_MIN_EQNS", 0)  # (a small program: shared all the same)
    p, x, _ = _problem()

    def rnn(q):
        h = jnp.zeros((x.shape[0], 4))
        for t in range(3):  # unrolled: three instances of each line
            h = jnp.tanh(x @ q["W1"] + h @ (q["W2"] @ q["W2"].T) + q["b1"][None, :])
        return jnp.sum(h ** 2)

    leaves = jax.tree.leaves(p)
    graph = jg.trace(rnn, p, list(p))
    point = edit_effects.at_point(graph, leaves)
    effects = Effects(graph, leaves, point, all_columns=True,
                      reference=np.concatenate([np.ravel(g) for g in jax.tree.leaves(jax.grad(rnn)(p))]))
    assert effects.pullback is not None
    live = {graph.eqns[i].invars[j] for i, j in graph.edges}
    tanhs = [i for i, e in enumerate(graph.eqns) if jg.op_name(e) == "tanh"]
    dropped = [next(c for c in derivative_edits.at_equation(graph, point.values, i, live)
                    if c.cause == "derivative_dropped").edits[i] for i in tanhs]
    edges = [(i, j) for i, j in graph.edges if jg.op_name(graph.eqns[i]) == "dot_general"]
    changes = [({i: e for i, e in zip(tanhs, dropped)}, None),  # every instance: chains through the loop
               (None, {e: -1.0 for e in edges[:4]}),
               ({tanhs[0]: dropped[0]}, {edges[-1]: 2.0})]
    rounds = effects.exact(changes)
    edited = edit_effects.exact_gradients(graph, leaves, point, changes)
    np.testing.assert_allclose(rounds, edited, rtol=1e-12, atol=1e-12 * np.abs(edited).max())
    first_order = effects.reference + sum(
        effects.effects([], [(i, e)])[1][0] for i, e in changes[0][0].items())
    assert not np.allclose(first_order, edited[0], rtol=1e-6)  # the chain is not its first-order sum


@pytest.mark.parametrize("f, sa, sb", [
    (lambda a, b: jnp.einsum("bij,bjk->bik", a, b), (2, 3, 4), (2, 4, 5)),
    (lambda a, b: jax.lax.dot_general(a, b, (((0,), (0,)), ((), ()))), (4, 3), (4, 5)),
    (lambda a, b: jax.lax.dot_general(a, b, (((2,), (1,)), ((0,), (2,)))), (2, 3, 4), (5, 4, 2)),
    (lambda a, b: a * b, (3, 4), (3, 4))])
def test_a_products_cotangent_in_numpy_equals_its_vjp(f, sa, sb):
    """The einsum that gives a product's cotangent to one operand (a saved operand's change, without an
    eager VJP per candidate) equals autodiff's, for batch and contracting dimensions anywhere."""
    import numpy as np

    from verification.checker.explain.saved_operands import product_cotangent
    from verification.checker.jaxpr import interpreter

    k = jax.random.split(jax.random.key(1), 3)
    a, b = jax.random.normal(k[0], sa, jnp.float64), jax.random.normal(k[1], sb, jnp.float64)
    eqn = next(e for e in jax.make_jaxpr(f)(a, b).jaxpr.eqns if e.primitive.name in ("dot_general", "mul"))
    g = jax.random.normal(k[2], interpreter.bind(eqn, [a, b])[0].shape, jnp.float64)
    for j, (x, other) in enumerate([(a, b), (b, a)]):
        _, vjp = jax.vjp(lambda u: interpreter.bind(eqn, [u, b] if j == 0 else [a, u])[0], x)
        np.testing.assert_allclose(product_cotangent(eqn, j, np.asarray(g), np.asarray(other), x.shape), vjp(g)[0],
                                   rtol=1e-12)
