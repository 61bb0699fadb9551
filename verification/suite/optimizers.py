"""Optimizer checks: each hand-written optimizer's 1000-step trajectory against its Optax baseline.

Problems: (a) a convex quadratic, (b) Rosenbrock, (c) an MLP trained with the
manual gradient.  Each runs in float64 and float32, both sides jitted inside a
``lax.scan``; a row reports ``exact`` when the trajectories are bitwise equal.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxmlp
from jaxmlp import optim
from verification.suite.comparison import compare_trees
from verification.suite.rows import Row
from verification.suite.tolerances import OPT_F32_MAPPING_RTOL, OPT_F32_RTOL, OPT_F64_RTOL

STEPS = 1000


SCHEDULES = ("constant", "exponential", "warmup_cosine")


def schedule(kind, lr):
    """The problem's rate ``lr`` as a constant, ``optax.exponential_decay`` (halved every 200 steps) or
    ``optax.warmup_cosine_decay_schedule`` (from 0 over 100 steps, to lr/10 at step 1000)."""
    if kind == "constant":
        return lr
    if kind == "exponential":
        return optax.exponential_decay(lr, 200, 0.5)
    return optax.warmup_cosine_decay_schedule(0.0, lr, 100, STEPS, lr / 10)


def wide(lr):
    """A schedule's value in the default float dtype (float64 under x64): Optax's schedules return float32
    from an int32 count, and a mapping that rescales it must not round there (a 1e-8 error otherwise)."""
    return lambda n: jnp.asarray(lr(n), jax.dtypes.canonicalize_dtype(jnp.float64))


def times(lr, c):
    """``lr * c`` for a float or a schedule (a mapping's rescaled rate)."""
    return (lambda n: wide(lr)(n) * c) if callable(lr) else lr * c


def adam_without_bias_correction_baseline(lr, b1, b2, eps):
    r"""DNN Maths (2020-01-12)'s Adam as ``inject_hyperparams(optax.adam)`` with step-dependent lr and eps.

    :math:`\hat v/(\sqrt{\hat S}+\epsilon_t) = \frac{\sqrt{c_2}}{c_1}\, v/(\sqrt S + \epsilon_t\sqrt{c_2})`
    with :math:`c_i = 1-\beta_i^t`, so :math:`\alpha_t = \alpha c_1/\sqrt{c_2}` and
    :math:`\epsilon_t = \epsilon/\sqrt{c_2}` give :math:`\alpha\, v/(\sqrt S + \epsilon)`.
    """
    c = lambda b, n: 1 - b ** (n + 1)  # inject_hyperparams passes the 0-based count  # noqa: E731
    rate = wide(lr) if callable(lr) else (lambda n: lr)
    return optax.inject_hyperparams(optax.adam)(
        learning_rate=lambda n: rate(n) * c(b1, n) / jnp.sqrt(c(b2, n)),
        b1=b1, b2=b2, eps=lambda n: eps / jnp.sqrt(c(b2, n)))


def pairs(lr, mask, kind="constant"):
    """(name, hand-written, Optax baseline, how the baseline relates) for every optimizer, at the problem's
    rate ``lr`` under the schedule ``kind``."""
    b, wd = 0.9, 0.05
    a_lr = schedule(kind, lr / 5)  # Adam's steps are ~lr per coordinate: keep them small on every problem
    lr = schedule(kind, lr)
    return [
        ("sgd", optim.sgd(lr), optax.sgd(lr), "alias"),
        ("sgd_weight_decay", optim.sgd(lr, weight_decay=wd),
         optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr)), "composition"),
        ("momentum_ema", optim.momentum(lr, b), optax.sgd(times(lr, 1 - b), momentum=b), "mapping a(1-b), b"),
        ("heavy_ball", optim.heavy_ball(lr, b), optax.sgd(lr, momentum=b), "alias"),
        ("nesterov", optim.nesterov(lr, b), optax.sgd(lr, momentum=b, nesterov=True), "alias"),
        ("rmsprop", optim.rmsprop(lr, 0.9, 1e-8, eps_in_sqrt=False), optax.rmsprop(lr, 0.9, 1e-8, eps_in_sqrt=False), "alias"),
        ("rmsprop_eps_in_sqrt", optim.rmsprop(lr, 0.9, 1e-8, eps_in_sqrt=True), optax.rmsprop(lr, 0.9, 1e-8), "alias"),
        ("adam", optim.adam(a_lr), optax.adam(a_lr), "alias"),
        ("adam_no_bias_correction", optim.adam(a_lr, bias_correction=False),
         adam_without_bias_correction_baseline(a_lr, 0.9, 0.999, 1e-8), "mapping inject_hyperparams"),
        ("adamw_masked", optim.adamw(a_lr, weight_decay=wd, mask=mask),
         optax.adamw(a_lr, weight_decay=wd, mask=mask), "alias"),
    ]


def trajectory(opt, grad_fn, params, steps=STEPS):
    """Jitted scan of ``steps`` updates; returns every iterate stacked on axis 0."""

    @jax.jit
    def run(params):
        def step(carry, _):
            p, s = carry
            u, s = opt.update(grad_fn(p), s, p)
            p = optax.apply_updates(p, u)
            return (p, s), p

        return jax.lax.scan(step, (params, opt.init(params)), None, length=steps)[1]

    with jax.numpy_dtype_promotion("standard"):  # Optax mixes int32 step counts with floats
        return run(params)


def problems(dtype):
    """(name, params, gradient function, learning rate, adamw mask) for each test problem."""
    n = 10
    q = jnp.linspace(1.0, 10.0, n, dtype=dtype)  # eigenvalues of the quadratic's Hessian
    Q = jnp.linalg.qr(jax.random.normal(jax.random.key(0), (n, n), dtype))[0]
    A = (Q * q[None, :]) @ Q.T
    bvec = jnp.arange(n, dtype=dtype) / n
    quad = ("quadratic", {"w": jnp.ones(n, dtype), "c": jnp.zeros(3, dtype)},
            lambda p: {"w": A @ p["w"] - bvec, "c": p["c"] - 1}, 0.02, {"w": True, "c": False})

    def rosen_grad(p):
        x, y = p[0], p[1]
        return jnp.stack([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])

    rosen = ("rosenbrock", jnp.array([-1.2, 1.0], dtype), rosen_grad, 1e-3, None)

    model = jaxmlp.MLP((2, 16, 3), "tanh", "softmax_cross_entropy")
    params = jaxmlp.init(model, jax.random.key(1), "xavier", dtype=dtype)
    x = jax.random.normal(jax.random.key(2), (64, 2), dtype)
    y = (x[:, 0] > 0).astype(jnp.int32) + (x[:, 1] > 0.5).astype(jnp.int32)
    mlp_grad = lambda p: jaxmlp.value_and_grad(model, p, x, y, l2=1e-3, check=False)[1]  # noqa: E731
    mlp = ("mlp", params, mlp_grad, 0.05, optim.weights_only(params))
    return [quad, rosen, mlp]


def optimizer_trajectories():
    for dtype in (jnp.float64, jnp.float32):
        yield from trajectory_rows(dtype)


def trajectory_rows(dtype, select=None):
    """The optimizer rows for one dtype: every optimizer on every problem with every schedule, or, with
    ``select`` (``select(problem, schedule, optimizer) -> bool``; the test suite's sample), those it keeps."""
    tol = OPT_F64_RTOL if dtype == jnp.float64 else OPT_F32_RTOL
    tag = jnp.dtype(dtype).name
    for prob, params, grad_fn, lr, mask in problems(dtype):
        for kind in SCHEDULES:
            for name, mine, base, how in pairs(lr, mask, kind):
                if select is not None and not select(prob, kind, name):
                    continue
                if mask is None and name == "adamw_masked":
                    a_lr = schedule(kind, lr / 5)
                    mine, base = optim.adamw(a_lr, weight_decay=0.05), optax.adamw(a_lr, weight_decay=0.05)
                row_tol = OPT_F32_MAPPING_RTOL if dtype == jnp.float32 and how.startswith("mapping") else tol
                a = trajectory(mine, grad_fn, params)
                b = trajectory(base, grad_fn, params)
                exact = all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
                cmp = compare_trees(a, b, row_tol)
                cmp.where = f"exact ({how})" if exact else f"{how}; worst at {cmp.where}"
                sched = "" if kind == "constant" else f"/{kind}"
                yield Row.from_comparison(f"optim/{name}{sched}/{prob}/{tag}", f"{STEPS} steps vs optax ({how})",
                                          cmp, row_tol)
