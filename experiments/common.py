"""Shared plumbing of the experiment scripts: arguments, output folder, metrics.json, figures (all written atomically)."""
from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import platform

import jax
import numpy as np

from jaxmlp.atomic import write_atomic


def parse(name, doc, argv, steps, extra=None):
    ap = argparse.ArgumentParser(prog=f"python -m experiments {name}", description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=steps, help=f"training steps (default {steps})")
    ap.add_argument("--seed", type=int, default=0, help="base PRNG seed (default 0)")
    ap.add_argument("--out", default=os.path.join("results", name), help="output folder (default results/NAME)")
    if extra:
        extra(ap)
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error(f"--steps: expected an int >= 1, got {args.steps}")
    pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
    return args


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(u) for k, u in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(u) for u in v]
    if isinstance(v, (np.generic, np.ndarray)) or hasattr(v, "__array__"):
        a = np.asarray(v)
        return a.item() if a.ndim == 0 else a.tolist()
    return v


def environment():
    """The machine and versions a measurement was taken on."""
    return {"jax": jax.__version__, "backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
            "python": platform.python_version()}


def write_json(path, obj):
    """Write ``obj`` (numpy and JAX values allowed) as indented JSON, atomically."""
    return write_atomic(path, json.dumps(_jsonable(obj), indent=1))


def save_metrics(out, metrics):
    """Write OUT/metrics.json with the run's environment."""
    return write_json(pathlib.Path(out) / "metrics.json", {**metrics, "environment": environment()})


def figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def savefig(plt, fig, out, name):
    """Render ``fig`` as a PNG in memory, then write it atomically as OUT/NAME."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return write_atomic(pathlib.Path(out) / name, buf.getvalue())
