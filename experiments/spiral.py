"""cs231n's spiral (the cs231n program in Matrix Backprop (2019-05-15)): a 2-100-3 relu net and a linear softmax classifier.

3 classes x 100 points; softmax cross-entropy with L2 1e-3 on the weights;
cs231n initialisation (0.01 N(0,1), zero biases); step size 1.0, full batch;
10,000 steps for the net and 200 for the linear classifier (as cs231n).
cs231n reports 98% (net) and 49% (linear) training accuracy.
"""
from __future__ import annotations

import jax
import numpy as np

import jaxmlp
from experiments import common
from jaxmlp import optim
from jaxmlp import train

STEPS = 10_000
LINEAR_STEPS = 200
LR = 1.0
L2 = 1e-3
HIDDEN = 100
SOURCE = {"net_train_accuracy": 0.98, "linear_train_accuracy": 0.49}


def fit(sizes, steps, x, y, seed):
    model = jaxmlp.MLP(sizes, "relu", "softmax_cross_entropy")
    params = jaxmlp.init(model, jax.random.key(seed), "cs231n")
    r = train.train(train.manual_grad(model, l2=L2), optim.sgd(LR), params, x, y, key=jax.random.key(seed),
                steps=steps, log_every=min(100, steps))
    acc = float(np.mean(np.argmax(np.asarray(jaxmlp.predict(model, r.params, x)), 1) == y))
    return model, r, acc


def main(argv=None):
    args = common.parse("spiral", __doc__, argv, STEPS)
    x, y = jaxmlp.data.spiral(seed=args.seed)
    net, r_net, acc_net = fit((2, HIDDEN, 3), args.steps, x, y, args.seed)
    lin, r_lin, acc_lin = fit((2, 3), min(LINEAR_STEPS, args.steps), x, y, args.seed)
    plt = common.figure()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    axes[0].semilogy(r_net.steps, r_net.losses, label=f"2-{HIDDEN}-3 relu")
    axes[0].semilogy(r_lin.steps, r_lin.losses, label="linear softmax")
    axes[0].set(xlabel="step", ylabel="loss (data + L2)", title="Training loss")
    axes[0].legend()
    g = np.linspace(-1.1, 1.1, 250)
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2).astype(np.float32)
    for ax, (name, model, r, acc) in zip(axes[1:], [("linear", lin, r_lin, acc_lin), ("net", net, r_net, acc_net)]):
        z = np.argmax(np.asarray(jaxmlp.predict(model, r.params, grid)), 1).reshape(250, 250)
        ax.contourf(g, g, z, levels=[-0.5, 0.5, 1.5, 2.5], cmap="Pastel1", alpha=0.9)
        ax.scatter(x[:, 0], x[:, 1], c=y, cmap="Set1", s=10, edgecolors="k", linewidths=0.3)
        ax.set(title=f"{name}: train accuracy {acc:.1%}", xlim=(-1.1, 1.1), ylim=(-1.1, 1.1))
    common.savefig(plt, fig, args.out, "spiral.png")
    metrics = {"experiment": "spiral", "steps": args.steps, "source": SOURCE,
               "net_train_accuracy": acc_net, "net_final_loss": r_net.losses[-1],
               "linear_train_accuracy": acc_lin, "linear_final_loss": r_lin.losses[-1]}
    path = common.save_metrics(args.out, metrics)
    print(f"spiral: net train accuracy {acc_net:.1%} (cs231n 98%), loss {r_net.losses[-1]:.4f}; "
          f"linear {acc_lin:.1%} (cs231n 49%), loss {r_lin.losses[-1]:.4f}\nwrote {path}")
    return metrics


if __name__ == "__main__":
    main()
