"""The ``jaxmlp`` command line: library commands only (the experiments run from a checkout: ``python -m experiments``).

Commands:
  jaxmlp train [--data ...] [--checkpoint-dir DIR --checkpoint-every K] [--resume]
      train one network, with checkpoints and exact resume

Every command takes --help.  --debug (anywhere) shows the full traceback of an error.

Exit codes:
  0  success
  1  a run's own check failed (e.g. a result missed its target)
  2  usage error or bad input: one line on stderr naming the argument, expected and actual
  3  training stopped at a NaN or Inf (the message names the step and the first non-finite leaf)
  130 interrupted (Ctrl-C)
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, List

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_NON_FINITE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def run_command(prog: str, command: Callable[[List[str]], int], argv: List[str]) -> int:
    """Run ``command(argv)`` and turn its outcome into an exit code; user errors become one line on stderr.

    ``--debug`` anywhere in ``argv`` re-raises instead, with the full traceback.  The ``jaxmlp`` command
    and ``python -m experiments`` share this.
    """
    from jaxmlp.train import NonFiniteError

    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        return command(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2), already printed
        return e.code if isinstance(e.code, int) else EXIT_CHECK_FAILED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except NonFiniteError as e:
        if debug:
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_NON_FINITE
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        if debug:
            raise
        print(f"{prog}: error: {type(e).__name__}: {e} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_USAGE


def _train(argv):
    from jaxmlp import train_cli

    return train_cli.main(argv)


COMMANDS = {"train": (_train, "train one network with checkpoints and exact resume")}


def _dispatch(argv):
    ap = argparse.ArgumentParser(prog="jaxmlp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    ap.add_argument("command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    args, rest = ap.parse_known_args(argv[:1])
    return COMMANDS[args.command][0](argv[1:] + rest)


def main(argv=None) -> int:
    return run_command("jaxmlp", _dispatch, sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
