r"""Checkpoints in the safetensors format: no pickle, so loading never runs code.

A checkpoint is one ``ckpt_<step>.safetensors`` file holding

* the tensors: ``params``, ``opt_state``, batch norm's running ``state``, the
  PRNG ``key`` (its raw ``key_data``) and the loss history so far, each leaf
  named by its pytree path (``params[0].W``, ``opt_state[0].mu[1].b``, ...);
* the text metadata: format version, step, the model description
  (:class:`~jaxmlp.MLP` fields as JSON), the key's implementation, leaf dtypes
  that numpy cannot name (``bfloat16`` is stored as its ``uint16`` bit pattern)
  and user metrics as JSON.

Writes are atomic (:func:`jaxmlp.atomic.write_atomic`: temporary name, fsync,
rename, folder fsync), so a crash leaves either the old or the new file, never
a half-written one.  :func:`save` keeps the newest ``keep`` checkpoints.

Loading rebuilds each pytree from a template (the model's parameter structure,
``optimizer.init`` of it, ``init_state(model)``) and checks every leaf's
presence, shape and dtype against it, so a truncated file, a foreign file or a
checkpoint of another model shape is refused with a :class:`CheckpointError`
naming what differs.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import checks, values
from jaxmlp.atomic import write_atomic
from jaxmlp.distributed import is_writer
from jaxmlp.model import MLP, init, init_state

FORMAT = "jaxmlp-checkpoint/1"
_NAME = re.compile(r"^ckpt_(\d{10})\.safetensors$")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not match what it is loaded into."""


class Checkpoint(NamedTuple):
    """Everything needed to continue a run exactly."""

    step: int
    params: Any
    opt_state: Any
    key: jax.Array  # typed PRNG key of the run's sampling scheme
    model: MLP
    state: Any = None  # batch-norm running statistics
    history_steps: Any = None  # (n_logs,) steps of the logged losses so far
    history_losses: Any = None  # (n_logs,) the logged losses so far
    metrics: Optional[dict] = None  # JSON-able user metrics


def _safetensors():
    try:
        import safetensors.numpy as st
    except ImportError as e:  # pragma: no cover - safetensors is in the [experiments] extra
        raise ImportError("checkpoints need safetensors: pip install 'jaxmlp[checkpoint]'") from e
    return st


def _flat(prefix, tree):
    """``{path name: numpy array}`` of a pytree's leaves (``None`` leaves are absent)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {prefix + jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def _model_json(model):
    return json.dumps(dataclasses.asdict(model))


def path_for(directory, step) -> pathlib.Path:
    return pathlib.Path(directory) / f"ckpt_{int(step):010d}.safetensors"


def all_checkpoints(directory):
    """Checkpoint files in ``directory``, oldest step first (temporary files are ignored)."""
    d = pathlib.Path(directory)
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if _NAME.match(p.name)), key=lambda p: p.name)


def latest(directory) -> Optional[pathlib.Path]:
    """The newest complete checkpoint in ``directory``, or ``None``."""
    found = all_checkpoints(directory)
    return found[-1] if found else None


def save(directory, ckpt: Checkpoint, *, keep: int = 3, check: bool = True) -> pathlib.Path:
    """Write ``ckpt`` atomically as ``directory/ckpt_<step>.safetensors`` and keep the newest ``keep``.

    Everything is checked and serialised in memory before the first byte is
    written; on any error no file is created or removed.  In a multi-process
    run only process 0 writes (after fetching the replicated state); the others
    return the same path.  The params are checked
    against the model, and (unless ``check=False``) for finiteness.
    """
    st = _safetensors()
    checks.check_model(ckpt.model)
    checks.check_params(ckpt.model, ckpt.params)
    if check:
        checks.check_params_finite(ckpt.params)
    values.check_int("step", ckpt.step, lo=0)
    values.check_int("keep", keep, lo=1)
    ckpt = ckpt._replace(key=values.as_key("key", ckpt.key))
    try:
        metrics = json.dumps(ckpt.metrics or {})
    except TypeError as e:
        raise TypeError(f"metrics: expected JSON-serialisable values ({e})") from None
    tensors = {**_flat("params", ckpt.params), **_flat("opt_state", ckpt.opt_state), **_flat("state", ckpt.state),
               "key": jax.random.key_data(ckpt.key)}
    if ckpt.history_steps is not None:
        tensors["history.steps"] = np.asarray(ckpt.history_steps, np.int64)
        tensors["history.losses"] = np.asarray(ckpt.history_losses)
    arrays, dtypes = {}, {}
    for name, leaf in tensors.items():
        a = values.host(leaf)  # a replicated global array of multi-process training: this host's copy
        if a.dtype == jnp.bfloat16:  # numpy has no bfloat16: store the bit pattern
            dtypes[name], a = "bfloat16", a.view(np.uint16)
        arrays[name] = np.array(a, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
    meta = {"format": FORMAT, "step": str(int(ckpt.step)), "model": _model_json(ckpt.model),
            "key_impl": str(jax.random.key_impl(ckpt.key)), "dtypes": json.dumps(dtypes), "metrics": metrics,
            "jax": jax.__version__}
    data = st.save(arrays, metadata=meta)
    directory = pathlib.Path(directory)
    if not is_writer():  # multi-process: exactly one process writes; every process reads the file
        return path_for(directory, ckpt.step)
    directory.mkdir(parents=True, exist_ok=True)
    path = path_for(directory, ckpt.step)
    write_atomic(path, data)
    for old in all_checkpoints(directory)[:-keep]:
        old.unlink()
    return path


def _read(path):
    from safetensors import safe_open

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: expected a checkpoint file, got no file at '{path}'")
    st = _safetensors()
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        arrays = st.load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for every malformed header or body
        raise CheckpointError(f"path: expected a safetensors checkpoint, got a corrupt or truncated file '{path}' "
                              f"({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"path: expected a {FORMAT} file, got format {meta.get('format')!r} in '{path}'")
    for name, dt in json.loads(meta["dtypes"]).items():
        arrays[name] = arrays[name].view(jnp.dtype(dt))
    return meta, arrays


def _model_from(meta, path):
    d = json.loads(meta["model"])
    d["sizes"] = tuple(d["sizes"])
    return MLP(**d)


def _unflatten(prefix, template, arrays, path):
    """Rebuild ``template``'s structure from the named arrays, checking each leaf's shape and dtype."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    out = []
    for p, leaf in leaves:
        name = prefix + jax.tree_util.keystr(p)
        if name not in arrays:
            raise CheckpointError(f"path: expected a tensor {name!r} of shape {tuple(leaf.shape)}, got none in "
                                  f"'{path}' (was it written for another optimizer or model?)")
        a = arrays[name]
        if tuple(a.shape) != tuple(leaf.shape):
            raise CheckpointError(f"{name}: expected shape {tuple(leaf.shape)}, got {tuple(a.shape)} in '{path}'")
        out.append(jnp.asarray(a))
    extra = sorted(n for n in arrays if n.startswith(prefix + "[") or n.startswith(prefix + "."))
    if len(extra) != len(out):
        known = {prefix + jax.tree_util.keystr(p) for p, _ in leaves}
        raise CheckpointError(f"{prefix}: expected only the template's tensors, got also "
                              f"{[n for n in extra if n not in known]} in '{path}'")
    return jax.tree_util.tree_unflatten(treedef, out)


def load(path, model: Optional[MLP] = None, optimizer=None, *, check: bool = True) -> Checkpoint:
    """Read a checkpoint written by :func:`save`.

    Args:
      path: a checkpoint file, or a folder (its newest checkpoint is read).
      model: if given, the checkpoint must have been written for an equal model.
      optimizer: the run's optax optimizer; its ``init`` gives the template of
        ``opt_state``.  Without it ``opt_state`` is ``None``.
      check: the loaded params must be finite (the entry check of :func:`save`); ``False`` skips it.
    """
    if pathlib.Path(path).is_dir():
        found = latest(path)
        if found is None:
            raise FileNotFoundError(f"path: expected a checkpoint in folder '{path}', got none")
        path = found
    meta, arrays = _read(path)
    saved = _model_from(meta, path)
    if model is not None:
        checks.check_model(model)
        for field in dataclasses.fields(MLP):
            a, b = getattr(model, field.name), getattr(saved, field.name)
            if a != b:
                raise CheckpointError(f"model: expected {field.name}={b!r} (the model '{path}' was written for), "
                                      f"got {field.name}={a!r}")
    dtypes = {name: a.dtype for name, a in arrays.items()}
    p_dtype = dtypes.get("params[0].W", np.dtype(np.float32))
    shapes = jax.eval_shape(lambda: init(saved, jax.random.key(0), "normal", p_dtype))
    params = _unflatten("params", shapes, arrays, path)
    if check:
        checks.check_params_finite(params)
    opt_state = None
    if optimizer is not None:
        opt_state = _unflatten("opt_state", jax.eval_shape(optimizer.init, params), arrays, path)
    state = _unflatten("state", jax.eval_shape(lambda: init_state(saved)), arrays, path) if saved.batchnorm else None
    key = jax.random.wrap_key_data(jnp.asarray(arrays["key"]), impl=meta["key_impl"])
    return Checkpoint(int(meta["step"]), params, opt_state, key, saved, state, arrays.get("history.steps"),
                      arrays.get("history.losses"), json.loads(meta["metrics"]))
