"""The checker where the model is large (issue 25), at sizes a test can afford: sampled finite differences
and their false-negative rate over planted bugs, the sampled kink test, and the narrow search that
names the layer of a deep MLP.  The full-size figures are the benchmark's (python -m experiments
checker-scale)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from verification import check_gradients
from verification.checker.base import sampled_differences as sampled

# One xdist worker runs this module: its tests compile many of the same programs (the per-process
# compilation cache of conftest.py), once on one worker and twice when -n 2 splits them.
pytestmark = [pytest.mark.xdist_group("checker_scale"), pytest.mark.usefixtures("loss_side_only")]

WIDTHS = [24, 48, 48, 1]  # 3 layers, 3601 parameters: above FULL_MAX once the batch of inputs is counted in
# The suite's sample of planted bugs; the figure of docs/performance.md was measured with 1000 (the same test
# with N_PLANTED = 1000: 0 missed, 0 false alarms).
N_PLANTED = 250
# The sampled check's bound (module doc): an error r times the tolerance escapes both directions with
# probability ~(0.8/r)^2; the planted errors below are >= 1e-3 of their leaf (r >= 100), so ~1e-4 each,
# and the coordinates catch what the directions miss.  Allow 0.5% of misses: a rate well above the bound
# means the directions or the noise floor are wrong.
MAX_MISS_RATE = 0.005


def _mlp(widths, seed=0):
    keys = jax.random.split(jax.random.key(seed), len(widths) + 1)
    params = [{"W": jax.random.normal(k, (a, b), jnp.float64) / np.sqrt(a), "b": 0.1 * jnp.ones(b, jnp.float64)}
              for k, a, b in zip(keys, widths[:-1], widths[1:])]
    x = jax.random.normal(keys[-1], (32, widths[0]), jnp.float64)
    return params, x, jnp.sin(jnp.arange(32, dtype=jnp.float64))


def _loss(params, x, y, act=jnp.tanh):
    h = x
    for layer in params[:-1]:
        h = act(h @ layer["W"] + layer["b"][None, :])  # hidden
    return 0.5 * jnp.mean(((h @ params[-1]["W"])[:, 0] + params[-1]["b"][0] - y) ** 2)


def _big():
    params, x, y = _mlp([64, 64, 32, 1])  # 6273 parameters > FULL_MAX
    assert sum(np.size(l) for l in jax.tree.leaves(params)) > sampled.FULL_MAX
    return params, x, y


def test_sampled_finite_differences_catch_a_wrong_bias_and_name_its_entry():
    params, x, y = _big()
    grad = jax.grad(_loss)(params, x, y)
    r = check_gradients(_loss, lambda p, x, y: grad, params, x, y, finite_differences=True)
    assert r.passed and any("finite differences sampled" in n for n in r.notes), str(r)
    wrong = [dict(g) for g in grad]
    wrong[1]["b"] = wrong[1]["b"].at[5].multiply(3.0)  # one entry of one bias
    r = check_gradients(_loss, lambda p, x, y: wrong, params, x, y, finite_differences=True)
    fd = {l.path: l for l in r.finite_differences}
    assert not fd["[1]['b']"].passed and fd["[1]['b']"].worst_index == (5,), str(r)
    assert all(l.passed for k, l in fd.items() if k != "[1]['b']")


def _plant(rng, grads):
    """One planted mistake in one leaf, as people make them: a scale, a sign, one entry, a subset, noise."""
    k = int(rng.integers(len(grads)))
    g = np.array(grads[k])
    kind = rng.choice(["scale", "sign", "entry", "subset", "noise", "zero"])
    flat = g.reshape(-1)
    if kind == "scale":
        flat *= 1 + rng.choice([-1, 1]) * 10 ** rng.uniform(-3, 0)
    elif kind == "sign":
        flat *= -1
    elif kind == "entry":
        i = int(rng.integers(flat.size))
        flat[i] += 10 ** rng.uniform(-1, 1) * np.max(np.abs(flat))
    elif kind == "subset":
        mask = rng.random(flat.size) < 0.1
        flat[mask] *= -1
    elif kind == "noise":
        flat += 10 ** rng.uniform(-3, -1) * np.linalg.norm(flat) / np.sqrt(flat.size) * rng.standard_normal(flat.size)
    else:
        flat[:] = 0
    out = list(grads)
    out[k] = jnp.asarray(g)
    return k, kind, out


def test_the_false_negative_rate_of_the_sampled_check_over_planted_bugs():
    params, x, y = _big()
    leaves, treedef = jax.tree.flatten(params)
    grads = jax.tree.leaves(jax.grad(_loss)(params, x, y))
    names = [str(k) for k in range(len(leaves))]
    loss = lambda ls: _loss(jax.tree.unflatten(treedef, ls), x, y)  # noqa: E731
    evaluator = sampled.loss_on(loss, leaves)
    assert all(r.passed for r in sampled.check_leaves(loss, leaves, grads, names, evaluator=evaluator))
    rng = np.random.default_rng(0)
    missed, planted, trial = [], 0, 0
    while planted < N_PLANTED:  # bugs that change their leaf (a sign flip of a zero bias does not)
        trial += 1
        k, kind, wrong = _plant(rng, grads)
        if np.allclose(wrong[k], grads[k], rtol=0, atol=0):
            continue
        planted += 1
        results = sampled.check_leaves(loss, leaves, wrong, names, seed=trial, evaluator=evaluator)
        if results[k].passed:
            missed.append((trial, kind, k))
        assert all(r.passed for j, r in enumerate(results) if j != k)  # no false alarm on a correct leaf
    assert len(missed) <= MAX_MISS_RATE * N_PLANTED, missed


def test_at_many_kinks_a_correct_relu_gradient_passes_on_a_sample_of_the_differing_entries():
    params, x, y = _mlp([16, 64, 64, 1])
    params[0]["b"] = jnp.zeros(64, jnp.float64)
    x = x.at[:, :].set(0.0).at[:, 0].set(jnp.linspace(-1.0, 1.0, 32))  # many pre-activations exactly 0
    relu = jax.nn.relu
    loss = lambda p, x, y: _loss(p, x, y, act=relu)  # noqa: E731

    def manual(p, x, y):  # relu'(0) = 1: a valid one-sided derivative at each kink
        hs, zs, h = [x], [], x
        for layer in p[:-1]:
            z = h @ layer["W"] + layer["b"][None, :]
            h = relu(z)
            zs.append(z)
            hs.append(h)
        d = (((h @ p[-1]["W"])[:, 0] + p[-1]["b"][0] - y) / x.shape[0])[:, None]
        out = [None] * len(p)
        for k in range(len(p) - 1, -1, -1):
            out[k] = {"W": hs[k].T @ d, "b": jnp.sum(d, axis=0)}
            if k:
                d = (d @ p[k]["W"].T) * (zs[k - 1] >= 0).astype(jnp.float64)
        return out

    r = check_gradients(loss, manual, params, x, y)
    assert r.passed, str(r)


@pytest.mark.parametrize("layer", [2, 7])
def test_a_deep_mlp_names_the_layer_from_the_narrow_search(layer):
    depth = 12
    params, x, y = _mlp([8] * (depth + 1) + [1])

    def manual(p, x, y):
        g = jax.grad(_loss)(p, x, y)
        g[layer] = {**g[layer], "b": 2 * g[layer]["b"]}
        return g

    r = check_gradients(_loss, manual, params, x, y)
    d = {d.leaf: d for d in r.diagnoses}[f"[{layer}]['b']"]
    assert d.cause == "factor_2" and f"[{layer + 1} of {depth}" in d.where, str(r)
