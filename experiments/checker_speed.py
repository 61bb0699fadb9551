"""Benchmark: the time of each single check of a planted bug in the catalogue (verification/catalogue/),
and the slowest one: the 18 first families, the four backward families (the backward localisation's) and
the rule bugs, each checked as a user checks it.  Target of the checker issues: at most 10 s on 2 CPU cores.

Round 0 is the warm-up: each family's first check in the process pays for compiling the primitives it
runs op by op, and that time is printed as ``cold``.  Then ``--repeats`` interleaved rounds over every
bug; a bug's time is the median of its repeats.  Prints and writes JSON.
"""
from __future__ import annotations

import argparse
import functools
import json
import statistics
import time

import jax.numpy as jnp

import verification
from experiments import common
from verification.catalogue import BACKWARD_FAMILIES, FAMILIES, rule_bugs
from verification.catalogue.backward import check_bug

REPEATS = 2
TARGET_S = 10.0
OUT = "results/checker_speed.json"


def _cases():
    """``(family name, bug, check)``: every planted bug of the catalogue, its check a thunk."""
    for family in FAMILIES + BACKWARD_FAMILIES:
        for planted in family.BUGS:
            yield family.NAME, planted.bug, functools.partial(check_bug, family, planted.bug, 0)
    for case in rule_bugs.CASES:
        yield "rule bugs", case.name, functools.partial(case.check, True, jnp.float64)


def _time(check):
    t0 = time.perf_counter()
    check()
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m experiments checker-speed", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT, help=f"JSON file to write (default {OUT})")
    ap.add_argument("--repeats", type=int, default=REPEATS, help="interleaved timed rounds after the warm-up")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats: expected at least 1, got {args.repeats}")
    verification.configure()
    cases = list(_cases())
    cold = [_time(check) for *_, check in cases]
    times = [[] for _ in cases]
    for _ in range(args.repeats):
        for k, (*_, check) in enumerate(cases):
            times[k].append(_time(check))
    rows = [{"family": name, "bug": bug, "cold_s": c, "median_s": statistics.median(t)}
            for (name, bug, _), c, t in zip(cases, cold, times)]
    for r in sorted(rows, key=lambda r: -r["median_s"])[:10]:
        print(f"{r['median_s']:6.2f} s (cold {r['cold_s']:5.2f} s)  {r['family']}: {r['bug']}")
    worst = max(rows, key=lambda r: r["median_s"])
    res = {"checks": len(rows), "repeats": args.repeats, "slowest_s": worst["median_s"],
           "slowest": f"{worst['family']}: {worst['bug']}", "slowest_cold_s": max(r["cold_s"] for r in rows),
           "median_s": statistics.median(r["median_s"] for r in rows), "target_s": TARGET_S,
           "within_target": worst["median_s"] <= TARGET_S}
    print(json.dumps(res, indent=1))
    common.write_json(args.out, {**res, "rows": rows, "environment": common.environment()})
    return 0 if res["within_target"] else 1


if __name__ == "__main__":
    main()
