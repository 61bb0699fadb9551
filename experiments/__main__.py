"""``python -m experiments NAME [options]``: run one experiment script from the checkout, or ``all``.

The experiments reproduce the worked examples of the source documents (see
docs/references.md) and the benchmarks.  They are scripts, not part of the
installed library: run them from the repository root.  ``NAME --help`` shows an
experiment's own options; ``all --out DIR`` runs every reproduction into
``DIR/NAME``.  Exit codes are those of the ``jaxmlp`` command (``jaxmlp --help``).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from jaxmlp import cli

# Reproductions, run by ``all`` (name: module).
EXPERIMENTS = {"higham": "higham", "spiral": "spiral", "regression": "regression", "testnets": "testnets",
               "optimizers": "optimizers", "digits": "digits", "lm-higham": "lm_higham", "batchnorm": "batchnorm",
               "higham-population": "higham_population"}
# Measurements, run one at a time.
BENCHMARKS = {"bench": "benchmark", "lm-scale": "lm_scale", "progress-overhead": "progress_overhead",
              "explain-cost": "explain_cost", "checker-speed": "checker_speed", "checker-scale": "checker_scale"}
SCRIPTS = {**EXPERIMENTS, **BENCHMARKS}


def _run(argv):
    ap = argparse.ArgumentParser(prog="python -m experiments", add_help=False, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", choices=tuple(SCRIPTS) + ("all",), help="script name, or all")
    ap.add_argument("-h", "--help", action="store_true", help="show this help, or NAME's own help")
    args, rest = ap.parse_known_args(argv)
    if args.name is None:
        if args.help:
            ap.print_help()
            return cli.EXIT_OK
        ap.error("the following arguments are required: name")
    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    if args.help:
        rest = ["--help"] + rest
    base = None
    if args.name == "all" and "--out" in rest:  # one folder per experiment under --out
        i = rest.index("--out")
        base, rest = rest[i + 1], rest[:i] + rest[i + 2:]
    status = cli.EXIT_OK
    for name in names:
        module = importlib.import_module(f"experiments.{SCRIPTS[name]}")
        extra = ["--out", os.path.join(base, name)] if base else []
        try:
            code = module.main(rest + extra)  # a reproduction returns its metrics dict, a benchmark an int
        except SystemExit as e:
            code = e.code
        code = 0 if isinstance(code, dict) else code
        if args.help:
            return cli.EXIT_OK
        if code not in (0, None):
            print(f"python -m experiments {name}: {code}", file=sys.stderr)
            status = code if isinstance(code, int) else cli.EXIT_CHECK_FAILED
    return status


def main(argv=None) -> int:
    return cli.run_command("python -m experiments", _run, sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
