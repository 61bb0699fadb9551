r"""Data-parallel and population-parallel training through ``jax.sharding``.

No home-made collectives: the data (or the population) is placed on a device
:class:`~jax.sharding.Mesh` with a :class:`~jax.sharding.NamedSharding`, the
params are replicated, and the jitted training loop of :mod:`jaxmlp.train` is
left to XLA's SPMD partitioner.  The manual gradient's batch sums
(:math:`\nabla_W J = A^\top\delta`, :math:`\nabla_b J = \mathbf 1^\top\delta`)
contract over the sharded batch axis, so the partitioner inserts the
all-reduce itself:

.. math::  \nabla_W J = \sum_{d} (A_d)^\top \delta_d .

Usage (one host, all local devices)::

    mesh = jaxmlp.sharding.data_mesh()
    x, y = jaxmlp.sharding.shard_leading((x, y), mesh)
    params = jaxmlp.sharding.replicate(params, mesh)
    result = jaxmlp.train.train(grad_fn, opt, params, x, y, key=key, steps=1000)

Several hosts: call ``jax.distributed.initialize()`` (coordinator address,
process count and id from the cluster environment) first in every process;
``jax.devices()`` then lists the devices of all hosts, :func:`data_mesh` spans
them, and each process contributes its own rows with
``jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")), local_rows)``.
The same script runs in every process.

On a CPU-only machine, ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
(set before JAX starts) simulates 8 devices; the tests use it.
"""
from __future__ import annotations

from typing import Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def data_mesh(devices: Optional[Sequence[jax.Device]] = None, axis_name: str = AXIS) -> Mesh:
    """A 1-D mesh over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices: expected at least one device, got none")
    return Mesh(np.asarray(devices), (axis_name,))


def shard_leading(tree, mesh: Mesh, axis_name: str = AXIS):
    """Place every leaf with its leading axis (batch or population) split over ``mesh``'s ``axis_name``."""
    n = mesh.shape[axis_name]

    def put(a):
        if np.ndim(a) == 0 or np.shape(a)[0] % n:
            raise ValueError(f"leading axis: expected a size divisible by the {n} devices of mesh axis "
                             f"{axis_name!r}, got shape {np.shape(a)}")
        return jax.device_put(a, NamedSharding(mesh, P(axis_name)))

    return jax.tree.map(put, tree)


def replicate(tree, mesh: Mesh):
    """Place every leaf whole on every device of ``mesh`` (params, optimizer state)."""
    return jax.tree.map(lambda a: jax.device_put(a, NamedSharding(mesh, P())), tree)
