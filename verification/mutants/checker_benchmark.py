"""The checker's benchmark on mutants: ``python -m verification --bugs --mutants [--json PATH]``.

Every mutant of the modules in :data:`~verification.mutants.targets.CHECKED` (not a sample: 412 at this
writing) is given to the checker the way a user would run it (:func:`verification.mutants.checker_score.score`),
in worker processes, without the suite's rows: the scorer's pre-screen (the mutated gradient differs from
autodiff on one of its problems) is what makes a mutant count.  The figures are printed three ways: all
scored mutants; the part in the mutation run's fixed sample (``run.sample``: it has guided the checker's work,
so it is not held out); and the rest, which no session read before it was scored (the held-out figure).
"""
from __future__ import annotations

import json
import time
from collections import Counter

__all__ = ["figures", "main"]


def figures(rows: list[dict]) -> dict:
    """``{"scored", "first", "top3", "explained", "skipped", "errors"}`` over result rows with a ``checker`` entry."""
    scored = [r["checker"] for r in rows if r.get("checker") and "skipped" not in r["checker"]]
    return {"scored": len(scored), "first": sum(s["first"] for s in scored), "top3": sum(s["top3"] for s in scored),
            "explained": sum(s["explained"] for s in scored),
            "skipped": sum(1 for r in rows if r.get("checker") and "skipped" in r["checker"]),
            "errors": sum(r.get("outcome") == "error" for r in rows)}


def _line(title: str, f: dict) -> str:
    n = max(f["scored"], 1)
    return (f"{title:<44} {f['scored']:>6} {f['first']:>4} {f['first'] / n:>5.0%} {f['top3']:>4} {f['top3'] / n:>5.0%} "
            f"{f['explained']:>4} {f['explained'] / n:>5.0%} {f['skipped']:>7} {f['errors']:>6}")


def main(json_path: str | None = None, workers: int = 2) -> int:
    """Score every mutant of ``CHECKED``, print the figures (all, the guided sample, held out, per module) and
    the mutants whose line is not first; 0 when the targets (first >= 80%, top 3 >= 90%) hold on all scored."""
    from verification.mutants.run import plan, run, sample, subset
    from verification.mutants.targets import CHECKED

    t0 = time.perf_counter()
    everything = plan()
    guided = set(sample(subset(everything)))
    mutants = {mod: everything[mod] for mod in CHECKED}
    by_key = {m.key: m for ms in mutants.values() for m in ms}
    print(f"the checker on every mutant of {', '.join(CHECKED)}: {len(by_key)} mutants", flush=True)
    results = run(mutants, [], workers=workers, log=lambda msg: print(msg, flush=True), score_only=True)
    rows = [dict(by_key[r["key"]]._asdict(), line=by_key[r["key"]].line, **{k: v for k, v in r.items() if k != "kind"})
            for r in results if r.get("kind") == "mutant"]
    seconds = time.perf_counter() - t0
    sets = {"all": rows, "the mutation run's fixed sample (guided)": [r for r in rows if r["key"] in guided],
            "held out (not in that sample)": [r for r in rows if r["key"] not in guided]}
    sets.update({f"  {mod}": [r for r in rows if r["module"] == mod] for mod in CHECKED})
    print(f"\n{'set':<44} {'scored':>6} {'first':>10} {'top 3':>10} {'explained':>10} {'skipped':>7} {'errors':>6}")
    out = {name.strip(): figures(sel) for name, sel in sets.items()}
    for name, sel in sets.items():
        print(_line(name, out[name.strip()]))
    print(f"(targets: first >= 80%, top 3 >= 90%; {seconds:.0f} s on {workers} workers)")
    misses = [r for r in rows if r.get("checker") and "skipped" not in r["checker"] and not r["checker"]["first"]]
    print(f"\nnot first ({len(misses)}):")
    for r in sorted(misses, key=lambda r: r["key"]):
        c = r["checker"]
        print(f"  {r['line']} {r['operator']} in {r['function']}{' (held out)' if r['key'] not in guided else ''}: "
              f"{'top 3' if c['top3'] else 'not in top 3'}, cause {c['cause']}, on {c['problem']}")
    for r in rows:
        if r.get("outcome") == "error":
            print(f"  ERROR {r['line']} {r['operator']}: {r.get('why', '')}")
    print("skip reasons: " + ", ".join(f"{k} {v}" for k, v in Counter(
        r["checker"]["skipped"] for r in rows if r.get("checker") and "skipped" in r["checker"]).most_common()))
    if json_path:
        from jaxmlp.atomic import write_atomic

        write_atomic(json_path, json.dumps({"figures": out, "seconds": seconds, "rows": rows}, indent=1, default=str))
    f = out["all"]
    return 0 if f["first"] >= 0.8 * f["scored"] and f["top3"] >= 0.9 * f["scored"] and not f["errors"] else 1
