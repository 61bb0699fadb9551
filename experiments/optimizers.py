"""SGD, momentum, RMSprop and Adam (DNN Maths (2020-01-12)), hand-written beside Optax, on the spiral and on digits.

Each hand-written optimizer and its Optax baseline train the same network from
the same initial weights with the same mini-batch sequence; their loss curves
are overlaid.  Spiral: 2-100-3 relu, full batch, L2 1e-3.  Digits: 64-64-10
relu, mini-batches of 64, L2 1e-4.
"""
from __future__ import annotations

import jax
import numpy as np
import optax

import jaxmlp
from experiments import common
from jaxmlp import optim
from jaxmlp import train

STEPS = 2000
OPTIMIZERS = {  # name: (hand-written, optax baseline) factories of the learning rate
    "sgd": (lambda lr: optim.sgd(lr), lambda lr: optax.sgd(lr)),
    "momentum": (lambda lr: optim.momentum(lr, 0.9), lambda lr: optax.sgd(lr * 0.1, momentum=0.9)),
    "rmsprop": (lambda lr: optim.rmsprop(lr, 0.9, 1e-8, eps_in_sqrt=False), lambda lr: optax.rmsprop(lr, 0.9, 1e-8, eps_in_sqrt=False)),
    "adam": (lambda lr: optim.adam(lr), lambda lr: optax.adam(lr)),
}
LR = {"spiral": {"sgd": 1.0, "momentum": 1.0, "rmsprop": 0.01, "adam": 0.01},
      "digits": {"sgd": 0.1, "momentum": 0.1, "rmsprop": 1e-3, "adam": 1e-3}}


def problems(seed):
    xs, ys = jaxmlp.data.spiral(seed=seed)
    xd, yd, _, _ = jaxmlp.data.digits(seed=seed)
    return {"spiral": (jaxmlp.MLP((2, 100, 3), "relu"), xs, ys, 1e-3, "full_batch", None),
            "digits": (jaxmlp.MLP((64, 64, 10), "relu"), xd, yd, 1e-4, "minibatch", 64)}


def main(argv=None):
    args = common.parse("optimizers", __doc__, argv, STEPS)
    plt = common.figure()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    metrics = {"experiment": "optimizers", "steps": args.steps, "results": {}}
    for ax, (pname, (model, x, y, l2, scheme, b)) in zip(axes, problems(args.seed).items()):
        params = jaxmlp.init(model, jax.random.key(args.seed), "he")
        grad_fn = train.manual_grad(model, l2=l2)
        for i, (oname, (mine, base)) in enumerate(OPTIMIZERS.items()):
            lr = LR[pname][oname]
            runs = {}
            for who, make in (("jaxmlp", mine), ("optax", base)):
                runs[who] = train.train(grad_fn, make(lr), params, x, y, key=jax.random.key(args.seed), steps=args.steps,
                                    scheme=scheme, batch_size=b, log_every=min(20, args.steps))
            a, o = runs["jaxmlp"].losses, runs["optax"].losses
            ax.semilogy(runs["jaxmlp"].steps, a, color=f"C{i}", lw=2.5, alpha=0.5, label=f"{oname} (jaxmlp)")
            ax.semilogy(runs["optax"].steps, o, color=f"C{i}", ls="--", lw=1, label=f"{oname} (optax)")
            metrics["results"][f"{pname}/{oname}"] = {"lr": lr, "final_loss_jaxmlp": a[-1], "final_loss_optax": o[-1],
                                                      "max_rel_curve_diff": float(np.max(np.abs(a - o) / np.abs(o)))}
        ax.set(xlabel="step", ylabel="training loss", title=f"{pname}: hand-written (solid) vs Optax (dashed)")
        ax.legend(fontsize=8, ncol=2)
    common.savefig(plt, fig, args.out, "optimizers.png")
    path = common.save_metrics(args.out, metrics)
    for k, v in metrics["results"].items():
        print(f"optimizers {k}: final loss {v['final_loss_jaxmlp']:.4g} (optax {v['final_loss_optax']:.4g}), "
              f"max rel curve diff {v['max_rel_curve_diff']:.1e}")
    print(f"wrote {path}")
    return metrics


if __name__ == "__main__":
    main()
