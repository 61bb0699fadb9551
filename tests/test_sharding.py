"""Data-parallel and population-parallel training on 8 simulated CPU devices (a subprocess: XLA_FLAGS is per process)."""
import json
import os
import pathlib
import subprocess
import sys

# Different summation order across shards: a few ulps of float64 per step, grown over 200 steps.
SHARDED_RTOL = 1e-10
# Manual gradient vs jax.grad in float64 (verification.checker.base.tolerances.F64_RTOL).
GRAD_RTOL = 1e-12


def test_sharded_training_matches_single_device():
    root = pathlib.Path(__file__).resolve().parents[1]
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"  # and the suite's
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, str(root / "tests" / "sharded_check.py")], capture_output=True, text=True,
                          env=env, cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["devices"] == 8 and r["x_sharded_over"] == 8 and r["population_sharded_over"] == 8
    assert r["grad_replicated"]
    assert r["manual_vs_autodiff_sharded"] < GRAD_RTOL and r["sharded_vs_single_grad"] < GRAD_RTOL
    for scheme in ("full_batch", "minibatch"):
        assert r[f"train_{scheme}_params"] < SHARDED_RTOL and r[f"train_{scheme}_losses"] < SHARDED_RTOL, r
    assert r["population_sharded_params"] < SHARDED_RTOL
