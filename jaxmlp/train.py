r"""Jitted training loops: full batch, SGD with and without replacement, mini-batch epochs.

The loop is a ``lax.scan`` over steps inside a ``lax.scan`` over logging
blocks, compiled once per (gradient, optimizer, scheme, sizes) and driven in
chunks from Python so that a tqdm bar can update between chunks.

Sampling schemes (seed 000 batch / epoch / iteration; seed 002 SGD):

* ``"full_batch"``: every step uses all :math:`N` examples (gradient descent).
* ``"sgd_replacement"``: each step draws ``batch_size`` (default 1) indices
  uniformly with replacement, as Higham & Higham's SGD does.
* ``"sgd_shuffle"``: one example per step, without replacement: the data are
  reshuffled at the start of every epoch of :math:`N` steps.
* ``"minibatch"``: mini-batches of ``batch_size`` without replacement; an
  epoch is :math:`\lfloor N/b\rfloor` iterations (a ragged tail is dropped).

Randomness is a function of ``(key, step)`` only (``fold_in`` of the epoch, or
of the page of 256 steps for ``sgd_replacement``), so a run is deterministic
for its key and can be resumed at any step.
"""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmlp import checkpoint as C
from jaxmlp.checkpoint import Checkpointer

SCHEMES = ("full_batch", "sgd_replacement", "sgd_shuffle", "minibatch")


class TrainResult(NamedTuple):
    """What :func:`train` returns."""

    params: Any
    opt_state: Any
    steps: np.ndarray  # (n_logs,) step index of each logged loss, starting at start_step
    losses: np.ndarray  # (n_logs,) full-data objective after that many steps
    state: Any = None  # batch-norm running statistics, when training a batchnorm model


def manual_grad(model, *, l1=0.0, l2=0.0) -> Callable:
    """``(params, x, y) -> (J, grads)`` by jaxmlp's hand-derived backward.

    With a fourth argument, batch norm's running ``state``, it returns ``(J, grads, new_state)``.
    """
    from jaxmlp.backprop import value_and_grad

    return functools.partial(_manual, model, l1, l2, value_and_grad)


def autodiff_grad(model, *, l1=0.0, l2=0.0) -> Callable:
    """``(params, x, y[, state]) -> (J, grads[, new_state])`` by ``jax.value_and_grad(jaxmlp.loss)``; same signature."""
    from jaxmlp.backprop import loss

    return functools.partial(_autodiff, model, l1, l2, loss)


def _manual(model, l1, l2, vg, params, x, y, state=None):
    return vg(model, params, x, y, l1=l1, l2=l2, check=False, state=state)


def _autodiff(model, l1, l2, loss, params, x, y, state=None):
    from jaxmlp.backprop import batch_stats_update

    value, grads = jax.value_and_grad(lambda p: loss(model, p, x, y, l1=l1, l2=l2, check=False))(params)
    return (value, grads) if state is None else (value, grads, batch_stats_update(model, params, x, state))


def _permutation(key, epoch, n):
    """The order of the examples in ``epoch`` (int32 whatever the x64 setting)."""
    return jax.random.permutation(jax.random.fold_in(key, epoch), n).astype(jnp.int32)


_PAGE = 256  # sgd_replacement: step s uses row s % _PAGE of the draws of page s // _PAGE


def _replacement_indices(key, start, count, n, b):
    r"""Indices (count, b), uniform with replacement, for steps ``start .. start+count-1``.

    One ``fold_in`` and one ``random.bits`` call per page of :data:`_PAGE` steps, so the draws are a
    function of ``(key, step)`` only, whatever ``start`` and ``count``.  The index is

    .. math::  i = u \bmod n,\qquad u \sim \mathcal U\{0,\dots,2^{32}-1\},

    whose probabilities differ from :math:`1/n` by less than :math:`2^{-32}` (relative error
    :math:`< n\,2^{-32}`: 2e-9 for Higham's 10 points).  Pages are drawn one after another
    (``lax.map``) so that the generator's working set stays in cache.
    """
    n_pages = -(-count // _PAGE) + 1  # enough for any offset start % _PAGE
    first = start // _PAGE

    def page(i):
        bits = jax.random.bits(jax.random.fold_in(key, first + i), (_PAGE, b), jnp.uint32)
        return (bits % jnp.uint32(n)).astype(jnp.int32)

    pages = jax.lax.map(page, jnp.arange(n_pages, dtype=jnp.int32))  # (n_pages, _PAGE, b)
    return jax.lax.dynamic_slice_in_dim(pages.reshape(n_pages * _PAGE, b), start % _PAGE, count)


def _batch_indices(key, step, perm, n, scheme, b):
    """Epoch schemes: indices of the examples used at ``step`` and the (possibly refreshed) permutation."""
    per_epoch = n // b
    new_epoch = step % per_epoch == 0
    perm = jax.lax.cond(new_epoch, lambda: _permutation(key, step // per_epoch, n), lambda: perm)
    return jax.lax.dynamic_slice(perm, ((step % per_epoch) * b,), (b,)), perm


def _chunk(params, opt_state, perm, bn_state, x, y, key, start, bad=None, *, grad_fn, optimizer, scheme, batch_size, block,
           n_blocks, check_finite):
    """``n_blocks`` logging blocks of ``block`` steps each.  Unjitted: :func:`_run_chunk` jits it, populations vmap it.

    With ``check_finite`` every step also reduces ``isfinite`` over the batch loss, each gradient leaf and
    each updated parameter leaf (fused by XLA into the step); from the first non-finite step on, updates
    are dropped so the carry keeps the last good params, and ``bad = (step, i)`` with ``i`` indexing
    :func:`_leaf_names` (0 = loss, then the gradient leaves, then the updated parameter leaves).
    """
    n = x.shape[0]

    def one_step(carry, step_and_idx):
        params, opt_state, perm, bn_state, bad = carry
        step, idx = step_and_idx
        if scheme == "full_batch":
            xb, yb = x, y
        else:
            if scheme != "sgd_replacement":
                idx, perm = _batch_indices(key, step, perm, n, scheme, batch_size)
            xb, yb = x[idx], y[idx]
        if bn_state is None:
            value, grads = grad_fn(params, xb, yb)
            new_bn = None
        else:
            value, grads, new_bn = grad_fn(params, xb, yb, bn_state)
        updates, new_opt = optimizer.update(grads, opt_state, params)
        new = (optax.apply_updates(params, updates), new_opt, new_bn)
        if check_finite:
            checked = [value] + jax.tree.leaves(grads) + jax.tree.leaves(new[0])
            finite = jnp.stack([jnp.all(jnp.isfinite(v)) for v in checked])
            first_bad = (bad[0] < 0) & ~jnp.all(finite)
            bad = jnp.where(first_bad, jnp.stack([step, jnp.argmin(finite).astype(jnp.int32)]), bad)
            new = jax.tree.map(lambda a, b: jnp.where(bad[0] < 0, a, b), new, (params, opt_state, bn_state))
        return (*new[:2], perm, new[2], bad), None

    def one_block(carry, block_start):
        steps = block_start + jnp.arange(block, dtype=jnp.int32)
        # with replacement, a block's draws do not depend on the carry: draw them all at once (vectorised)
        idx = _replacement_indices(key, block_start, block, n, batch_size) if scheme == "sgd_replacement" else steps
        carry, _ = jax.lax.scan(one_step, carry, (steps, idx))
        return carry, grad_fn(carry[0], x, y)[0]

    starts = start + block * jnp.arange(n_blocks, dtype=jnp.int32)
    bad = jnp.full((2,), -1, jnp.int32) if bad is None else bad  # carried over chunks by populations
    carry = (params, opt_state, perm, bn_state, bad)
    (params, opt_state, perm, bn_state, bad), losses = jax.lax.scan(one_block, carry, starts)
    return params, opt_state, perm, bn_state, losses, bad


_STATIC = ("grad_fn", "optimizer", "scheme", "batch_size", "block", "n_blocks", "check_finite")
_run_chunk = jax.jit(_chunk, static_argnames=_STATIC)


def _check_args(x, y, steps, scheme, batch_size, log_every, start_step, optimizer, state, check_finite):
    if scheme not in SCHEMES:
        raise ValueError(f"scheme: expected one of {list(SCHEMES)}, got {scheme!r}")
    for name, v, lo in (("steps", steps, 1), ("log_every", log_every, 1), ("start_step", start_step, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
    n = jnp.shape(x)[0] if jnp.ndim(x) else 0
    if n < 1:
        raise ValueError(f"x: expected at least one example (shape (N, n_0) with N >= 1), got shape {jnp.shape(x)}")
    if jnp.shape(y)[:1] != (n,):
        raise ValueError(f"y: expected {n} rows to match x, got shape {jnp.shape(y)}")
    for name, a in (("x", x), ("y", y)):
        a = np.asarray(a)
        if not np.issubdtype(a.dtype, np.integer) and not np.all(np.isfinite(a)):
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
            raise ValueError(f"{name}: expected finite values, got {a[idx]} at index {idx}")
    b = 1 if batch_size is None else batch_size
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 1 <= b <= n:
        raise ValueError(f"batch_size: expected an int in [1, {n}] (the number of examples), got {batch_size!r}")
    if scheme == "sgd_shuffle" and b != 1:
        raise ValueError(f"batch_size: sgd_shuffle uses one example per step, got {batch_size!r}; use 'minibatch'")
    if state is not None and scheme != "full_batch" and b < 2:
        raise ValueError(f"batch_size: batch norm in train mode needs batches of >= 2 rows, got {b} ({scheme})")
    if not isinstance(check_finite, bool):
        raise TypeError(f"check_finite: expected a bool, got {check_finite!r}")
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer: expected an optax.GradientTransformation, got {type(optimizer).__name__}")
    return int(b)


def _progress_bar(progress, total, initial):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError as e:  # pragma: no cover - tqdm is in the [experiments] extra
        raise ImportError("progress=True needs tqdm: pip install 'jaxmlp[experiments]'") from e
    return tqdm(total=total, initial=initial, unit="step", mininterval=0.5)


class NonFiniteError(FloatingPointError):
    """Training met a NaN or Inf; ``result`` holds the last good params and the history up to them."""

    def __init__(self, message, step, leaf, result, checkpoint):
        super().__init__(message)
        self.step, self.leaf, self.result, self.checkpoint = step, leaf, result, checkpoint


def _leaf_names(params):
    """Names of the values the per-step guard checks: the loss, the gradient leaves, the updated params."""
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    return ["loss"] + ["grads" + p for p in paths] + ["params" + p for p in paths]


def train(grad_fn: Callable, optimizer: optax.GradientTransformation, params, x, y, *, key: jax.Array, steps: int,
          scheme: str = "full_batch", batch_size: Optional[int] = None, log_every: int = 100,
          chunk_steps: int = 100_000, opt_state=None, start_step: int = 0,
          progress: Optional[bool] = None, state=None, checkpoint: Optional[Checkpointer] = None,
          check_finite: bool = True) -> TrainResult:
    r"""Run optimizer steps ``start_step, ..., start_step + steps - 1`` and log the full-data objective every ``log_every``.

    Args:
      grad_fn: ``(params, x, y) -> (J, grads)``, e.g. :func:`manual_grad` or
        :func:`autodiff_grad`.  Pass the same object again to reuse the compiled loop.
      optimizer: any ``optax.GradientTransformation`` (hand-written or Optax).
      x, y: the whole training set (targets as ``grad_fn`` takes them).
      key: PRNG key for the sampling scheme.
      chunk_steps: steps per jitted call; the progress bar updates between calls.
      opt_state: resume from this optimizer state (default: ``optimizer.init(params)``).
      progress: tqdm bar; ``None`` shows it only when stderr is a terminal.
      state: batch norm's running statistics (``jaxmlp.init_state(model)``): threaded through every
        step as ``grad_fn(params, x, y, state) -> (J, grads, state)`` and returned in ``TrainResult.state``.
      checkpoint: a :class:`Checkpointer`: save every ``checkpoint.every`` steps and, with
        ``resume=True``, continue from the newest checkpoint (bitwise the same run as without the break).
      check_finite: stop at the first step whose batch loss, gradient or updated params have a NaN or Inf and raise
        :class:`NonFiniteError` naming the step and the first non-finite leaf.  Each chunk ends with
        one jitted ``isfinite`` reduction over params, optimizer state and logged losses (a NaN or
        Inf gradient propagates into them); only when it fails is the chunk replayed with a per-step
        guard inside the jitted scan, which finds the exact step and leaf and keeps the params from
        before it.  ``False`` removes the check.

    Returns:
      :class:`TrainResult` with the losses at steps ``start_step, start_step + log_every, ...``.
    """
    b = _check_args(x, y, steps, scheme, batch_size, log_every, start_step, optimizer, state, check_finite)
    x, y = jnp.asarray(x), jnp.asarray(y)
    end = start_step + steps
    every, c = end, None
    if checkpoint is not None:
        c = C.resume_from(checkpoint, optimizer, key, start_step, end, log_every)
        every = checkpoint.every
        if c is not None:
            params, opt_state, state, start_step = c.params, c.opt_state, c.state, c.step
    opt_state = optimizer.init(params) if opt_state is None else opt_state
    n = x.shape[0]
    per_epoch = n // b
    perm = _permutation(key, start_step // per_epoch, n)
    if c is not None:
        losses, logged = [c.history_losses], [int(s) for s in c.history_steps]
    else:
        losses, logged = [grad_fn(params, x, y)[0]], [start_step]
    step = start_step
    bar = _progress_bar(progress, end, start_step)
    try:
        while step < end:
            todo = min(chunk_steps, end - step, every - step % every)
            block = min(log_every, todo)
            n_blocks = max(1, todo // block)
            kw = dict(grad_fn=grad_fn, optimizer=optimizer, scheme=scheme, batch_size=b, block=block, n_blocks=n_blocks)
            start = (params, opt_state, perm, state, x, y, key, jnp.asarray(step, jnp.int32))
            params, opt_state, perm, state, chunk, _ = _run_chunk(*start, check_finite=False, **kw)
            if check_finite and not bool(_all_finite((params, opt_state, state, chunk))):  # one sync per chunk
                # Replay the (deterministic) chunk with the per-step guard to find the step and the leaf.
                params, opt_state, perm, state, chunk, bad = _run_chunk(*start, check_finite=True, **kw)
                bad_step = int(bad[0]) if int(bad[0]) >= 0 else step + block * int(np.argmin(np.isfinite(chunk)))
                leaf = _leaf_names(params)[int(bad[1])] if int(bad[0]) >= 0 else "loss"
                kept = [i for i in range(n_blocks) if step + block * (i + 1) <= bad_step]
                losses.append(np.asarray(chunk)[kept])
                logged += [step + block * (i + 1) for i in kept]
                result = TrainResult(params, opt_state, np.asarray(logged), _concat(losses), state)
                raise _non_finite(bad_step, leaf, result, checkpoint)
            losses.append(chunk)  # a device array: no sync unless checkpointing or checking
            logged += [step + block * (i + 1) for i in range(n_blocks)]
            step += block * n_blocks
            if checkpoint is not None and (step % every == 0 or step == end):
                C.save(checkpoint.directory, C.Checkpoint(step, params, opt_state, key, checkpoint.model, state,
                                                          np.asarray(logged), _concat(losses)), keep=checkpoint.keep)
            if bar is not None:
                bar.update(block * n_blocks)
    finally:
        if bar is not None:
            bar.close()
    return TrainResult(params, opt_state, np.asarray(logged), _concat(losses), state)


@jax.jit
def _all_finite(tree):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)
                              if jnp.issubdtype(a.dtype, jnp.inexact)]))


def _concat(losses):
    return np.concatenate([np.atleast_1d(np.asarray(l)) for l in losses])


def _non_finite(step, leaf, result, ck):
    last = C.latest(ck.directory) if ck is not None else None
    kept = f"the last good checkpoint is '{last}'" if last else "no checkpoint was written"
    what = ("loss" if leaf == "loss" else f"gradient leaf {leaf}" if leaf.startswith("grads")
            else f"updated parameter leaf {leaf} (a finite gradient overflowed in the update)")
    msg = (f"non-finite value at step {step}: first non-finite {what}; training stopped with the params from "
           f"before that step (NonFiniteError.result); {kept}. Pass check_finite=False (--no-check-finite) to train on regardless.")
    return NonFiniteError(msg, step, leaf, result, last)
