"""Property test: the checker reports no correct gradient as failing (issue: zero false FAILs over >= 1000
random correct cases: architectures, activations, heads, dtypes, batch sizes, exact kinks, and the
catalogue's eighteen model families, scan, fori_loop, cond and checkpoint losses among them).

The suite runs a sample (a case that meets a new shape compiles the checker's programs for it: the shapes
met are the file's time): every architecture x activation x batch size once over the six (head, dtype)
runs, every activation in each of them, on two shapes each; every kink convention on every architecture,
the two heads alternating (each activation's two conventions together meet every architecture and head);
every family; each case at one seed.  The whole sweep (1166 cases):
``VERIFICATION_FULL_SWEEP=1 python -m pytest tests/test_no_false_alarms.py``.
"""
import itertools
import os

import jax.numpy as jnp
import pytest

import jaxmlp
from verification import check_gradients
from verification.suite.bugs import manual_with
from verification.catalogue import FAMILIES
from verification.suite.problems import mlp_problem

# One xdist worker runs this module: its tests compile many of the same programs (the per-process
# compilation cache of conftest.py), once on one worker and twice when -n 2 splits them.
pytestmark = pytest.mark.xdist_group("no_false_alarms")

ARCHS = [(3, 4, 2), (2, 5, 5, 3), (1, 3, 3, 3, 1)]
ACTIVATIONS = ["relu", "tanh", "sigmoid", "leaky_relu", "softplus"]
HEADS = ["softmax_cross_entropy", "mse", "sigmoid_bce"]
BATCHES = [1, 6]
FULL = os.environ.get("VERIFICATION_FULL_SWEEP") == "1"
SEEDS_PER_CASE = 5  # 3 archs x 5 activations x 2 batches x 5 seeds = 150 cases per (dtype, head)
KINK_SEEDS = 4
KINK_HEADS = ["softmax_cross_entropy", "mse"]

# Kinks: zero rows of x with zero biases put whole layers exactly on relu's (or leaky relu's) kink, and a
# hand derivation may take either one-sided derivative there.  Each convention is a correct gradient.
CONVENTIONS = {
    "relu'(0) = 0": ("relu", lambda z, a: (z > 0).astype(z.dtype)),
    "relu'(0) = 1": ("relu", lambda z, a: (z >= 0).astype(z.dtype)),
    "leaky'(0) = slope": ("leaky_relu", lambda z, a: jnp.where(z > 0, 1.0, 0.01).astype(z.dtype)),
    "leaky'(0) = 1": ("leaky_relu", lambda z, a: jnp.where(z >= 0, 1.0, 0.01).astype(z.dtype)),
}
FAMILY_SEEDS = 10  # 18 families x 10 seeds


def _seeds(cases, n, per_case=1):
    """Each case with all ``n`` seeds (the whole sweep), or with ``per_case`` of them, cycled over the cases."""
    for i, case in enumerate(cases):
        yield from ((case, seed) for seed in (range(n) if FULL else [(i + k) % n for k in range(per_case)]))


def _sampled_cases(dtype, head):
    """The suite's cases of one (head, dtype) run, number ``s`` of the six: every activation once, on two
    shapes only (what a case costs is compiling the checker's programs for a new shape): architecture
    ``s % 3`` with batch size 1 and architecture ``(s + 1) % 3`` with batch size 6, the activations alternating
    between them.  Over the six runs every architecture x activation x batch size comes exactly once, every
    architecture x activation in both dtypes, every activation x head with both batch sizes
    (test_the_sample_meets_every_architecture_activation_and_batch_size)."""
    s = 2 * HEADS.index(head) + int(jnp.dtype(dtype) == jnp.float32)
    shapes = [(ARCHS[s % len(ARCHS)], BATCHES[0]), (ARCHS[(s + 1) % len(ARCHS)], BATCHES[1])]
    return [(*shapes[(j + s) % 2][:1], act, shapes[(j + s) % 2][1]) for j, act in enumerate(ACTIVATIONS)]


def _check(model, p, x, y, manual):
    return check_gradients(lambda p, x, y: jaxmlp.loss(model, p, x, y, check=False), manual, p, x, y)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("head", HEADS)
def test_jaxmlp_gradients_never_fail(dtype, head):
    false, n = [], 0
    cases = list(itertools.product(ARCHS, ACTIVATIONS, BATCHES)) if FULL else _sampled_cases(dtype, head)
    for (sizes, act, m), seed in _seeds(cases, SEEDS_PER_CASE):
        model, p, x, y = mlp_problem(sizes, act, head, m=m, seed=seed, dtype=dtype)
        r = _check(model, p, x, y, lambda p, x, y: jaxmlp.value_and_grad(model, p, x, y, check=False)[1])
        n += 1
        if not r.passed:
            false.append(f"{sizes} {act} m={m} seed={seed}:\n{r}")
    assert n == len(ACTIVATIONS) * (len(ARCHS) * len(BATCHES) * SEEDS_PER_CASE if FULL else 1)
    assert not false, f"{len(false)} of {n} correct gradients reported as failing:\n" + "\n".join(false[:3])


def test_the_sample_meets_every_architecture_activation_and_batch_size():
    met = [(sizes, act, m, head, dtype) for dtype in (jnp.float64, jnp.float32) for head in HEADS
           for sizes, act, m in _sampled_cases(dtype, head)]
    assert sorted((sizes, act, m) for sizes, act, m, *_ in met) == sorted(itertools.product(ARCHS, ACTIVATIONS,
                                                                                           BATCHES))
    assert {(sizes, act, dtype) for sizes, act, _, _, dtype in met} == set(
        itertools.product(ARCHS, ACTIVATIONS, (jnp.float64, jnp.float32)))
    assert {(act, head, m) for _, act, m, head, _ in met} >= set(itertools.product(ACTIVATIONS, HEADS, BATCHES))


def _kink_cases(convention):
    """The whole sweep: every architecture with both heads; the suite: every architecture with one of them,
    the other convention of the same activation taking the other head."""
    if FULL:
        return list(itertools.product(ARCHS, KINK_HEADS))
    k = [c for c in sorted(CONVENTIONS) if CONVENTIONS[c][0] == CONVENTIONS[convention][0]].index(convention)
    return [(sizes, KINK_HEADS[(i + k) % len(KINK_HEADS)]) for i, sizes in enumerate(ARCHS)]


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_any_one_sided_convention_at_exact_kinks_passes(convention):
    act, derivative = CONVENTIONS[convention]
    false, n, on_kink = [], 0, 0
    for (sizes, head), seed in _seeds(_kink_cases(convention), KINK_SEEDS):
        model, p, x, y = mlp_problem(sizes, act, head, m=5, seed=seed, init="xavier", zero_rows=2)
        z1 = x @ p[0].W + p[0].b[None, :]
        on_kink += bool(jnp.any(z1 == 0))
        r = _check(model, p, x, y, lambda p, x, y: manual_with(model, p, x, y, 0.0, 0.0, derivative=derivative))
        n += 1
        if not r.passed:
            false.append(f"{sizes} {head} seed={seed}:\n{r}")
    assert n == len(_kink_cases(convention)) * (KINK_SEEDS if FULL else 1)
    assert on_kink == n  # every case really sits on the kink
    assert not false, f"{len(false)} of {n} correct gradients at kinks reported as failing:\n" + "\n".join(false[:3])


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.__name__.rsplit(".", 1)[-1])
def test_catalogue_families_correct_gradients_never_fail(family):
    false = []
    for seed in range(FAMILY_SEEDS) if FULL else [1]:  # seed 0 is checked by python -m verification --bugs
        p, x, y = family.problem(seed)
        r = check_gradients(family.loss, family.grad, p, x, y)
        if not r.passed:
            false.append(f"seed={seed}:\n{r}")
    assert not false, "\n".join(false[:3])


def test_case_count_meets_the_bar():
    """The whole sweep (VERIFICATION_FULL_SWEEP=1) has >= 1000 cases; the sample is a part of it."""
    jaxmlp_cases = 2 * len(HEADS) * len(ARCHS) * len(ACTIVATIONS) * len(BATCHES) * SEEDS_PER_CASE
    kink_cases = len(CONVENTIONS) * len(ARCHS) * len(KINK_HEADS) * KINK_SEEDS
    assert jaxmlp_cases + kink_cases + len(FAMILIES) * FAMILY_SEEDS >= 1000
