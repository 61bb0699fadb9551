"""Benchmark: the two Levenberg-Marquardt step forms as the shape of J changes (Higham & Higham notes (2024-09-10)'s Woodbury swap).

Times one jitted ``lm_step`` (forming J^T J or J J^T, Cholesky, solve) for
the "normal" (n x n) and "woodbury" (R x R) forms, float32, after a warm-up,
median of REPEATS, block_until_ready.  Cases: a sweep of R rows against a
fixed n to find the crossover, plus n >> R (~1e4 parameters, ~1e2 residuals)
and the reverse.  J is a real network Jacobian from jaxmlp.residual_jacobian.
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax

import jaxmlp
from experiments import common
from jaxmlp.least_squares import jacobian
from jaxmlp.levenberg_marquardt import lm_step

REPEATS = 5
SWEEP_NET = (4, 40, 5, 1)  # n = 411 parameters, one output: R = number of examples
SWEEP_ROWS = (50, 100, 200, 400, 800, 1600, 3200)
WIDE = ((20, 400, 5), 20)  # n = 10405 parameters, R = 100 residuals
TALL = ((2, 20, 1), 8000)  # n = 81 parameters, R = 8000 residuals
OUT = "results/lm_scale.json"


def case(sizes, m, seed=0):
    model = jaxmlp.MLP(sizes, "tanh", "sum_squares")
    params = jaxmlp.init(model, jax.random.key(seed), "xavier")
    x = jax.random.normal(jax.random.key(seed + 1), (m, sizes[0]))
    J = jax.jit(lambda p, x: jacobian(model, p, x, check=False))(params, x)
    r = jax.random.normal(jax.random.key(seed + 2), (J.shape[0],))
    return J, r


def timed(form, J, r):
    f = jax.jit(lambda J, r: lm_step(J, r, 1e-2, form))
    jax.block_until_ready(f(J, r))
    ts = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        jax.block_until_ready(f(J, r))
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m experiments lm-scale", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT, help=f"JSON file to write (default {OUT})")
    args = ap.parse_args(argv)
    rows = []
    cases = [(SWEEP_NET, m) for m in SWEEP_ROWS] + [WIDE, TALL]
    for sizes, m in cases:
        J, r = case(sizes, m)
        tn, tw = timed("normal", J, r), timed("woodbury", J, r)
        R, n = J.shape
        rows.append({"sizes": sizes, "rows_R": R, "params_n": n, "normal_s": tn, "woodbury_s": tw,
                     "woodbury_over_normal": tw / tn, "auto_picks": "normal" if n <= R else "woodbury",
                     "faster": "normal" if tn < tw else "woodbury"})
        print(f"R={R:6d} n={n:6d}  normal {tn * 1e3:9.3f} ms  woodbury {tw * 1e3:9.3f} ms  "
              f"ratio W/N {tw / tn:7.3f}  auto picks {rows[-1]['auto_picks']}, faster {rows[-1]['faster']}")
    sweep = [r for r in rows if tuple(r["sizes"]) == SWEEP_NET]
    cross = next((r["rows_R"] / r["params_n"] for r in sweep if r["faster"] == "normal"), None)
    res = {"repeats": REPEATS, "dtype": "float32", "device": jax.devices()[0].device_kind, "jax": jax.__version__,
           "cases": rows, "crossover_R_over_n": cross}
    print(f"crossover: the normal form becomes faster from R/n = {cross}")
    common.write_json(args.out, {**res, "environment": common.environment()})
    return res


if __name__ == "__main__":
    main()
