"""One process of a multi-process run (tests/test_multiprocess.py starts N of them over localhost).

    python tests/multiprocess_worker.py MODE PROCESS_ID NUM_PROCESSES PORT OUT.json [DTYPE [DATA]]

DATA: ``digits`` (the 1347-row training split, the default), ``digits1797`` (all 1797 rows) or ``higham``
(Higham & Higham's 10 points and 2-2-3-2 network); no row count needs to divide the processes.

MODE is one mode or several joined by commas, run in order on one cluster start-up: ``digits-SCHEME`` or
``digits-all`` (full batch, mini-batch and with replacement; STEPS steps of the data, data parallel), ``grad``
(the manual gradient against jax.grad on the global batch), ``population`` (a population split over the
processes; always Higham's network and points, whatever DATA, so that one 1-process run is the reference
for every process count), ``guard`` (a learning rate that overflows: the non-finite guard's report).
``digits-SCHEME@float32`` runs that scheme in float32 (x64 off for it, ``jax.enable_x64(False)``) whatever
DTYPE, and reports it as ``SCHEME@float32``: a float64 cluster start-up also gives the float32 bound.
Process 0 writes the result as JSON to OUT.json (params as lists); with ``guard``, every process writes its
own report to OUT.json.PID.
"""
import functools
import json
import sys

# Steps of every training run: each step all-reduces over gloo between the processes (about a millisecond on
# the 2-core CI machine, several under load), and the bounds of tests/test_multiprocess.py are per-step
# rounding (the runs agree to a few ulps or bitwise), met as well in 50 steps as in 200.
STEPS = 50
LOG_EVERY = 10


@functools.lru_cache
def dataset(data):
    """``(x, y)`` as numpy arrays, loaded once per process (a float32 mode reuses the float64 mode's)."""
    import numpy as np

    import jaxmlp

    if data == "higham":
        x, y = jaxmlp.data.higham_points()
    else:
        x, y, x_test, y_test = jaxmlp.data.digits()  # the training split: 1347 rows
        if data == "digits1797":
            x, y = np.concatenate([x, x_test]), np.concatenate([y, y_test])
    return np.asarray(x), np.asarray(y)


def problem(data, dtype, mesh):
    """Model, initial params, the whole (x, y) and its global sharded copy (xg, yg, rows), and the batch size."""
    import jax
    import numpy as np

    import jaxmlp
    from jaxmlp import distributed

    x, y = dataset(data)
    if data == "higham":
        model, batch = jaxmlp.MLP((2, 2, 3, 2), "sigmoid", "sigmoid_quadratic"), 4
        params = jaxmlp.init(model, jax.random.key(0), "higham", dtype=dtype)
    else:
        model, batch = jaxmlp.MLP((64, 32, 10), "tanh", "softmax_cross_entropy"), 64
        params = jaxmlp.init(model, jax.random.key(0), "xavier", dtype=dtype)
    x = np.asarray(x, dtype)
    return model, params, x, y, distributed.shard_dataset(x, y, mesh), batch


def main():
    mode, pid, n, port, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    dtype = sys.argv[6] if len(sys.argv) > 6 else "float64"
    import jax

    jax.config.update("jax_enable_x64", dtype == "float64")
    from jaxmlp import distributed

    distributed.initialize(f"127.0.0.1:{port}", n, pid)
    import jax.numpy as jnp
    import numpy as np

    import jaxmlp
    from jaxmlp import optim, population, sharding, train

    mesh = sharding.data_mesh()
    data = sys.argv[7] if len(sys.argv) > 7 else "digits"
    model, params, x, y, (xg, yg, rows), batch = problem(data, dtype, mesh)
    result = {"processes": jax.process_count(), "devices": len(jax.devices())}
    for m in mode.split(","):
        if m.startswith("digits"):
            m, _, mdtype = m.partition("@")
            # every scheme with batches to split over the processes (sgd_shuffle uses one example a step)
            schemes = ["full_batch", "minibatch", "sgd_replacement"] if m == "digits-all" else [m.split("-", 1)[1]]
            with jax.enable_x64((mdtype or dtype) == "float64"):
                mmodel, mparams, _, _, (mxg, myg, mrows), mbatch = (
                    problem(data, mdtype, mesh) if mdtype else (model, params, x, y, (xg, yg, rows), batch))
                result["rows"], result["padded_rows"] = mrows, int(mxg.shape[0])
                for scheme in schemes:  # one cluster start-up for every scheme
                    r = train.train(train.manual_grad(mmodel, l2=1e-4), optim.sgd(0.1, momentum=0.9),
                                    sharding.replicate(mparams, mesh), mxg, myg, key=jax.random.key(1), steps=STEPS,
                                    scheme=scheme, batch_size=None if scheme == "full_batch" else mbatch,
                                    log_every=LOG_EVERY, progress=False, rows=mrows)
                    result[scheme + (f"@{mdtype}" if mdtype else "")] = {
                        "params": [np.asarray(jaxmlp.values.host(l)).tolist() for l in jax.tree.leaves(r.params)],
                        "losses": r.losses.tolist(), "dtype": str(jax.tree.leaves(r.params)[0].dtype)}
        elif m == "grad":
            p, w = sharding.replicate(params, mesh), (np.arange(xg.shape[0]) < rows).astype(dtype)
            _, g = jax.jit(lambda p, x, y: jaxmlp.value_and_grad(model, p, x, y, check=False, weights=w))(p, xg, yg)
            ref = jax.jit(jax.grad(lambda p, x, y: jaxmlp.loss(model, p, x, y, check=False, weights=w)))(p, xg, yg)
            rel = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
                      for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(ref)))
            result["manual_vs_autodiff"] = rel
            result["grad_replicated"] = all(l.sharding.is_fully_replicated for l in jax.tree.leaves(g))
        elif m == "population":
            P = 6  # 1, 2 and 3 processes divide it
            pmodel, _, xs, ys, _, _ = problem("higham", dtype, mesh)
            members = jax.vmap(lambda k: jaxmlp.init(pmodel, k, "xavier", dtype=dtype))(
                jax.random.split(jax.random.key(5), P))
            keys = jax.random.split(jax.random.key(6), P)
            local = jax.tree.map(lambda a: distributed.local_rows(np.asarray(a)), members)
            pg = jax.tree.map(lambda a: distributed.global_array(a, P, mesh), local)
            r = population.train_population(train.manual_grad(pmodel), optim.sgd(0.1), pg, xs, ys, keys=keys,
                                            steps=STEPS, scheme="minibatch", batch_size=len(xs) // 2,
                                            log_every=LOG_EVERY, progress=False)
            result["population"] = {
                "params": [np.asarray(jaxmlp.values.host(l)).tolist() for l in jax.tree.leaves(r.params)],
                "params_sharded_over": len(jax.tree.leaves(r.params)[0].sharding.device_set)}
        elif m == "guard":
            try:
                train.train(train.manual_grad(model, l2=1.0), optim.sgd(1e300), sharding.replicate(params, mesh), xg,
                            yg, key=jax.random.key(1), steps=50, log_every=10, progress=False, rows=rows)
                guard = None
            except train.NonFiniteError as e:
                guard = {"step": int(e.step), "leaf": str(e.leaf), "message": str(e).splitlines()[0]}
            with open(f"{out}.{pid}", "w") as f:
                json.dump({"guard": guard}, f)
        else:
            raise ValueError(f"mode: expected digits-SCHEME[@float32], grad, population or guard, got {m!r}")
    if pid == 0:
        with open(out, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
