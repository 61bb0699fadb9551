"""scikit-learn's bundled 8x8 digits: real data, trained with the manual gradient and Adam.

1797 images; stratified 75/25 train/test split; features standardised on the
training set.  A 64-128-64-10 relu MLP with softmax cross-entropy and L2 1e-4,
He initialisation, hand-written Adam (lr 1e-3), mini-batches of 64.  Target:
test accuracy >= 97%.  Figures: the loss curve and the test confusion matrix.
"""
from __future__ import annotations

import jax
import numpy as np

import jaxmlp
from experiments import common
from jaxmlp import optim
from jaxmlp import train

SIZES = (64, 128, 64, 10)
LR = 1e-3
L2 = 1e-4
BATCH = 64
STEPS = 3000
TARGET = 0.97


def main(argv=None):
    args = common.parse("digits", __doc__, argv, STEPS)
    x_tr, y_tr, x_te, y_te = jaxmlp.data.digits(seed=args.seed)
    model = jaxmlp.MLP(SIZES, "relu", "softmax_cross_entropy")
    params = jaxmlp.init(model, jax.random.key(args.seed), "he")
    r = train.train(train.manual_grad(model, l2=L2), optim.adam(LR), params, x_tr, y_tr, key=jax.random.key(args.seed),
                steps=args.steps, scheme="minibatch", batch_size=BATCH, log_every=min(50, args.steps))
    pred = np.argmax(np.asarray(jaxmlp.predict(model, r.params, x_te)), 1)
    acc_te = float(np.mean(pred == y_te))
    acc_tr = float(np.mean(np.argmax(np.asarray(jaxmlp.predict(model, r.params, x_tr)), 1) == y_tr))
    cm = np.zeros((10, 10), int)
    np.add.at(cm, (y_te, pred), 1)
    plt = common.figure()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    axes[0].semilogy(r.steps, r.losses)
    axes[0].set(xlabel="step", ylabel="training loss", title="digits: manual gradient + Adam")
    axes[1].imshow(cm, cmap="Blues")
    for i in range(10):
        for j in range(10):
            axes[1].text(j, i, cm[i, j], ha="center", va="center", fontsize=7)
    axes[1].set(xlabel="predicted", ylabel="true", title=f"test confusion matrix (accuracy {acc_te:.1%})",
                xticks=range(10), yticks=range(10))
    common.savefig(plt, fig, args.out, "digits.png")
    metrics = {"experiment": "digits", "steps": args.steps, "test_accuracy": acc_te, "train_accuracy": acc_tr,
               "target_test_accuracy": TARGET, "n_train": len(y_tr), "n_test": len(y_te),
               "final_loss": r.losses[-1], "confusion_matrix": cm}
    path = common.save_metrics(args.out, metrics)
    print(f"digits: test accuracy {acc_te:.2%} (target >= {TARGET:.0%}), train {acc_tr:.2%}\nwrote {path}")
    return metrics


if __name__ == "__main__":
    main()
