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

Randomness is a function of ``(key, step)`` only (``fold_in``), so a run is
deterministic for its key and can be resumed at any step.
"""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

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


def _batch_indices(key, step, perm, n, scheme, b):
    """Indices of the examples used at ``step`` and the (possibly refreshed) epoch permutation."""
    if scheme == "sgd_replacement":
        return jax.random.randint(jax.random.fold_in(key, step), (b,), 0, n), perm
    per_epoch = n // b
    new_epoch = step % per_epoch == 0
    perm = jax.lax.cond(new_epoch, lambda: _permutation(key, step // per_epoch, n), lambda: perm)
    return jax.lax.dynamic_slice(perm, ((step % per_epoch) * b,), (b,)), perm


@functools.partial(jax.jit, static_argnames=("grad_fn", "optimizer", "scheme", "batch_size", "block", "n_blocks"))
def _run_chunk(params, opt_state, perm, bn_state, x, y, key, start, *, grad_fn, optimizer, scheme, batch_size, block,
               n_blocks):
    n = x.shape[0]

    def one_step(carry, step):
        params, opt_state, perm, bn_state = carry
        if scheme == "full_batch":
            xb, yb = x, y
        else:
            idx, perm = _batch_indices(key, step, perm, n, scheme, batch_size)
            xb, yb = x[idx], y[idx]
        if bn_state is None:
            _, grads = grad_fn(params, xb, yb)
        else:
            _, grads, bn_state = grad_fn(params, xb, yb, bn_state)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, perm, bn_state), None

    def one_block(carry, block_start):
        carry, _ = jax.lax.scan(one_step, carry, block_start + jnp.arange(block, dtype=jnp.int32))
        return carry, grad_fn(carry[0], x, y)[0]

    starts = start + block * jnp.arange(n_blocks, dtype=jnp.int32)
    (params, opt_state, perm, bn_state), losses = jax.lax.scan(one_block, (params, opt_state, perm, bn_state), starts)
    return params, opt_state, perm, bn_state, losses


def _check_args(x, y, steps, scheme, batch_size, log_every, start_step, optimizer, state):
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
    b = 1 if batch_size is None else batch_size
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 1 <= b <= n:
        raise ValueError(f"batch_size: expected an int in [1, {n}] (the number of examples), got {batch_size!r}")
    if scheme == "sgd_shuffle" and b != 1:
        raise ValueError(f"batch_size: sgd_shuffle uses one example per step, got {batch_size!r}; use 'minibatch'")
    if state is not None and scheme != "full_batch" and b < 2:
        raise ValueError(f"batch_size: batch norm in train mode needs batches of >= 2 rows, got {b} ({scheme})")
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


def train(grad_fn: Callable, optimizer: optax.GradientTransformation, params, x, y, *, key: jax.Array, steps: int,
          scheme: str = "full_batch", batch_size: Optional[int] = None, log_every: int = 100,
          chunk_steps: int = 100_000, opt_state=None, start_step: int = 0,
          progress: Optional[bool] = None, state=None) -> TrainResult:
    r"""Run ``steps`` optimizer steps from ``start_step`` and log the full-data objective every ``log_every``.

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

    Returns:
      :class:`TrainResult` with the losses at steps ``start_step, start_step + log_every, ...``.
    """
    b = _check_args(x, y, steps, scheme, batch_size, log_every, start_step, optimizer, state)
    x, y = jnp.asarray(x), jnp.asarray(y)
    opt_state = optimizer.init(params) if opt_state is None else opt_state
    n = x.shape[0]
    per_epoch = n // b
    perm = _permutation(key, start_step // per_epoch, n)
    losses, logged = [grad_fn(params, x, y)[0]], [start_step]
    step, end = start_step, start_step + steps
    bar = _progress_bar(progress, end, start_step)
    blocks_per_chunk = max(1, chunk_steps // log_every)
    while step < end:
        block = min(log_every, end - step)
        n_blocks = max(1, min(blocks_per_chunk, (end - step) // block))
        params, opt_state, perm, state, chunk = _run_chunk(
            params, opt_state, perm, state, x, y, key, jnp.asarray(step, jnp.int32), grad_fn=grad_fn, optimizer=optimizer,
            scheme=scheme, batch_size=b, block=block, n_blocks=n_blocks)
        losses.append(chunk)
        logged += [step + block * (i + 1) for i in range(n_blocks)]
        step += block * n_blocks
        if bar is not None:
            bar.update(block * n_blocks)  # no device sync here: the loss is read after the loop
    if bar is not None:
        bar.close()
    losses = np.concatenate([np.atleast_1d(np.asarray(l)) for l in losses])
    return TrainResult(params, opt_state, np.asarray(logged), losses, state)
