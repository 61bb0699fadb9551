"""Benchmark: does the tqdm progress bar slow the jitted training loop?

Higham's 2-2-3-2 network, SGD with replacement, STEPS steps in chunks of
CHUNK; the same run with the bar on and off, after a warm-up, median of
REPEATS interleaved runs, each timed to block_until_ready.  Prints and writes JSON.
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import time

import jax

import jaxmlp
from experiments import common
from jaxmlp import optim
from jaxmlp import train

STEPS = 200_000
CHUNK = 10_000
REPEATS = 9
OUT = "results/progress_overhead.json"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m experiments progress-overhead", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT, help=f"JSON file to write (default {OUT})")
    args = ap.parse_args(argv)
    x, y = jaxmlp.data.higham_points()
    model = jaxmlp.MLP((2, 2, 3, 2), "sigmoid", "sigmoid_quadratic")
    params = jaxmlp.init(model, jax.random.key(0), "higham")
    grad_fn, opt = train.manual_grad(model), optim.sgd(0.05)

    def run(progress):
        t = time.perf_counter()
        r = train.train(grad_fn, opt, params, x, y, key=jax.random.key(1), steps=STEPS, scheme="sgd_replacement",
                    log_every=1000, chunk_steps=CHUNK, progress=progress)
        jax.block_until_ready(r.params)
        return time.perf_counter() - t

    stderr, sys.stderr = sys.stderr, io.StringIO()  # the bar draws into a buffer, not the terminal
    try:
        run(False), run(True)  # warm-up: compile
        off, on = [], []
        for _ in range(REPEATS):  # interleaved, so drift in the machine hits both alike
            off.append(run(False))
            on.append(run(True))
    finally:
        sys.stderr = stderr
    res = {"steps": STEPS, "chunk_steps": CHUNK, "repeats": REPEATS, "median_s_off": statistics.median(off),
           "median_s_on": statistics.median(on), "ratio_on_over_off": statistics.median(on) / statistics.median(off),
           "device": jax.devices()[0].device_kind, "jax": jax.__version__, "python": platform.python_version()}
    print(json.dumps(res, indent=1))
    common.write_json(args.out, {**res, "environment": common.environment()})


if __name__ == "__main__":
    main()
