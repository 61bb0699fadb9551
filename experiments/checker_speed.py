"""Benchmark: the time of each single check of a planted bug in the catalogue (verification/catalogue/),
and the slowest one.  Target of the checker issue: at most 10 s on 2 CPU cores.

Round 0 is the warm-up: each family's first check in the process pays for compiling the primitives it
runs op by op, and that time is printed as ``cold``.  Then ``--repeats`` interleaved rounds over every
bug; a bug's time is the median of its repeats.  Prints and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import verification
from experiments import common
from verification import check_gradients
from verification.catalogue import FAMILIES

REPEATS = 2
TARGET_S = 10.0
OUT = "results/checker_speed.json"


def _cases():
    for family in FAMILIES:
        p, x, y = family.problem(0)
        for planted in family.BUGS:
            yield family, planted, (p, x, y)


def _time(family, planted, args):
    t0 = time.perf_counter()
    check_gradients(family.loss, lambda p, x, y: family.grad(p, x, y, bug=planted.bug), *args)
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
    cold = [_time(*c) for c in cases]
    times = [[] for _ in cases]
    for _ in range(args.repeats):
        for k, c in enumerate(cases):
            times[k].append(_time(*c))
    rows = [{"family": f.NAME, "bug": b.bug, "cold_s": c, "median_s": statistics.median(t)}
            for (f, b, _), c, t in zip(cases, cold, times)]
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
