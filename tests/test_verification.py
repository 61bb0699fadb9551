"""Every verification check passes, and the comparison machinery can fail."""
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmlp
from verification.suite import network
from verification.suite import optimizers
from verification.suite.comparison import compare_trees
from verification.suite.registry import CHECKS


def _assert_rows_pass(rows):
    assert rows
    failed = [f"{r.name}: rel {r.max_rel:.2e} at {r.where}" for r in rows if not r.passed]
    assert not failed, failed


SPLIT = (network.network_grid, optimizers.optimizer_trajectories)  # run in parts below, to balance the workers


@pytest.mark.parametrize("check", [c for c in CHECKS if c.rows not in SPLIT], ids=lambda c: c.name)
def test_check_passes(check):
    _assert_rows_pass(list(check.rows()))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_optimizer_rows_pass(dtype):
    """The constant rate on every problem; in float64 the schedules on the MLP too (every schedule on every
    problem in both dtypes: ``python -m verification``)."""
    rows = list(optimizers.trajectory_rows(jnp.dtype(dtype), scheduled_on="mlp" if dtype == "float64" else ""))
    assert len(rows) >= 20 and (dtype == "float32" or any("/warmup_cosine/" in r.name for r in rows)), len(rows)
    _assert_rows_pass(rows)


@pytest.mark.parametrize("act", sorted(jaxmlp.ACTIVATIONS))
def test_network_grid_passes(act):
    _assert_rows_pass(list(network.grid_rows(act)))


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
