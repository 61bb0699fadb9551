"""Batch normalisation (DNN Maths (2020-01-12)) on a deeper MLP: a 6-layer net on scikit-learn's digits, with and without BN.

64-64-64-64-64-64-10 relu, softmax cross-entropy, He initialisation, plain
SGD with mini-batches of 64, at several learning rates.  With BN every hidden
affine layer has no bias (BN's beta replaces it) and is followed by batch norm
before its relu; eval uses the running statistics (momentum 0.99, flax's
convention).  Reported: the training-loss curves, the final test accuracy, and
the steps to reach a training loss of TARGET_LOSS.
"""
from __future__ import annotations

import jax
import numpy as np

import jaxmlp
from experiments import common
from jaxmlp import optim
from jaxmlp import train

SIZES = (64, 64, 64, 64, 64, 64, 10)
LRS = (0.01, 0.1, 0.5)
BATCH = 64
STEPS = 2000
TARGET_LOSS = 0.05
LOG_EVERY = 20


def run(batchnorm, lr, steps, seed, data):
    x_tr, y_tr, x_te, y_te = data
    model = jaxmlp.MLP(SIZES, "relu", use_bias=not batchnorm, batchnorm=batchnorm)
    params = jaxmlp.init(model, jax.random.key(seed), "he")
    state = jaxmlp.init_state(model) if batchnorm else None
    r = train.train(train.manual_grad(model), optim.sgd(lr), params, x_tr, y_tr, key=jax.random.key(seed + 1), steps=steps,
                scheme="minibatch", batch_size=BATCH, log_every=min(LOG_EVERY, steps), state=state)
    pred = np.argmax(np.asarray(jaxmlp.predict(model, r.params, x_te, state=r.state)), 1)
    hit = np.flatnonzero(r.losses <= TARGET_LOSS)
    return r, {"test_accuracy": float(np.mean(pred == y_te)), "final_loss": float(r.losses[-1]),
               "steps_to_target": int(r.steps[hit[0]]) if hit.size else None}


def main(argv=None):
    args = common.parse("batchnorm", __doc__, argv, STEPS)
    data = jaxmlp.data.digits(seed=args.seed)
    plt = common.figure()
    fig, ax = plt.subplots(figsize=(8, 5))
    table = {}
    for i, lr in enumerate(LRS):
        for bn in (False, True):
            r, res = run(bn, lr, args.steps, args.seed, data)
            name = f"{'BN' if bn else 'no BN'}, lr {lr:g}"
            table[name] = res
            ax.semilogy(r.steps, np.maximum(r.losses, 1e-8), color=f"C{i}", ls="-" if bn else "--", label=name)
    ax.axhline(TARGET_LOSS, color="k", lw=0.7, ls=":")
    ax.set(xlabel="SGD step", ylabel="training loss (full train set, batch statistics)",
           title="6-layer MLP on digits: batch norm (solid) vs none (dashed)")
    ax.legend(fontsize=8)
    common.savefig(plt, fig, args.out, "batchnorm.png")
    metrics = {"experiment": "batchnorm", "steps": args.steps, "target_loss": TARGET_LOSS, "results": table}
    path = common.save_metrics(args.out, metrics)
    for name, res in table.items():
        print(f"batchnorm {name}: test accuracy {res['test_accuracy']:.2%}, final loss {res['final_loss']:.3g}, "
              f"steps to loss {TARGET_LOSS}: {res['steps_to_target']}")
    print(f"wrote {path}")
    return metrics


if __name__ == "__main__":
    main()
