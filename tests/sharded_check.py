"""Run by tests/test_sharding.py in a subprocess with 8 simulated CPU devices; prints one JSON line."""
import json
import os

assert "--xla_force_host_platform_device_count=8" in os.environ.get("XLA_FLAGS", "")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxmlp  # noqa: E402
from jaxmlp import optim, population, sharding  # noqa: E402
from jaxmlp import train  # noqa: E402


def rel(a, b):
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v))) / np.max(np.abs(np.asarray(v))))
               for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def main():
    out = {"devices": len(jax.devices())}
    mesh = sharding.data_mesh()
    model = jaxmlp.MLP((4, 16, 3), "tanh", "softmax_cross_entropy")
    x = jax.random.normal(jax.random.key(0), (64, 4), jnp.float64)
    y = jnp.argmax(x[:, :3], axis=1).astype(jnp.int32)
    params = jaxmlp.init(model, jax.random.key(1), dtype=jnp.float64)
    xs, ys = sharding.shard_leading((x, y), mesh)
    ps = sharding.replicate(params, mesh)
    out["x_sharded_over"] = len(xs.sharding.device_set)

    # manual gradient == jax.grad under sharding (and == the unsharded manual gradient)
    vg = jax.jit(lambda p, a, b: jaxmlp.value_and_grad(model, p, a, b, l2=1e-3)[1])
    ag = jax.jit(jax.grad(lambda p, a, b: jaxmlp.loss(model, p, a, b, l2=1e-3)))
    g_sharded = vg(ps, xs, ys)
    out["grad_replicated"] = all(len(g.sharding.device_set) == 8 and g.sharding.is_fully_replicated
                                 for g in jax.tree.leaves(g_sharded))
    out["manual_vs_autodiff_sharded"] = rel(g_sharded, ag(ps, xs, ys))
    out["sharded_vs_single_grad"] = rel(g_sharded, vg(params, x, y))

    # sharded training == single-device training
    grad_fn = train.manual_grad(model, l2=1e-3)
    for scheme, b in (("full_batch", None), ("minibatch", 16)):
        kw = dict(key=jax.random.key(2), steps=200, scheme=scheme, batch_size=b, log_every=50, progress=False)
        one = train.train(grad_fn, optim.momentum(0.1, 0.9), params, x, y, **kw)
        many = train.train(grad_fn, optim.momentum(0.1, 0.9), ps, xs, ys, **kw)
        out[f"train_{scheme}_params"] = rel(many.params, one.params)
        out[f"train_{scheme}_losses"] = float(np.max(np.abs(many.losses - one.losses) / np.abs(one.losses)))

    # population axis sharded over the devices == unsharded population
    P = 16
    pop = jax.vmap(lambda k: jaxmlp.init(model, k, dtype=jnp.float64))(jax.random.split(jax.random.key(3), P))
    keys = jax.random.split(jax.random.key(4), P)
    kw = dict(steps=100, scheme="sgd_replacement", batch_size=4, log_every=50)
    a = population.train_population(grad_fn, optim.sgd(0.1), pop, x, y, keys=keys, **kw)
    pop_s, keys_s = sharding.shard_leading((pop, keys), mesh)
    b_ = population.train_population(grad_fn, optim.sgd(0.1), pop_s, x, y, keys=keys_s, **kw)
    out["population_sharded_params"] = rel(b_.params, a.params)
    out["population_sharded_over"] = len(jax.tree.leaves(b_.params)[0].sharding.device_set)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
