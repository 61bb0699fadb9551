r"""The training loop's two levels, shared by :func:`jaxmlp.train.train` and :func:`jaxmlp.population.train_population`.

* :func:`run_steps` is the compiled level: a ``lax.scan`` over logging blocks
  of a ``lax.scan`` over steps, carrying a :class:`Carry`.  It is pure, so
  populations ``vmap`` it.
* :func:`drive` is the Python level: it cuts the run into chunks (so that a
  progress bar can move and checkpoints can be written between them), checks
  each chunk for NaN/Inf with one reduction, replays a failing chunk with the
  per-step guard, and collects the logged losses.

One step is

.. math::  (J, g) = \mathrm{grad\_fn}(\theta, x_I, y_I),\qquad
           (u, s) = \mathrm{optimizer.update}(g, s, \theta),\qquad \theta \leftarrow \theta + u,

with the batch :math:`I` from :mod:`jaxmlp.samplers` and ``grad_fn`` a
:class:`~jaxmlp.gradient_functions.GradFn` (its ``with_state`` for batch norm).
:func:`check_loop_args` holds the entry checks both callers share.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmlp import checks, samplers, values

__all__ = ["Carry", "Chunk", "History", "STATIC_ARGNAMES", "all_finite", "check_loop_args", "compiled_steps", "drive",
           "guard_names", "initial_carry", "progress_bar", "row_weights", "run_steps"]


class Carry(NamedTuple):
    """What one step hands to the next."""

    params: Any
    opt_state: Any
    perm: jax.Array  # (N,) int32: the current epoch's order of the examples (epoch schemes)
    bn_state: Any  # batch norm's running statistics, or None
    bad: jax.Array  # (2,) int32: first non-finite (step, index into guard_names); (-1, -1) while none


def initial_carry(params, opt_state, key, step, n, batch_size, bn_state=None) -> Carry:
    """The carry at ``step``: the permutation of the epoch that ``step`` falls in, no non-finite step yet."""
    perm = samplers.epoch_permutation(key, step // (n // batch_size), n)
    return Carry(params, opt_state, perm, bn_state, jnp.full((2,), -1, jnp.int32))


def guard_names(params) -> List[str]:
    """Names of the values the per-step guard checks: the loss, the gradient leaves, the updated params."""
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    return ["loss"] + ["grads" + p for p in paths] + ["params" + p for p in paths]


def row_weights(x, rows=None):
    """``None`` when every row of ``x`` is real; else (N,) weights, 1 on the first ``rows`` rows and 0 on the
    padding after them (multi-process data, :func:`jaxmlp.distributed.shard_dataset`)."""
    return None if rows is None or rows == x.shape[0] else (jnp.arange(x.shape[0]) < rows).astype(x.dtype)


def check_loop_args(x, y, steps, scheme, batch_size, log_every, start_step, optimizer, state, check_finite,
                    rows=None) -> int:
    r"""The entry checks :func:`jaxmlp.train.train` and :func:`jaxmlp.population.train_population` share;
    returns the batch size :math:`b` (1 when ``batch_size`` is ``None``).

    Args:
      x, y: the data set, ``x`` (N, n_0) with :math:`N \ge 1` finite rows, ``y`` with N rows.
      steps, log_every, start_step: ints, ``steps`` and ``log_every`` >= 1, ``start_step`` >= 0.
      scheme: one of :data:`jaxmlp.samplers.SCHEMES`.
      batch_size: :math:`1 \le b \le N_{real}`; ``"sgd_shuffle"`` takes :math:`b = 1`.
      optimizer: an ``optax.GradientTransformation``.
      state: batch norm's running statistics or ``None``; with them a sampled batch needs :math:`b \ge 2`.
      check_finite: a bool.
      rows: the real rows :math:`N_{real} \le N` before any padding (default: all of them).
    """
    if scheme not in samplers.SCHEMES:
        raise ValueError(f"scheme: expected one of {list(samplers.SCHEMES)}, got {scheme!r}")
    for name, v, lo in (("steps", steps, 1), ("log_every", log_every, 1), ("start_step", start_step, 0)):
        values.check_int(name, v, lo=lo)
    x, y = checks.as_array("x", x), checks.as_array("y", y)
    n = jnp.shape(x)[0] if jnp.ndim(x) else 0
    if n < 1:
        raise ValueError(f"x: expected at least one example (shape (N, n_0) with N >= 1), got shape {jnp.shape(x)}")
    if jnp.shape(y)[:1] != (n,):
        raise ValueError(f"y: expected {n} rows to match x, got shape {jnp.shape(y)}")
    for name, a in (("x", x), ("y", y)):
        checks.check_finite(name, a)
    n = n if rows is None else values.check_int("rows", rows, lo=1, hi=n)
    b = values.check_int("batch_size", 1 if batch_size is None else batch_size, lo=1, hi=n)
    if scheme == "sgd_shuffle" and b != 1:
        raise ValueError(f"batch_size: sgd_shuffle uses one example per step, got {batch_size!r}; use 'minibatch'")
    if state is not None and scheme != "full_batch" and b < 2:
        raise ValueError(f"batch_size: batch norm in train mode needs batches of >= 2 rows, got {b} ({scheme})")
    if not isinstance(check_finite, bool):
        raise TypeError(f"check_finite: expected a bool, got {check_finite!r}")
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer: expected an optax.GradientTransformation, got {type(optimizer).__name__}")
    return int(b)


def run_steps(carry: Carry, x, y, key, start, *, grad_fn, optimizer, scheme, batch_size, block, n_blocks,
              check_finite, rows=None):
    r"""``n_blocks`` logging blocks of ``block`` steps from step ``start``; returns ``(carry, losses (n_blocks,))``.

    ``losses[i]`` is the full-data objective after block ``i``.  With ``check_finite`` every step also
    reduces ``isfinite`` over the batch loss, each gradient leaf and each updated parameter leaf (fused by
    XLA into the step); from the first non-finite step on, updates are dropped so the carry keeps the
    last good params, and ``carry.bad`` records ``(step, index into guard_names)``.

    Args:
      carry: the :class:`Carry` at step ``start``; ``x`` (N, n_0), ``y`` (N,) or (N, n_L): the data.
      grad_fn: a :class:`jaxmlp.gradient_functions.GradFn`; each step calls ``grad_fn(params, xb, yb, w)``
        (``w`` the row weights on the full data set, else ``None``), or ``grad_fn.with_state`` when the
        carry holds batch norm's running statistics.
      rows: the real rows :math:`N_{real}` before padding rows of weight 0 (:func:`row_weights`).
    """
    n = x.shape[0] if rows is None else rows  # the samplers draw from the real rows only
    weights = row_weights(x, rows)  # built once per compiled call, not per step

    def one_step(carry, step_and_idx):
        step, idx = step_and_idx
        perm = carry.perm
        if scheme == "full_batch":
            xb, yb = x, y
        else:
            if scheme != "sgd_replacement":
                idx, perm = samplers.epoch_indices(key, step, perm, n, batch_size)
            xb, yb = x[idx], y[idx]
        if carry.bn_state is None:  # a model without batch norm: no state to thread (GradFn.__call__)
            value, grads = grad_fn(carry.params, xb, yb, weights if scheme == "full_batch" else None)
            new_bn = None
        else:
            value, grads, new_bn = grad_fn.with_state(carry.params, xb, yb, carry.bn_state)
        updates, new_opt = optimizer.update(grads, carry.opt_state, carry.params)
        new = (optax.apply_updates(carry.params, updates), new_opt, new_bn)
        bad = carry.bad
        if check_finite:
            checked = [value] + jax.tree.leaves(grads) + jax.tree.leaves(new[0])
            finite = jnp.stack([jnp.all(jnp.isfinite(v)) for v in checked])
            first_bad = (bad[0] < 0) & ~jnp.all(finite)
            bad = jnp.where(first_bad, jnp.stack([step, jnp.argmin(finite).astype(jnp.int32)]), bad)
            old = (carry.params, carry.opt_state, carry.bn_state)
            new = jax.tree.map(lambda a, b: jnp.where(bad[0] < 0, a, b), new, old)
        return Carry(new[0], new[1], perm, new[2], bad), None

    def one_block(carry, block_start):
        steps = block_start + jnp.arange(block, dtype=jnp.int32)
        # with replacement, a block's draws do not depend on the carry: draw them all at once (vectorised)
        idx = (samplers.replacement_indices(key, block_start, block, n, batch_size)
               if scheme == "sgd_replacement" else steps)
        carry, _ = jax.lax.scan(one_step, carry, (steps, idx))
        return carry, grad_fn(carry.params, x, y, weights)[0]

    starts = start + block * jnp.arange(n_blocks, dtype=jnp.int32)
    return jax.lax.scan(one_block, carry, starts)


STATIC_ARGNAMES = ("grad_fn", "optimizer", "scheme", "batch_size", "block", "n_blocks", "check_finite", "rows")
compiled_steps = jax.jit(run_steps, static_argnames=STATIC_ARGNAMES)


@jax.jit
def all_finite(tree):
    """One jitted reduction: are all floating leaves of ``tree`` free of NaN and Inf?"""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)
                              if jnp.issubdtype(a.dtype, jnp.inexact)]))


def progress_bar(progress, total, initial):
    """A tqdm bar, or ``None``; ``progress=None`` shows it only when stderr is a terminal."""
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError as e:  # pragma: no cover - tqdm is in the [experiments] extra
        raise ImportError("progress=True needs tqdm: pip install 'jaxmlp[experiments]'") from e
    return tqdm(total=total, initial=initial, unit="step", mininterval=0.5)


class History(NamedTuple):
    """The logged losses so far: ``steps`` (n_logs,) and ``losses`` (..., n_logs)."""

    steps: List[int]
    losses: List[Any]  # chunks of shape (..., n_blocks); concatenated by :meth:`arrays`

    def arrays(self):
        return np.asarray(self.steps), np.concatenate([values.host(l) for l in self.losses], axis=-1)


class Chunk(NamedTuple):
    """One compiled call: ``n_blocks`` logging blocks of ``block`` steps from ``start``."""

    start: int
    block: int
    n_blocks: int

    @property
    def end(self) -> int:
        return self.start + self.block * self.n_blocks

    def logged_steps(self) -> List[int]:
        return [self.start + self.block * (i + 1) for i in range(self.n_blocks)]


def drive(run: Callable, carry: Carry, history: History, *, start: int, end: int, log_every: int, chunk_steps: int,
          check_finite: bool, progress: Optional[bool], every: Optional[int] = None,
          on_non_finite: Optional[Callable] = None, after_chunk: Optional[Callable] = None) -> Carry:
    """Run steps ``start .. end - 1`` chunk by chunk; returns the final carry and appends to ``history``.

    Args:
      run: ``(carry, chunk: Chunk, guarded: bool) -> (carry, losses (..., n_blocks))``, one compiled call.
      history: the log to append each chunk's losses and steps to.
      every: chunk boundaries also fall on multiples of ``every`` (checkpoint steps).
      on_non_finite: ``(carry, chunk, losses)``, called after a failing chunk was replayed with the guard
        (``carry.bad`` then names the step and leaf); it may raise.  Without it the run goes on guarded
        (a population keeps its healthy members going and its failed ones frozen).
      after_chunk: ``(carry, step)`` after each chunk, e.g. to write a checkpoint.
    """
    step = start
    bar = progress_bar(progress, end, start)
    try:
        while step < end:
            todo = min(chunk_steps, end - step, (every - step % every) if every else end - step)
            block = min(log_every, todo)
            chunk = Chunk(step, block, max(1, todo // block))
            guarded = check_finite and bool(jnp.any(carry.bad[..., 0] >= 0))  # a member has failed already
            new, losses = run(carry, chunk, guarded)
            if check_finite and not guarded and not bool(all_finite((new.params, new.opt_state, new.bn_state,
                                                                      losses))):
                # Replay the (deterministic) chunk with the per-step guard to find the step and the leaf.
                new, losses = run(carry, chunk, True)
                if on_non_finite is not None:
                    on_non_finite(new, chunk, losses)
            carry = new
            history.losses.append(losses)  # a device array: no sync unless checking or checkpointing
            history.steps.extend(chunk.logged_steps())
            step = chunk.end
            if after_chunk is not None:
                after_chunk(carry, step)
            if bar is not None:
                bar.update(chunk.end - chunk.start)
    finally:
        if bar is not None:
            bar.close()
    return carry
