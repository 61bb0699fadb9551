"""Argument checks shared by the public entry points.

Shapes, ranks and dtypes are static, so they are checked even while tracing
under ``jax.jit``.  Values (NaN/Inf, label ranges, one-hot rows) can only be
checked on concrete arrays: these checks run outside ``jit`` and are skipped
automatically while tracing (pass ``check=False`` to skip them eagerly too), so
inside a jitted training loop they cost nothing.

A mismatch raises ``ValueError`` or ``TypeError`` naming the argument or layer
(``x``, ``params[1].W``, ...), the expected value or shape and the actual one.
Float data are cast to the params' dtype; complex or bool data are rejected.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp.dense import Dense
from jaxmlp.heads import get_head
from jaxmlp.model import MLP
from jaxmlp.values import host, is_concrete

ONE_HOT_ATOL = 1e-6  # one-hot / probability rows must sum to 1 within this (float32 rounding of soft labels)


def check_model(model):
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected a jaxmlp.MLP, got {type(model).__name__}")


def check_params(model: MLP, params):
    """Structure first, then every leaf's shape and dtype.  Returns the params dtype."""
    if not isinstance(params, (tuple, list)) or len(params) != model.depth:
        got = f"{type(params).__name__} of length {len(params)}" if isinstance(params, (tuple, list)) else type(params).__name__
        raise ValueError(f"params: expected a tuple of {model.depth} Dense layers for sizes {model.sizes}, got {got}")
    dtype = None
    for l, (p, (w_shape, b_shape)) in enumerate(zip(params, model.param_shapes()), start=1):
        if not isinstance(p, Dense):
            raise TypeError(f"params[{l - 1}] (layer {l}): expected jaxmlp.Dense(W, b), got {type(p).__name__}")
        bn_shape = (w_shape[1],) if model.has_bn(l) else None
        leaves = [("W", p.W, w_shape), ("b", p.b, b_shape), ("gamma", p.gamma, bn_shape), ("beta", p.beta, bn_shape)]
        for name, leaf, shape in leaves:
            where = f"params[{l - 1}].{name} (layer {l})"
            if shape is None:
                if leaf is not None:
                    why = "use_bias=False" if name == "b" else "no batch norm on this layer"
                    raise ValueError(f"{where}: expected None ({why}), got shape {jnp.shape(leaf)}")
                continue
            if leaf is None:
                raise ValueError(f"{where}: expected an array of shape {shape}, got None")
            if tuple(jnp.shape(leaf)) != tuple(shape):
                raise ValueError(f"{where}: expected shape {tuple(shape)}, got {tuple(jnp.shape(leaf))}")
            leaf_dtype = jnp.result_type(leaf)
            if not jnp.issubdtype(leaf_dtype, jnp.floating):
                raise TypeError(f"{where}: expected a real floating dtype, got {leaf_dtype}")
            if dtype is None:
                dtype = leaf_dtype
            elif leaf_dtype != dtype:
                raise TypeError(f"{where}: expected dtype {dtype} like the other leaves, got {leaf_dtype}")
    return dtype


def as_array(name, a):
    """``a`` as an array (a jax array is returned as is); anything that is not numeric data raises, naming
    ``name``."""
    if isinstance(a, (jax.Array, jax.core.Tracer)):
        return a
    try:
        arr = np.asarray(a)
    except Exception:  # noqa: BLE001 -- ragged lists and the like
        arr = None
    if arr is None or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        got = type(a).__name__ if arr is None else f"{type(a).__name__} of dtype {arr.dtype}"
        raise TypeError(f"{name}: expected a numeric array, got {got}")
    return arr


def _as_float(name, a, dtype):
    a_dtype = jnp.result_type(a)
    if jnp.issubdtype(a_dtype, jnp.complexfloating) or a_dtype == jnp.bool_:
        raise TypeError(f"{name}: expected a real numeric array, got dtype {a_dtype}")
    return jnp.asarray(a, dtype)


def check_finite(name, a):
    """Raise naming ``name``, the first non-finite value and its index (concrete arrays only)."""
    if is_concrete(a):
        a = host(a)
        bad = ~np.isfinite(a)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name}: expected finite values, got {a[idx]} at index {idx} "
                             f"({int(bad.sum())} non-finite in all)")


def check_x(model: MLP, x, dtype, check=True):
    """x: (m, n_0) with m >= 1, cast to the params dtype."""
    x = as_array("x", x)
    shape = tuple(jnp.shape(x))
    if len(shape) != 2 or shape[1] != model.n_in or shape[0] < 1:
        raise ValueError(f"x: expected shape (m, {model.n_in}) with m >= 1, got {shape}")
    x = _as_float("x", x, dtype)
    if check:
        check_finite("x", x)
    return x


def check_y(model: MLP, y, m, dtype, check=True):
    """Targets as an (m, n_L) array of ``dtype``; integer class labels are one-hot encoded."""
    head = get_head(model.head)
    y = as_array("y", y)
    shape = tuple(jnp.shape(y))
    y_dtype = jnp.result_type(y)
    k = model.n_out
    if head.classes and len(shape) == 1 and jnp.issubdtype(y_dtype, jnp.integer):
        if shape != (m,):
            raise ValueError(f"y: expected class labels of shape ({m},) to match x, got {shape}")
        if check and is_concrete(y):
            yn = host(y)
            bad = (yn < 0) | (yn >= k)
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"y: expected class labels in [0, {k}), got {int(yn[i])} at index {i}")
        return jax.nn.one_hot(y, k, dtype=dtype)
    if shape != (m, k):
        hint = f" or integer labels of shape ({m},)" if head.classes else ""
        raise ValueError(f"y: expected shape ({m}, {k}){hint}, got {shape}")
    y = _as_float("y", y, dtype)
    if check:
        check_finite("y", y)
        if head.classes and is_concrete(y):
            sums = host(y).sum(axis=1)
            bad = np.abs(sums - 1) > ONE_HOT_ATOL
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"y: expected one-hot / probability rows summing to 1, got row {i} summing to {sums[i]}")
    return y


def check_reg(l1, l2):
    """Regularisation strengths: real numbers (or arrays of them), finite and >= 0 where concrete."""
    for name, v in (("l1", l1), ("l2", l2)):
        if not is_concrete(v):
            continue
        a = np.asarray(v) if isinstance(v, (int, float, np.ndarray, np.generic, jax.Array)) else None
        if a is None or a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.number) \
                or np.issubdtype(a.dtype, np.complexfloating):
            raise TypeError(f"{name}: expected a real regularisation strength >= 0, got {v!r:.80}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: expected a finite regularisation strength, got {v!r}")
        if not np.all(a >= 0):
            raise ValueError(f"{name}: expected a regularisation strength >= 0, got {v!r}")


def check_state(model, state):
    if not isinstance(state, (tuple, list)) or len(state) != model.depth:
        raise ValueError(f"state: expected a tuple of {model.depth} entries (jaxmlp.init_state(model)), got {state!r:.80}")
    for l, (s, n) in enumerate(zip(state, model.sizes[1:]), start=1):
        if not model.has_bn(l):
            continue
        if not hasattr(s, "mean") or tuple(jnp.shape(s.mean)) != (n,) or tuple(jnp.shape(s.var)) != (n,):
            raise ValueError(f"state[{l - 1}] (layer {l}): expected BNState(mean, var) of shape ({n},), got {s!r:.80}")


def check_params_finite(params):
    """Every params leaf finite (concrete leaves only), naming the leaf."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        check_finite(f"params{jax.tree_util.keystr(path)}", leaf)


def check_labels(y, n_out):
    """Integer labels in ``[0, n_out)`` (``n_out=None``: only >= 0), for a gradient function whose model is
    not known; concrete arrays only."""
    if jnp.ndim(y) == 1 and jnp.issubdtype(jnp.result_type(y), jnp.integer) and is_concrete(y):
        yn = host(y)
        bad = (yn < 0) | ((yn >= n_out) if n_out is not None else False)
        if bad.any():
            i = int(np.argmax(bad))
            span = f"[0, {n_out})" if n_out is not None else ">= 0"
            raise ValueError(f"y: expected class labels in {span}, got {int(yn[i])} at index {i}")


def check_weights(weights, m, model):
    """Row weights: shape (m,), and no batch norm (its batch statistics would count the padding rows)."""
    if weights is None:
        return
    if tuple(jnp.shape(weights)) != (m,):
        raise ValueError(f"weights: expected one weight per row, shape ({m},), got {tuple(jnp.shape(weights))}")
    if model.batchnorm:
        raise ValueError("weights: batch norm's batch statistics cannot leave rows out; expected weights=None "
                         "for a batchnorm model, got row weights")


def check_all(model, params, x, y=None, l1=0.0, l2=0.0, check=True, state=None, train=True, weights=None):
    """Run every check of a public entry point; returns ``(x, y)`` cast to the params dtype.

    Static checks (types, shapes, dtypes) always run; the value checks (finite params, x and y, label
    range, one-hot rows, regularisation strengths) run on concrete arrays unless ``check=False``.
    """
    check_model(model)
    dtype = check_params(model, params)
    if check:
        check_params_finite(params)
    x = check_x(model, x, dtype, check)
    if model.batchnorm:
        if train and x.shape[0] < 2:
            raise ValueError(f"x: batch norm in train mode needs m >= 2 rows (the variance of one row is 0), "
                             f"got shape {tuple(x.shape)}")
        if state is not None or not train:
            if state is None:
                raise ValueError("state: eval mode of a batchnorm model needs the running statistics")
            check_state(model, state)
    if y is not None:
        y = check_y(model, y, x.shape[0], dtype, check)
    check_weights(weights, x.shape[0], model)
    check_reg(l1, l2)
    return x, y
