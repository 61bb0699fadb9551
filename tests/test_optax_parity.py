"""The hand-written optimizers drop in for Optax's (issue 16): Optax's own optimisation tests with jaxmlp's
optimizers substituted, schedules, ``count`` in the state, and Optax's wrappers."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmlp import optim

# Optax's alias_test: _OPTIMIZERS_UNDER_TEST (the hyperparameters Optax tests its own optimizers with).
OPTAX_CASES = [
    ("sgd", {"learning_rate": 1e-3, "momentum": 0.9}),
    ("adam", {"learning_rate": 1e-1}),
    ("adamw", {"learning_rate": 1e-1}),
    ("rmsprop", {"learning_rate": 5e-3}),
]
# The same, for jaxmlp's own names (momentum forms and the seed's EMA momentum).
OWN_CASES = [("heavy_ball", {"learning_rate": 1e-3, "momentum": 0.9}),
             ("nesterov", {"learning_rate": 1e-3, "momentum": 0.9}),
             ("momentum", {"learning_rate": 1e-2, "momentum": 0.9})]
STEPS = 10_000  # Optax's test_optimization


def parabola():
    final = jnp.array([1.0, -1.0, 1.0], jnp.float32)
    return jnp.array([-1.0, 10.0, 1.0], jnp.float32), final, lambda p: jnp.sum((p - final) ** 2)


def rosenbrock():
    return (jnp.array([0.0, 0.0], jnp.float32), jnp.array([1.0, 1.0], jnp.float32),
            lambda p: (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2)


def run(opt, params, objective, steps=STEPS):
    def step(carry, _):
        p, s = carry
        u, s = opt.update(jax.grad(objective)(p), s, p)
        return (optax.apply_updates(p, u), s), None

    with jax.numpy_dtype_promotion("standard"):  # Optax's schedules mix int32 counts with floats
        return jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), None, length=steps)[0])(params)


def scheduled(kwargs, kind):
    lr = kwargs["learning_rate"]
    sched = {"constant": lr, "exponential": optax.exponential_decay(lr, 2000, 0.9),
             "warmup_cosine": optax.warmup_cosine_decay_schedule(0.0, lr, 100, STEPS, lr / 10)}[kind]
    return {**kwargs, "learning_rate": sched}


@pytest.mark.parametrize("kind", ["constant", "exponential", "warmup_cosine"])
@pytest.mark.parametrize("target", [parabola, rosenbrock], ids=["parabola", "rosenbrock"])
@pytest.mark.parametrize("name, kwargs", OPTAX_CASES + OWN_CASES, ids=[c[0] for c in OPTAX_CASES + OWN_CASES])
def test_optax_optimization_test(name, kwargs, target, kind):
    """Optax's test_optimization (float32, 10000 steps, rtol = atol = 3e-2) with jaxmlp.optim substituted."""
    init, final, objective = target()
    params, _ = run(getattr(optim, name)(**scheduled(kwargs, kind)), init, objective)
    np.testing.assert_allclose(params, final, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("name, kwargs", OPTAX_CASES, ids=[c[0] for c in OPTAX_CASES])
def test_same_call_as_optax(name, kwargs):
    """Swapping optax.X for jaxmlp.optim.X needs no other change, and gives the same updates."""
    init, _, objective = parabola()
    sched = scheduled(kwargs, "exponential")
    a, _ = run(getattr(optim, name)(**sched), init, objective, steps=200)
    b, _ = run(getattr(optax, name)(**sched), init, objective, steps=200)
    np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "momentum", "heavy_ball", "nesterov", "rmsprop", "adam", "adamw"])
def test_count_in_state(name):
    opt = getattr(optim, name)(0.1)
    p = {"w": jnp.ones(2)}
    s = opt.init(p)
    assert int(optax.tree_utils.tree_get(s, "count")) == 0
    _, s = opt.update({"w": jnp.ones(2)}, s, p)
    assert int(optax.tree_utils.tree_get(s, "count")) == 1


def test_schedule_is_evaluated_from_zero():
    seen = []
    sched = lambda n: 0.1 * (n + 1.0)  # noqa: E731
    opt = optim.sgd(sched)
    s = opt.init(jnp.zeros(1))
    for _ in range(3):
        u, s = opt.update(jnp.ones(1), s)
        seen.append(float(-u[0]))
    np.testing.assert_allclose(seen, [0.1, 0.2, 0.3])


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam", "adamw"])
def test_inject_hyperparams_matches(name):
    params = [-jnp.ones((2, 3)), jnp.ones((2, 5, 2))]
    grads = [jnp.ones((2, 3)), -jnp.ones((2, 5, 2))]
    plain = getattr(optim, name)(0.1)
    inj = optax.inject_hyperparams(getattr(optim, name))(learning_rate=0.1)
    with jax.numpy_dtype_promotion("standard"):
        u1, s1 = jax.jit(plain.update)(grads, plain.init(params), params)
        u2, s2 = jax.jit(inj.update)(grads, inj.init(params), params)
        inj_sched = optax.inject_hyperparams(getattr(optim, name))(learning_rate=optax.linear_schedule(0.1, 0.0, 10))
        u3, _ = jax.jit(inj_sched.update)(grads, inj_sched.init(params), params)
    for a, b, c in zip(jax.tree.leaves(u1), jax.tree.leaves(u2), jax.tree.leaves(u3)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
        np.testing.assert_allclose(a, c, rtol=1e-6)
    chex.assert_trees_all_close(jax.tree.leaves(s1), jax.tree.leaves(s2.inner_state), rtol=1e-6)


def test_wrappers():
    p = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5])}
    g = {"w": jnp.array([30.0, -40.0]), "b": jnp.array([1.0])}
    with jax.numpy_dtype_promotion("standard"):
        # chain with clipping: the global norm is clipped to 1 before sgd
        u, _ = optax.chain(optax.clip_by_global_norm(1.0), optim.sgd(1.0)).update(g, optax.chain(
            optax.clip_by_global_norm(1.0), optim.sgd(1.0)).init(p), p)
        assert abs(float(optax.tree.norm(u)) - 1.0) < 1e-12
        # MultiSteps: zero updates until k gradients are accumulated
        ms = optax.MultiSteps(optim.adam(0.1), every_k_schedule=4)
        s = ms.init(p)
        for i in range(4):
            u, s = ms.update(g, s, p)
            assert (float(optax.tree.norm(u)) == 0.0) == (i < 3)
        # apply_if_finite: a NaN gradient is skipped
        af = optax.apply_if_finite(optim.adam(0.1), max_consecutive_errors=2)
        s = af.init(p)
        u, s = af.update({"w": jnp.array([jnp.nan, 1.0]), "b": jnp.ones(1)}, s, p)
        assert float(optax.tree.norm(u)) == 0.0 and int(s.notfinite_count) == 1
        # masked: only "w" is updated
        mk = optax.masked(optim.momentum(0.1), {"w": True, "b": False})
        u, _ = mk.update(g, mk.init(p), p)
        assert float(u["w"][0]) != 0.0 and float(u["b"][0]) == 1.0  # masked-out leaves pass through unchanged


def test_vmap_over_learning_rates():
    """A population of learning rates: vmap the injected hyperparameter."""
    opt = optax.inject_hyperparams(optim.adam)(learning_rate=0.1)
    lrs = jnp.array([0.1, 0.01, 0.001])
    p = jnp.ones((3, 2))

    def one(lr, p):
        s = opt.init(p)
        s.hyperparams["learning_rate"] = lr
        return opt.update(jnp.ones(2), s, p)[0]

    with jax.numpy_dtype_promotion("standard"):
        u = jax.jit(jax.vmap(one))(lrs, p)
    np.testing.assert_allclose(-u[:, 0], lrs, rtol=1e-6)


def test_bad_schedules():
    with pytest.raises(ValueError, match="learning_rate: expected a schedule that accepts the step count"):
        optim.adam(lambda: 0.1)
    with pytest.raises(ValueError, match=r"learning_rate \(the schedule at step 0\): expected a finite number >= 0"):
        optim.sgd(lambda n: -1.0)
    with pytest.raises(ValueError, match="learning_rate: expected a schedule that returns a scalar"):
        optim.sgd(lambda n: jnp.ones(2))
    with pytest.raises(ValueError, match="nesterov: expected momentum to be set"):
        optim.sgd(0.1, nesterov=True)
