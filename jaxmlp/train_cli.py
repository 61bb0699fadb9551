"""``jaxmlp train``: train one network from the command line, with checkpoints and exact resume.

The defaults are Higham & Higham's 10-point network (Higham & Higham notes (2024-09-10)): 2-2-3-2
sigmoid, quadratic cost, SGD with replacement, eta = 0.05.

  jaxmlp train --steps 1000000 --checkpoint-dir ckpt --checkpoint-every 100000
  jaxmlp train --steps 1000000 --checkpoint-dir ckpt --checkpoint-every 100000 --resume

After a kill, the second command continues from the newest checkpoint in
``ckpt`` and ends with parameters bitwise equal to an uninterrupted run.
The final checkpoint goes to ``OUT/final/`` (read it with
``jaxmlp.checkpoint.load``) and the loss history to ``OUT/metrics.json``, both
written atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib

import jax

from jaxmlp.atomic import write_atomic
from jaxmlp.distributed import HEARTBEAT_TIMEOUT_S

OPTIMIZERS = ("sgd", "momentum", "heavy_ball", "nesterov", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "exponential", "cosine", "warmup-cosine")
DATASETS = ("higham", "higham11", "spiral", "digits")


def _parser():
    ap = argparse.ArgumentParser(prog="jaxmlp train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=DATASETS, default="higham", help="training set (default higham)")
    ap.add_argument("--sizes", default="2,2,3,2", help="layer widths, comma-separated (default 2,2,3,2)")
    ap.add_argument("--activation", default="sigmoid", help="hidden activation (default sigmoid)")
    ap.add_argument("--head", default="sigmoid_quadratic", help="output head (default sigmoid_quadratic)")
    ap.add_argument("--init", default="higham", help="initialisation scheme (default higham)")
    ap.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="hand-written optimizer (default sgd)")
    ap.add_argument("--learning-rate", "--lr", dest="learning_rate", type=float, default=0.05,
                    help="learning rate, the schedule's peak (default 0.05)")
    ap.add_argument("--schedule", choices=SCHEDULES, default="constant",
                    help="learning-rate schedule: constant; exponential (optax.exponential_decay with "
                         "--transition-steps, --decay-rate); cosine (optax.cosine_decay_schedule over --decay-steps "
                         "to --end-value); warmup-cosine (optax.warmup_cosine_decay_schedule from 0 over "
                         "--warmup-steps, then to --end-value at --decay-steps)")
    ap.add_argument("--transition-steps", type=int, default=1000, help="exponential: steps per decay (default 1000)")
    ap.add_argument("--decay-rate", type=float, default=0.5, help="exponential: factor per transition (default 0.5)")
    ap.add_argument("--warmup-steps", type=int, default=100, help="warmup-cosine: warm-up steps (default 100)")
    ap.add_argument("--decay-steps", type=int, default=None,
                    help="cosine, warmup-cosine: steps to the end value (default --steps)")
    ap.add_argument("--end-value", type=float, default=0.0, help="cosine, warmup-cosine: final rate (default 0)")
    ap.add_argument("--l1", type=float, default=0.0, help="L1 penalty strength (default 0)")
    ap.add_argument("--l2", type=float, default=0.0, help="L2 penalty strength (default 0)")
    ap.add_argument("--scheme", default="sgd_replacement", help="sampling scheme (default sgd_replacement)")
    ap.add_argument("--batch-size", type=int, default=None, help="examples per step (default: the scheme's)")
    ap.add_argument("--steps", type=int, default=10**6, help="total steps of the run (default 1000000)")
    ap.add_argument("--log-every", type=int, default=1000, help="log the full-data loss every N steps")
    ap.add_argument("--seed", type=int, default=0, help="seed of the initial params; the sampling key is seed+1")
    ap.add_argument("--checkpoint-dir", default=None, help="write checkpoints to this folder")
    ap.add_argument("--checkpoint-every", type=int, default=100_000, help="steps between checkpoints")
    ap.add_argument("--keep", type=int, default=3, help="newest checkpoints to keep (default 3)")
    ap.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --checkpoint-dir")
    ap.add_argument("--no-check-finite", action="store_true", help="do not stop at a NaN or Inf")
    ap.add_argument("--progress", action="store_true", help="show a tqdm progress bar")
    ap.add_argument("--out", default=os.path.join("results", "train"), help="output folder (default results/train)")
    ap.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                    help="multi-process run: the coordinator's address (process 0's host and a free port)")
    ap.add_argument("--num-processes", type=int, default=None, help="multi-process run: the number of processes")
    ap.add_argument("--process-id", type=int, default=None, help="multi-process run: this process's id, 0..N-1")
    ap.add_argument("--cluster", action="store_true",
                    help="multi-process run: take the coordinator, count and id from SLURM / Open MPI / Kubernetes")
    ap.add_argument("--heartbeat-timeout", type=int, default=HEARTBEAT_TIMEOUT_S, metavar="SECONDS",
                    help="multi-process run: a process silent this long is declared dead and the others stop "
                         f"with an error (default {HEARTBEAT_TIMEOUT_S})")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                    help="params and data dtype (default float32); float64 turns JAX's x64 mode on itself, "
                         "before anything is traced (no JAX_ENABLE_X64 needed)")
    return ap


def schedule(args):
    """The learning rate (a float or an Optax schedule) from the command line; bad values raise ValueError."""
    import optax

    lr = args.learning_rate
    if not (lr > 0 and lr < float("inf")):
        raise ValueError(f"--learning-rate: expected a finite number > 0, got {lr}")
    if args.schedule == "constant":
        return lr
    if args.schedule == "exponential":
        if args.transition_steps <= 0:
            raise ValueError(f"--transition-steps: expected an int > 0, got {args.transition_steps}")
        if not 0 < args.decay_rate <= 1:
            raise ValueError(f"--decay-rate: expected a number in (0, 1], got {args.decay_rate}")
        return optax.exponential_decay(lr, args.transition_steps, args.decay_rate)
    decay_steps = args.steps if args.decay_steps is None else args.decay_steps
    if decay_steps <= 0:
        raise ValueError(f"--decay-steps: expected an int > 0, got {decay_steps}")
    if not 0 <= args.end_value <= lr:
        raise ValueError(f"--end-value: expected a number in [0, --learning-rate = {lr}], got {args.end_value}")
    if args.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps, alpha=args.end_value / lr)
    if not 0 <= args.warmup_steps < decay_steps:
        raise ValueError(f"--warmup-steps: expected an int in [0, --decay-steps = {decay_steps}), got {args.warmup_steps}")
    return optax.warmup_cosine_decay_schedule(0.0, lr, args.warmup_steps, decay_steps, args.end_value)


def _data(name):
    import jaxmlp

    if name.startswith("higham"):
        return jaxmlp.data.higham_points(name == "higham11")
    if name == "spiral":
        return jaxmlp.data.spiral()
    x, y, _, _ = jaxmlp.data.digits()
    return x, y


def main(argv=None) -> int:
    import jaxmlp
    from jaxmlp import checkpoint, distributed, optim, train

    args = _parser().parse_args(argv)
    if args.dtype == "float64":  # before any array exists: x64 is a process-wide switch
        jax.config.update("jax_enable_x64", True)
    multi = args.cluster or any(v is not None for v in (args.coordinator, args.num_processes, args.process_id))
    if args.heartbeat_timeout < 1:
        raise ValueError(f"--heartbeat-timeout: expected an int >= 1 (seconds), got {args.heartbeat_timeout}")
    if multi:
        if args.cluster:
            distributed.initialize(heartbeat_timeout_seconds=args.heartbeat_timeout)
        else:
            distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                                   heartbeat_timeout_seconds=args.heartbeat_timeout)
    try:
        sizes = tuple(int(s) for s in args.sizes.split(","))
    except ValueError:
        raise ValueError(f"--sizes: expected comma-separated ints like 2,2,3,2, got {args.sizes!r}") from None
    if args.resume and not args.checkpoint_dir:
        raise ValueError("--resume: needs --checkpoint-dir, the folder to resume from")
    model = jaxmlp.MLP(sizes, args.activation, args.head)
    x, y = _data(args.data)
    if x.shape[1] != sizes[0]:
        raise ValueError(f"--sizes: {args.data} has {x.shape[1]} input features, got sizes[0] = {sizes[0]}")
    params = jaxmlp.init(model, jax.random.key(args.seed), args.init, dtype=args.dtype)
    x, rows = x.astype(args.dtype), None
    if multi:  # every process keeps only its own rows; the params are replicated over all devices
        from jaxmlp import sharding

        mesh = sharding.data_mesh()
        x, y, rows = distributed.shard_dataset(x, y, mesh)
        params = sharding.replicate(params, mesh)
    for name in ("l1", "l2"):
        v = getattr(args, name)
        if not (0 <= v < float("inf")):
            raise ValueError(f"--{name}: expected a finite number >= 0, got {v}")
    opt = getattr(optim, args.optimizer)(schedule(args))
    ck = None
    if args.checkpoint_dir:
        ck = train.Checkpointer(args.checkpoint_dir, model, args.checkpoint_every, args.keep, args.resume)
    r = train.train(train.manual_grad(model, l1=args.l1, l2=args.l2), opt, params, x, y, key=jax.random.key(args.seed + 1), steps=args.steps,
                    scheme=args.scheme, batch_size=args.batch_size, log_every=args.log_every, checkpoint=ck,
                    check_finite=not args.no_check_finite, progress=args.progress, rows=rows)
    out = pathlib.Path(args.out)
    final = checkpoint.save(out / "final", checkpoint.Checkpoint(int(r.steps[-1]), r.params, r.opt_state,
                                                                 jax.random.key(args.seed + 1), model, r.state,
                                                                 r.steps, r.losses, {"args": vars(args)}), keep=1)
    metrics = {"args": vars(args), "steps": r.steps.tolist(), "losses": r.losses.tolist(), "final": str(final)}
    if distributed.is_writer():  # one writer in a multi-process run
        write_atomic(out / "metrics.json", json.dumps(metrics))
    print(f"jaxmlp train: step {int(r.steps[-1])}, loss {float(r.losses[-1]):.6g}; params in {final}")
    return 0
