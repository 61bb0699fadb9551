"""``python -m verification [--json PATH] [--only PREFIX ...]``: one row per check, exit 1 on any FAIL."""
from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m verification", description=__doc__)
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON to PATH")
    ap.add_argument("--only", nargs="*", metavar="PREFIX", help="run only rows whose name starts with PREFIX")
    ap.add_argument("--failures", action="store_true", help="print only failing rows (and the summary)")
    ap.add_argument("--bugs", action="store_true", help="run the planted-bug catalogue and print the checker's accuracy")
    ap.add_argument("--backward-only", action="store_true",
                    help="with --bugs: run only the backward families (bugs marked on their backward lines)")
    ap.add_argument("--errata", action="store_true", help="check the source documents' printed formulas against their corrections")
    ap.add_argument("--mutants", action="store_true",
                    help="mutation testing of the suite on jaxmlp's hand formulas (docs/mutation.md); --json PATH "
                         "writes the record; with --bugs: the checker on every backward mutant, beside the catalogue")
    ap.add_argument("--all-mutants", action="store_true",
                    help="with --mutants: every mutant, not the seeded subset (docs/mutation.md)")
    ap.add_argument("--survivors-of", metavar="PATH",
                    help="with --mutants: run again only the survivors of an earlier record (its --json)")
    args = ap.parse_args(argv)

    import verification

    verification.configure()
    from verification.suite import run_checks
    if args.mutants and args.bugs:  # the catalogue's figures, then the checker on every backward mutant beside them
        from verification.mutants.checker_benchmark import main as checker_main

        catalogue = _bugs()
        return checker_main(args.json) or catalogue
    if args.mutants:
        from verification.mutants.report import main as mutants_main

        return mutants_main(args.json, survivors_of=args.survivors_of, all_mutants=args.all_mutants)
    if args.bugs and args.backward_only:
        return 0 if _backward_families() else 1
    if args.bugs:
        return _bugs()
    if args.errata:
        from verification.suite.errata import main as errata_main

        return errata_main()
    t0 = time.perf_counter()
    rows = []
    print(f"{'check':<46} {'max abs':>10} {'max rel':>10} {'tol':>8}  status  derivation / worst element")
    for row in run_checks(args.only):
        rows.append(row)
        if row.passed and args.failures:
            continue
        status = "PASS" if row.passed else "FAIL"
        print(f"{row.name:<46} {row.max_abs:>10.2e} {row.max_rel:>10.2e} {row.tol:>8.0e}  {status:<6}  "
              f"{row.derivation}" + ("" if row.passed else f"  <-- {row.where}"), flush=True)
    n_fail = sum(not r.passed for r in rows)
    print(f"\n{len(rows) - n_fail} passed, {n_fail} failed ({time.perf_counter() - t0:.1f} s)")
    if args.json:
        from jaxmlp.atomic import write_atomic

        write_atomic(args.json, json.dumps([r.as_dict() for r in rows], indent=1))
    return 1 if n_fail or not rows else 0


def _bugs() -> int:
    """The realistic-bug catalogue (per family: located, explained, false alarms; then the issue's targets,
    for the first families and the new ones apart), then the whole-leaf patterns."""
    from verification.catalogue import (FAMILIES, FIRST_FAMILIES, FIRST_SCORE_OF_BACKWARD_LINES,
                                        FIRST_SCORE_OF_LONG_LOOPS, FIRST_SCORE_OF_NEW_FAMILIES, bwd_lines, run)
    from verification.catalogue.backward import line_hits
    from verification.suite.bugs import run_catalogue

    marks = {m.NAME: bwd_lines(m) for m in FAMILIES}
    fams, outcomes, hits = {}, [], []
    print(f"{'family':<38} {'planted bug':<26} {'expected cause':<22} {'first hypothesis':<22} loc  expl  "
          "bwd1 bwd3 s")
    for o in run():
        f = fams.setdefault(o.family, {"bugs": 0, "located": 0, "explained": 0, "false_fail": 0, "seconds": []})
        if o.planted is None:
            f["false_fail"] += not o.report.passed
            continue
        outcomes.append(o)
        f["bugs"] += 1
        f["located"] += o.located
        f["explained"] += o.explained
        f["seconds"].append(o.seconds)
        first = o.report.hypotheses[0].cause if o.report and o.report.hypotheses else o.error[:22] or "(none)"
        b1, b3 = line_hits(o.report, marks[o.family][o.planted.bug]) if o.report is not None else (False, False)
        hits.append((b1, b3))
        print(f"{o.family:<38} {o.planted.bug:<26} {o.planted.cause:<22} {first:<22} "
              f"{'yes' if o.located else 'NO':<4} {'yes' if o.explained else 'NO':<5} {'yes' if b1 else 'NO':<4} "
              f"{'yes' if b3 else 'NO':<4} {o.seconds:.1f}", flush=True)
    print(f"\n{'family':<38} {'bugs':>4} {'located':>9} {'explained':>10} {'false FAILs':>12}")
    tot = {"bugs": 0, "located": 0, "explained": 0, "false_fail": 0}
    for name, f in fams.items():
        print(f"{name:<38} {f['bugs']:>4} {f['located'] / f['bugs']:>9.0%} {f['explained'] / f['bugs']:>10.0%} "
              f"{f['false_fail']:>12}")
        for k in tot:
            tot[k] += f[k]
    print(f"{'all':<38} {tot['bugs']:>4} {tot['located'] / tot['bugs']:>9.0%} {tot['explained'] / tot['bugs']:>10.0%} "
          f"{tot['false_fail']:>12}")
    first_names = {m.NAME for m in FIRST_FAMILIES}
    print(f"\n{'targets':<30} {'first families':>16} {'new families':>14} {'all':>10}  target")
    met = True
    for label, pick, score, bar in (
            ("named (known cause)", lambda o: o.planted.cause != "unknown", lambda o: o.explained, 0.90),
            ("top-3 site (unknown cause)", lambda o: o.planted.cause == "unknown", lambda o: o.located, 0.90)):
        cells = []
        for part in (lambda o: o.family in first_names, lambda o: o.family not in first_names, lambda o: True):
            sel = [o for o in outcomes if pick(o) and part(o)]
            cells.append(f"{sum(map(score, sel))}/{len(sel)} {sum(map(score, sel)) / max(len(sel), 1):.0%}")
        sel = [o for o in outcomes if pick(o)]
        met &= sum(map(score, sel)) >= bar * len(sel)
        print(f"{label:<30} {cells[0]:>16} {cells[1]:>14} {cells[2]:>10}  >= {bar:.0%}")
    print(f"{'correct gradients failing':<30} {tot['false_fail']:>16} {'':>14} {'':>10}  0")
    worst = max(outcomes, key=lambda o: o.seconds)
    print(f"slowest check of a planted bug: {worst.seconds:.1f} s ({worst.family}, {worst.planted.bug}); "
          "the benchmark: python -m experiments checker-speed")
    print(f"first score of the new families (before the checker's edits for them): {FIRST_SCORE_OF_NEW_FAMILIES}")
    print(f"first score of the long-loop family (scan kept whole): {FIRST_SCORE_OF_LONG_LOOPS}")
    n_hits = max(len(hits), 1)
    print(f"the marked backward line (# bwd:) first in report.backward.lines: {sum(h[0] for h in hits)}/{len(hits)} "
          f"{sum(h[0] for h in hits) / n_hits:.0%} (target >= 90%), in the top 3: {sum(h[1] for h in hits)}/"
          f"{len(hits)} {sum(h[1] for h in hits) / n_hits:.0%} (target >= 97%); first score: "
          f"{FIRST_SCORE_OF_BACKWARD_LINES}")

    n = ok = 0
    print(f"\nwhole-leaf patterns on jaxmlp MLPs\n{'architecture':<28} {'planted bug':<42} {'expected':<24} "
          f"{'diagnosed':<24} ok")
    for arch, bug, report, causes in run_catalogue():
        good = (report.passed and bool(report.notes)) if bug.cause == "kink" else (not report.passed and causes == {bug.cause})
        n, ok = n + 1, ok + good
        print(f"{arch:<28} {bug.name:<42} {bug.cause:<24} {', '.join(sorted(causes)) or '(passed!)':<24} {'yes' if good else 'NO'}")
    print(f"\npattern accuracy: {ok}/{n} = {ok / n:.0%}")
    rules_ok = _rule_bugs()
    backward_ok = _backward_families()
    targets = rules_ok and backward_ok and met and tot["false_fail"] == 0
    return 0 if ok == n and targets else 1


def _rule_bugs() -> bool:
    """The rule-bug catalogue: each twin passes in float64 and float32, each bug fails with its cause."""
    import jax.numpy as jnp

    from verification.catalogue import rule_bugs
    from verification.catalogue.backward import bwd_lines, line_hits

    marks = bwd_lines(rule_bugs)
    print(f"\nrule bugs (custom_vjp / custom_jvp / hand VJP, JVP / curvature products)\n"
          f"{'case':<40} {'twin f64':<9} {'twin f32':<9} {'bug fails':<10} {'expected':<26} {'diagnosed':<26} ok   "
          "bwd1 bwd3")
    good = first = top3 = 0
    for case in rule_bugs.CASES:
        twins = [case.check(False, dt).passed for dt in (jnp.float64, jnp.float32)]
        report = case.check(True, jnp.float64)
        causes = [f.cause for f in report.findings]
        ok = all(twins) and not report.passed and causes[:1] == [case.cause]
        b1, b3 = line_hits(report, marks[case.name])
        good, first, top3 = good + ok, first + b1, top3 + b3
        print(f"{case.name:<40} {'PASS' if twins[0] else 'FAIL':<9} {'PASS' if twins[1] else 'FAIL':<9} "
              f"{'yes' if not report.passed else 'NO':<10} {case.cause:<26} {(causes or ['(none)'])[0]:<26} "
              f"{'yes' if ok else 'NO':<4} {'yes' if b1 else 'NO':<4} {'yes' if b3 else 'NO'}", flush=True)
    n = len(rule_bugs.CASES)
    print(f"\nrule bugs explained: {good}/{n}; the marked line (# bwd:) first in report.backward.lines: {first}/{n}, "
          f"in the top 3: {top3}/{n} (the bwd / fwd of a custom_vjp, a hand VJP or JVP, a custom_jvp rule, a "
          "curvature product)")
    return good == n


def _backward_families() -> bool:
    """The backward families (hand backward passes and a custom_vjp bwd, each bug marked ``# bwd:`` on its
    line): per bug, located and explained as above, and whether the report's ranked backward lines put the
    marked line first / in the top 3.  False when a correct gradient or rule fails."""
    from verification.catalogue import FIRST_SCORE_OF_BACKWARD_FAMILIES, run_backward

    print(f"\nbackward families (each bug's line in the hand backward marked '# bwd:')\n"
          f"{'family':<54} {'planted bug':<31} {'expected cause':<22} {'first finding':<22} loc  expl  "
          f"bwd1 bwd3 s")
    rows, false_fail = [], 0
    for o in run_backward():
        if o.planted is None:
            if not o.located:
                false_fail += 1
                print(f"{o.family:<54} {'(correct ' + (o.variant or 'gradient') + ')':<31} FAILS "
                      f"{o.error or ''}", flush=True)
            continue
        rows.append(o)
        r = o.report
        causes = [h.cause for h in getattr(r, "hypotheses", [])] or [f.cause for f in getattr(r, "findings", [])]
        first = (causes[0] if causes else o.error[:22] or "(none)")
        print(f"{o.family:<54} {o.planted.bug:<31} {o.planted.cause:<22} {first:<22} "
              f"{'yes' if o.located else 'NO':<4} {'yes' if o.explained else 'NO':<5} "
              f"{'yes' if o.bwd_first else 'NO':<4} {'yes' if o.bwd_top3 else 'NO':<4} {o.seconds:.1f}", flush=True)
    n = max(len(rows), 1)
    counts = {k: sum(getattr(o, k) for o in rows) for k in ("located", "explained", "bwd_first", "bwd_top3")}
    print(f"\nbackward families: {len(rows)} bugs, " + ", ".join(f"{k} {v}/{len(rows)} {v / n:.0%}"
                                                              for k, v in counts.items())
          + f", checks raised {sum(bool(o.error) for o in rows)}, correct gradients failing {false_fail}")
    print(f"first score of the backward families (before the checker's edits for them): "
          f"{FIRST_SCORE_OF_BACKWARD_FAMILIES}")
    return false_fail == 0


if __name__ == "__main__":
    sys.exit(main())
