"""Multi-process data-parallel training with real processes over localhost: the one-process answer for a row
count the processes do not divide (1797 digits rows on 2), every scheme, the population, and resume across a
changed process count (Higham's 10 points on 1, 2 and 3 processes: the 3-process cluster pads its rows too).

Every test starts its processes on a free port of 127.0.0.1, bounds their time and reaps every child.
JAX's CPU collectives (gloo) make two processes on one machine a real cluster: each holds its own rows,
the params are replicated, and XLA inserts the all-reduce between the processes.
"""
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.xdist_group("multiprocess")  # one worker: the module fixtures start their clusters once

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "multiprocess_worker.py"
TIMEOUT_S = 240
# 2 processes against 1, float64, 50 steps: the all-reduce sums the two halves of each batch sum in another
# order, a few ulps per step; the bound is 1e-12 relative.
F64_RTOL = 1e-12
# float32: the same reordering at eps32 ~ 1.2e-7 per step, grown over the momentum steps: 1e-4 relative.
F32_RTOL = 1e-4
# The CLI runs (Higham's points, 2 processes; every step all-reduces over gloo, ~1 ms on the 2-core CI machine,
# several under load): long enough that the kill lands after the first checkpoint (250) and well before the end
# (1250 steps, a second or more, later; the test polls for that checkpoint every 20 ms), short enough to run
# five times.
CLI_STEPS = 1500
# The CLI runs' heartbeat: the survivor of the kill test stops this long after its peer dies (the default, 20 s,
# would be idle time here); long enough that a process busy compiling on a loaded machine still answers.
HEARTBEAT_S = 6
CHECKPOINT_EVERY = 250
GRAD_RTOL = 1e-12  # manual gradient vs jax.grad in float64 (verification.checker.base.tolerances.F64_RTOL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENV = {"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT),  # XLA_FLAGS: the suite's (conftest.py)
       "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    """The folder of the compilation caches that the start-ups of this module share, one per process id: the
    start-ups run one after another and compile many of the same programs (the CLI runs repeat one 2-process
    run).  One per process id, because jax's cache does not lock an entry against a reader while another
    process writes it, and the processes of one start-up run at once."""
    return tmp_path_factory.mktemp("xla_cache")


def start(argvs, log_dir, cache):
    """Start one process per argv, process ``i`` with the compilation cache ``cache/i``; stdout and stderr go
    to log files (no pipe can fill up and block)."""
    base = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}  # --dtype float64 must turn x64 on itself
    procs = []
    for i, argv in enumerate(argvs):
        log = open(log_dir / f"proc{i}.log", "w")
        procs.append((subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                                       env={**base, **ENV, "JAX_COMPILATION_CACHE_DIR": str(cache / str(i))}), log))
    return procs


def reap(procs, timeout=TIMEOUT_S):
    """Wait for every process (at most ``timeout`` s in all), kill what is left, close the logs; the exit codes."""
    deadline = time.monotonic() + timeout
    codes = []
    for p, log in procs:
        try:
            codes.append(p.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            codes.append(p.wait())
        log.close()
    return codes


def run_worker(mode, n, tmp_path, cache, dtype="float64", data="digits"):
    """One cluster start-up of ``n`` processes running ``mode`` (modes joined by commas run in turn); process
    0's result, with every process's guard report in ``guards`` when ``guard`` is among the modes."""
    d = tmp_path / f"{mode.replace(',', '+')}-{data}-{dtype}-{n}"
    d.mkdir()
    port, out = free_port(), d / "out.json"
    procs = start([[sys.executable, str(WORKER), mode, str(i), str(n), str(port), str(out), dtype, data]
                   for i in range(n)], d, cache)
    codes = reap(procs)
    logs = "\n".join((d / f"proc{i}.log").read_text()[-2000:] for i in range(n))
    assert codes == [0] * n, f"exit codes {codes}\n{logs}"
    result = json.loads(out.read_text())
    if "guard" in mode.split(","):
        result["guards"] = [json.loads(pathlib.Path(f"{out}.{i}").read_text())["guard"] for i in range(n)]
    return result


def max_rel(a, b):
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v))) / np.max(np.abs(np.asarray(v))))
               for u, v in zip(a, b))


SCHEMES = ["full_batch", "minibatch", "sgd_replacement"]
# (data, process counts): 1797 on 2 does not divide, so the padding rows are in play (1797 on 3 processes
# divides and needs no padding: measured once for docs/scale_out.md; Higham's 10 points on 3 processes, the
# schemes and the population, left out of the suite for time, its start-ups being four of seven: the CLI
# tests below run those points on 3 processes)
CASES = {"digits1797": (1, 2)}
# What else each cluster start-up runs after the float64 schemes (one start-up each, shared by the tests below;
# a start-up of 2 or 3 processes costs more than the modes it runs).  The population is always Higham's
# network (tests/multiprocess_worker.py), so the 1-process start-up's population is the 2-process one's reference;
# the float32 mini-batch runs in the digits start-ups with x64 off for it.
ALSO = {("digits1797", 1): ",digits-minibatch@float32,population",
        ("digits1797", 2): ",digits-minibatch@float32,grad,population,guard"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, compile_cache):
    """50 steps (multiprocess_worker.STEPS) of each data-parallel scheme, float64, for every (data, process count) of CASES, and what
    ALSO adds: the float32 mini-batch, the population, the manual gradient and the non-finite guard."""
    d = tmp_path_factory.mktemp("rows")
    return {(data, n): run_worker("digits-all" + ALSO.get((data, n), ""), n, d, compile_cache, data=data)
            for data, counts in CASES.items() for n in counts}


@pytest.mark.parametrize("data,n", [(d, n) for d, counts in CASES.items() for n in counts if n > 1])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_n_processes_equal_one_for_any_row_count(scheme, data, n, runs):
    many, one = runs[data, n], runs[data, 1]
    assert many["processes"] == n and many["devices"] == n and one["processes"] == 1
    assert many["rows"] == one["rows"] == one["padded_rows"] and many["padded_rows"] % n == 0
    assert many[scheme]["dtype"] == one[scheme]["dtype"] == "float64"
    rel = max_rel(many[scheme]["params"], one[scheme]["params"])
    assert rel <= F64_RTOL, rel
    assert max_rel([many[scheme]["losses"]], [one[scheme]["losses"]]) <= F64_RTOL  # every logged loss


def test_padding_is_in_play(runs):
    assert runs["digits1797", 2]["padded_rows"] == 1798


def test_two_processes_float32_bound(runs):
    two, one = runs["digits1797", 2]["minibatch@float32"], runs["digits1797", 1]["minibatch@float32"]
    assert two["dtype"] == one["dtype"] == "float32"
    assert max_rel(two["params"], one["params"]) <= F32_RTOL


def test_manual_gradient_under_two_processes(runs):
    r = runs["digits1797", 2]
    assert r["devices"] == 2 and r["grad_replicated"] and r["padded_rows"] > r["rows"]  # padding rows weighted 0
    assert r["manual_vs_autodiff"] <= GRAD_RTOL, r


def test_population_split_over_processes(runs):
    many, one = runs["digits1797", 2]["population"], runs["digits1797", 1]["population"]  # Higham's network
    assert many["params_sharded_over"] == 2 and one["params_sharded_over"] == 1
    assert max_rel(many["params"], one["params"]) <= F64_RTOL


def test_non_finite_guard_reports_the_same_on_every_process(runs):
    reports = runs["digits1797", 2]["guards"]
    assert reports[0] is not None and reports[0] == reports[1], reports


def _cli(n, pid, port, ck, out, *extra):
    """The ``jaxmlp train`` command of process ``pid`` of ``n`` (``n = 1``: a plain one-process run), float64,
    Higham's 10 points, mini-batches of 4: the run that every test below makes, killed or resumed."""
    cmd = [sys.executable, "-m", "jaxmlp", "train", "--steps", str(CLI_STEPS), "--log-every", "50",
           "--checkpoint-dir", str(ck), "--checkpoint-every", str(CHECKPOINT_EVERY), "--out", str(out),
           "--dtype", "float64", "--scheme", "minibatch", "--batch-size", "4", "--heartbeat-timeout", str(HEARTBEAT_S),
           *extra]
    return cmd + (["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n), "--process-id", str(pid)]
                  if n > 1 else [])


def _run_cli(tmp_path, cache, name, n, ck, *extra):
    """The run on ``n`` processes to its end; its final checkpoint."""
    from jaxmlp import checkpoint

    port, d = free_port(), tmp_path / name
    d.mkdir()
    codes = reap(start([_cli(n, i, port, ck, d / "out", *extra) for i in range(n)], d, cache))
    assert codes == [0] * n, (d / "proc0.log").read_text()[-2000:]
    return checkpoint.load(checkpoint.latest(d / "out" / "final"))


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, compile_cache):
    """The uninterrupted 2-process CLI run and its checkpoint folder (the newest 3 of every CHECKPOINT_EVERY
    steps): the reference of the kill test and of the resume on other process counts."""
    d = tmp_path_factory.mktemp("cli")
    return _run_cli(d, compile_cache, "ref", 2, d / "ck_ref"), d / "ck_ref"


def test_kill_one_process_then_resume_is_bitwise(tmp_path, two_process_run, compile_cache):
    """SIGKILL one of two processes mid-run: the survivor stops with an error within the heartbeat
    timeout; both restarted with --resume end bitwise equal to an uninterrupted 2-process run."""
    run = tmp_path / "run"
    run.mkdir()
    port = free_port()
    # a copy of the caches: a process killed while it writes an entry would leave it half-written
    procs = start([_cli(2, i, port, run / "ck", run / "out") for i in range(2)], run,
                  shutil.copytree(compile_cache, tmp_path / "cache"))
    deadline = time.monotonic() + TIMEOUT_S
    while not list((run / "ck").glob("ckpt_*.safetensors")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list((run / "ck").glob("ckpt_*.safetensors")), "no checkpoint written before the kill"
    os.killpg(procs[1][0].pid, signal.SIGKILL)
    killed_at = time.monotonic()
    codes = reap(procs)
    survivor_s = time.monotonic() - killed_at
    assert codes[1] == -signal.SIGKILL and codes[0] != 0, codes
    assert survivor_s < 60, f"the survivor took {survivor_s:.0f} s to stop"
    log0 = (run / "proc0.log").read_text()
    assert "another task died" in log0 or "heartbeat" in log0 or "Connection" in log0, log0[-2000:]
    stray = [f.name for f in (run / "ck").iterdir() if not re.fullmatch(r"ckpt_\d+\.safetensors", f.name)]
    assert not stray, f"files other than complete checkpoints were left: {stray}"
    assert not (run / "out" / "final").exists(), "the killed run wrote its final checkpoint"

    b = _run_cli(tmp_path, compile_cache, "resume", 2, run / "ck", "--resume")
    a = two_process_run[0]
    assert a.step == b.step == CLI_STEPS
    for u, v in zip(a.params, b.params):
        assert np.array_equal(np.asarray(u.W), np.asarray(v.W)) and np.array_equal(np.asarray(u.b), np.asarray(v.b))
    assert np.array_equal(a.history_losses, b.history_losses)


@pytest.mark.parametrize("n", [1, 3])
def test_resume_on_another_process_count(n, tmp_path, two_process_run, compile_cache):
    """A checkpoint of a 2-process run (one checkpoint before its end) resumed on 1 and on 3 processes ends
    where the uninterrupted 2-process run ends; --dtype float64 works without JAX_ENABLE_X64."""
    ref, ck_ref = two_process_run
    ck = tmp_path / "ck"
    ck.mkdir()
    before_end = CLI_STEPS - CHECKPOINT_EVERY
    shutil.copy(ck_ref / f"ckpt_{before_end:010d}.safetensors", ck)  # the run as if stopped there
    resumed = _run_cli(tmp_path, compile_cache, f"resume{n}", n, ck, "--resume")
    assert ref.step == resumed.step == CLI_STEPS and np.asarray(ref.params[0].W).dtype == np.float64
    rel = max_rel([np.asarray(p.W) for p in resumed.params], [np.asarray(p.W) for p in ref.params])
    assert rel <= F64_RTOL, rel
    assert max_rel([resumed.history_losses], [ref.history_losses]) <= F64_RTOL
