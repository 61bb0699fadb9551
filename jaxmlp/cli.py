"""The ``jaxmlp`` command line.

``jaxmlp run NAME [--steps N] [--seed S] [--out DIR]`` runs one experiment of
``experiments/`` (or ``all`` of them) and writes ``metrics.json`` and PNG
figures under ``--out`` (default ``results/NAME``).

Exit codes: 0 success, 1 an experiment's own check failed, 2 a usage error.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

EXPERIMENTS = ("higham", "spiral", "regression", "testnets", "optimizers", "digits", "lm-higham", "batchnorm")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(prog="jaxmlp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment", add_help=False)
    run.add_argument("name", choices=EXPERIMENTS + ("all",), help="experiment name, or all")
    run.add_argument("-h", "--help", action="store_true", help="show the experiment's own help")
    args, rest = ap.parse_known_args(argv)
    names = EXPERIMENTS if args.name == "all" else (args.name,)
    if args.help:
        rest = ["--help"] + rest
    if args.name == "all" and "--out" in rest:  # one folder per experiment under --out
        i = rest.index("--out")
        base, rest = rest[i + 1], rest[:i] + rest[i + 2:]
    else:
        base = None
    status = 0
    for name in names:
        module = importlib.import_module(f"experiments.{name.replace('-', '_')}")
        extra = ["--out", os.path.join(base, name)] if base else []
        try:
            module.main(rest + extra)
        except SystemExit as e:
            if e.code not in (0, None):
                print(f"jaxmlp run {name}: {e.code}", file=sys.stderr)
                status = e.code if isinstance(e.code, int) else 1
            if args.help:
                return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
