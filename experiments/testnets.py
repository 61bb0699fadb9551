"""The source documents' TestNets, every intermediate printed in the source's own notation and checked against jax.grad.

* Backprop Derivation (2019-05-01): TestNet 2-3-2, sigmoid hidden layer, softmax + cross-entropy, L2;
  column convention z = W a + b with W of shape (n_l, n_{l-1}) (W_col = W^T).
* Batch Backprop (2019-05-06): TestNet 3-4-2, relu hidden layer, softmax + cross-entropy;
  batch rows z = a W + b with W of shape (n_{l-1}, n_l).

delta^l = dJ/dz^l is checked against jax.grad of the loss with respect to an
additive offset on z^l; the parameter gradients against jax.grad(jaxmlp.loss).
Everything runs in float64.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxmlp
from experiments import common

BATCH = 4
L2_SEED003 = 0.1
TOL = 1e-12  # float64, see verification.checker.base.tolerances.F64_RTOL


def intermediates(model, params, x, y, l2):
    """Manual (Z, A, delta, grads) and the autodiff deltas and grads."""
    zs, as_ = jaxmlp.forward(model, params, x)
    head = jaxmlp.get_head(model.head)
    yy = jax.nn.one_hot(y, model.n_out, dtype=x.dtype)
    # manual deltas, layer by layer (the recursion of jaxmlp.backward, kept for printing)
    act = jaxmlp.get_activation(model.activation)
    deltas = [head.delta(zs[-1], yy)]
    for l in range(model.depth - 1, 0, -1):
        deltas.insert(0, (deltas[0] @ params[l].W.T) * act.derivative(zs[l - 1], as_[l]))
    _, grads = jaxmlp.value_and_grad(model, params, x, y, l2=l2)

    def loss_with_offsets(offsets):
        a = x
        for l, (p, o) in enumerate(zip(params, offsets), start=1):
            z = a @ p.W + p.b[None, :] + o
            a = act.forward(z) if l < model.depth else z
        return head.loss(a, yy) + jaxmlp.penalty(params, 0.0, l2)

    ref_deltas = jax.grad(loss_with_offsets)([jnp.zeros_like(z) for z in zs])
    ref_grads = jax.grad(lambda p: jaxmlp.loss(model, p, x, y, l2=l2))(params)
    return zs, as_, deltas, grads, ref_deltas, ref_grads


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(np.asarray(b))), 1e-300))


def show(title, sizes, activation, l2, column, seed):
    model = jaxmlp.MLP(sizes, activation, "softmax_cross_entropy")
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = jaxmlp.init(model, k1, "higham", dtype=jnp.float64)
    x = jnp.round(jax.random.normal(k2, (BATCH, sizes[0]), jnp.float64), 2)
    y = jax.random.randint(k3, (BATCH,), 0, sizes[-1])
    zs, as_, deltas, grads, ref_d, ref_g = intermediates(model, params, x, y, l2)
    t = (lambda a: np.asarray(a).T) if column else np.asarray  # Backprop Derivation (2019-05-01) prints columns (one example per column)
    np.set_printoptions(precision=5, suppress=True, linewidth=120)
    print(f"\n=== {title} ===  ({'column: z = W a + b, W = W_col' if column else 'rows: z = a W + b'})")
    print(f"a^(0) = x:\n{t(x)}\ny = {np.asarray(y)}")
    worst = 0.0
    for l in range(1, model.depth + 1):
        W = np.asarray(params[l - 1].W)
        print(f"W^({l}) {'(n_l, n_l-1)' if column else '(n_l-1, n_l)'}:\n{W.T if column else W}\nb^({l}) = {np.asarray(params[l - 1].b)}")
        print(f"z^({l}):\n{t(zs[l - 1])}")
        if l < model.depth:
            print(f"a^({l}) = {activation}(z^({l})):\n{t(as_[l])}")
    for l in range(model.depth, 0, -1):
        e_d, e_w, e_b = _rel(deltas[l - 1], ref_d[l - 1]), _rel(grads[l - 1].W, ref_g[l - 1].W), _rel(grads[l - 1].b, ref_g[l - 1].b)
        worst = max(worst, e_d, e_w, e_b)
        gW = np.asarray(grads[l - 1].W)
        print(f"delta^({l}) = dJ/dz^({l})   [rel err vs jax.grad {e_d:.1e}]:\n{t(deltas[l - 1])}")
        print(f"dJ/dW^({l})   [rel err {e_w:.1e}]:\n{gW.T if column else gW}")
        print(f"dJ/db^({l}) = {np.asarray(grads[l - 1].b)}   [rel err {e_b:.1e}]")
    print(f"{title}: worst relative error {worst:.2e} (tolerance {TOL:.0e}) -> {'PASS' if worst <= TOL else 'FAIL'}")
    return worst


def main(argv=None):
    args = common.parse("testnets", __doc__, argv, 1)
    with jax.enable_x64(True):
        w003 = show("Backprop Derivation (2019-05-01) TestNet 2-3-2 (sigmoid, softmax, L2)", (2, 3, 2), "sigmoid", L2_SEED003, True, args.seed)
        w001 = show("Batch Backprop (2019-05-06) TestNet 3-4-2 (relu, softmax)", (3, 4, 2), "relu", 0.0, False, args.seed + 1)
    metrics = {"experiment": "testnets", "backprop_derivation_worst_rel_err": w003, "batch_backprop_worst_rel_err": w001,
               "tolerance": TOL, "passed": bool(max(w003, w001) <= TOL)}
    path = common.save_metrics(args.out, metrics)
    print(f"wrote {path}")
    if not metrics["passed"]:
        raise SystemExit("testnets: an intermediate does not match jax.grad")
    return metrics


if __name__ == "__main__":
    main()
