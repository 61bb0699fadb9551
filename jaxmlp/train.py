r"""Jitted training loops: full batch, SGD with and without replacement, mini-batch epochs.

:func:`train` runs the compiled steps of :mod:`jaxmlp.loop` in chunks, with the
sampling schemes of :mod:`jaxmlp.samplers`, checkpoints written by
:mod:`jaxmlp.checkpoint` (:class:`Checkpointer` says where and how often), and
the non-finite guard.  The gradient is pluggable: :func:`manual_grad` (the
hand-derived backward) and :func:`autodiff_grad` (``jax.grad``) make a
:class:`~jaxmlp.gradient_functions.GradFn` with the same signature, and any
``(params, x, y) -> (J, grads)`` of your own works too.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxmlp.checkpoint
import jaxmlp.distributed
from jaxmlp import loop, values
from jaxmlp.gradient_functions import AutodiffGrad, ManualGrad, as_grad_fn, as_model_grad, check_data

__all__ = ["Checkpointer", "NonFiniteError", "TrainResult", "autodiff_grad", "manual_grad", "resume_point", "train"]


def manual_grad(model, *, l1=0.0, l2=0.0) -> ManualGrad:
    r"""The gradient by jaxmlp's hand-derived backward pass, for :func:`train` and
    :func:`jaxmlp.population.train_population`: a :class:`~jaxmlp.gradient_functions.ManualGrad`.

    Called as ``(params, x, y, weights=None)`` it gives :math:`(J, \partial J/\partial\theta)` of
    :func:`jaxmlp.value_and_grad` with penalties ``l1``, ``l2``; ``.with_state(params, x, y, state)`` gives
    ``(J, grads, new_state)`` for batch norm.  It carries ``model``, so the loops check the data against it.

    >>> import jaxmlp
    >>> manual_grad(jaxmlp.MLP((2, 3, 1), "tanh", "mse"), l2=1e-3).l2
    0.001
    """
    return ManualGrad(model, l1, l2)


def autodiff_grad(model, *, l1=0.0, l2=0.0) -> AutodiffGrad:
    """The same as :func:`manual_grad` by ``jax.value_and_grad(jaxmlp.loss)``: an
    :class:`~jaxmlp.gradient_functions.AutodiffGrad` with the same signature (the reference to compare with)."""
    return AutodiffGrad(model, l1, l2)


class TrainResult(NamedTuple):
    """What :func:`train` returns."""

    params: Any
    opt_state: Any
    steps: np.ndarray  # (n_logs,) step index of each logged loss, starting at start_step
    losses: np.ndarray  # (n_logs,) full-data objective after that many steps
    state: Any = None  # batch-norm running statistics, when training a batchnorm model


class Checkpointer(NamedTuple):
    """Where and how often :func:`train` writes checkpoints (files: :mod:`jaxmlp.checkpoint`).

    Args:
      directory: folder of ``ckpt_<step>.safetensors`` files.
      model: the :class:`~jaxmlp.MLP` being trained (stored in, and checked against, every checkpoint).
      every: save after every ``every`` steps (a multiple of ``log_every``) and at the end.
      keep: how many of the newest checkpoints to keep.
      resume: continue from the newest checkpoint in ``directory`` if there is one.  Without it a
        folder that already holds checkpoints is refused, so a run never overwrites another's.
    """

    directory: Any
    model: Any
    every: int
    keep: int = 3
    resume: bool = False


def resume_point(ck: Checkpointer, optimizer, key, start_step, end, log_every) -> Optional[jaxmlp.checkpoint.Checkpoint]:
    """The newest checkpoint of a :class:`Checkpointer` run (or ``None``), after checking the folder and the key."""
    for name, v in (("every", ck.every), ("keep", ck.keep)):
        values.check_int(f"checkpoint.{name}", v, lo=1)
    if ck.every % log_every:
        raise ValueError(f"checkpoint.every: expected a multiple of log_every={log_every}, got {ck.every}")
    found = jaxmlp.checkpoint.latest(ck.directory)
    if found is None:
        return None
    if not ck.resume:
        raise ValueError(f"checkpoint.directory: '{ck.directory}' already holds checkpoints (newest {found.name}); "
                         "pass resume=True (--resume) to continue that run, or use an empty folder")
    c = jaxmlp.checkpoint.load(found, ck.model, optimizer)
    if not np.array_equal(jax.random.key_data(c.key), jax.random.key_data(key)):
        raise ValueError(f"key: '{found}' was written by a run with another key; resume with the same key")
    if not start_step <= c.step <= end:
        raise ValueError(f"steps: '{found}' is at step {c.step}, outside this run's [{start_step}, {end}]")
    jaxmlp.distributed.agree(c.step, f"checkpoint.directory: the step to resume from ('{found.name}')")
    return c


class NonFiniteError(FloatingPointError):
    """Training met a NaN or Inf; ``result`` holds the last good params and the history up to them."""

    def __init__(self, message, step, leaf, result, checkpoint):
        super().__init__(message)
        self.step, self.leaf, self.result, self.checkpoint = step, leaf, result, checkpoint


def train(grad_fn: Callable, optimizer: optax.GradientTransformation, params, x, y, *, key: jax.Array, steps: int,
          scheme: str = "full_batch", batch_size: Optional[int] = None, log_every: int = 100,
          chunk_steps: int = 100_000, opt_state=None, start_step: int = 0,
          progress: Optional[bool] = None, state=None, checkpoint: Optional[Checkpointer] = None,
          check_finite: bool = True, check: bool = True, rows: Optional[int] = None) -> TrainResult:
    r"""Run optimizer steps ``start_step, ..., start_step + steps - 1`` and log the full-data objective every ``log_every``.

    The loop is jitted: a ``lax.scan`` over steps, run in chunks with the progress bar (tqdm) moved
    and checkpoints written between them (:mod:`jaxmlp.loop`).  Step :math:`t` is

    .. math::  (J, g) = \mathrm{grad\_fn}(\theta_t, x_{I_t}, y_{I_t}),\qquad
               (u, s_{t+1}) = \mathrm{optimizer.update}(g, s_t, \theta_t),\qquad \theta_{t+1} = \theta_t + u

    Args:
      grad_fn: a :class:`~jaxmlp.gradient_functions.GradFn` from :func:`manual_grad` or
        :func:`autodiff_grad` (which carries its model, so the data are checked against it), or any
        ``(params, x, y) -> (J, grads)`` of your own.  Pass the same object again to reuse the compiled loop.
      optimizer: any ``optax.GradientTransformation`` (hand-written or Optax).
      x, y: the whole training set (targets as ``grad_fn`` takes them).
      key: PRNG key for the sampling scheme (:mod:`jaxmlp.samplers`).
      chunk_steps: steps per jitted call; the progress bar updates between calls.
      opt_state: resume from this optimizer state (default: ``optimizer.init(params)``).
      progress: tqdm bar; ``None`` shows it only when stderr is a terminal.
      state: batch norm's running statistics (``jaxmlp.init_state(model)``): threaded through every
        step as ``grad_fn.with_state(params, x, y, state) -> (J, grads, state)`` (``grad_fn`` from
        :func:`manual_grad` or :func:`autodiff_grad`) and returned in ``TrainResult.state``.
      checkpoint: a :class:`Checkpointer`: save every ``checkpoint.every`` steps and, with
        ``resume=True``, continue from the newest checkpoint (bitwise the same run as without the break).
      check_finite: stop at the first step whose batch loss, gradient or updated params have a NaN or Inf and raise
        :class:`NonFiniteError` naming the step and the first non-finite leaf.  Each chunk ends with
        one jitted ``isfinite`` reduction over params, optimizer state and logged losses (a NaN or
        Inf gradient propagates into them); only when it fails is the chunk replayed with a per-step
        guard inside the jitted scan, which finds the exact step and leaf and keeps the params from
        before it.  ``False`` removes the check.
      check: the entry checks of the data and params (:func:`~jaxmlp.gradient_functions.check_data`:
        finiteness, label range and dtype, one-hot rows, shapes and params against the model), once,
        before anything runs.
        ``False`` skips the value checks (shapes are always checked).
      rows: the real rows of ``x`` and ``y``, when padding rows follow them
        (:func:`jaxmlp.distributed.shard_dataset` pads to a multiple of the device count).  The loss, the
        gradient and every logged loss are then over the first ``rows`` rows only (row weights 1 and 0,
        with ``grad_fn`` from :func:`manual_grad` / :func:`autodiff_grad`), and the samplers draw from
        them: the run is the one-process run on the unpadded data.  Default: every row is real.

    Returns:
      :class:`TrainResult` with the losses at steps ``start_step, start_step + log_every, ...``.

    >>> import jax, jaxmlp
    >>> from jaxmlp import optim, train
    >>> model = jaxmlp.MLP((2, 2, 3, 2), "sigmoid", "sigmoid_quadratic")
    >>> x, y = jaxmlp.data.higham_points()
    >>> params = jaxmlp.init(model, jax.random.key(0), "higham")
    >>> r = train.train(train.manual_grad(model), optim.sgd(0.05), params, x, y, key=jax.random.key(1),
    ...                 steps=1000, scheme="sgd_replacement", log_every=500, progress=False)
    >>> r.steps.tolist(), bool(r.losses[-1] < r.losses[0])
    ([0, 500, 1000], True)
    """
    b = loop.check_loop_args(x, y, steps, scheme, batch_size, log_every, start_step, optimizer, state, check_finite,
                             rows)
    key = values.as_key("key", key)
    check_data(grad_fn, params, x, y, check=check, state=state)
    x, y = jnp.asarray(x), jnp.asarray(y)
    rows = _padded_rows(grad_fn, rows, x.shape[0], state)
    grad_fn = as_grad_fn(grad_fn)
    end = start_step + steps
    every, resumed = None, None
    if checkpoint is not None:
        resumed = resume_point(checkpoint, optimizer, key, start_step, end, log_every)
        every = checkpoint.every
        if resumed is not None:
            params, opt_state, state, start_step = resumed.params, resumed.opt_state, resumed.state, resumed.step
    opt_state = optimizer.init(params) if opt_state is None else opt_state
    carry = loop.initial_carry(params, opt_state, key, start_step, x.shape[0] if rows is None else rows, b, state)
    if resumed is not None:
        history = loop.History([int(s) for s in resumed.history_steps], [resumed.history_losses])
    else:
        history = loop.History([start_step], [jnp.atleast_1d(grad_fn(params, x, y, loop.row_weights(x, rows))[0])])

    def run(carry, chunk, guarded):
        return loop.compiled_steps(carry, x, y, key, jnp.asarray(chunk.start, jnp.int32), grad_fn=grad_fn,
                                   optimizer=optimizer, scheme=scheme, batch_size=b, block=chunk.block,
                                   n_blocks=chunk.n_blocks, check_finite=guarded, rows=rows)

    def result(carry):
        return TrainResult(carry.params, carry.opt_state, *history.arrays(), carry.bn_state)

    def on_non_finite(carry, chunk, losses):
        bad = values.host(carry.bad)
        if bad[0] >= 0:
            bad_step, leaf = int(bad[0]), loop.guard_names(carry.params)[int(bad[1])]
        else:  # only a logged full-data loss is non-finite
            bad_step, leaf = chunk.start + chunk.block * int(np.argmin(np.isfinite(losses))), "loss"
        kept = [i for i, s in enumerate(chunk.logged_steps()) if s <= bad_step]
        history.losses.append(values.host(losses)[kept])
        history.steps.extend(chunk.logged_steps()[i] for i in kept)
        raise _non_finite(bad_step, leaf, result(carry), checkpoint)

    def save(carry, step):
        if checkpoint is not None and (step % every == 0 or step == end):
            steps_so_far, losses_so_far = history.arrays()
            jaxmlp.checkpoint.save(checkpoint.directory, jaxmlp.checkpoint.Checkpoint(step, carry.params, carry.opt_state, key, checkpoint.model, carry.bn_state,
                                                          steps_so_far, losses_so_far), keep=checkpoint.keep)

    carry = loop.drive(run, carry, history, start=start_step, end=end, log_every=log_every, chunk_steps=chunk_steps,
                       check_finite=check_finite, progress=progress, every=every, on_non_finite=on_non_finite,
                       after_chunk=save)
    return result(carry)


def _padded_rows(grad_fn, rows, n, state) -> Optional[int]:
    """``rows`` when padding rows follow them (else ``None``), with a grad_fn that can weigh rows."""
    if rows is None or rows == n:
        return None
    if as_model_grad(grad_fn) is None:
        raise TypeError(f"grad_fn: padded data (rows={rows} of {n}) needs a grad_fn that weighs rows "
                        f"(train.manual_grad or train.autodiff_grad), got {type(grad_fn).__name__}")
    if state is not None:
        raise ValueError(f"rows: batch norm cannot leave padding rows out of its batch statistics; expected "
                         f"rows=None (a row count the devices divide), got {rows} of {n}")
    return rows


def _non_finite(step, leaf, result, ck):
    last = jaxmlp.checkpoint.latest(ck.directory) if ck is not None else None
    kept = f"the last good checkpoint is '{last}'" if last else "no checkpoint was written"
    what = ("loss" if leaf == "loss" else f"gradient leaf {leaf}" if leaf.startswith("grads")
            else f"updated parameter leaf {leaf} (a finite gradient overflowed in the update)")
    msg = (f"non-finite value at step {step}: first non-finite {what}; training stopped with the params from "
           f"before that step (NonFiniteError.result); {kept}. Pass check_finite=False (--no-check-finite) to train on regardless.")
    return NonFiniteError(msg, step, leaf, result, last)
