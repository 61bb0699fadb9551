"""The ``jaxmlp`` command line.

Commands:
  jaxmlp run NAME [--steps N] [--seed S] [--out DIR]
      run one experiment of ``experiments/`` (or ``all``); writes metrics.json and PNG figures
  jaxmlp train [--data ...] [--checkpoint-dir DIR --checkpoint-every K] [--resume]
      train one network, with checkpoints and exact resume
  jaxmlp bench [--quick] [--out DIR]
      the performance benchmark (JSON and a Markdown table)

Every command takes --help.  --debug (anywhere) shows the full traceback of an error.

Exit codes:
  0  success
  1  an experiment's own check failed (e.g. a result missed its target)
  2  usage error or bad input: one line on stderr naming the argument, expected and actual
  3  training stopped at a NaN or Inf (the message names the step and the first non-finite leaf)
  130 interrupted (Ctrl-C)
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

EXPERIMENTS = ("higham", "spiral", "regression", "testnets", "optimizers", "digits", "lm-higham", "batchnorm",
               "higham-population")
EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_NON_FINITE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _run(argv):
    ap = argparse.ArgumentParser(prog="jaxmlp run", add_help=False,
                                 description="Run one experiment of experiments/ (or all); NAME --help shows its options.")
    ap.add_argument("name", nargs="?", choices=EXPERIMENTS + ("all",), help="experiment name, or all")
    ap.add_argument("-h", "--help", action="store_true", help="show this help, or NAME's own help")
    args, rest = ap.parse_known_args(argv)
    if args.name is None:
        if args.help:
            ap.print_help()
            return EXIT_OK
        ap.error("the following arguments are required: name")
    names = EXPERIMENTS if args.name == "all" else (args.name,)
    if args.help:
        rest = ["--help"] + rest
    base = None
    if args.name == "all" and "--out" in rest:  # one folder per experiment under --out
        i = rest.index("--out")
        base, rest = rest[i + 1], rest[:i] + rest[i + 2:]
    status = EXIT_OK
    for name in names:
        module = importlib.import_module(f"experiments.{name.replace('-', '_')}")
        extra = ["--out", os.path.join(base, name)] if base else []
        try:
            module.main(rest + extra)
        except SystemExit as e:
            if args.help:
                return EXIT_OK
            if e.code not in (0, None):
                print(f"jaxmlp run {name}: {e.code}", file=sys.stderr)
                status = e.code if isinstance(e.code, int) else EXIT_CHECK_FAILED
    return status


def _train(argv):
    from jaxmlp import train_cli

    return train_cli.main(argv)


def _bench(argv):
    from experiments import benchmark

    return benchmark.main(argv)


COMMANDS = {"run": (_run, "run an experiment (NAME or all); NAME --help shows its options"),
            "train": (_train, "train one network with checkpoints and exact resume"),
            "bench": (_bench, "performance benchmark: manual gradient vs jax.grad, PyTorch, numpy loops")}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    ap = argparse.ArgumentParser(prog="jaxmlp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    ap.add_argument("command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    try:
        args, rest = ap.parse_known_args(argv[:1])
    except SystemExit as e:  # --help, or no or an unknown command: argparse has printed the message
        return e.code
    from jaxmlp.train import NonFiniteError

    try:
        return COMMANDS[args.command][0](argv[1:] + rest)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_CHECK_FAILED
    except KeyboardInterrupt:
        print("jaxmlp: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except NonFiniteError as e:
        if debug:
            raise
        print(f"jaxmlp: error: {e}", file=sys.stderr)
        return EXIT_NON_FINITE
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        if debug:
            raise
        print(f"jaxmlp: error: {type(e).__name__}: {e} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
