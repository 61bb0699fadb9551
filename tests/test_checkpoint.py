"""Checkpoints: round trip, keep-k, atomic writes, exact resume in process and after SIGKILL."""
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmlp
from jaxmlp import checkpoint
from jaxmlp import optim
from jaxmlp import train

BN_MODEL = jaxmlp.MLP((3, 5, 4, 2), "tanh", "softmax_cross_entropy", batchnorm=True)
HIGHAM = jaxmlp.MLP((2, 2, 3, 2), "sigmoid", "sigmoid_quadratic")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _same(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        x.dtype == y.dtype and np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32, jnp.bfloat16])
def test_round_trip_is_bitwise(tmp_path, dtype):
    params = jaxmlp.init(BN_MODEL, jax.random.key(0), dtype=dtype)
    opt = optim.adam(1e-3)
    opt_state = jax.tree.map(lambda a: a + 1, opt.init(params))  # non-trivial moments and count
    state = jaxmlp.init_state(BN_MODEL, dtype)
    ck = checkpoint.Checkpoint(7, params, opt_state, jax.random.key(42), BN_MODEL, state, np.arange(3), np.ones(3, np.float32),
                      {"note": "x", "acc": [0.5]})
    checkpoint.save(tmp_path, ck)
    back = checkpoint.load(tmp_path, BN_MODEL, opt)
    assert back.step == 7 and back.model == BN_MODEL and back.metrics == ck.metrics
    assert _same(back.params, params) and _same(back.opt_state, opt_state) and _same(back.state, state)
    assert np.array_equal(jax.random.key_data(back.key), jax.random.key_data(ck.key))
    assert np.array_equal(back.history_steps, ck.history_steps) and back.history_losses.dtype == np.float32


def test_keep_k_and_no_temporary_files(tmp_path):
    params = jaxmlp.init(HIGHAM, jax.random.key(0))
    for step in (10, 20, 30, 40):
        checkpoint.save(tmp_path, checkpoint.Checkpoint(step, params, (), jax.random.key(0), HIGHAM), keep=2)
    assert [p.name for p in tmp_path.iterdir()] and sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt_0000000030.safetensors", "ckpt_0000000040.safetensors"]
    assert checkpoint.load(tmp_path).step == 40


def test_failed_write_leaves_the_old_checkpoint_and_no_partial_file(tmp_path, monkeypatch):
    params = jaxmlp.init(HIGHAM, jax.random.key(0))
    checkpoint.save(tmp_path, checkpoint.Checkpoint(1, params, (), jax.random.key(0), HIGHAM), keep=1)

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(tmp_path, checkpoint.Checkpoint(2, params, (), jax.random.key(0), HIGHAM), keep=1)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt_0000000001.safetensors"]
    assert checkpoint.load(tmp_path).step == 1


def test_in_process_resume_is_bitwise_and_refuses_foreign_folders(tmp_path):
    x, y = jaxmlp.data.higham_points()
    params = jaxmlp.init(HIGHAM, jax.random.key(0), "higham")
    grad, opt, key = train.manual_grad(HIGHAM), optim.momentum(0.05, 0.9), jax.random.key(1)
    kw = dict(key=key, scheme="sgd_replacement", log_every=50, progress=False)
    full = train.train(grad, opt, params, x, y, steps=1000, **kw)
    ck = train.Checkpointer(tmp_path, HIGHAM, every=200, keep=2)
    train.train(grad, opt, params, x, y, steps=500, checkpoint=ck, **kw)  # stops at 500 of the 1000
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train.train(grad, opt, params, x, y, steps=1000, checkpoint=ck, **kw)
    with pytest.raises(ValueError, match="key: .* another key"):
        train.train(grad, opt, params, x, y, steps=1000, checkpoint=ck._replace(resume=True), **{**kw, "key": jax.random.key(9)})
    resumed = train.train(grad, opt, params, x, y, steps=1000, checkpoint=ck._replace(resume=True), **kw)
    assert _same(resumed.params, full.params) and _same(resumed.opt_state, full.opt_state)
    assert np.array_equal(resumed.losses, full.losses) and np.array_equal(resumed.steps, full.steps)


ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
STEPS = 500_000


def _cli(*args):
    return [sys.executable, "-m", "jaxmlp", "train", "--steps", str(STEPS), "--checkpoint-every", "10000",
            "--log-every", "1000", *map(str, args)]


def test_sigkill_then_resume_is_bitwise_equal_to_an_uninterrupted_run(tmp_path):
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=ROOT, text=True)
    ref = subprocess.Popen(_cli("--out", tmp_path / "ref"), **pipes)
    cmd = _cli("--checkpoint-dir", tmp_path / "ck", "--out", tmp_path / "run")
    victim = subprocess.Popen(cmd, **pipes)
    deadline = time.time() + 120
    while checkpoint.latest(tmp_path / "ck") is None and victim.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = checkpoint.load(tmp_path / "ck").step
    assert 0 < killed_at < STEPS and not (tmp_path / "run" / "final").exists()
    assert all(p.name.startswith(("ckpt_", ".")) for p in (tmp_path / "ck").iterdir())
    resumed = subprocess.run(cmd + ["--resume"], **{k: v for k, v in pipes.items() if k not in ("stdout", "stderr")},
                             capture_output=True)
    assert resumed.returncode == 0, resumed.stderr
    _, err = ref.communicate()
    assert ref.returncode == 0, err
    a, b = checkpoint.load(tmp_path / "ref" / "final"), checkpoint.load(tmp_path / "run" / "final")
    assert a.step == b.step == STEPS and killed_at < STEPS
    assert _same(a.params, b.params), "resumed params differ from the uninterrupted run"
    assert np.array_equal(a.history_losses, b.history_losses) and np.array_equal(a.history_steps, b.history_steps)
