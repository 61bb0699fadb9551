"""The command line: --help everywhere, one-line user errors, --debug tracebacks, documented exit codes."""
import pytest

from jaxmlp import cli
from jaxmlp.cli import main

HELP = [[], ["train"]]


@pytest.mark.parametrize("words", HELP, ids=lambda w: " ".join(w) or "jaxmlp")
def test_help_works_on_every_command(words, capsys):
    assert main(words + ["--help"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("usage: jaxmlp") and "--help" in out or "-h" in out


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--lr", "-1"], "--learning-rate: expected a finite number > 0, got -1.0"),
    (["train", "--learning-rate", "nan"], "--learning-rate: expected a finite number > 0, got nan"),
    (["train", "--schedule", "exponential", "--decay-rate", "0"], "--decay-rate: expected a number in (0, 1], got 0.0"),
    (["train", "--schedule", "exponential", "--transition-steps", "0"], "--transition-steps: expected an int > 0, got 0"),
    (["train", "--schedule", "cosine", "--end-value", "1"], "--end-value: expected a number in [0, --learning-rate"),
    (["train", "--schedule", "warmup-cosine", "--steps", "10", "--warmup-steps", "10"],
     "--warmup-steps: expected an int in [0, --decay-steps = 10), got 10"),
    (["train", "--l1", "-0.1"], "--l1: expected a finite number >= 0, got -0.1"),
    (["train", "--l2", "inf"], "--l2: expected a finite number >= 0, got inf"),
    (["train", "--sizes", "2,x,2"], "--sizes: expected comma-separated ints"),
    (["train", "--sizes", "3,2"], "--sizes: higham has 2 input features, got sizes[0] = 3"),
    (["train", "--resume"], "--resume: needs --checkpoint-dir"),
    (["train", "--activation", "gelu"], "activation: expected one of"),
    (["train", "--steps", "0"], "steps: expected an int >= 1, got 0"),
    (["train", "--heartbeat-timeout", "0"], "--heartbeat-timeout: expected an int >= 1 (seconds), got 0"),
])
def test_user_errors_print_one_line_and_exit_2(argv, fragment, capsys):
    assert main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_debug_shows_the_traceback():
    with pytest.raises(ValueError, match="--learning-rate: expected a finite number > 0"):
        main(["--debug", "train", "--lr", "-1"])


@pytest.mark.parametrize("argv", [["run"], ["nope"], [], ["train", "--steps", "many"]])
def test_argparse_usage_errors_exit_2(argv, capsys):
    assert main(argv) == cli.EXIT_USAGE
    assert "usage:" in capsys.readouterr().err


def test_non_finite_training_exits_3(tmp_path, capsys):
    argv = ["train", "--activation", "relu", "--head", "mse", "--init", "he", "--lr", "1e30", "--steps", "200",
            "--log-every", "100", "--out", str(tmp_path)]
    assert main(argv) == cli.EXIT_NON_FINITE
    err = capsys.readouterr().err
    assert "non-finite value at step 1" in err and "--no-check-finite" in err and "Traceback" not in err
    assert not (tmp_path / "metrics.json").exists()


def test_exit_codes_are_documented():
    for code in (cli.EXIT_OK, cli.EXIT_CHECK_FAILED, cli.EXIT_USAGE, cli.EXIT_NON_FINITE, cli.EXIT_INTERRUPTED):
        assert f"\n  {code} " in cli.__doc__


@pytest.mark.parametrize("optimizer, schedule, lr", [("heavy_ball", "exponential", "0.5"), ("adamw", "warmup-cosine", "0.05"),
                                                     ("rmsprop", "cosine", "0.01"), ("nesterov", "constant", "0.5")])
def test_every_optimizer_and_schedule_trains(optimizer, schedule, lr, tmp_path, capsys):
    argv = ["train", "--optimizer", optimizer, "--schedule", schedule, "--learning-rate", lr, "--steps", "300",
            "--scheme", "full_batch",
            "--warmup-steps", "20", "--transition-steps", "100", "--l2", "1e-4", "--l1", "1e-5",
            "--log-every", "100", "--out", str(tmp_path)]
    assert main(argv) == cli.EXIT_OK
    import json

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["args"]["schedule"] == schedule and metrics["args"]["l2"] == 1e-4
    assert metrics["losses"][-1] < metrics["losses"][0]


def test_dtype_float64_turns_x64_on_by_itself(tmp_path):
    """``--dtype float64`` in a fresh process without JAX_ENABLE_X64: it trains in float64 (issue 26)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    out = subprocess.run([sys.executable, "-m", "jaxmlp", "train", "--steps", "20", "--log-every", "10", "--dtype",
                          "float64", "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    from jaxmlp import checkpoint

    ck = checkpoint.load(checkpoint.latest(tmp_path / "run" / "final"))
    assert str(ck.params[0].W.dtype) == "float64"
    assert "x64" in subprocess.run([sys.executable, "-m", "jaxmlp", "train", "--help"], capture_output=True,
                                   text=True, env=env, timeout=120).stdout


def test_python_api_float64_without_x64_names_the_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    code = ("import jax, jaxmlp\ntry:\n    jaxmlp.init(jaxmlp.MLP((2, 1)), jax.random.key(0), dtype='float64')\n"
            "except ValueError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120).stdout
    assert "jax.config.update('jax_enable_x64', True)" in out, out
