"""A fuzz test of the public API (issue 19): every entry point crossed with every bad value, and every entry
point called with good values.

Each generated bad case must end in a ``ValueError`` / ``TypeError`` (``CheckpointError`` is a ``ValueError``)
whose message names the argument and says what was expected and what it got: never a silent acceptance of
invalid data, never a raw JAX/XLA error, never a file left half-written.  Every (entry point x bad value)
pair is a test; hypothesis draws ``JAXMLP_FUZZ_EXAMPLES`` variants of each (where the bad entry goes, how
far out of range; default 2 in CI, 20 in the nightly-style run).  A bad value that draws nothing at random
(``FIXED``) is the same value in every variant, and runs once, without hypothesis.

Each entry point is also called with good values, and must succeed and return what its contract says
(``GOOD_CASES``): the valid call of ``base``, and the documented acceptances of ``ACCEPTED``
(docs/reliability.md: integer and half-precision features are cast to the params' dtype, so the call equals
the call with the features cast; one row is a valid batch).  ``test_fuzz_covers_the_api`` asserts that every
public function is an entry point here or is listed with a reason in ``NOT_FUZZED``, and that every
argument of an entry point gets a bad value or is listed with a reason in ``ARGS_NOT_FUZZED``.
"""
import functools
import inspect
import os
import pathlib
import tempfile
import warnings
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    # hypothesis imports this module to report a failing example; its import warns (mypy_extensions, through
    # libcst), and with warnings as errors a failing case would crash the session instead of being reported.
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401

import jaxmlp
from jaxmlp import checkpoint, optim, population, train
from jaxmlp.cli import main as cli_main

EXAMPLES = int(os.environ.get("JAXMLP_FUZZ_EXAMPLES", "2"))  # variants per (entry point x bad value)
CLS = jaxmlp.MLP((2, 3, 2), "tanh", "softmax_cross_entropy")
REG = jaxmlp.MLP((2, 3, 2), "tanh", "sum_squares")


@functools.cache
def _base(model):
    params = jaxmlp.init(model, jax.random.key(0), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (5, 2), jnp.float64)
    y = jnp.array([0, 1, 1, 0, 1]) if model is CLS else jax.random.uniform(jax.random.key(2), (5, 2), jnp.float64)
    return {"model": model, "params": params, "x": x, "y": y, "l1": 0.0, "l2": 0.0, "steps": 2,
            "learning_rate": 0.1, "activation": "tanh", "head": model.head, "scheme": "full_batch",
            "init": "xavier", "key": jax.random.key(0), "batch_size": None, "log_every": 1, "optimizer": optim.sgd(0.1),
            "opt_kw": {}, "ckpt": None}


def base(model):
    """A valid call's arguments: params, x (5, 2), y (labels for the classifier, targets for regression).
    Built once per model (arrays are immutable); each call gets its own dict."""
    return dict(_base(model))




# --- bad values: (name, argument it breaks, models it applies to, transform(args, rng)) -------------------------
def _nan(a, rng, key, val=np.nan):
    arr = np.array(a[key], np.float64)
    idx = tuple(int(rng.integers(0, s)) for s in arr.shape)
    arr[idx] = val
    return {**a, key: jnp.asarray(arr)}


def _params_leaf(a, rng, f):
    p = list(a["params"])
    layer = int(rng.integers(0, len(p)))
    p[layer] = p[layer]._replace(W=f(p[layer].W))
    return {**a, "params": tuple(p)}


BAD = {
    "x_list_of_str": ("x", lambda a, r: {**a, "x": [["a", "b"]] * 5}),
    "x_rank1": ("x", lambda a, r: {**a, "x": a["x"][:, 0]}),
    "x_rank3": ("x", lambda a, r: {**a, "x": a["x"][None]}),
    "x_wrong_width": ("x", lambda a, r: {**a, "x": jnp.ones((5, int(r.integers(3, 6))))}),
    "x_int": ("x", lambda a, r: {**a, "x": jnp.asarray(np.asarray(a["x"] * 3).astype(np.int32))}),
    "x_bool": ("x", lambda a, r: {**a, "x": a["x"] > 0}),
    "x_complex": ("x", lambda a, r: {**a, "x": a["x"].astype(jnp.complex128)}),
    "x_half": ("x", lambda a, r: {**a, "x": a["x"].astype(jnp.float16)}),
    "x_nan": ("x", lambda a, r: _nan(a, r, "x")),
    "x_inf": ("x", lambda a, r: _nan(a, r, "x", np.inf)),
    "x_empty": ("x", lambda a, r: {**a, "x": a["x"][:0], "y": a["y"][:0]}),
    "one_row": ("x", lambda a, r: {**a, "x": a["x"][:1], "y": a["y"][:1]}),
    "y_label_too_large": ("y", lambda a, r: {**a, "y": a["y"].at[int(r.integers(0, 5))].set(int(r.integers(2, 9)))}),
    "y_label_negative": ("y", lambda a, r: {**a, "y": a["y"].at[int(r.integers(0, 5))].set(-int(r.integers(1, 9)))}),
    "y_onehot_not_normalised": ("y", lambda a, r: {**a, "y": jax.nn.one_hot(a["y"], 2, dtype=jnp.float64).at[
        int(r.integers(0, 5)), 0].add(float(r.uniform(0.1, 2.0)))}),
    "y_wrong_rows": ("y", lambda a, r: {**a, "y": a["y"][:3]}),
    "y_rank3": ("y", lambda a, r: {**a, "y": jnp.zeros((5, 2, 1))}),
    "y_nan": ("y", lambda a, r: _nan({**a, "y": jnp.asarray(a["y"], jnp.float64).reshape(5, -1)
                                      if a["y"].ndim == 2 else jax.nn.one_hot(a["y"], 2, dtype=jnp.float64)}, r, "y")),
    "y_complex": ("y", lambda a, r: {**a, "y": jnp.zeros((5, 2), jnp.complex128)}),
    "y_bool": ("y", lambda a, r: {**a, "y": jnp.zeros((5, 2), bool)}),
    "params_wrong_shape": ("params", lambda a, r: _params_leaf(a, r, lambda w: jnp.ones((w.shape[0] + 1, w.shape[1])))),
    "params_nan": ("params", lambda a, r: _params_leaf(a, r, lambda w: w.at[0, 0].set(jnp.nan))),
    "params_int": ("params", lambda a, r: _params_leaf(a, r, lambda w: w.astype(jnp.int32))),
    "params_too_few_layers": ("params", lambda a, r: {**a, "params": a["params"][:1]}),
    "params_dict": ("params", lambda a, r: {**a, "params": {"W": a["params"][0].W}}),
    "l1_negative": ("l1", lambda a, r: {**a, "l1": -float(r.uniform(1e-3, 1.0))}),
    "l2_nan": ("l2", lambda a, r: {**a, "l2": float("nan")}),
    "steps_zero": ("steps", lambda a, r: {**a, "steps": 0}),
    "steps_negative": ("steps", lambda a, r: {**a, "steps": -int(r.integers(1, 100))}),
    "learning_rate_zero": ("learning_rate", lambda a, r: {**a, "learning_rate": 0.0}),
    "learning_rate_negative": ("learning_rate", lambda a, r: {**a, "learning_rate": -float(r.uniform(1e-3, 1))}),
    "unknown_activation": ("activation", lambda a, r: {**a, "activation": "gelu"}),
    "unknown_head": ("head", lambda a, r: {**a, "head": "hinge"}),
    "unknown_scheme": ("scheme", lambda a, r: {**a, "scheme": "adagrad"}),
    "unknown_init": ("scheme", lambda a, r: {**a, "init": "orthogonal"}),
    # more of the same kinds: wrong type and rank, Inf, params of the wrong dtype or structure, bad strengths
    "x_none": ("x", lambda a, r: {**a, "x": None}),
    "x_scalar": ("x", lambda a, r: {**a, "x": float(r.normal())}),
    "y_inf": ("y", lambda a, r: _nan({**a, "y": jnp.asarray(a["y"], jnp.float64).reshape(5, -1)
                                      if a["y"].ndim == 2 else jax.nn.one_hot(a["y"], 2, dtype=jnp.float64)}, r, "y",
                                     -np.inf if r.integers(0, 2) else np.inf)),
    "y_float_vector": ("y", lambda a, r: {**a, "y": jnp.asarray(r.integers(0, 2, 5), jnp.float64)}),
    "params_inf": ("params", lambda a, r: _params_leaf(a, r, lambda w: w.at[-1, -1].set(jnp.inf))),
    "params_complex": ("params", lambda a, r: _params_leaf(a, r, lambda w: w.astype(jnp.complex128))),
    "params_mixed_dtypes": ("params", lambda a, r: _params_leaf(a, r, lambda w: w.astype(jnp.float32))),
    "params_too_many_layers": ("params", lambda a, r: {**a, "params": a["params"] + a["params"][-1:]}),
    "params_bias_wrong_shape": ("params", lambda a, r: {**a, "params": tuple(
        l._replace(b=jnp.ones(int(r.integers(4, 9)))) for l in a["params"])}),
    "params_none": ("params", lambda a, r: {**a, "params": None}),
    "l2_str": ("l2", lambda a, r: {**a, "l2": "strong"}),
    "l1_inf": ("l1", lambda a, r: {**a, "l1": float("inf")}),
    "l2_negative": ("l2", lambda a, r: {**a, "l2": -float(r.uniform(1e-3, 1.0))}),
    "key_int": ("key", lambda a, r: {**a, "key": int(r.integers(0, 100))}),
    "key_wrong_shape": ("key", lambda a, r: {**a, "key": jax.random.split(jax.random.key(0), int(r.integers(2, 5)))}),
    "batch_size_zero": ("batch_size", lambda a, r: {**a, "scheme": "minibatch", "batch_size": 0}),
    "batch_size_too_large": ("batch_size", lambda a, r: {**a, "scheme": "minibatch",
                                                         "batch_size": int(r.integers(6, 100))}),
    "log_every_zero": ("log_every", lambda a, r: {**a, "log_every": 0}),
    "optimizer_not_optax": ("optimizer", lambda a, r: {**a, "optimizer": "adam"}),
    # optimizer hyperparameters
    "learning_rate_nan": ("learning_rate", lambda a, r: {**a, "learning_rate": float("nan")}),
    "learning_rate_str": ("learning_rate", lambda a, r: {**a, "learning_rate": "fast"}),
    "learning_rate_schedule_negative": ("learning_rate", lambda a, r: {**a, "learning_rate": lambda c: -0.1}),
    "b1_out_of_range": ("b1", lambda a, r: {**a, "opt_kw": {"b1": 1.0 + float(r.uniform(0, 1))}}),
    "b2_negative": ("b2", lambda a, r: {**a, "opt_kw": {"b2": -float(r.uniform(1e-3, 1))}}),
    "eps_negative": ("eps", lambda a, r: {**a, "opt_kw": {"eps": -float(r.uniform(1e-9, 1))}}),
    "weight_decay_negative": ("weight_decay", lambda a, r: {**a, "opt_kw": {"weight_decay": -float(r.uniform(1e-3, 1))}}),
    "decay_out_of_range": ("decay", lambda a, r: {**a, "opt_kw": {"decay": 1.0 + float(r.uniform(0, 1))}}),
    "momentum_out_of_range": ("momentum", lambda a, r: {**a, "opt_kw": {"momentum": 1.0 + float(r.uniform(0, 1))}}),
    # checkpoint files and what they are read against
    "ckpt_missing": ("path", lambda a, r: {**a, "ckpt": "missing"}),
    "ckpt_garbage": ("path", lambda a, r: {**a, "ckpt": "garbage"}),
    "ckpt_truncated": ("path", lambda a, r: {**a, "ckpt": "truncated"}),
    "ckpt_params_nan": ("params", lambda a, r: {**a, "ckpt": "params_nan"}),
    "ckpt_other_model": ("model", lambda a, r: {**a, "ckpt": "other_model"}),
    "ckpt_other_optimizer": ("optimizer", lambda a, r: {**a, "ckpt": "other_optimizer"}),
}
DATA = [k for k, (arg, _) in BAD.items() if arg in ("x", "y", "params") and not k.startswith("ckpt_")]
LR = ["learning_rate_zero", "learning_rate_negative", "learning_rate_nan", "learning_rate_str",
      "learning_rate_schedule_negative"]
REGS = ["l1_negative", "l1_inf", "l2_negative", "l2_nan", "l2_str"]
LOOP = ["steps_zero", "steps_negative", "unknown_scheme", "key_int", "key_wrong_shape", "batch_size_zero",
        "batch_size_too_large", "log_every_zero", "optimizer_not_optax"]
LABELS_ONLY = ("y_label_too_large", "y_label_negative", "y_onehot_not_normalised")


def _ckpt_save(a):
    with tempfile.TemporaryDirectory() as d:
        try:
            path = checkpoint.save(d, checkpoint.Checkpoint(0, a["params"], (), jax.random.key(0), a["model"]))
        finally:
            left = [p.name for p in pathlib.Path(d).iterdir()]
        assert not [n for n in left if n.endswith(".tmp")], f"half-written files left: {left}"
        return checkpoint.load(path, a["model"])  # what was written, read back


def _ckpt_load(a):
    """Write a valid checkpoint, spoil it as ``a["ckpt"]`` says, read it back."""
    with tempfile.TemporaryDirectory() as d:
        params = a["params"]
        if a["ckpt"] == "params_nan":
            params = _params_leaf(a, np.random.default_rng(0), lambda w: w.at[0, 0].set(jnp.nan))["params"]
        path = checkpoint.save(d, checkpoint.Checkpoint(0, params, (), jax.random.key(0), a["model"]), check=False)
        if a["ckpt"] == "missing":
            path = pathlib.Path(d) / "nope.safetensors"
        elif a["ckpt"] in ("garbage", "truncated"):
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2] if a["ckpt"] == "truncated" else b"\x00not a checkpoint" * 9)
        model = jaxmlp.MLP((2, 4, 2), "tanh", a["model"].head) if a["ckpt"] == "other_model" else a["model"]
        optimizer = optim.adam(1e-3) if a["ckpt"] == "other_optimizer" else None
        return checkpoint.load(path, model, optimizer)


def _population(a):
    """Two members; the optimizer is sgd at ``a["learning_rate"]``, or ``a["optimizer"]`` when that is no optimizer."""
    optimizer = optim.sgd(a["learning_rate"]) if isinstance(a["optimizer"], optax.GradientTransformation) else a["optimizer"]
    p = jax.tree.map(lambda l: jnp.stack([l, l]), a["params"])
    return population.train_population(train.manual_grad(a["model"], l1=a["l1"], l2=a["l2"]),
                                       optimizer, p, a["x"], a["y"],
                                       keys=jax.random.split(jax.random.key(0), 2), steps=a["steps"],
                                       scheme=a["scheme"], batch_size=a["batch_size"], log_every=a["log_every"],
                                       progress=False)


def _cli(a):
    """``jaxmlp train`` (a few steps); the bad values of the CLI are flags (``CLI_BAD``)."""
    with tempfile.TemporaryDirectory() as d:
        code = cli_main(["train", "--steps", "2", "--sizes", "2,2", "--out", d] + a.get("cli", []))
        files = sorted(p.name for p in pathlib.Path(d).iterdir())
    return code, files


# --- what a successful call returns: expect(result, args) ------------------------------------------------------------
def _leaves_like(tree, like, dtype=jnp.float64, lead=()):
    """``tree`` has the structure of ``like``, each leaf its shape (after ``lead``), the dtype, finite values."""
    assert jax.tree.structure(tree) == jax.tree.structure(like), (jax.tree.structure(tree), jax.tree.structure(like))
    for t, l in zip(jax.tree.leaves(tree), jax.tree.leaves(like)):
        assert t.shape == lead + l.shape and t.dtype == dtype, (t.shape, t.dtype, lead + l.shape, dtype)
        assert np.all(np.isfinite(t)), t


def _finite(v, shape, dtype=jnp.float64):
    v = jnp.asarray(v)
    assert v.shape == shape and v.dtype == dtype, (v.shape, v.dtype, shape, dtype)
    assert np.all(np.isfinite(v)), v


def _rows(a):
    return a["x"].shape[0]


def _outputs(a):
    return a["model"].sizes[-1]


def _n_params(a):
    return sum(l.size for l in jax.tree.leaves(a["params"]))


def _expect_loss(r, a):
    _finite(r, ())


def _expect_value_and_grad(r, a):
    value, grads = r
    _finite(value, ())
    _leaves_like(grads, a["params"])


def _expect_grads(r, a):
    _leaves_like(r, a["params"])


def _expect_value_and_input_grads(r, a):
    _finite(r.value, ())
    _leaves_like(r.grads, a["params"])
    _finite(r.input_grad, a["x"].shape)


def _expect_predict(r, a):
    _finite(r, (_rows(a), _outputs(a)))
    if a["model"].head == "softmax_cross_entropy":
        np.testing.assert_allclose(np.sum(r, axis=1), 1.0, rtol=1e-12)


def _expect_train(r, a):
    n = a["steps"] // a["log_every"] + 1  # the loss before the first step and every log_every steps
    np.testing.assert_array_equal(r.steps, np.arange(n) * a["log_every"])
    _finite(r.losses, (n,))
    _leaves_like(r.params, a["params"])


def _expect_population(r, a):
    n = a["steps"] // a["log_every"] + 1
    _finite(r.losses, (2, n))
    _leaves_like(r.params, a["params"], lead=(2,))
    np.testing.assert_array_equal(r.non_finite_step, [-1, -1])


def _expect_lm(r, a):
    _leaves_like(r.params, a["params"])
    _finite(r.cost, (3,))  # the cost before the first iteration and after each of max_iters=2
    assert r.cost[-1] <= r.cost[0], r.cost


def _expect_residuals(r, a):
    _finite(r, (_rows(a) * _outputs(a),))


def _expect_jacobian(r, a):
    _finite(r, (_rows(a) * _outputs(a), _n_params(a)))


def _expect_checkpoint(r, a):
    assert r.model == a["model"] and r.step == 0, (r.model, r.step)
    _same(r.params, a["params"])


def _expect_mlp(r, a):
    assert isinstance(r, jaxmlp.MLP) and (r.sizes, r.activation, r.head) == ((2, 3, 2), a["activation"], a["head"]), r


def _expect_init(r, a):
    _leaves_like(r, a["params"], dtype=jnp.float32)  # init's default dtype


def _expect_optimizer(r, a):
    """An optax transformation whose first update of these params, along their own gradient, goes downhill."""
    assert isinstance(r, optax.GradientTransformation), type(r)
    grads = a["params"]
    updates, _ = r.update(grads, r.init(a["params"]), a["params"])
    _leaves_like(updates, a["params"])
    assert sum(float(jnp.vdot(u, g)) for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads))) < 0


def _expect_cli(r, a):
    code, files = r
    assert code == 0 and "metrics.json" in files, r


def _same(r, s):
    """Two results are the same: structure, dtypes, shapes, values (to rounding)."""
    assert jax.tree.structure(r) == jax.tree.structure(s), (jax.tree.structure(r), jax.tree.structure(s))
    for p, q in zip(jax.tree.leaves(r), jax.tree.leaves(s)):
        p, q = np.asarray(p), np.asarray(q)
        assert p.dtype == q.dtype and p.shape == q.shape, (p.dtype, p.shape, q.dtype, q.shape)
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=0)


# --- entry points -----------------------------------------------------------------------------------------------------
class Entry(NamedTuple):
    models: tuple  # the models it is called with
    values: list  # the BAD values that apply (those in ACCEPTED are good values)
    call: Callable  # call(args) -> result
    expect: Callable  # expect(result, args): what a successful call returns
    targets: tuple = ()  # the public functions the fuzzed arguments reach
    alias: tuple = ()  # (BAD argument, the target's parameter that carries it)


def _model_fn(fn, takes_y=True, **kw):
    if takes_y:
        return lambda a: fn(a["model"], a["params"], a["x"], a["y"], l1=a["l1"], l2=a["l2"], **kw)
    return lambda a: fn(a["model"], a["params"], a["x"], **kw)


# Documented acceptances (docs/reliability.md): features of another numeric dtype are cast to the params'
# dtype, and one row is a batch.  CAST: the acceptances that equal the call with the features cast.
ACCEPTED = {"x_int", "x_half", "one_row"}
CAST = {"x_int", "x_half"}
# The bad values that draw nothing from the random generator: the same value every time, so run once, not
# through hypothesis (the tests assert that this list is right).
FIXED = {"x_list_of_str", "x_rank1", "x_rank3", "x_int", "x_bool", "x_complex", "x_half", "x_empty", "one_row",
         "y_wrong_rows", "y_rank3", "y_complex", "y_bool", "params_too_few_layers", "params_dict", "params_none",
         "params_too_many_layers", "l2_nan", "l2_str", "l1_inf", "steps_zero", "learning_rate_zero",
         "learning_rate_nan", "learning_rate_str", "learning_rate_schedule_negative", "unknown_activation",
         "unknown_head", "unknown_scheme", "unknown_init", "x_none", "batch_size_zero", "log_every_zero",
         "optimizer_not_optax", "ckpt_missing", "ckpt_garbage", "ckpt_truncated", "ckpt_params_nan", "ckpt_other_model",
         "ckpt_other_optimizer"}

ENTRIES = {
    "loss": Entry((CLS, REG), DATA + REGS, _model_fn(jaxmlp.loss), _expect_loss, (jaxmlp.loss,)),
    "value_and_grad": Entry((CLS, REG), DATA + REGS, _model_fn(jaxmlp.value_and_grad), _expect_value_and_grad,
                            (jaxmlp.value_and_grad,)),
    "value_and_input_grads": Entry((CLS, REG), DATA + REGS, _model_fn(jaxmlp.value_and_input_grads),
                                   _expect_value_and_input_grads, (jaxmlp.value_and_input_grads,)),
    "lemma1_grad": Entry((CLS, REG), DATA + REGS, _model_fn(jaxmlp.lemma1_grad), _expect_grads,
                         (jaxmlp.lemma1_grad,)),
    "predict": Entry((CLS,), [k for k in DATA if BAD[k][0] != "y"], _model_fn(jaxmlp.predict, False), _expect_predict,
                     (jaxmlp.predict,)),
    "loss_with_manual_vjp": Entry((CLS, REG), DATA + REGS, lambda a: jaxmlp.loss_with_manual_vjp(
        a["model"], a["params"], a["x"], a["y"], a["l1"], a["l2"]), _expect_loss, (jaxmlp.loss_with_manual_vjp,)),
    "train.train/manual_grad": Entry(
        (CLS, REG), DATA + REGS + LOOP,
        lambda a: train.train(train.manual_grad(a["model"], l1=a["l1"], l2=a["l2"]), a["optimizer"], a["params"],
                              a["x"], a["y"], key=a["key"], steps=a["steps"], scheme=a["scheme"],
                              batch_size=a["batch_size"], log_every=a["log_every"], progress=False),
        _expect_train, (train.train, train.manual_grad)),
    "train.train/own_grad_fn": Entry(
        (CLS,), ["y_label_too_large", "y_label_negative", "x_nan", "y_wrong_rows", "steps_zero", *sorted(ACCEPTED)],
        lambda a: train.train(lambda p, x, y: jaxmlp.value_and_grad(a["model"], p, x, y, check=False),
                              optim.sgd(0.1), a["params"], a["x"], a["y"], key=jax.random.key(0), steps=a["steps"],
                              log_every=a["log_every"], progress=False),
        _expect_train, (train.train,)),
    "train_population": Entry((CLS, REG), DATA + ["steps_zero", "unknown_scheme", "learning_rate_negative",
                                                  "batch_size_zero", "batch_size_too_large", "log_every_zero",
                                                  "optimizer_not_optax"],
                              _population, _expect_population, (population.train_population, optim.sgd)),
    "levenberg_marquardt": Entry((REG,), DATA, lambda a: jaxmlp.levenberg_marquardt(
        a["model"], a["params"], a["x"], a["y"], max_iters=2), _expect_lm, (jaxmlp.levenberg_marquardt,)),
    "residuals": Entry((REG,), DATA, lambda a: jaxmlp.residuals(a["model"], a["params"], a["x"], a["y"]),
                       _expect_residuals, (jaxmlp.residuals,)),
    "residual_jacobian": Entry((REG,), [k for k in DATA if BAD[k][0] != "y"], _model_fn(jaxmlp.residual_jacobian, False),
                               _expect_jacobian, (jaxmlp.residual_jacobian,)),
    "gauss_newton_product": Entry((REG,), DATA, lambda a: jaxmlp.gauss_newton_product(
        a["model"], a["params"], a["params"], a["x"], a["y"]), _expect_grads,
        (jaxmlp.gauss_newton_product,)),
    "checkpoint.save": Entry((CLS,), [k for k in DATA if k.startswith("params_")], _ckpt_save, _expect_checkpoint,
                             (checkpoint.save,), (("params", "ckpt"),)),
    "checkpoint.load": Entry((CLS, REG), [k for k in BAD if k.startswith("ckpt_")], _ckpt_load, _expect_checkpoint,
                             (checkpoint.load,), (("params", "path"),)),
    "MLP": Entry((CLS,), ["unknown_activation", "unknown_head"],
                 lambda a: jaxmlp.MLP((2, 3, 2), a["activation"], a["head"]), _expect_mlp, (jaxmlp.MLP,)),
    "init": Entry((CLS,), ["unknown_init", "key_int", "key_wrong_shape"],
                  lambda a: jaxmlp.init(a["model"], a["key"], a["init"]), _expect_init, (jaxmlp.init,)),
    **{f"optim.{name}": Entry((CLS,), LR + bad, lambda a, f=getattr(optim, name): f(a["learning_rate"], **a["opt_kw"]),
                              _expect_optimizer, (getattr(optim, name),))
       for name, bad in [("sgd", ["momentum_out_of_range", "weight_decay_negative"]),
                         ("momentum", ["momentum_out_of_range"]), ("heavy_ball", ["momentum_out_of_range"]),
                         ("nesterov", ["momentum_out_of_range"]), ("rmsprop", ["decay_out_of_range", "eps_negative"]),
                         ("adam", ["b1_out_of_range", "b2_negative", "eps_negative"]),
                         ("adamw", ["b1_out_of_range", "b2_negative", "eps_negative", "weight_decay_negative"])]},
}
CLI_BAD = {
    "learning_rate_negative": ["--learning-rate", "-0.5"], "steps_zero": ["--steps", "0"],
    "steps_negative": ["--steps", "-3"], "unknown_activation": ["--activation", "gelu"],
    "unknown_head": ["--head", "hinge"], "unknown_scheme": ["--scheme", "adagrad"],
    "unknown_init": ["--init", "orthogonal"], "l1_negative": ["--l1", "-1"], "l2_nan": ["--l2", "nan"],
    "x_wrong_width": ["--sizes", "3,3,2"], "learning_rate_zero": ["--learning-rate", "0"],
}
CLI = "jaxmlp train (CLI)"
ENTRIES[CLI] = Entry((jaxmlp.MLP((2, 2), "sigmoid", "sigmoid_quadratic"),), list(CLI_BAD), _cli, _expect_cli)

# The label checks apply only where labels exist: a regression model's targets are floats, so the
# classifier's label values do not apply to it (they are not generated for REG).
COMBOS = [(e, m.head, b) for e, ent in ENTRIES.items() for m in ent.models for b in ent.values
          if not (m is REG and b in LABELS_ONLY)]
BAD_CASES = [c for c in COMBOS if c[2] not in ACCEPTED]
GOOD_CASES = [(e, m.head, "valid") for e, ent in ENTRIES.items() for m in ent.models] + [
    c for c in COMBOS if c[2] in ACCEPTED]

# Public functions that are no entry point here, and why.
NOT_FUZZED = {
    "jaxmlp.value_grad_and_state": "batch-norm models only; tests/test_batchnorm.py",
    "jaxmlp.forward": "building block without argument checks (docs/reliability.md lists the checked entries)",
    "jaxmlp.backward": "building block without argument checks",
    "jaxmlp.dense_forward": "building block without argument checks",
    "jaxmlp.dense_backward": "building block without argument checks",
    "jaxmlp.bn_forward": "building block without argument checks",
    "jaxmlp.bn_backward": "building block without argument checks",
    "jaxmlp.batch_stats_update": "building block without argument checks",
    "jaxmlp.penalty": "building block; its strengths are fuzzed through every model entry (l1, l2)",
    "jaxmlp.penalty_grad": "building block; its strengths are fuzzed through every model entry (l1, l2)",
    "jaxmlp.get_activation": "name lookup; unknown names are fuzzed through MLP",
    "jaxmlp.get_head": "name lookup; unknown names are fuzzed through MLP",
    "jaxmlp.init_state": "batch-norm state from a model (built valid by MLP); tests/test_batchnorm.py",
    "jaxmlp.lm_step": "a linear-algebra step on J and r; tests/test_errors.py lm_step_*",
    "jaxmlp.optim.weights_only": "a params mask for adamw; tests/test_optim.py",
    "jaxmlp.train.autodiff_grad": "the arguments of manual_grad (fuzzed), for the reference gradient",
    "jaxmlp.train.resume_point": "checkpoint resumption; tests/test_checkpoint.py",
    "jaxmlp.checkpoint.path_for": "a file name from a folder and a step",
    "jaxmlp.checkpoint.all_checkpoints": "lists a folder",
    "jaxmlp.checkpoint.latest": "lists a folder",
    "jaxmlp.population.population_size": "the leading axis of the params",
}
# Arguments of the entry points' targets that get no bad value here, and why.
ARGS_NOT_FUZZED = {
    "model": "built by MLP, whose arguments are fuzzed; checkpoint.load's is fuzzed (ckpt_other_model)",
    "check": "the switch that skips value checks: test_check_false_skips_value_checks",
    "progress": "display only", "state": "batch-norm state: tests/test_batchnorm.py",
    "train": "batch-norm mode switch: tests/test_batchnorm.py",
    "weights": "padding weights of sharded data: tests/test_multiprocess.py",
    "rows": "padding of sharded data: tests/test_multiprocess.py",
    "grad_fn": "a callable of the user's: train.train/own_grad_fn calls train with one",
    "keys": "one key per member, split from a key", "hyperparams": "per-member optimizer values: tests/test_population.py",
    "chunk_steps": "a loop-length tuning knob", "opt_state": "resumption: tests/test_checkpoint.py",
    "start_step": "resumption: tests/test_checkpoint.py",
    "checkpoint": "a Checkpointer: tests/test_errors.py train_checkpoint_every",
    "check_finite": "tests/test_errors.py train_check_finite",
    "max_iters": "tests/test_errors.py lm_max_iters", "mu0": "tests/test_errors.py lm_mu0_zero",
    "damping": "a choice among two update rules", "form": "a choice among linear solves",
    "cost_tol": "a stopping tolerance", "grad_tol": "a stopping tolerance", "mu_max": "a stopping bound",
    "v": "a direction with the params' structure", "directory": "any folder", "keep": "tests/test_errors.py",
    "sizes": "tests/test_errors.py mlp_width_zero", "use_bias": "a switch", "batchnorm": "a switch",
    "bn_eps": "tests/test_errors.py mlp_bn_eps", "bn_momentum": "tests/test_errors.py mlp_bn_momentum",
    "bn_unbiased": "a switch", "dtype": "tests/test_errors.py init_int_dtype", "nesterov": "a switch",
    "bias_correction": "a switch", "eps_in_sqrt": "a switch", "mask": "a params mask: tests/test_optim.py",
}


def _public_functions():
    """Qualified name -> function, for the public functions of jaxmlp and its public submodules."""
    found = {}
    for mod in (jaxmlp, optim, train, checkpoint, population):
        names = getattr(mod, "__all__", None)
        if names is None:  # no explicit list: what the module defines under a public name
            names = [n for n, o in vars(mod).items() if not n.startswith("_")
                     and getattr(o, "__module__", None) == mod.__name__]
        for n in names:
            obj = getattr(mod, n)
            if inspect.isfunction(obj):
                found[f"{mod.__name__}.{n}"] = obj
    return found


def test_fuzz_covers_the_api():
    """Every public function is an entry point or listed in NOT_FUZZED; every entry point gets a bad and a good
    value; every argument of an entry point's targets gets a bad value or is listed in ARGS_NOT_FUZZED; every
    bad value names an argument its entry point has; the documented acceptances reach every entry taking x."""
    targets = {t for ent in ENTRIES.values() for t in ent.targets}
    missing = [n for n, f in _public_functions().items() if f not in targets and n not in NOT_FUZZED]
    assert not missing, f"public functions neither fuzzed nor listed in NOT_FUZZED: {missing}"
    assert jaxmlp.MLP in targets  # the one public class that checks arguments

    for e in ENTRIES:
        assert any(c[0] == e for c in BAD_CASES), f"{e}: no bad value"
        assert any(c[0] == e for c in GOOD_CASES), f"{e}: no good value"
    assert set(BAD) == {b for _, _, b in COMBOS}, f"bad values used nowhere: {set(BAD) - {b for _, _, b in COMBOS}}"
    assert ACCEPTED <= set(BAD) and FIXED <= set(BAD), (ACCEPTED - set(BAD), FIXED - set(BAD))

    hits = {}  # target -> its arguments that get a bad value, over every entry that reaches it
    for e, ent in ENTRIES.items():
        if not ent.targets:  # the CLI: its bad values are flags (CLI_BAD)
            continue
        params = {p for t in ent.targets for p in inspect.signature(t).parameters}
        hit = {dict(ent.alias).get(BAD[b][0], BAD[b][0]) for b in ent.values if b not in ACCEPTED}
        assert hit <= params, f"{e}: bad values for arguments it does not take: {hit - params}"
        for t in ent.targets:
            hits.setdefault(t, set()).update(hit & set(inspect.signature(t).parameters))
        if "x" in params:
            assert ACCEPTED <= set(ent.values), f"{e}: takes x but is not called with {ACCEPTED - set(ent.values)}"
    for t, hit in hits.items():
        unfuzzed = set(inspect.signature(t).parameters) - hit - set(ARGS_NOT_FUZZED)
        assert not unfuzzed, f"{t.__qualname__}: arguments with no bad value nor a line in ARGS_NOT_FUZZED: {unfuzzed}"


# --- the tests ----------------------------------------------------------------------------------------------------------
def _judge(entry, bad, run):
    """The call must raise a ValueError/TypeError that names the argument and says what was expected and got."""
    try:
        run()
    except (ValueError, TypeError, FileNotFoundError) as e:  # FileNotFoundError: checkpoint.load of no file
        msg = str(e)
        assert "expected" in msg and "got" in msg, f"{entry} x {bad}: message lacks expected/got: {msg}"
        names = (BAD[bad][0],) + (("example",) if bad == "x_empty" else ())
        assert any(n in msg for n in names), f"{entry} x {bad}: message does not name {names}: {msg}"
        return
    raise AssertionError(f"{entry} x {bad}: silently accepted invalid data")


class _Draws:
    """A numpy Generator that notes whether a bad value drew from it."""

    def __init__(self, seed):
        self._rng, self.used = np.random.default_rng(seed), False

    def __getattr__(self, name):
        self.used = True
        return getattr(self._rng, name)


def _model(entry, head):
    return next(m for m in ENTRIES[entry].models if m.head == head)


GOOD_GROUPS = sorted({(e, h) for e, h, _ in GOOD_CASES}, key=[(e, h) for e, h, _ in GOOD_CASES].index)


@pytest.mark.parametrize("entry, head", GOOD_GROUPS, ids=["|".join(g) for g in GOOD_GROUPS])
def test_every_entry_accepts_good_values(entry, head):
    """A valid call, and the documented acceptances, succeed and return what the entry point's contract says.
    One test per entry point and model, so that its good values share one process's compiled programs; before
    the bad values, so that the slow tests are spread over the workers first."""
    ent = ENTRIES[entry]
    failed = []
    for good in [g for e, h, g in GOOD_CASES if (e, h) == (entry, head)]:
        a = base(_model(entry, head))
        if good != "valid":
            a = BAD[good][1](a, _Draws(0))
        try:
            result = ent.call(a)
            ent.expect(result, a)
            if good in CAST:  # the features are cast to the params' dtype: the call with them cast by hand
                _same(result, ent.call({**a, "x": a["x"].astype(jnp.float64)}))
        except Exception as e:  # noqa: BLE001 -- every good value is tried, then all failures are reported
            failed.append(f"{good}: {type(e).__name__}: {e}")
    assert not failed, f"{entry} x {head}: good values failed:\n" + "\n".join(failed)


def _against_bad_value(entry, head, bad, seed):
    if entry == CLI:
        code, _ = _cli({"cli": CLI_BAD[bad]})
        assert code == 2, f"CLI x {bad}: exit {code}"
        return
    rng = _Draws(seed)
    args = BAD[bad][1](base(_model(entry, head)), rng)
    assert rng.used == (bad not in FIXED), f"{bad}: FIXED says it draws {'nothing' if bad in FIXED else 'values'}"
    _judge(entry, bad, lambda: ENTRIES[entry].call(args))


DRAWN_CASES = [c for c in BAD_CASES if c[0] != CLI and c[2] not in FIXED]
FIXED_CASES = [c for c in BAD_CASES if c[0] == CLI or c[2] in FIXED]


@pytest.mark.parametrize("entry, head, bad", DRAWN_CASES, ids=["|".join(c) for c in DRAWN_CASES])
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1))
def test_every_entry_against_every_bad_value(entry, head, bad, seed):
    """The bad values that draw where the bad entry goes or how far out of range it is: hypothesis draws."""
    _against_bad_value(entry, head, bad, seed)


@pytest.mark.parametrize("entry, head, bad", FIXED_CASES, ids=["|".join(c) for c in FIXED_CASES])
def test_every_entry_against_every_fixed_bad_value(entry, head, bad):
    """The bad values that draw nothing (and the CLI's flags): one value each, run once."""
    _against_bad_value(entry, head, bad, 0)


def test_the_three_reported_cases():
    """Issue 19's reproduction: train and train_population refuse these labels."""
    a = base(CLS)
    for y in ([0, 1, 2, 0, 1], [-1, 0, 0, 0, 0], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]):
        args = {**a, "y": jnp.asarray(y)}
        for run in (ENTRIES["train.train/manual_grad"].call, _population):
            with pytest.raises(ValueError, match="y: expected (class labels in|one-hot)"):
                run(args)


def test_check_false_skips_value_checks():
    a = base(CLS)
    y = jnp.array([0, 1, 1, 0, 1])
    x = a["x"].at[0, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="x: expected finite"):
        jaxmlp.loss(CLS, a["params"], x, y)
    assert not np.isfinite(float(jaxmlp.loss(CLS, a["params"], x, y, check=False)))
    r = train.train(train.manual_grad(CLS), a["optimizer"], a["params"], a["x"], y, key=a["key"], steps=a["steps"],
                    log_every=a["log_every"], progress=False, check=False)  # the good train case's program
    _expect_train(r, a)
