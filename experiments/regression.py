"""The PyTorch tutorial's two-layer numpy network (the PyTorch tutorial program in Matrix Backprop (2019-05-15)), jitted with the manual gradient.

N=64, D_in=1000, H=100, D_out=10; relu, no biases, sum-of-squares loss
||y_pred - y||_F^2 (Matrix Backprop (2019-05-15) calls it "the square of the L1 norm"; it is the
squared Frobenius norm); weights N(0,1); plain gradient descent, lr 1e-6,
500 steps.  The tutorial prints the loss but publishes no final number, so the
run is checked against the tutorial's own numpy loop (rewritten here) started
from the same weights, in float64.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxmlp
from experiments import common
from jaxmlp import optim
from jaxmlp import train

N, D_IN, H, D_OUT = 64, 1000, 100, 10
LR = 1e-6
STEPS = 500


def numpy_reference(w1, w2, x, y, steps):
    """The tutorial's loop: forward, loss, hand gradients, update (our own words)."""
    losses = []
    for _ in range(steps):
        h = x @ w1
        h_relu = np.maximum(h, 0)
        y_pred = h_relu @ w2
        losses.append(np.square(y_pred - y).sum())
        g_pred = 2.0 * (y_pred - y)
        g_w2 = h_relu.T @ g_pred
        g_h = (g_pred @ w2.T) * (h > 0)
        g_w1 = x.T @ g_h
        w1, w2 = w1 - LR * g_w1, w2 - LR * g_w2
    losses.append(np.square(np.maximum(x @ w1, 0) @ w2 - y).sum())
    return np.array(losses), (w1, w2)


def main(argv=None):
    args = common.parse("regression", __doc__, argv, STEPS)
    x, y = jaxmlp.data.random_regression(N, D_IN, D_OUT, seed=args.seed, dtype=np.float64)
    model = jaxmlp.MLP((D_IN, H, D_OUT), "relu", "sum_squares", use_bias=False)
    with jax.enable_x64(True):
        params = jaxmlp.init(model, jax.random.key(args.seed), "normal", dtype=jnp.float64)
        r = train.train(train.manual_grad(model), optim.sgd(LR), params, x, y, key=jax.random.key(0), steps=args.steps,
                    log_every=1)
        ref_losses, (w1, w2) = numpy_reference(np.asarray(params[0].W), np.asarray(params[1].W), x, y, args.steps)
        max_rel = float(np.max(np.abs(r.losses - ref_losses) / ref_losses))
        w_rel = float(max(np.max(np.abs(np.asarray(r.params[0].W) - w1)) / np.max(np.abs(w1)),
                          np.max(np.abs(np.asarray(r.params[1].W) - w2)) / np.max(np.abs(w2))))
    plt = common.figure()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(r.steps, r.losses, label="jaxmlp (manual gradient, jit)")
    ax.semilogy(r.steps, ref_losses, "--", label="tutorial numpy loop")
    ax.set(xlabel="step", ylabel="||y_pred - y||_F^2", title="the PyTorch tutorial program in Matrix Backprop (2019-05-15) regression")
    ax.legend()
    common.savefig(plt, fig, args.out, "regression.png")
    metrics = {"experiment": "regression", "steps": args.steps, "initial_loss": r.losses[0],
               "final_loss": r.losses[-1], "numpy_final_loss": ref_losses[-1],
               "max_rel_loss_diff_vs_numpy": max_rel, "max_rel_weight_diff_vs_numpy": w_rel}
    path = common.save_metrics(args.out, metrics)
    print(f"regression: loss {r.losses[0]:.4g} -> {r.losses[-1]:.4g} (numpy loop {ref_losses[-1]:.4g}; "
          f"max rel diff {max_rel:.2e}, weights {w_rel:.2e})\nwrote {path}")
    return metrics


if __name__ == "__main__":
    main()
