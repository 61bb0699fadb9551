r"""Population training: P independent networks in one compiled loop.

The compiled steps of :mod:`jaxmlp.loop` are ``jax.vmap``-ed over the params,
the optimizer state, the epoch permutation and the PRNG key, so P networks
with different initialisations, sampling keys and (through
``optax.inject_hyperparams``) learning rates train as one batched program.
Member ``i`` follows exactly the trajectory that :func:`jaxmlp.train.train`
gives for ``(params[i], keys[i])``.

A member that meets a NaN or Inf is frozen at its last good params and
reported in ``non_finite_step``; the others go on (a learning-rate sweep
expects some members to diverge).  The chunks are driven by
:func:`jaxmlp.loop.drive`, as in :func:`jaxmlp.train.train`: a chunk runs
unguarded and is replayed with the per-step guard only if it ends with a
non-finite value; once a member has failed, later chunks run guarded.

The population axis is an ordinary leading axis, so it can be sharded over
devices like a batch axis (:func:`jaxmlp.sharding.shard_leading`).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmlp import loop, samplers, values
from jaxmlp.gradient_functions import GradFn, as_grad_fn, check_data

__all__ = ["PopulationResult", "population_size", "train_population"]


class PopulationResult(NamedTuple):
    """What :func:`train_population` returns; every array has the population axis first."""

    params: Any  # each leaf (P, ...)
    opt_state: Any
    steps: np.ndarray  # (n_logs,) shared step index of the logged losses
    losses: np.ndarray  # (P, n_logs) full-data objective of each member
    non_finite_step: np.ndarray  # (P,) first step with a NaN/Inf (the member stopped there), -1 if none


def population_size(params) -> int:
    """The leading axis that every leaf of ``params`` shares."""
    sizes = {int(jnp.shape(a)[0]) if jnp.ndim(a) else -1 for a in jax.tree.leaves(params)}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(f"params: expected every leaf to share a leading population axis, got leading sizes {sorted(sizes)}")
    return sizes.pop()


# The population axis is the minor (last) axis of params and optimizer state inside the loop: the tiny
# per-network matrices then become elementwise work vectorised across the population instead of P
# separate small GEMMs.  The permutation and the guard's record keep it leading.
_CARRY_AXES = loop.Carry(params=-1, opt_state=-1, perm=0, bn_state=None, bad=0)


@functools.cache
def _compiled(**static):
    """The jitted, vmapped steps for one set of static arguments (cached: one compile each)."""
    run = functools.partial(loop.run_steps, **static)
    return jax.jit(jax.vmap(run, in_axes=(_CARRY_AXES, None, None, 0, None), out_axes=(_CARRY_AXES, 0)))


def _minor(tree):
    return jax.tree.map(lambda a: jnp.moveaxis(a, 0, -1), tree)


def _major(tree):
    return jax.tree.map(lambda a: jnp.moveaxis(a, -1, 0), tree)


@functools.cache
def _losses(grad_fn: GradFn):
    """Each member's full-data objective (jitted and cached per gradient function)."""
    return jax.jit(jax.vmap(lambda p, x, y: grad_fn(p, x, y)[0], in_axes=(0, None, None)))


def train_population(grad_fn: Callable, optimizer: optax.GradientTransformation, params, x, y, *, keys: jax.Array,
                     steps: int, scheme: str = "full_batch", batch_size: Optional[int] = None, log_every: int = 100,
                     chunk_steps: int = 100_000, hyperparams: Optional[Mapping[str, Any]] = None,
                     check_finite: bool = True, progress: Optional[bool] = None, check: bool = True) -> PopulationResult:
    r"""Train P networks at once: ``params`` leaves carry a leading axis of size P, ``keys`` has shape (P,).

    Args:
      grad_fn, optimizer, x, y, scheme, batch_size, log_every, chunk_steps, check_finite, progress, check:
        as for :func:`jaxmlp.train.train` (the data are shared by all members).
      keys: (P,) PRNG keys of the members' sampling schemes.
      hyperparams: per-member hyperparameters, e.g. ``{"learning_rate": lrs}`` with ``lrs`` of shape (P,);
        the optimizer must then come from ``optax.inject_hyperparams`` (e.g.
        ``optax.inject_hyperparams(jaxmlp.optim.sgd)(learning_rate=0.1)``).

    Every member follows the trajectory :func:`jaxmlp.train.train` gives it alone:

    .. math::  \theta_i^{(t+1)} = \theta_i^{(t)} + u\big(\nabla J(\theta_i^{(t)}; x_{I_i(t)}),\ s_i^{(t)};\ \eta_i\big),
               \qquad I_i(t) = \mathrm{sample}(k_i, t)

    where the sample depends only on the member's key and the step (see :mod:`jaxmlp.samplers`).

    Returns:
      :class:`PopulationResult` ``(params, opt_state, steps, losses (P, n_logs), non_finite_step (P,))``.
    """
    P = population_size(params)
    keys = values.as_key("keys", keys, shape=(P,))
    b = loop.check_loop_args(x, y, steps, scheme, batch_size, log_every, 0, optimizer, None, check_finite)
    check_data(grad_fn, jax.tree.map(lambda a: a[0], params), x, y, check=check)
    grad_fn = as_grad_fn(grad_fn)
    x, y = jnp.asarray(x), jnp.asarray(y)
    opt_state = jax.vmap(optimizer.init)(params)
    if hyperparams:
        if not hasattr(opt_state, "hyperparams"):
            raise TypeError("hyperparams: the optimizer must come from optax.inject_hyperparams to vary them per member")
        for name, v in hyperparams.items():
            if name not in opt_state.hyperparams:
                raise ValueError(f"hyperparams: expected names of the optimizer's hyperparameters {sorted(opt_state.hyperparams)}, got unknown {name!r}")
            v = jnp.asarray(v, opt_state.hyperparams[name].dtype)
            if v.shape != (P,):
                raise ValueError(f"hyperparams[{name!r}]: expected shape ({P},), got {v.shape}")
            opt_state.hyperparams[name] = v
    first = _losses(grad_fn)(params, x, y)  # (P,)
    n = x.shape[0]
    perm = jax.vmap(lambda k: samplers.epoch_permutation(k, 0, n))(keys)
    carry = loop.Carry(_minor(params), _minor(opt_state), perm, None, jnp.full((P, 2), -1, jnp.int32))
    history = loop.History([0], [first[:, None]])

    def run(carry, chunk, guarded):
        static = dict(grad_fn=grad_fn, optimizer=optimizer, scheme=scheme, batch_size=b, block=chunk.block,
                      n_blocks=chunk.n_blocks, check_finite=guarded)
        return _compiled(**static)(carry, x, y, keys, jnp.asarray(chunk.start, jnp.int32))

    carry = loop.drive(run, carry, history, start=0, end=steps, log_every=log_every, chunk_steps=chunk_steps,
                       check_finite=check_finite, progress=progress)
    return PopulationResult(_major(carry.params), _major(carry.opt_state), *history.arrays(),
                            values.host(carry.bad[:, 0]))
