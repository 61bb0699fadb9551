"""The source documents' printed formulas beside their corrections: each printed one must FAIL, each correction PASS.

``python -m verification --errata`` prints, per erratum: where it is, the
printed and corrected formulas, and both verdicts with the checker's
diagnosis.  Gradient errata go through :func:`verification.check_gradients`;
the others are compared with Optax or with the exact matrix.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxmlp
from verification.checker.gradients.check import check_gradients
from verification.suite.comparison import compare_trees
from verification.suite import bugs
from verification.suite.problems import mlp_problem
from verification.checker.base.tolerances import F64_RTOL
from verification.suite.tolerances import LM_STEP_RTOL

F64 = jnp.float64
Verdict = Tuple[bool, str]  # (passed, diagnosis / evidence)


@dataclasses.dataclass
class Erratum:
    where: str
    printed: str
    corrected: str
    check_printed: Callable[[], Verdict]
    check_corrected: Callable[[], Verdict]


def _net(sizes=(3, 4, 2), act="sigmoid", head="softmax_cross_entropy", m=5, seed=0):
    return mlp_problem(sizes, act, head, m=m, seed=seed, integer_labels=True)


def _grad_verdict(manual, loss, params, *args, **kw) -> Verdict:
    try:
        r = check_gradients(loss, manual, params, *args, **kw)
    except (ValueError, TypeError) as e:
        return False, f"cannot even be evaluated: {str(e).splitlines()[0][:120]}"
    why = "; ".join(sorted({f"{d.cause} ({d.evidence})" for d in r.diagnoses})) or "matches jax.grad"
    return r.passed, why


def _traj_verdict(update, base, params, grads, steps=20) -> Verdict:
    """Run ``update(p, g, state) -> (p, state)`` against an Optax baseline on a fixed gradient sequence."""
    try:
        p, s = params, None
        with jax.numpy_dtype_promotion("standard"):
            bs, q = base.init(params), params
        for g in grads[:steps]:
            p, s = update(p, g, s)
            with jax.numpy_dtype_promotion("standard"):  # Optax mixes its int32 count with floats
                u, bs = base.update(g, bs, q)
            q = optax.apply_updates(q, u)
            if jax.tree.structure(p) != jax.tree.structure(q) or any(
                    np.shape(a) != np.shape(b) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q))):
                return False, "shape changes: " + ", ".join(f"{np.shape(a)} vs {np.shape(b)}" for a, b in
                                                            zip(jax.tree.leaves(p), jax.tree.leaves(q)) if np.shape(a) != np.shape(b))
    except (ValueError, TypeError) as e:
        return False, f"cannot even be evaluated: {str(e).splitlines()[0][:100]}"
    cmp = compare_trees(p, q, 1e-12)
    if not all(np.all(np.isfinite(a)) for a in jax.tree.leaves(p)):
        return False, "non-finite parameters (division by zero)"
    return cmp.ok, f"after {steps} steps: max rel {cmp.max_rel:.2e} vs the Optax baseline at {cmp.where}"


def _grads_seq(params, n=20, zero_first=False):
    keys = jax.random.split(jax.random.key(3), n)
    gs = [jax.tree.map(lambda t, k=k: jax.random.normal(k, t.shape, t.dtype), params) for k in keys]
    if zero_first:  # a coordinate whose gradient is 0 at the first step: S = 0 there
        gs = [jax.tree.map(lambda t: t.at[(0,) * t.ndim].set(0.0), g) if i == 0 else g for i, g in enumerate(gs)]
    return gs


# --- DNN Maths (2020-01-12) --------------------------------------------------------------
def l1_printed():
    model, params, x, y = _net()
    manual = lambda p, x, y, l1=0.0: tuple(g._replace(W=g.W + l1) for g in jaxmlp.value_and_grad(model, p, x, y)[1])  # noqa: E731
    return _grad_verdict(manual, lambda p, x, y, l1=0.0: jaxmlp.loss(model, p, x, y, l1=l1), params, x, y, l1=0.05)


def l1_corrected():
    model, params, x, y = _net()
    return _grad_verdict(lambda p, x, y, l1=0.0: jaxmlp.value_and_grad(model, p, x, y, l1=l1)[1],
                         lambda p, x, y, l1=0.0: jaxmlp.loss(model, p, x, y, l1=l1), params, x, y, l1=0.05)


def _momentum(bias_uses_vdW):
    params = _net()[1]
    alpha, beta = 0.1, 0.9

    def update(p, g, v):
        v = jax.tree.map(jnp.zeros_like, p) if v is None else v
        v = jax.tree.map(lambda v, g: beta * v + (1 - beta) * g, v, g)
        new = tuple(jaxmlp.Dense(q.W - alpha * vq.W, q.b - alpha * (vq.W if bias_uses_vdW else vq.b)) for q, vq in zip(p, v))
        return new, v

    return _traj_verdict(update, optax.sgd(alpha * (1 - beta), momentum=beta), params, _grads_seq(params))


def _rmsprop(eps):
    params = _net()[1]

    def update(p, g, s):
        s = jax.tree.map(jnp.zeros_like, p) if s is None else s
        s = jax.tree.map(lambda s, g: 0.9 * s + 0.1 * g * g, s, g)
        return jax.tree.map(lambda q, g, s: q - 0.01 * g / (jnp.sqrt(s) + eps), p, g, s), s

    return _traj_verdict(update, optax.rmsprop(0.01, 0.9, 1e-8, eps_in_sqrt=False), params,
                         _grads_seq(params, zero_first=True))


def _adam(bias_correction):
    params = _net()[1]

    def update(p, g, st):
        t, v, s = (0, jax.tree.map(jnp.zeros_like, p), jax.tree.map(jnp.zeros_like, p)) if st is None else st
        t += 1
        v = jax.tree.map(lambda v, g: 0.9 * v + 0.1 * g, v, g)
        s = jax.tree.map(lambda s, g: 0.999 * s + 0.001 * g * g, s, g)
        c1, c2 = (1 - 0.9**t, 1 - 0.999**t) if bias_correction else (1.0, 1.0)
        return jax.tree.map(lambda q, v, s: q - 0.01 * (v / c1) / (jnp.sqrt(s / c2) + 1e-8), p, v, s), (t, v, s)

    return _traj_verdict(update, optax.adam(0.01), params, _grads_seq(params))


def _batchnorm(eps):
    z = jnp.stack([jnp.linspace(-1.0, 1.0, 8, dtype=F64), jnp.full(8, 0.3, F64)], axis=1)  # column 2 is constant
    mu, var = jnp.mean(z, 0), jnp.var(z, 0)
    xhat = (z - mu[None, :]) / jnp.sqrt(var[None, :] + eps)
    ok = bool(jnp.all(jnp.isfinite(xhat)))
    return ok, "finite on a constant feature" if ok else "0/0 = NaN on a feature with zero batch variance"


# --- Batch Backprop (2019-05-06) --------------------------------------------------------------
def _sum_vs_mean(loss_is_sum):
    model, params, x, y = _net((3, 4, 2), "relu")
    m = x.shape[0]
    loss = (lambda p, x, y: m * jaxmlp.loss(model, p, x, y)) if loss_is_sum else (lambda p, x, y: jaxmlp.loss(model, p, x, y))
    return _grad_verdict(lambda p, x, y: jaxmlp.value_and_grad(model, p, x, y)[1], loss, params, x, y)


def _relu_at_zero(printed):
    """Against jax.nn.relu's convention relu'(0) = 0 (strictly: both sides are valid subgradients, so the
    checker's kink rule would pass either; the convention is what is verified here)."""
    model, params, x, y = _net((3, 4, 2), "relu")
    params = (params[0]._replace(b=jnp.zeros(4, F64)), params[1])
    x = x.at[0].set(0.0)  # relu inputs exactly 0 in row 0
    d = (lambda z, a: (z >= 0).astype(z.dtype)) if printed else None
    manual = lambda p, x, y: bugs.manual_with(model, p, x, y, 0.0, 0.0, derivative=d)  # noqa: E731
    r = check_gradients(lambda p, x, y: jaxmlp.loss(model, p, x, y), manual, params, x, y, diagnose_failures=False)
    worst = max(l.max_rel for l in r.leaves)
    return r.passed, ("matches jax.nn.relu's convention" if r.passed else
                      f"differs from jax.nn.relu's relu'(0) = 0 by {worst:.2e} (another valid subgradient)")


# --- Higham & Higham notes (2024-09-10) --------------------------------------------------------------
def _gd_step(printed):
    model, params, x, y = _net((2, 2, 3, 2), "sigmoid", "sigmoid_quadratic")
    y = jax.nn.one_hot(y, 2, dtype=F64)
    t = 0.05
    _, g = jaxmlp.value_and_grad(model, params, x, y)
    new = jax.tree.map((lambda p, g: t * g) if printed else (lambda p, g: p - t * g), params, g)
    J0, J1 = jaxmlp.loss(model, params, x, y), jaxmlp.loss(model, new, x, y)
    ref = optax.apply_updates(params, optax.sgd(t).update(g, optax.sgd(t).init(params))[0])
    cmp = compare_trees(new, ref, F64_RTOL)
    return cmp.ok and bool(J1 < J0), f"cost {float(J0):.4f} -> {float(J1):.4f}; max rel {cmp.max_rel:.2e} vs optax.sgd's step"


def _woodbury(which, printed):
    from verification.suite.levenberg_marquardt import woodbury_cases

    name, _, truth, p, c = [w for w in woodbury_cases() if w[0] == which][0]
    cmp = compare_trees(p if printed else c, truth, LM_STEP_RTOL)
    return cmp.ok, f"max rel {cmp.max_rel:.2e} vs the exact inverse"


# --- Backprop Derivation (2019-05-01) --------------------------------------------------------------
def _testnet_003():
    model, params, x, y = _net((2, 3, 2), "sigmoid", m=1, seed=4)
    return model, params, x, y


def _input_grad(printed):
    model, params, x, y = _testnet_003()
    zs, as_ = jaxmlp.forward(model, params, x)
    delta2 = jaxmlp.get_head(model.head).delta(zs[-1], jax.nn.one_hot(y, 2, dtype=F64))
    delta1 = (delta2 @ params[1].W.T) * as_[1] * (1 - as_[1])
    W = params[0 - 1].W if printed else params[0].W  # "W^(0)": index 0 in a 1-based list wraps to the last layer
    ref = jax.grad(lambda x: jaxmlp.loss(model, params, x, y))(x)
    try:
        got = delta1 @ W.T
    except TypeError as e:
        return False, f"W^(0) does not exist; read as the last layer it does not fit: {str(e).splitlines()[0][:90]}"
    cmp = compare_trees(got, ref, F64_RTOL)
    return cmp.ok, f"dJ/da^(0): max rel {cmp.max_rel:.2e} vs jax.grad"


def _hadamard(printed):
    model, params, x, y = _testnet_003()

    def manual(p, x, y):
        zs, as_ = jaxmlp.forward(model, p, x)
        d2 = (jaxmlp.get_head(model.head).delta(zs[-1], jax.nn.one_hot(y, 2, dtype=F64)))[0]  # (2,)
        W2c, a1, a0 = p[1].W.T, as_[1][0], x[0]  # column convention
        back = W2c.T @ d2  # (3,)
        if printed:  # matrix products: (3x1)(1x3)(3x1)(1x2)
            dW1c = back[:, None] @ a1[None, :] @ (1 - a1)[:, None] @ a0[None, :]
        else:
            dW1c = (back * a1 * (1 - a1))[:, None] @ a0[None, :]
        g = jaxmlp.value_and_grad(model, p, x, y)[1]
        return (g[0]._replace(W=dW1c.T), g[1])

    return _grad_verdict(manual, lambda p, x, y: jaxmlp.loss(model, p, x, y), params, x, y)


# --- Matrix Backprop (2019-05-15) --------------------------------------------------------------
def _frobenius(printed):
    model = jaxmlp.MLP((5, 4, 3), "relu", "sum_squares", use_bias=False)
    params = jaxmlp.init(model, jax.random.key(0), "normal", dtype=F64)
    x = jax.random.normal(jax.random.key(1), (6, 5), F64)
    y = jax.random.normal(jax.random.key(2), (6, 3), F64)

    def loss(p, x, y):
        d = jaxmlp.forward(model, p, x)[0][-1] - y
        return jnp.sum(jnp.abs(d)) ** 2 if printed else jnp.sum(d * d)

    return _grad_verdict(lambda p, x, y: jaxmlp.value_and_grad(model, p, x, y)[1], loss, params, x, y)


ERRATA = [
    Erratum("DNN Maths (2020-01-12), L1 regularisation", "dW = dW_orig + lambda", "dW = dW_orig + lambda sign(W)", l1_printed, l1_corrected),
    Erratum("DNN Maths (2020-01-12), momentum", "b -= alpha v^{dW}", "b -= alpha v^{db}", lambda: _momentum(True), lambda: _momentum(False)),
    Erratum("DNN Maths (2020-01-12), RMSprop", "W -= alpha dW / sqrt(S)", "W -= alpha dW / (sqrt(S) + eps)",
            lambda: _rmsprop(0.0), lambda: _rmsprop(1e-8)),
    Erratum("DNN Maths (2020-01-12), Adam", "W -= alpha v / (sqrt(S) + eps)  (no bias correction)",
            "W -= alpha v_hat / (sqrt(S_hat) + eps), v_hat = v/(1-b1^t), S_hat = S/(1-b2^t)",
            lambda: _adam(False), lambda: _adam(True)),
    Erratum("DNN Maths (2020-01-12), batch normalisation", "z_norm = (z - mu) / sqrt(sigma^2)", "z_norm = (z - mu) / sqrt(sigma^2 + eps)",
            lambda: _batchnorm(0.0), lambda: _batchnorm(1e-5)),
    Erratum("Batch Backprop (2019-05-06), batch loss", "J = -sum_i sum_j 1(y_ij) ln p_ij with gradients (1/m) a^T dz",
            "J = -(1/m) sum_i sum_j 1(y_ij) ln p_ij", lambda: _sum_vs_mean(True), lambda: _sum_vs_mean(False)),
    Erratum("Batch Backprop (2019-05-06), relu derivative (convention)", "relu'(z) = 1(z >= 0)", "relu'(z) = 1(z > 0), as jax.nn.relu",
            lambda: _relu_at_zero(True), lambda: _relu_at_zero(False)),
    Erratum("Higham & Higham notes (2024-09-10), gradient descent / SGD", "p -> t grad Cost(p)", "p -> p - t grad Cost(p)",
            lambda: _gd_step(True), lambda: _gd_step(False)),
    Erratum("Higham & Higham notes (2024-09-10), Woodbury identity", "(A+UCV)^-1 = A^-1 U (C^-1 + V A^-1 U)^-1 V A^-1",
            "(A+UCV)^-1 = A^-1 - A^-1 U (C^-1 + V A^-1 U)^-1 V A^-1",
            lambda: _woodbury("woodbury_general", True), lambda: _woodbury("woodbury_general", False)),
    Erratum("Higham & Higham notes (2024-09-10), Woodbury for LM", "(lam I + J^T J)^-1 = lam^-1 I - lam^-1 J^T (lam I + J J^T)^-1 J lam^-1",
            "(lam I + J^T J)^-1 = lam^-1 (I - J^T (lam I + J J^T)^-1 J)",
            lambda: _woodbury("woodbury_lm", True), lambda: _woodbury("woodbury_lm", False)),
    Erratum("Backprop Derivation (2019-05-01), dz^(1)/da^(0)", "dz^(1)/da^(0) = W^(0)", "dz^(1)/da^(0) = W^(1)",
            lambda: _input_grad(True), lambda: _input_grad(False)),
    Erratum("Backprop Derivation (2019-05-01), matrix form of dJ/dW^(1)", "W2^T (p - y) . g(z1)^T . (1 - g(z1)) . a0^T  (matrix products)",
            "((W2^T (p - y)) * g(z1) * (1 - g(z1))) a0^T  (Hadamard, then outer product)",
            lambda: _hadamard(True), lambda: _hadamard(False)),
    Erratum("Matrix Backprop (2019-05-15), the loss's name", "loss = ||y_pred - y||_1^2 ('square of the L1 norm')",
            "loss = ||y_pred - y||_F^2 (squared Frobenius norm), gradient 2(y_pred - y)",
            lambda: _frobenius(True), lambda: _frobenius(False)),
]

NOT_EXECUTABLE = [
    ("DNN Maths (2020-01-12), forward pass", "a^[2] = g^[1](z^[1])", "a^[1] = g^[1](z^[1])  (an index typo; nothing to run)"),
    ("DNN Maths (2020-01-12), backprop's last line", "uses z^[0]", "there is no z^[0]: the input is a^[0] = x (an index typo)"),
    ("DNN Maths (2020-01-12), batch normalisation", "no learned scale and shift",
     "y = gamma z_norm + beta (jaxmlp.batchnorm; a missing scale is no formula to run)"),
]


def main() -> int:
    n_ok = 0
    for e in ERRATA:
        p_ok, p_why = e.check_printed()
        c_ok, c_why = e.check_corrected()
        good = (not p_ok) and c_ok
        n_ok += good
        print(f"\n[{'OK' if good else 'PROBLEM'}] {e.where}\n  printed:   {e.printed}\n    -> {'PASS' if p_ok else 'FAIL'}: {p_why}"
              f"\n  corrected: {e.corrected}\n    -> {'PASS' if c_ok else 'FAIL'}: {c_why}")
    for where, printed, note in NOT_EXECUTABLE:
        print(f"\n[notational] {where}\n  printed:   {printed}\n  note:      {note}")
    print(f"\n{n_ok}/{len(ERRATA)} errata fail as printed and pass corrected; {len(NOT_EXECUTABLE)} notational")
    return 0 if n_ok == len(ERRATA) else 1
