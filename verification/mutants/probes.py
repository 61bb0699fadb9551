"""Random float64 inputs for every mutated function: the probes that decide equivalence and record shapes.

A probe is a function of the (possibly mutated) ``jaxmlp`` package that returns a pytree of arrays.  It
calls the module's hand formulas directly (the whole network only for the modules whose formulas act on it),
eagerly, over the input domain the formulas are defined on:
every activation (with exact zeros, the kinks), every head (m = 1 and m > 1, weights of 0 and 1), biases
and no biases, L1 and L2 separately and together, batch norm, depths 1 to 3, every optimizer flag with a
constant rate and a schedule (and without ``params`` where there is no weight decay), the manual VJP's
value and gradient.  ``PROBES[module]`` lists a module's probes; the inputs come from one seeded
``numpy`` generator per probe, so the original and a mutant see the same numbers.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

__all__ = ["PROBES", "run_probes"]

_SEED = 1234


def _rng(name):
    return np.random.default_rng([_SEED, sum(map(ord, name))])


def _arr(rng, *shape, zeros=0):
    import jax.numpy as jnp

    a = 2 * rng.standard_normal(shape)
    if zeros:
        a.reshape(-1)[:zeros] = 0.0
    return jnp.asarray(a, jnp.float64)


def activations(jm):
    rng = _rng("act")
    out = {}
    for name, act in jm.ACTIVATIONS.items():
        z = _arr(rng, 5, 4, zeros=3)
        out[name] = act.derivative(z, act.forward(z))
    return out


def dense(jm):
    rng = _rng("dense")
    out = {}
    for bias, m in itertools.product((True, False), (1, 4)):
        p = jm.Dense(_arr(rng, 3, 2), _arr(rng, 2) if bias else None)
        out[f"{bias}/{m}"] = jm.dense_backward(p, _arr(rng, m, 3), _arr(rng, m, 2))
    return out


def _targets(jm, rng, head, m, n):
    import jax.numpy as jnp

    if jm.get_head(head).classes:
        return jnp.eye(n, dtype=jnp.float64)[rng.integers(0, n, m)]
    return jnp.asarray(rng.uniform(size=(m, n)), jnp.float64)


def heads(jm):
    import jax.numpy as jnp

    rng = _rng("heads")
    out = {}
    for (name, head), m in itertools.product(jm.HEADS.items(), (1, 5)):
        z, y = _arr(rng, m, 3), _targets(jm, rng, name, m, 3)
        w = jnp.asarray([1.0] * (m - 1) + [0.0] if m > 1 else [1.0], jnp.float64)
        out[f"{name}/{m}"] = (head.delta(z, y), head.target_delta(z, y), jm.heads.weighted_loss_and_delta(head, z, y, w),
                              jm.heads.weighted_loss_and_delta(head, z, y, None))
        if head.least_squares:
            out[f"{name}/{m}/scale"] = jnp.asarray([head.residual_scale(m, n) for n in (1, 3)], jnp.float64)
    return out


def regularizers(jm):
    rng = _rng("reg")
    p = jm.Dense(_arr(rng, 4, 3, zeros=2), _arr(rng, 3))
    g = jm.Dense(_arr(rng, 4, 3), _arr(rng, 3))
    return {f"{l1}/{l2}": (jm.penalty_grad(p, l1, l2), jm.regularizers.add_penalty_grad(g, p, l1, l2))
            for l1, l2 in ((0.0, 0.0), (0.3, 0.0), (0.0, 0.7), (0.3, 0.7))}


def _problems(jm):
    """(tag, model, params, x, y, l1, l2): depths 1 to 3, biases on and off, every head, every activation."""
    import jax
    import jax.numpy as jnp

    rng = _rng("net")
    acts, hs = list(jm.ACTIVATIONS), list(jm.HEADS)
    out = []
    for i, (depth, bias, (l1, l2)) in enumerate(itertools.product((1, 2, 3), (True, False),
                                                                  ((0.0, 0.0), (0.02, 0.1)))):
        act, head = acts[i % len(acts)], hs[i % len(hs)]
        sizes = (3,) + (4,) * (depth - 1) + (2,)
        model = jm.MLP(sizes, act, head, use_bias=bias)
        params = jm.init(model, jax.random.key(i), "higham", dtype=jnp.float64)
        m = 1 + i % 4
        out.append((f"{act}/{head}/{depth}/{bias}/{l1}/{l2}/{m}", model, params, _arr(rng, m, 3),
                    _targets(jm, rng, head, m, 2), l1, l2))
    return out


def network(jm):
    import jax

    return {tag: (jm.value_and_grad(model, params, x, y, l1=l1, l2=l2),
                  jm.value_and_input_grads(model, params, x, y, l1=l1, l2=l2),
                  jax.value_and_grad(jm.loss_with_manual_vjp, argnums=(1, 2, 3, 4, 5))(model, params, x, y, l1, l2))
            for tag, model, params, x, y, l1, l2 in _problems(jm)}


def lemma1(jm):
    return {tag: jm.lemma1_grad(model, params, x, y, l1=l1, l2=l2) for tag, model, params, x, y, l1, l2 in _problems(jm)}


def least_squares(jm):
    return {tag: (jm.residual_jacobian(model, params, x), jm.gauss_newton_product(model, params, params, x, y))
            for tag, model, params, x, y, l1, l2 in _problems(jm) if jm.get_head(model.head).least_squares}


def batchnorm(jm):
    import jax
    import jax.numpy as jnp

    rng = _rng("bn")
    p = jm.batchnorm.BatchNorm(1 + 0.3 * _arr(rng, 3), _arr(rng, 3))
    out = {}
    for m in (2, 6):
        _, cache, _ = jm.batchnorm.bn_forward(p, 2 + _arr(rng, m, 3), 1e-5)
        out[f"layer/{m}"] = jm.batchnorm.bn_backward(p, cache, _arr(rng, m, 3))
    model = jm.MLP((3, 4, 2), "tanh", "mse", use_bias=False, batchnorm=True)
    params = jm.init(model, jax.random.key(3), "higham", dtype=jnp.float64)
    out["net"] = jm.value_and_grad(model, params, _arr(rng, 5, 3), jnp.asarray(rng.uniform(size=(5, 2)), jnp.float64))
    return out


def optimizers(jm):
    import jax
    import optax

    rng = _rng("optim")
    params = (jm.Dense(_arr(rng, 3, 2), _arr(rng, 2)), jm.Dense(_arr(rng, 2, 1), _arr(rng, 1)))
    grads = [jax.tree.map(lambda t: _arr(rng, *t.shape), params) for _ in range(4)]
    o = jm.optim
    configs = {"sgd": lambda lr: o.sgd(lr), "sgd_wd": lambda lr: o.sgd(lr, weight_decay=0.1),
               "heavy": lambda lr: o.sgd(lr, momentum=0.8), "nesterov": lambda lr: o.sgd(lr, 0.8, nesterov=True),
               "nesterov_wd": lambda lr: o.sgd(lr, 0.8, nesterov=True, weight_decay=0.1),
               "ema": lambda lr: o.momentum(lr, 0.7), "rms": lambda lr: o.rmsprop(lr, 0.8, 1e-3),
               "rms_out": lambda lr: o.rmsprop(lr, 0.8, 1e-3, eps_in_sqrt=False),
               "adam": lambda lr: o.adam(lr, 0.8, 0.9, 1e-3), "adam_nb": lambda lr: o.adam(lr, 0.8, 0.9, 1e-3, bias_correction=False),
               "adamw": lambda lr: o.adamw(lr, 0.8, 0.9, 1e-3, weight_decay=0.1),
               "adamw_mask": lambda lr: o.adamw(lr, 0.8, 0.9, 1e-3, weight_decay=0.1, mask=o.weights_only),
               "adamw_tree": lambda lr: o.adamw(lr, 0.8, 0.9, 1e-3, weight_decay=0.1, mask=o.weights_only(params))}
    out = {}
    for (name, make), lr in itertools.product(configs.items(), (0.1, optax.exponential_decay(0.1, 2, 0.5))):
        opt, p = make(lr), params
        state, trace = opt.init(p), []
        with jax.numpy_dtype_promotion("standard"):
            for g in grads:
                u, state = opt.update(g, state, p)
                p = optax.apply_updates(p, u)
                trace.append((u, state))
        if "wd" not in name and "adamw" not in name:  # update(g, s) without params, as the docstrings call it
            trace.append(make(lr).update(grads[0], make(lr).init(params)))
        out[f"{name}/{'sched' if callable(lr) else 'const'}"] = trace
    return out


PROBES: dict[str, list[Callable]] = {
    "activations.py": [activations], "dense.py": [dense], "heads.py": [heads], "regularizers.py": [regularizers],
    "network.py": [network, least_squares, batchnorm], "lemma1.py": [lemma1], "batchnorm.py": [batchnorm],
    "least_squares.py": [least_squares], "gauss_newton.py": [least_squares], "manual_vjp.py": [network],
    **{m: [optimizers] for m in ("optim/sgd.py", "optim/momentum.py", "optim/rmsprop.py", "optim/adam.py",
                                 "optim/validation.py")},
}


def run_probes(jm, module: str) -> dict[str, tuple]:
    """Every probe of ``module`` on the package ``jm``: ``{probe name: its outputs}``."""
    return {p.__name__: p(jm) for p in PROBES[module]}
