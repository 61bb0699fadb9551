"""The mutation record: counts per module and per operator, the survivors with their diffs, the equivalent
mutants with their reasons, the checker's figures, and the JSON form (``--json``)."""
from __future__ import annotations

import json
import os
from collections import Counter

from verification.mutants.operators import OPERATORS, Mutant

__all__ = ["FIRST_SCORE", "main", "markdown", "record", "render"]

# The first score, measured before any verification row was added for a survivor (docs/mutation.md).
FIRST_SCORE = "303/327 = 92.7% of the non-equivalent (344 of 680 mutants, seeded; docs/mutation.md)"

_KILLED = ("killed", "crashed", "timeout")


def record(mutants: dict[str, list[Mutant]], results: list[dict], seconds: float, sample: list[str]) -> dict:
    """The JSON record: top-level counts ``mutants``, ``killed``, ``survived``, ``equivalent``, ``checker``."""
    by_key = {m.key: m for ms in mutants.values() for m in ms}
    rows = []
    for r in results:
        if r.get("kind") != "mutant":
            continue
        m = by_key[r["key"]]
        rows.append(dict(m._asdict(), line=m.line, outcome=r["outcome"], why=r.get("why", ""),
                         seconds=r.get("seconds"), checker=r.get("checker")))
    count = Counter("killed" if r["outcome"] in _KILLED else r["outcome"] for r in rows)
    scored = [r["checker"] for r in rows if r.get("checker") and "skipped" not in r["checker"]]
    return {
        "mutants": len(rows), "killed": count["killed"], "survived": count["survived"] + count["error"],
        "equivalent": count["equivalent"],
        "crashed": sum(r["outcome"] == "crashed" for r in rows), "timeout": sum(r["outcome"] == "timeout" for r in rows),
        "checker": {"scored": len(scored), "first": sum(s["first"] for s in scored),
                    "top3": sum(s["top3"] for s in scored), "explained": sum(s["explained"] for s in scored),
                    "sample": len(sample), "skipped": sum(1 for r in rows if r.get("checker") and "skipped" in r["checker"])},
        "controls": [r for r in results if r.get("kind") == "control"],
        "seconds": seconds,
        "rows": rows,
    }


def _table(rows, field, names) -> list[str]:
    out = [f"{field:<22} {'mutants':>7} {'killed':>7} {'survived':>9} {'equivalent':>11} {'score':>7}"]
    for name in names:
        sel = [r for r in rows if r[field] == name]
        if not sel:
            continue
        k = sum(r["outcome"] in _KILLED for r in sel)
        s = sum(r["outcome"] in ("survived", "error") for r in sel)
        e = sum(r["outcome"] == "equivalent" for r in sel)
        out.append(f"{name:<22} {len(sel):>7} {k:>7} {s:>9} {e:>11} {k / max(k + s, 1):>7.0%}")
    return out


def markdown(rec: dict) -> str:
    """The module x operator table of docs/mutation.md: ``killed/survived/equivalent`` per cell."""
    rows = rec["rows"]
    mods = sorted({r["module"] for r in rows})
    ops = [o for o in OPERATORS if any(r["operator"] == o for r in rows)]
    out = ["| module | " + " | ".join(ops) + " | all | score |", "|---" * (len(ops) + 3) + "|"]
    for mod in mods + ["all"]:
        cells = []
        for op in ops + [None]:
            sel = [r for r in rows if (mod == "all" or r["module"] == mod) and (op is None or r["operator"] == op)]
            k = sum(r["outcome"] in _KILLED for r in sel)
            s = sum(r["outcome"] in ("survived", "error") for r in sel)
            e = sum(r["outcome"] == "equivalent" for r in sel)
            cells.append(f"{k}/{s}/{e}" if sel else "")
        sel = [r for r in rows if mod == "all" or r["module"] == mod]
        k = sum(r["outcome"] in _KILLED for r in sel)
        s = sum(r["outcome"] in ("survived", "error") for r in sel)
        out.append(f"| {mod} | " + " | ".join(cells) + f" | {k / max(k + s, 1):.0%} |")
    return "\n".join(out)


def render(rec: dict, sources: dict[str, str]) -> str:
    """The printed report."""
    rows = rec["rows"]
    lines = ["mutation score per module (killed / non-equivalent)"] + _table(rows, "module", sorted({r["module"] for r in rows}))
    lines += ["", "per operator"] + _table(rows, "operator", OPERATORS)
    k, s, e = rec["killed"], rec["survived"], rec["equivalent"]
    lines += ["", (f"{rec['mutants']} mutants: {k} killed ({rec['crashed']} of them crash the import or the worker, "
                  f"{rec['timeout']} time out), {s} survived, {e} equivalent; mutation score {k}/{k + s} = "
                  f"{k / max(k + s, 1):.1%} of the non-equivalent ({rec['seconds']:.0f} s)")]
    for c in rec["controls"]:
        if not c.get("passed"):
            lines.append(f"CONTROL FAILED {c['control']}: the original package fails its own checks: {c['why']}")
    for title, outcome in (("survivors", ("survived", "error")), ("equivalent mutants", ("equivalent",)),
                           ("killed by a crash or a timeout", ("crashed", "timeout"))):
        sel = [r for r in rows if r["outcome"] in outcome]
        lines += ["", f"{title} ({len(sel)})"]
        for r in sel:
            m = Mutant(**{f: r[f] for f in Mutant._fields})
            lines += [f"  {r['line']} {r['operator']} in {r['function']}: {r['why']}"]
            if r["outcome"] != "crashed":
                lines += ["    " + d for d in m.diff(sources[r["module"]]).splitlines()]
    c = rec["checker"]
    n = max(c["scored"], 1)
    lines += ["", (f"the checker on the killed backward mutants (fixed sample of {c['sample']}, seed; {c['scored']} scored, "
                  f"{c['skipped']} killed but not checkable by a user's check: the gradient raises or no problem sees it):"),
              f"  mutated line first in report.backward.lines: {c['first']}/{c['scored']} {c['first'] / n:.0%} (target >= 80%)",
              f"  in the top 3: {c['top3']}/{c['scored']} {c['top3'] / n:.0%} (target >= 90%)",
              f"  cause explained (a known cause): {c['explained']}/{c['scored']} {c['explained'] / n:.0%}"]
    causes = Counter(r["checker"]["cause"] for r in rows if r.get("checker") and "cause" in r["checker"])
    lines += ["  first causes: " + ", ".join(f"{k} {v}" for k, v in causes.most_common())]
    return "\n".join(lines)


def main(json_path=None, workers: int = 2, survivors_of=None, all_mutants: bool = False) -> int:
    """``python -m verification --mutants``: run, print, write the record; 1 when a survivor or a failed control.

    ``survivors_of``: a record of an earlier run (its ``--json``); only its survivors (and its equivalent
    mutants, whose probes may have grown) run again, on every row of their checks (``FULL_CHECKS``), and the other
    outcomes are kept (valid when rows were only added since: a killing row still fails).  Every mutant of
    the plan must be in it."""
    import time

    from verification.mutants.run import plan, repo_root, run, sample, subset
    from verification.mutants.targets import FULL_CHECKS

    log = lambda msg: print(msg, flush=True)
    t0 = time.perf_counter()
    mutants = plan()
    print(f"{sum(map(len, mutants.values()))} mutants planned", flush=True)
    if not all_mutants:
        mutants = subset(mutants)
        print(f"running the seeded subset of {sum(map(len, mutants.values()))} (--all-mutants: every one)", flush=True)
    keys = sample(mutants)
    if survivors_of:
        with open(survivors_of) as f:
            old = json.load(f)
        kept = {r["key"] if "key" in r else Mutant(**{k: r[k] for k in Mutant._fields}).key: r for r in old["rows"]}
        missing = [m.key for ms in mutants.values() for m in ms if m.key not in kept]
        if missing:
            raise ValueError(f"--survivors-of {survivors_of}: {len(missing)} mutants of this plan are not in it, "
                             f"e.g. {missing[:3]}; run the whole set")
        # the survivors, and the equivalent mutants too: their probes run again (the probes may have grown since)
        rerun = ("survived", "error", "equivalent")
        again = {mod: [m for m in ms if kept[m.key]["outcome"] in rerun] for mod, ms in mutants.items()}
        results = [dict(kind="mutant", key=k, **{f: r[f] for f in ("outcome", "why", "seconds", "checker") if f in r})
                   for k, r in kept.items() if r["outcome"] not in rerun]
        results += [dict(c, kind="control") for c in old["controls"]]
        # the survivors of the first pass (diagonal crosses) run every row of their module's checks
        results += run({m: v for m, v in again.items() if v}, keys, workers=workers, log=log, controls=False,
                       checks=FULL_CHECKS)
    else:
        results = run(mutants, keys, workers=workers, log=log)
    rec = record(mutants, results, time.perf_counter() - t0, keys)
    sources = {}
    for mod in mutants:
        with open(os.path.join(repo_root(), "jaxmlp", mod)) as f:
            sources[mod] = f.read()
    print("\n" + render(rec, sources))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(rec, f, indent=1, default=str)
    bad = rec["survived"] or any(not c.get("passed") for c in rec["controls"])
    return 1 if bad else 0
