"""Higham & Higham, "Deep Learning: An Introduction for Applied Mathematicians" (Higham & Higham notes (2024-09-10)).

10 points in the unit square, classes A and B; a 2-2-3-2 sigmoid network with
the quadratic cost eq. (6), 0.5 N(0,1) initialisation, SGD with replacement
(one random point per step), eta = 0.05, 10^6 steps.  The 11-point variant adds
a class-B point at (0.3, 0.7).  Costs are reported both as eq. (6) and in the
scale of the paper's MATLAB code, sum ||y - F(x)||^2 = 2N x eq. (6); the paper
reports 5.3 -> 7.3e-4 in that scale (10 points).
"""
from __future__ import annotations

import jax
import numpy as np

import jaxmlp
from experiments import common
from jaxmlp import optim
from jaxmlp import train

SIZES = (2, 2, 3, 2)
ETA = 0.05
STEPS = 10**6
SEEDS = 10
LOG_EVERY = 1000
PAPER = {"initial_cost_matlab": 5.3, "final_cost_matlab": 7.3e-4}


def run(eleven, steps, seeds, base_seed):
    x, y = jaxmlp.data.higham_points(eleven)
    model = jaxmlp.MLP(SIZES, "sigmoid", "sigmoid_quadratic")
    grad_fn, opt = train.manual_grad(model), optim.sgd(ETA)
    runs = []
    for s in range(base_seed, base_seed + seeds):
        params = jaxmlp.init(model, jax.random.key(s), "higham")
        r = train.train(grad_fn, opt, params, x, y, key=jax.random.key(10_000 + s), steps=steps,
                    scheme="sgd_replacement", log_every=min(LOG_EVERY, steps))
        acc = float(np.mean(np.argmax(np.asarray(jaxmlp.predict(model, r.params, x)), 1) == np.argmax(y, 1)))
        runs.append({"seed": s, "params": r.params, "steps": r.steps, "cost_eq6": r.losses,
                     "matlab_scale": 2 * len(x), "accuracy": acc})
    return model, x, y, runs


def summary(runs):
    k = runs[0]["matlab_scale"]
    first = np.array([r["cost_eq6"][0] for r in runs]) * k
    last = np.array([r["cost_eq6"][-1] for r in runs]) * k
    return {"initial_cost_matlab_median": float(np.median(first)),
            "final_cost_matlab_median": float(np.median(last)),
            "final_cost_matlab_min": float(last.min()), "final_cost_matlab_max": float(last.max()),
            "final_cost_eq6_median": float(np.median(last) / k),
            "reached_paper_cost": int(np.sum(last <= PAPER["final_cost_matlab"])),
            "train_accuracy_median": float(np.median([r["accuracy"] for r in runs])),
            "seeds": len(runs), "final_cost_matlab_per_seed": last.tolist()}


def plots(out, model, results):
    plt = common.figure()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, (_, x, y, runs) in results.items():
        med = int(np.argsort([r["cost_eq6"][-1] for r in runs])[len(runs) // 2])
        for i, r in enumerate(runs):
            axes[0].semilogy(r["steps"], r["cost_eq6"] * r["matlab_scale"], lw=1.5 if i == med else 0.5,
                             color="C0" if name == "10 points" else "C1", alpha=1 if i == med else 0.3,
                             label=name if i == med else None)
    axes[0].axhline(PAPER["final_cost_matlab"], color="k", ls="--", lw=0.8, label="paper: 7.3e-4")
    axes[0].set(xlabel="SGD iteration", ylabel="sum ||y - F(x)||^2 (MATLAB scale)", title="Cost (all seeds; median bold)")
    axes[0].legend()
    g = np.linspace(0, 1, 200)
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2).astype(np.float32)
    for ax, (name, (_, x, y, runs)) in zip(axes[1:], results.items()):
        med = int(np.argsort([r["cost_eq6"][-1] for r in runs])[len(runs) // 2])
        p = np.asarray(jaxmlp.predict(model, runs[med]["params"], grid))
        ax.contourf(g, g, (p[:, 0] > p[:, 1]).reshape(200, 200), levels=[-0.5, 0.5, 1.5], colors=["#f4c7c3", "#c6dbef"])
        a = y[:, 0] == 1
        ax.scatter(x[a, 0], x[a, 1], marker="o", c="C0", s=60, label="A")
        ax.scatter(x[~a, 0], x[~a, 1], marker="x", c="C3", s=60, label="B")
        ax.set(xlim=(0, 1), ylim=(0, 1), title=f"Decision regions, {name} (median seed)")
        ax.legend(loc="upper right")
    return common.savefig(plt, fig, out, "higham.png")


def main(argv=None):
    args = common.parse("higham", __doc__, argv, STEPS,
                         lambda ap: ap.add_argument("--seeds", type=int, default=SEEDS, help="number of seeds"))
    results = {"10 points": run(False, args.steps, args.seeds, args.seed),
               "11 points": run(True, args.steps, args.seeds, args.seed)}
    metrics = {"experiment": "higham", "steps": args.steps, "eta": ETA, "paper": PAPER,
               "ten_points": summary(results["10 points"][3]), "eleven_points": summary(results["11 points"][3])}
    plots(args.out, results["10 points"][0], results)
    path = common.save_metrics(args.out, metrics)
    for key in ("ten_points", "eleven_points"):
        s = metrics[key]
        print(f"higham {key}: cost (MATLAB scale) {s['initial_cost_matlab_median']:.3g} -> median "
              f"{s['final_cost_matlab_median']:.3g} [min {s['final_cost_matlab_min']:.3g}, max "
              f"{s['final_cost_matlab_max']:.3g}] over {s['seeds']} seeds; paper 5.3 -> 7.3e-4")
    print(f"wrote {path}")
    return metrics


if __name__ == "__main__":
    main()
