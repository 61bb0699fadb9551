"""Every verification check passes, and the comparison machinery can fail."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

import jaxmlp
from verification.suite import batchnorm
from verification.suite import levenberg_marquardt
from verification.suite import network
from verification.suite import optimizers
from verification.suite import rule_rows
from verification.suite.comparison import compare_trees
from verification.suite.registry import CHECKS

# One xdist worker runs this module: its tests compile many of the same programs (the per-process
# compilation cache of conftest.py), once on one worker and twice when -n 2 splits them.
pytestmark = pytest.mark.xdist_group("verification")


def _assert_rows_pass(rows):
    assert rows
    failed = [f"{r.name}: rel {r.max_rel:.2e} at {r.where}" for r in rows if not r.passed]
    assert not failed, failed
    json.dumps([r.as_dict() for r in rows])  # python -m verification --json


# Sampled below (the whole sweeps: ``python -m verification --only net/matrix net/lemma1 optim/``).
SAMPLED = (network.network_grid, optimizers.optimizer_trajectories)
HEADS = list(jaxmlp.HEADS)
# Checks whose rows cross activations with heads run a diagonal in the suite: every activation once, every head
# at least once (a pair's row after the first costs its own compilations; ``python -m verification`` runs the
# whole cross).  (activations, heads, shift): activation i meets head (i + shift) % len(heads); the shifts put
# the checks on different pairs, and jacobians' on rows without biases too (every fourth row of its cross).
DIAGONALS = {
    rule_rows.manual_vjp_rows: (list(jaxmlp.ACTIVATIONS), HEADS, 0),
    network.network_finite_differences: (list(jaxmlp.ACTIVATIONS), HEADS, 1),
    batchnorm.bn_network: (batchnorm.ACTS, HEADS, 0),  # the pairs with a float32 row
    levenberg_marquardt.jacobians: (list(jaxmlp.ACTIVATIONS), list(levenberg_marquardt.LS_HEADS), 2),
    rule_rows.gauss_newton_rows: (["tanh", "relu", "sigmoid"], list(levenberg_marquardt.LS_HEADS), 0),
}


def _diagonal(acts, heads, shift):
    n = max(len(acts), len(heads))
    keep = {(acts[i % len(acts)], heads[(i + shift) % len(heads)]) for i in range(n)}
    return lambda act, head: (act, head) in keep


@pytest.mark.parametrize("check", [c for c in CHECKS if c.rows not in SAMPLED], ids=lambda c: c.name)
def test_check_passes(check):
    if check.rows in DIAGONALS:
        acts, heads, shift = DIAGONALS[check.rows]
        rows = list(check.rows(select=_diagonal(acts, heads, shift)))
        pairs = {tuple(r.name.split("/")[-3:-1] if r.name.startswith("bn/") else r.name.split("/")[-2:])
                 for r in rows if not r.name.endswith("/batchnorm")}
        assert {a for a, _ in pairs} == set(acts) and {h for _, h in pairs} == set(heads), sorted(pairs)
        assert len(pairs) == max(len(acts), len(heads)), sorted(pairs)
        if check.rows is batchnorm.bn_network:
            assert {r.name.split("/")[-1] for r in rows} == {"float64", "float32"}
    else:
        rows = list(check.rows())
    if check.rows is rule_rows.layer_rows:  # every layer and head rule (tests/test_rule_checks.py: the checkers)
        assert len(rows) >= 13, [r.name for r in rows]
    _assert_rows_pass(rows)


NAMES = [name for name, *_ in optimizers.pairs(0.1, None)]
PROBLEMS = ("quadratic", "rosenbrock", "mlp")
F32_NAMES = ("sgd", "momentum_ema", "adam_no_bias_correction", "adamw_masked")  # both float32 tolerances


def _sample(dtype):
    """float64: each optimizer once, problems and schedules cycled over them; float32: the constant rate for
    an alias and the two mappings (their own float32 tolerance) and adamw without a mask (Rosenbrock)."""
    if dtype == "float64":
        return lambda prob, kind, name: (prob, kind) == (PROBLEMS[NAMES.index(name) % 3],
                                                         optimizers.SCHEDULES[NAMES.index(name) // 3 % 3])
    return lambda prob, kind, name: (kind == "constant" and name in F32_NAMES
                                     and prob == PROBLEMS[(NAMES.index(name) + 1) % 3])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_optimizer_rows_pass(dtype):
    """A sample of the optimizer rows: every optimizer, problem and schedule, and both dtypes (every optimizer
    on every problem with every schedule in both dtypes: ``python -m verification --only optim/``)."""
    rows = list(optimizers.trajectory_rows(jnp.dtype(dtype), select=_sample(dtype)))
    names = {r.name.split("/")[1] for r in rows}
    if dtype == "float64":
        assert len(rows) == len(NAMES) and names == set(NAMES), [r.name for r in rows]
        assert {r.name.split("/")[-2] for r in rows} == set(PROBLEMS)
        assert all(any(f"/{kind}/" in r.name for r in rows) for kind in optimizers.SCHEDULES[1:])
    else:
        assert names == set(F32_NAMES) and any(r.name.startswith("optim/adamw_masked/rosenbrock") for r in rows)
    _assert_rows_pass(rows)


def _grid_sample(act):
    """One head, one regulariser and two depths per activation (a shallow and a deep one), all cycled over
    the activations: every activation, head, regulariser and depth at least once."""
    i, regs, d = sorted(jaxmlp.ACTIVATIONS).index(act), list(network.REGS), network.DEPTHS
    return (sorted(jaxmlp.HEADS)[i % len(jaxmlp.HEADS)], [regs[i % len(regs)]],
            (d[i % len(d)], d[(i + len(d) // 2) % len(d)]))


def test_the_grid_sample_covers_every_head_regulariser_and_depth():
    picks = [_grid_sample(a) for a in jaxmlp.ACTIVATIONS]
    assert {h for h, _, _ in picks} == set(jaxmlp.HEADS) and {r for _, rs, _ in picks for r in rs} == set(network.REGS)
    assert {d for _, _, ds in picks for d in ds} == set(network.DEPTHS)


@pytest.mark.parametrize("act", sorted(jaxmlp.ACTIVATIONS))
def test_network_grid_passes(act):
    """Every activation at two depths, with one head and one regulariser each, cycled over the activations
    (every head, regulariser and depth for every activation: ``python -m verification --only net/matrix
    net/lemma1``)."""
    head, regs, depths = _grid_sample(act)
    rows = list(network.grid_rows(act, heads=[head], regs=regs, depths=depths))
    assert len(rows) == 2 * len(regs), [r.name for r in rows]
    _assert_rows_pass(rows)


def test_compare_reports_leaf_and_index():
    ref = (jaxmlp.Dense(jnp.ones((2, 3)), jnp.ones(3)), jaxmlp.Dense(jnp.ones((3, 1)), jnp.ones(1)))
    bad = (ref[0], jaxmlp.Dense(ref[1].W.at[2, 0].set(1.5), ref[1].b))
    cmp = compare_trees(bad, ref, 1e-12)
    assert not cmp.ok and cmp.where == "[1].W[2, 0]" and np.isclose(cmp.max_rel, 0.5)


def test_compare_checks_structure_first():
    ref = (jaxmlp.Dense(jnp.ones((2, 3)), jnp.ones(3)),)
    assert "structure" in compare_trees((jaxmlp.Dense(jnp.ones((2, 3)), None),), ref, 1.0).where


def test_cli_writes_json_and_exit_code(tmp_path):
    from verification.__main__ import main

    out = tmp_path / "rows.json"
    assert main(["--only", "layer/", "--json", str(out)]) == 0
    import json

    rows = json.loads(out.read_text())
    assert rows and all(r["status"] == "PASS" for r in rows)
