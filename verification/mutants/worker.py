"""The worker process: ``python -m verification.mutants.worker`` reads one job (JSON on stdin: the repository,
one module's mutants, the checks, the keys to score) and writes one JSON line per event on stdout.

jax is imported once per worker.  Each mutant gets its own copy of the ``jaxmlp`` package under a fresh
temporary folder (so that no stale module, bytecode or ``linecache`` entry of an earlier mutant can be
reached: every file path is new), the mutated file written there; the worker drops ``jaxmlp`` and
``verification.suite`` from ``sys.modules``, puts the folder first on ``sys.path``, imports both again and
asserts that ``jaxmlp`` came from the folder.  Then the module's checks run, the first failing (or raising)
row kills the mutant; a killed mutant in the scored sample is given to the checker.  Equivalence is decided
first, by the probes (cheap: the mutated function alone on random inputs), so that an equivalent mutant does
not pay for every row of its module's checks, which it cannot fail.  The parent (:mod:`verification.mutants.run`) enforces the time limit per mutant from the
``start`` lines: it kills the worker's process group and starts a new worker for the rest.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
import traceback

from verification.mutants.operators import Mutant, apply

__all__ = ["load_package", "main", "run_rows"]

_DROP = ("jaxmlp", "verification.suite")


def _emit(**record):
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def load_package(repo: str, module: str | None = None, source: str | None = None):
    """``jaxmlp`` imported from a fresh copy of ``repo/jaxmlp`` (with ``module`` replaced by ``source``)."""
    tmp = tempfile.mkdtemp(prefix="jaxmlp-mutant-")
    try:
        shutil.copytree(os.path.join(repo, "jaxmlp"), os.path.join(tmp, "jaxmlp"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        if module is not None:
            with open(os.path.join(tmp, "jaxmlp", module), "w") as f:
                f.write(source)
        _drop()
        sys.path.insert(0, tmp)
        importlib.invalidate_caches()
        jm = importlib.import_module("jaxmlp")
        if not os.path.realpath(jm.__file__).startswith(os.path.realpath(tmp)):
            raise RuntimeError(f"jaxmlp imported from {jm.__file__}, not from the mutant's folder {tmp}")
        yield jm, os.path.join(tmp, "jaxmlp", module) if module else None
    finally:
        if tmp in sys.path:
            sys.path.remove(tmp)
        _drop()
        shutil.rmtree(tmp, ignore_errors=True)


def _drop():
    for name in [n for n in sys.modules if any(n == d or n.startswith(d + ".") for d in _DROP)]:
        del sys.modules[name]


def _diagonal(acts, heads, shift):
    n = max(len(acts), len(heads))
    keep = {(acts[i % len(acts)], heads[(i + shift) % len(heads)]) for i in range(n)}
    return lambda act, head: (act, head) in keep


def _rows(spec):
    """The rows of one check spec: a registry name, or ``(name, "all" | "diagonal" | None)``, or
    ``("network_grid", "ACT/HEAD")`` (the grid's rows of one pair)."""
    import jaxmlp
    from verification.suite import registry
    from verification.suite.levenberg_marquardt import LS_HEADS

    name, arg = spec if isinstance(spec, (list, tuple)) else (spec, None)
    if name == "network_grid" and arg and "/" in arg:  # "ACT/HEAD": the grid's rows of one activation and one head
        from verification.suite.network import grid_rows

        act, head = arg.split("/")
        return grid_rows(act, [head])
    if name == "network_grid" and arg == "diagonal":  # every activation and every head once
        from verification.suite.network import grid_rows

        keep = _diagonal(list(jaxmlp.ACTIVATIONS), list(jaxmlp.HEADS), 1)
        return (r for act in jaxmlp.ACTIVATIONS for head in jaxmlp.HEADS if keep(act, head)
                for r in grid_rows(act, [head]))
    if name == "optimizer_trajectories" and arg:  # the rows of the optimizers that run the mutated file
        import jax.numpy as jnp

        from verification.mutants.targets import OPTIMIZERS_OF
        from verification.suite.optimizers import trajectory_rows

        names = OPTIMIZERS_OF[arg]
        select = None if names is None else (lambda prob, kind, opt: opt in names)
        return (r for dtype in (jnp.float64, jnp.float32) for r in trajectory_rows(dtype, select=select))
    fn = next(c.rows for c in registry.CHECKS if c.rows.__name__ == name)
    if arg == "diagonal":
        acts = list(jaxmlp.ACTIVATIONS) if name != "bn_network" else [a for a in jaxmlp.ACTIVATIONS if a != "identity"]
        heads = list(LS_HEADS) if name in ("jacobians", "gauss_newton_rows") else list(jaxmlp.HEADS)
        if name == "gauss_newton_rows":
            acts = ["tanh", "relu", "sigmoid"]
        return fn(select=_diagonal(acts, heads, 1))
    return fn()


def run_rows(checks):
    """``(killed, why, rows run)``: the checks' rows in order until the first FAIL or exception."""
    n = 0
    try:
        for spec in checks:
            for row in _rows(spec):
                n += 1
                if not row.passed:
                    return True, f"FAIL {row.name}: {str(row.where)[:160]}", n
    except Exception as e:  # noqa: BLE001 -- a raising row kills the mutant; the exception is its reason
        return True, f"raises {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}", n
    return False, "", n


def _one(job, mutant, original_outputs):
    repo, module = job["repo"], job["module"]
    with open(os.path.join(repo, "jaxmlp", module)) as f:
        source = f.read()
    t0 = time.perf_counter()
    out = {"key": mutant.key}
    try:
        ctx = load_package(repo, module, apply(source, mutant))
        jm, path = ctx.__enter__()
    except Exception as e:  # noqa: BLE001 -- an import crash is a kill, listed apart
        return dict(out, outcome="crashed", why=f"import: {type(e).__name__}: {e}"[:200], seconds=time.perf_counter() - t0)
    if job.get("score_only"):  # the checker's benchmark: no rows; the scorer's own pre-screen decides what it sees
        try:
            from verification.mutants.checker_score import score

            return dict(out, outcome="scored", checker=score(jm, mutant), seconds=time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 -- the checker raising is a finding of the benchmark, never a lost batch
            return dict(out, outcome="error", why=f"the checker raises {type(e).__name__}: {e}"[:300],
                        trace=traceback.format_exc()[-800:], seconds=time.perf_counter() - t0)
        finally:
            ctx.__exit__(None, None, None)
    try:
        from verification.mutants.equivalence import (
            compare_outputs,
            probe_with_coverage,
        )

        try:
            ref = original_outputs()  # first, untraced: the eager ops compile outside sys.settrace
            got, lines = probe_with_coverage(jm, module, path)
            differs = compare_outputs(got, ref)
        except Exception as e:  # noqa: BLE001 -- a probe that raises: not equivalent; the checks decide
            got, lines, differs = {}, {mutant.lineno}, f"the probes raise {type(e).__name__}"
        reached = mutant.lineno in lines
        if reached and differs is None:
            return dict(out, outcome="equivalent", seconds=time.perf_counter() - t0,
                        why=f"line {mutant.lineno} run by the probes; every output equal to 1e-12 ({', '.join(got)})")
        with contextlib.redirect_stdout(io.StringIO()):
            killed, why, n = run_rows(job["checks"])
        out.update(rows=n)
        if killed:
            out.update(outcome="killed", why=why)
            if mutant.key in job.get("score", ()):
                from verification.mutants.checker_score import score

                out["checker"] = score(jm, mutant)
        else:
            out.update(outcome="survived", why=differs if reached else "the probes never run the mutated line")
    except Exception as e:  # noqa: BLE001 -- report, never lose the batch
        out.update(outcome="error", why=f"{type(e).__name__}: {e}"[:300], trace=traceback.format_exc()[-800:])
    finally:
        ctx.__exit__(None, None, None)
    out["seconds"] = time.perf_counter() - t0
    return out


def main() -> int:
    job = json.loads(sys.stdin.read())
    import verification

    verification.configure()
    from verification.mutants.probes import run_probes

    cache = {}

    def original_outputs():
        if "ref" not in cache:
            with load_package(job["repo"]) as (jm, _):
                cache["ref"] = run_probes(jm, job["module"])
        return cache["ref"]

    if job.get("peers"):
        from verification.mutants.equivalence import record_peers

        for module in job["peers"]:
            with open(os.path.join(job["repo"], "jaxmlp", module)) as f:
                source = f.read()
            with load_package(job["repo"], module, source) as (jm, path):
                _emit(module=module, peers=record_peers(jm, module, path, source))
        return 0
    if job.get("control"):
        with load_package(job["repo"]), contextlib.redirect_stdout(io.StringIO()):
            killed, why, n = run_rows(job["checks"])
        _emit(control=job["module"], passed=not killed, why=why, rows=n)
    for d in job["mutants"]:
        m = Mutant(**d)
        _emit(start=m.key)
        _emit(**_one(job, m, original_outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
