"""Every experiment runs from the command line (short runs) and writes metrics.json and its figure."""
import importlib
import json
import pathlib

import jax
import pytest

from experiments.__main__ import EXPERIMENTS, SCRIPTS, main
from jaxmlp import cli

SHORT = {"higham": ["--steps", "100", "--seeds", "2"], "lm-higham": ["--steps", "50", "--seeds", "2"],
         "batchnorm": ["--steps", "10"], "spiral": ["--steps", "20"], "regression": [], "testnets": [],
         "optimizers": ["--steps", "10"], "digits": ["--steps", "20"],
         "higham-population": ["--steps", "100", "--population", "2"]}


# Fewer of the same runs where an experiment repeats one loop body, each run compiling its own training loop
# (what a smoke run costs): one of the four optimizers (one with state), on both problems (every optimizer
# against its Optax baseline: tests/test_optax_parity.py); batch norm at one of the three learning rates,
# with and without.  The full lists run in the experiments.
SMOKE = {"optimizers": {"OPTIMIZERS": ("adam",)}, "batchnorm": {"LRS": (0.1,)}}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_runs(name, tmp_path, monkeypatch):
    module = importlib.import_module(f"experiments.{EXPERIMENTS[name]}")
    for attr, keep in SMOKE.get(name, {}).items():
        full = getattr(module, attr)
        assert set(keep) <= set(full), (attr, keep)
        monkeypatch.setattr(module, attr, {k: full[k] for k in keep} if isinstance(full, dict) else keep)
    with jax.numpy_dtype_promotion("standard"):  # the Optax baselines are not strict-promotion clean
        assert main([name, "--out", str(tmp_path)] + SHORT[name]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["experiment"] == name
    if name != "testnets":
        assert list(tmp_path.glob("*.png"))
    if name == "regression":  # full length: the tutorial's numpy loop from the same weights
        assert metrics["max_rel_weight_diff_vs_numpy"] < 1e-12 and metrics["final_loss"] < 1e-3 * metrics["initial_loss"]
    if name == "testnets":  # every intermediate equals jax.grad's
        assert metrics["passed"]
    if name == "optimizers":  # the hand-written optimizers follow their Optax baselines
        assert {k.split("/")[1] for k in metrics["results"]} == set(SMOKE[name]["OPTIMIZERS"])
        assert all(v["max_rel_curve_diff"] < 1e-6 for v in metrics["results"].values()), metrics["results"]


def test_readme_test_command_is_what_ci_runs():
    root = pathlib.Path(__file__).resolve().parents[1]
    readme, ci = (root / "README.md").read_text(), (root / ".ci" / "run").read_text()
    assert 'pip install ".[test]" && python -m pytest -n 2' in readme
    assert "grep -m1 -E '^pip install \"\\.\\[test\\]\"' README.md" in ci


@pytest.mark.parametrize("words", [[]] + [[name] for name in SCRIPTS], ids=lambda w: " ".join(w) or "experiments")
def test_help_works_on_every_script(words, capsys):
    assert main(words + ["--help"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m experiments"), out[:200]


@pytest.mark.parametrize("argv", [["nope"], []])
def test_unknown_or_missing_script_exits_2(argv, capsys):
    assert main(argv) == cli.EXIT_USAGE
    assert "usage:" in capsys.readouterr().err


def test_the_library_never_imports_the_experiments():
    import subprocess
    import sys

    code = ("import sys, jaxmlp, jaxmlp.cli, jaxmlp.train_cli, verification; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'experiments'); print(bad); assert not bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
