"""The mutation harness (verification.mutants) on one small module: spans keep every line, a known mutant is
killed, a known equivalent one is declared equivalent (the whole run: python -m verification --mutants)."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest

from verification.mutants import TARGETS, Mutant, apply, mutants_of

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _source(module):
    with open(os.path.join(REPO, "jaxmlp", module)) as f:
        return f.read()


def test_every_mutant_keeps_the_line_numbers_and_parses():
    n = 0
    for module, functions in TARGETS.items():
        src = _source(module)
        for m in mutants_of(module, src, functions):
            out = apply(src, m)
            ast.parse(out)
            assert out.count("\n") == src.count("\n"), m.key
            changed = [i + 1 for i, (a, b) in enumerate(zip(src.splitlines(), out.splitlines())) if a != b]
            assert changed and set(changed) <= set(range(m.lineno, m.end_lineno + 1)), m.key
            n += 1
    assert n >= 300, n


def test_bad_input_is_refused():
    src = _source("lemma1.py")
    with pytest.raises(ValueError, match="not found"):
        mutants_of("lemma1.py", src, ("no_such_function",))
    m = mutants_of("lemma1.py", src, ("_one_example",))[0]
    with pytest.raises(ValueError, match="span holds"):
        apply(src, m._replace(original=m.original + "?"))
    with pytest.raises(ValueError, match="line count"):
        apply(src, m._replace(replacement=m.replacement + "\n"))


def _pick(mutants, line_text, operator, replacement):
    hits = [m for m in mutants if m.operator == operator and m.replacement == replacement and line_text in m.original]
    assert len(hits) == 1, [m.key for m in hits]
    return hits[0]


def test_a_known_mutant_is_killed_and_a_known_equivalent_one_declared():
    """``softmax_cross_entropy_delta``'s ``(softmax(z) - y) / _rows(z)`` (heads.py): ``_rows(y)`` is the same
    number (``y`` has ``z``'s shape: equivalent, declared by the probes); the negated delta is killed by the
    first ``heads`` row.  heads.py is the cheapest module to probe and check (the whole run: python -m
    verification --mutants)."""
    src = _source("heads.py")
    fn = "softmax_cross_entropy_delta"
    peers = {fn: {"z": ["y"], "y": ["z"]}}  # what the run records for this function (same shape)
    mutants = mutants_of("heads.py", src, (fn,), peers)
    equivalent = next(m for m in mutants if m.operator == "variable" and m.replacement == "y"
                      and src.splitlines()[m.lineno - 1][m.col - 6:m.col + 2] == "_rows(z)")
    killed = _pick(mutants, "(jax.nn.softmax(z, axis=1) - y) / _rows(z)", "negate",
                   "-((jax.nn.softmax(z, axis=1) - y) / _rows(z))")
    job = {"repo": REPO, "module": "heads.py", "checks": ["heads"],
           "mutants": [killed._asdict(), equivalent._asdict()], "score": []}
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "verification.mutants.worker"], input=json.dumps(job), text=True,
                       capture_output=True, env=env, cwd=REPO, timeout=120, check=False)
    out = {d["key"]: d for d in map(json.loads, p.stdout.splitlines()) if "outcome" in d}
    assert out[killed.key]["outcome"] == "killed", (out, p.stderr[-2000:])
    assert out[killed.key]["why"].startswith("FAIL head/softmax_cross_entropy/f64"), out[killed.key]
    assert out[equivalent.key]["outcome"] == "equivalent", (out, p.stderr[-2000:])
    assert f"line {equivalent.lineno} run by the probes" in out[equivalent.key]["why"]


def test_a_mutant_is_a_plain_record():
    m = Mutant("dense.py", "arith", "dense_backward", 3, 4, 3, 5, "+", "-")
    assert m.line == "dense.py:3" and m.key == "dense.py:3:4:arith:-"


_SCORE_ONLY = """
import json, sys
from verification.mutants import Mutant, checker_score, worker
seen = []
checker_score.score = lambda jm, m: seen.append(jm.__file__) or {"first": True, "top3": True, "explained": True,
                                                                  "cause": "sign_flipped"}
out = worker._one({"repo": sys.argv[1], "module": "heads.py", "score_only": True}, Mutant(**json.loads(sys.argv[2])),
                  lambda: sys.exit("a score-only job runs no probe"))
print(json.dumps(dict(out, seen=seen)))
"""


def test_the_checker_benchmark_scores_a_mutant_without_the_rows():
    """``python -m verification --bugs --mutants`` (verification/mutants/checker_benchmark.py): a ``score_only`` job
    of the worker runs no row and no probe, and gives the mutated package to the checker's scorer (a stand-in
    here, in a process of its own: the scorer's check is what the benchmark measures, ~40 s cold);
    :func:`figures` counts its rows."""
    from verification.mutants.checker_benchmark import figures

    src = _source("heads.py")
    fn = "softmax_cross_entropy_delta"
    mutants = mutants_of("heads.py", src, (fn,), {fn: {"z": ["y"], "y": ["z"]}})
    negated = _pick(mutants, "(jax.nn.softmax(z, axis=1) - y) / _rows(z)", "negate",
                    "-((jax.nn.softmax(z, axis=1) - y) / _rows(z))")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", _SCORE_ONLY, REPO, json.dumps(negated._asdict())], text=True,
                       capture_output=True, env=env, cwd=REPO, timeout=120, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.splitlines()[-1])
    assert out["outcome"] == "scored" and "rows" not in out, out
    assert len(out["seen"]) == 1 and "jaxmlp-mutant-" in out["seen"][0], out
    f = figures([out, {"outcome": "scored", "checker": {"skipped": "raises TypeError"}}, {"outcome": "error"}])
    assert (f["scored"], f["first"], f["top3"], f["skipped"], f["errors"]) == (1, 1, 1, 1, 1)
