r"""Multi-process data-parallel training on JAX's distributed runtime.

One process per host (or, for tests and CPU clusters, several processes on one host): each calls
:func:`initialize`, holds only its own rows of the training set (:func:`local_rows`, a contiguous share
chosen from the process id), and builds the global batch with
``jax.make_array_from_process_local_data`` (:func:`global_array`).  The params stay replicated; the
jitted loop of :mod:`jaxmlp.train` is unchanged, and XLA's SPMD partitioner inserts the all-reduce of the
batch sums :math:`\nabla_W J = \sum_p (A_p)^\top\delta_p` (gloo on CPU, NCCL on GPU, ICI on TPU).

>>> import jax.numpy as jnp
>>> local_rows(jnp.arange(10), process_id=1, num_processes=2).tolist()  # rows 5..9 of 10
[5, 6, 7, 8, 9]
>>> padded_rows(1797, 2)  # digits on 2 devices: one padding row, of weight 0 in every loss and gradient
1798
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmlp import sharding, values

HEARTBEAT_TIMEOUT_S = 20  # a process that stops answering is declared dead after this long (JAX's default: 100)


def initialize(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None, *, heartbeat_timeout_seconds: int = HEARTBEAT_TIMEOUT_S,
               initialization_timeout: int = 120) -> None:
    """Join the cluster: ``jax.distributed.initialize`` with an explicit coordinator (``"host:port"``), number
    of processes and id, or, with none of them, JAX's own cluster detection (SLURM, Open MPI, Kubernetes).

    A peer that dies is noticed within ``heartbeat_timeout_seconds``; the survivors then stop with an
    error instead of waiting for it.
    """
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError("coordinator_address, num_processes, process_id: expected all three or none (cluster "
                         f"detection), got coordinator_address={coordinator_address!r}, "
                         f"num_processes={num_processes!r}, process_id={process_id!r}")
    if all(given):
        host, _, port = str(coordinator_address).rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"coordinator_address: expected HOST:PORT, got {coordinator_address!r}")
        values.check_int("num_processes", num_processes, lo=1)
        values.check_int("process_id", process_id, lo=0, hi=num_processes - 1)
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               heartbeat_timeout_seconds=heartbeat_timeout_seconds,
                               initialization_timeout=initialization_timeout)


class ShardedData(NamedTuple):
    """What :func:`shard_dataset` returns: global ``x`` and ``y`` of :func:`padded_rows` rows, of which the
    first ``rows`` are the data (pass ``rows`` to :func:`jaxmlp.train.train`)."""

    x: Any
    y: Any
    rows: int


def padded_rows(n: int, n_devices: int) -> int:
    """``n`` rounded up to a multiple of ``n_devices``: every device then holds the same number of rows."""
    values.check_int("n", n, lo=1)
    return -(-n // n_devices) * n_devices


def pad_rows(a, total: int):
    """``a`` with copies of its last row appended up to ``total`` rows: valid data (finite, labels in
    range), which the row weights of :func:`jaxmlp.train.train` then leave out."""
    a = np.asarray(a)
    return np.concatenate([a, np.repeat(a[-1:], total - a.shape[0], axis=0)]) if total > a.shape[0] else a


def local_rows(a, process_id: Optional[int] = None, num_processes: Optional[int] = None):
    """This process's contiguous share of the leading axis of ``a`` (the same split in every run)."""
    pid = jax.process_index() if process_id is None else process_id
    n_proc = jax.process_count() if num_processes is None else num_processes
    n = np.shape(a)[0]
    if n % n_proc:
        raise ValueError(f"a: expected a leading axis divisible by the {n_proc} processes, got {n}")
    share = n // n_proc
    return a[pid * share:(pid + 1) * share]


def global_array(local, global_rows: int, mesh: Optional[Mesh] = None, axis_name: str = sharding.AXIS):
    """The global array whose rows are split over ``mesh``'s devices, from this process's ``local`` rows."""
    mesh = sharding.data_mesh() if mesh is None else mesh
    local = np.asarray(local)
    return jax.make_array_from_process_local_data(NamedSharding(mesh, P(axis_name)), local,
                                                  (global_rows, *local.shape[1:]))


def shard_dataset(x, y, mesh: Optional[Mesh] = None):
    """Global ``(x, y)`` over every device of every process, each process contributing only its own rows.

    No row is dropped: the arrays are padded to a multiple of the device count (:func:`padded_rows`,
    :func:`pad_rows`), and :class:`ShardedData` says how many rows are real.  ``train(..., rows=data.rows)``
    weighs the padding 0 in every loss and gradient and samples only the real rows, so the run is the
    one-process run on ``x`` and ``y`` (docs/scale_out.md gives the measured bounds).
    """
    mesh = sharding.data_mesh() if mesh is None else mesh
    n = int(np.shape(x)[0])
    total = padded_rows(n, mesh.size)
    gx, gy = (global_array(local_rows(pad_rows(a, total)), total, mesh) for a in (x, y))
    return ShardedData(gx, gy, n)


def is_writer() -> bool:
    """Whether this process writes files (checkpoints, metrics): process 0 only."""
    return jax.process_index() == 0


def agree(value: int, what: str) -> int:
    """``value`` if every process holds the same, else a ``RuntimeError`` (e.g. the step to resume from)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    first = int(multihost_utils.broadcast_one_to_all(np.int64(value)))
    if first != value:
        raise RuntimeError(f"{what}: process {jax.process_index()} has {value}, process 0 has {first}")
    return value
