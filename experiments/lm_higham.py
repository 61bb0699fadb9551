"""Levenberg-Marquardt against SGD on Higham & Higham's 10 points and the 11-point variant (Higham & Higham notes (2024-09-10)).

The 2-2-3-2 sigmoid network with 0.5 N(0,1) initialisation, SEEDS seeds.
LM uses the hand-derived Jacobian; it stops at the paper's cost TARGET
(MATLAB scale sum ||y - F||^2) or after MAX_ITERS trial steps.  SGD is the
paper's: one random point per step, eta = 0.05, up to --steps steps.  Reported:
iterations and wall time to TARGET (median, spread, success rate).  LM wall
time is measured per seed on the jitted solve after a warm-up; SGD's time to
target is its measured whole-run time scaled by the fraction of steps used.
scipy's least_squares(method='lm') is tried on the same residuals (it
refuses fewer residuals than variables) and method='trf' is run instead.
"""
from __future__ import annotations

import time

import jax
import numpy as np

import jaxmlp
from experiments import common
from jaxmlp import optim
from jaxmlp import train
from jaxmlp.least_squares import jacobian, residuals
from jaxmlp.levenberg_marquardt import levenberg_marquardt

SIZES = (2, 2, 3, 2)
SEEDS = 20
TARGET = 7.3e-4
MAX_ITERS = 300
SGD_STEPS = 10**6
ETA = 0.05


def first_below(values, target):
    idx = np.flatnonzero(np.asarray(values) <= target)
    return int(idx[0]) if idx.size else None


def run_lm(model, x, y, seeds, damping):
    solve = jax.jit(lambda p: levenberg_marquardt(model, p, x, y, max_iters=MAX_ITERS, damping=damping,
                                                  cost_tol=TARGET, check=False))
    jax.block_until_ready(solve(jaxmlp.init(model, jax.random.key(0), "higham")))  # compile
    out = []
    for s in seeds:
        p0 = jaxmlp.init(model, jax.random.key(s), "higham")
        t0 = time.perf_counter()
        r = jax.block_until_ready(solve(p0))
        dt = time.perf_counter() - t0
        cost = np.asarray(r.cost)[: int(r.n_iters) + 1]
        out.append({"seed": s, "iters": first_below(cost, TARGET), "time_s": dt, "cost": cost,
                    "final_cost": float(cost[-1])})
    return out


def run_sgd(model, x, y, seeds, steps):
    grad_fn, opt = train.manual_grad(model), optim.sgd(ETA)
    out = []
    for s in seeds:
        p0 = jaxmlp.init(model, jax.random.key(s), "higham")
        t0 = time.perf_counter()
        r = train.train(grad_fn, opt, p0, x, y, key=jax.random.key(10_000 + s), steps=steps, scheme="sgd_replacement",
                    log_every=min(1000, steps), progress=False)
        dt = time.perf_counter() - t0
        cost = r.losses * 2 * len(x)  # eq. (6) -> MATLAB scale
        i = first_below(cost, TARGET)
        out.append({"seed": s, "iters": None if i is None else int(r.steps[i]), "steps": r.steps, "cost": cost,
                    "time_s_total": dt, "time_s": None if i is None else dt * r.steps[i] / steps,
                    "final_cost": float(cost[-1])})
    return out


def stats(runs, key="iters"):
    ok = [r for r in runs if r[key] is not None]
    vals = np.array([r[key] for r in ok], float)
    t = np.array([r["time_s"] for r in ok], float)
    q = lambda a, p: float(np.percentile(a, p)) if a.size else None  # noqa: E731
    return {"success_rate": len(ok) / len(runs), "median_iters": q(vals, 50), "iters_q25": q(vals, 25),
            "iters_q75": q(vals, 75), "iters_max": q(vals, 100), "median_time_s": q(t, 50),
            "median_final_cost": float(np.median([r["final_cost"] for r in runs]))}


def scipy_comparison(model, x, y, seed):
    try:
        from scipy.optimize import least_squares
    except ImportError:
        return {"available": False}
    from jax.flatten_util import ravel_pytree

    with jax.enable_x64(True):
        p0 = jaxmlp.init(model, jax.random.key(seed), "higham", dtype=np.float64)
        flat, unravel = ravel_pytree(p0)
        fun = lambda f: np.asarray(residuals(model, unravel(np.asarray(f)), x.astype(np.float64), y.astype(np.float64)))  # noqa: E731
        jac = lambda f: np.asarray(jacobian(model, unravel(np.asarray(f)), x.astype(np.float64)))  # noqa: E731
        res = {"available": True, "n_residuals": int(y.size), "n_params": int(flat.size)}
        try:
            least_squares(fun, np.asarray(flat), jac=jac, method="lm")
            res["lm"] = "ran"
        except ValueError as e:
            res["lm"] = f"refused: {e}"
        t0 = time.perf_counter()
        trf = least_squares(fun, np.asarray(flat), jac=jac, method="trf", ftol=None, xtol=None, gtol=1e-12, max_nfev=2000)
        cost = 2 * trf.cost  # scipy's cost is 0.5 ||r||^2
        res.update({"trf_nfev": int(trf.nfev), "trf_final_cost": float(cost), "trf_time_s": time.perf_counter() - t0})
    return res


def main(argv=None):
    args = common.parse("lm-higham", __doc__, argv, SGD_STEPS,
                         lambda ap: ap.add_argument("--seeds", type=int, default=SEEDS, help="number of seeds"))
    model = jaxmlp.MLP(SIZES, "sigmoid", "sigmoid_quadratic")
    seeds = range(args.seed, args.seed + args.seeds)
    metrics = {"experiment": "lm-higham", "target_matlab_cost": TARGET, "seeds": args.seeds, "sgd_steps": args.steps,
               "max_lm_iters": MAX_ITERS}
    curves = {}
    for label, eleven in (("ten_points", False), ("eleven_points", True)):
        x, y = jaxmlp.data.higham_points(eleven)
        lm_t, lm_n = run_lm(model, x, y, seeds, "trainlm"), run_lm(model, x, y, seeds, "nielsen")
        sgd = run_sgd(model, x, y, seeds, args.steps)
        metrics[label] = {"lm_trainlm": stats(lm_t), "lm_nielsen": stats(lm_n), "sgd": stats(sgd)}
        s_lm, s_sgd = metrics[label]["lm_trainlm"]["median_time_s"], metrics[label]["sgd"]["median_time_s"]
        metrics[label]["speedup_lm_vs_sgd_time_to_target"] = s_sgd / s_lm if s_lm and s_sgd else None
        metrics[label]["scipy"] = scipy_comparison(model, x, y, args.seed)
        curves[label] = (lm_t, lm_n, sgd)
    plt = common.figure()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for row, (label, (lm_t, lm_n, sgd)) in enumerate(curves.items()):
        ax_i, ax_t = axes[row]
        for runs, color, name in ((lm_t, "C0", "LM (trainlm)"), (lm_n, "C2", "LM (Nielsen)")):
            for i, r in enumerate(runs):
                it = np.arange(len(r["cost"]))
                ax_i.loglog(it + 1, r["cost"], color=color, alpha=0.4, lw=0.8, label=name if i == 0 else None)
                ax_t.loglog(1e-9 + r["time_s"] * (it + 1) / len(it), r["cost"], color=color, alpha=0.4, lw=0.8,
                            label=name if i == 0 else None)
        for i, r in enumerate(sgd):
            ax_i.loglog(r["steps"] + 1, r["cost"], color="C1", alpha=0.4, lw=0.8, label="SGD" if i == 0 else None)
            ax_t.loglog(1e-9 + r["time_s_total"] * (r["steps"] + 1) / (r["steps"][-1] + 1), r["cost"], color="C1",
                        alpha=0.4, lw=0.8, label="SGD" if i == 0 else None)
        for ax, xl in ((ax_i, "iteration (LM trial step / SGD step) + 1"), (ax_t, "wall-clock time (s)")):
            ax.axhline(TARGET, color="k", ls="--", lw=0.8)
            ax.set(xlabel=xl, ylabel="sum ||y - F||^2", title=f"{label.replace('_', ' ')}: {args.seeds} seeds")
            ax.legend(fontsize=8)
    common.savefig(plt, fig, args.out, "lm_higham.png")
    path = common.save_metrics(args.out, metrics)
    for label in curves:
        m = metrics[label]
        for k in ("lm_trainlm", "lm_nielsen", "sgd"):
            s = m[k]
            print(f"lm-higham {label} {k}: success {s['success_rate']:.0%}, median iters {s['median_iters']} "
                  f"[q25 {s['iters_q25']}, q75 {s['iters_q75']}, max {s['iters_max']}], median time to target "
                  f"{s['median_time_s']}, median final cost {s['median_final_cost']:.3g}")
        print(f"lm-higham {label}: LM speed-up over SGD (time to target) {m['speedup_lm_vs_sgd_time_to_target']}; "
              f"scipy: {m['scipy']}")
    print(f"wrote {path}")
    return metrics


if __name__ == "__main__":
    main()
