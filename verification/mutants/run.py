"""The mutation run: plan the mutants, hand them to worker processes in batches, enforce the time limits.

Workers are local child processes (``python -m verification.mutants.worker``), each in its own process group;
a worker that passes a mutant's time limit is killed with its whole group (``os.killpg``) and reaped, the
mutant is listed as ``timeout``, and a new worker takes the rest of the batch.
"""
from __future__ import annotations

import json
import os
import queue
import random
import selectors
import signal
import subprocess
import sys
import threading

from verification.checker.jaxpr.interpreter import ONE_SHOT_CPU_OPTIONS
from verification.mutants.operators import Mutant, mutants_of
from verification.mutants.targets import BACKWARD, CHECKS, TARGETS

__all__ = ["BATCH", "MUTANT_TIME_LIMIT", "QUICK_COMPILE_XLA_FLAGS", "SAMPLE_SEED", "SAMPLE_SIZE", "SUBSET_FRACTION", "plan", "repo_root", "run",
           "sample", "subset"]

# A survivor runs every row of its module's checks: up to ~4 min for the optimizers' 180 trajectories or the 30
# batch-norm networks on a loaded 2-core machine.  Twice that is a hang, not a slow check.
MUTANT_TIME_LIMIT = 480.0
BATCH = 40  # mutants per worker: one jax import (~3 s) per batch, and a lost batch stays small
SAMPLE_SEED, SAMPLE_SIZE = 34, 220  # the checker's fixed sample (issue 34: >= 200 scored)
# The run's seeded subset (``--all-mutants`` runs all 680): the whole set does not fit the 30 minutes on a loaded
# 2-core machine (a mutant re-imports jaxmlp, so every row it runs compiles afresh).  The backward modules keep
# most of theirs (the checker's sample is drawn from them), the others a quarter: 339 of 680.
SUBSET_FRACTION = {"backward": 0.83, "other": 0.25}
# The workers compile as the test suite does (conftest.py), unless XLA_FLAGS is set: LLVM at -O0 and XLA's older
# CPU emitter, the options the checker compiles its one-shot programs with (interpreter.ONE_SHOT_CPU_OPTIONS), as
# flags for every program.  The arithmetic is the same IEEE operations (no fast-math either way), so a row's verdict
# is the suite's; most of a worker's time is compiling small programs (the checker on a mutant: 21 s -> 10 s, warm).
QUICK_COMPILE_XLA_FLAGS = " ".join(f"--{k}={str(v).lower()}" for k, v in ONE_SHOT_CPU_OPTIONS.items())


def repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _spawn(job: dict, repo: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("XLA_FLAGS", QUICK_COMPILE_XLA_FLAGS)
    p = subprocess.Popen([sys.executable, "-m", "verification.mutants.worker"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=repo,
                         start_new_session=True)
    p.stdin.write(json.dumps(job))
    p.stdin.close()
    return p


def _kill(p: subprocess.Popen):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def _lines(p: subprocess.Popen, limit: float):
    """The worker's stdout lines; raises TimeoutError when no line comes within ``limit`` seconds."""
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    try:
        while True:
            if not sel.select(timeout=limit):
                raise TimeoutError
            line = p.stdout.readline()
            if not line:
                return
            yield json.loads(line)
    finally:
        sel.close()


def plan(repo: str | None = None) -> dict[str, list[Mutant]]:
    """Every module's mutants (the ``variable`` operator's peers recorded by one worker on the original)."""
    repo = repo or repo_root()
    p = _spawn({"repo": repo, "peers": list(TARGETS)}, repo)
    try:
        peers = {d["module"]: d["peers"] for d in _lines(p, MUTANT_TIME_LIMIT)}
    finally:
        _kill(p)
        err = p.stderr.read()
    if set(peers) != set(TARGETS):
        raise RuntimeError(f"recording the locals' shapes failed: {err[-2000:]}")
    out = {}
    for module, functions in TARGETS.items():
        with open(os.path.join(repo, "jaxmlp", module)) as f:
            out[module] = mutants_of(module, f.read(), functions, peers[module])
    return out


def subset(mutants: dict[str, list[Mutant]]) -> dict[str, list[Mutant]]:
    """The run's seeded subset: per module ``round(n * SUBSET_FRACTION)`` mutants (``SAMPLE_SEED``), in source order."""
    out = {}
    for mod, ms in mutants.items():
        k = round(len(ms) * SUBSET_FRACTION["backward" if mod in BACKWARD else "other"])
        keep = set(random.Random(f"{SAMPLE_SEED}/{mod}").sample(sorted(m.key for m in ms), k))
        out[mod] = [m for m in ms if m.key in keep]
    return out


def sample(mutants: dict[str, list[Mutant]]) -> list[str]:
    """The checker's fixed sample: ``SAMPLE_SIZE`` keys of backward-module mutants, drawn with ``SAMPLE_SEED``."""
    keys = sorted(m.key for mod in BACKWARD for m in mutants.get(mod, ()))
    return sorted(random.Random(SAMPLE_SEED).sample(keys, min(SAMPLE_SIZE, len(keys))))


def _run_job(job: dict, repo: str, results: list, log) -> None:
    todo = [Mutant(**d) for d in job["mutants"]]
    control = job.get("control", False)
    while todo or control:
        p = _spawn(dict(job, mutants=[m._asdict() for m in todo], control=control), repo)
        current, done = None, set()
        try:
            for d in _lines(p, MUTANT_TIME_LIMIT):
                if "control" in d:
                    control = False
                    results.append(dict(d, kind="control"))
                    log(f"control {d['control']}: {'PASS' if d['passed'] else 'FAIL ' + d['why']} ({d['rows']} rows)")
                elif "start" in d:
                    current = d["start"]
                else:
                    done.add(d["key"])
                    current = None
                    results.append(dict(d, kind="mutant"))
                    log(f"{d['outcome']:<10} {d['key']}  {d.get('why', '')[:90]}")
            if current is not None:
                results.append({"kind": "mutant", "key": current, "outcome": "crashed",
                                "why": "worker died: " + p.stderr.read()[-300:].strip().replace("\n", " | ")})
                done.add(current)
        except TimeoutError:
            if current is None and control:
                control = False
                results.append({"kind": "control", "control": job["module"], "passed": False, "why": "timeout", "rows": 0})
            elif current is not None:
                results.append({"kind": "mutant", "key": current, "outcome": "timeout",
                                "why": f"no result within {MUTANT_TIME_LIMIT:.0f} s"})
                done.add(current)
                log(f"timeout    {current}")
        finally:
            _kill(p)
        if not done and not todo:
            break
        if not done and current is None and not control:
            for m in todo:  # the worker failed before any mutant: do not loop
                results.append({"kind": "mutant", "key": m.key, "outcome": "error", "why": p.stderr.read()[-300:]})
            break
        todo = [m for m in todo if m.key not in done]


def run(mutants: dict[str, list[Mutant]], score: list[str], workers: int = 2, repo: str | None = None,
        log=print, controls: bool = True, checks: dict | None = None, score_only: bool = False) -> list[dict]:
    """Run every mutant (and the controls: the original package through each check spec once) on
    ``workers`` worker processes at a time; returns the result records (one per mutant and per control).
    ``checks``: per module, the check specs (default :data:`~verification.mutants.targets.CHECKS`, the first
    pass; ``--survivors-of`` passes ``FULL_CHECKS``).  ``score_only``: no rows and no controls, only the
    checker on each mutant (outcome ``scored``; :mod:`verification.mutants.checker_benchmark`)."""
    repo = repo or repo_root()
    checks = CHECKS if checks is None else checks
    if score_only:
        checks, controls, score = {mod: () for mod in mutants}, False, [m.key for ms in mutants.values() for m in ms]
    jobs = queue.Queue()
    scored = set(score)
    heavy = ("optim/", "batchnorm.py", "network.py", "heads.py")  # the modules with the slowest controls first
    order = sorted(mutants, key=lambda mod: not mod.startswith(heavy))
    for mod in order:
        ms = mutants[mod]
        for i in range(0, len(ms), BATCH):
            batch = ms[i:i + BATCH]
            jobs.put({"repo": repo, "module": mod, "checks": checks[mod], "control": False, "score_only": score_only,
                      "mutants": [m._asdict() for m in batch], "score": [m.key for m in batch if m.key in scored]})
    # the controls: the original package through every check spec that any module's mutants run, once each
    specs = list(dict.fromkeys(json.dumps(spec) for mod in order for spec in checks[mod])) if controls else []
    for spec in specs:
        jobs.put({"repo": repo, "module": json.loads(spec)[0] if spec.startswith("[") else json.loads(spec),
                  "checks": [json.loads(spec)], "control": True, "mutants": []})
    results: list = []
    lock = threading.Lock()

    def safe_log(msg):
        with lock:
            log(msg)

    def worker_loop():
        while True:
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                return
            _run_job(job, repo, results, safe_log)

    threads = [threading.Thread(target=worker_loop) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
