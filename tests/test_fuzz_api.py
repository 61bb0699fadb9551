"""A fuzz test of the public API (issue 19): every entry point crossed with every bad value.

Each generated case must end in one of two outcomes:
* a ``ValueError`` / ``TypeError`` (``CheckpointError`` is a ``ValueError``) whose message names the
  argument and says what was expected and what it got;
* an acceptance listed in ``ACCEPTED`` (documented in docs/reliability.md: integer and half-precision features
  are cast to the params' dtype; one row is a valid batch).

Never a silent acceptance of invalid data, never a raw JAX/XLA error, never a file left half-written.
Every (entry point x bad value) pair is a test; hypothesis draws ``JAXMLP_FUZZ_EXAMPLES`` variants of each
(where the bad entry goes, how far out of range; default 2 in CI, 20 in the nightly-style run).
"""
import os
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxmlp
from jaxmlp import checkpoint, optim, population, train
from jaxmlp.cli import main as cli_main

EXAMPLES = int(os.environ.get("JAXMLP_FUZZ_EXAMPLES", "2"))  # variants per (entry point x bad value)
CLS = jaxmlp.MLP((2, 3, 2), "tanh", "softmax_cross_entropy")
REG = jaxmlp.MLP((2, 3, 2), "tanh", "sum_squares")


def base(model):
    """A valid call's arguments: params, x (5, 2), y (labels for the classifier, targets for regression)."""
    params = jaxmlp.init(model, jax.random.key(0), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (5, 2), jnp.float64)
    y = jnp.array([0, 1, 1, 0, 1]) if model is CLS else jax.random.uniform(jax.random.key(2), (5, 2), jnp.float64)
    return {"model": model, "params": params, "x": x, "y": y, "l1": 0.0, "l2": 0.0, "steps": 2,
            "learning_rate": 0.1, "activation": "tanh", "head": model.head, "scheme": "full_batch",
            "init": "xavier", "key": jax.random.key(0), "batch_size": None, "log_every": 1, "optimizer": optim.sgd(0.1),
            "opt_kw": {}, "ckpt": None}




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
    "unknown_init": ("init", lambda a, r: {**a, "init": "orthogonal"}),
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
    "ckpt_other_optimizer": ("path", lambda a, r: {**a, "ckpt": "other_optimizer"}),
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
            checkpoint.save(d, checkpoint.Checkpoint(0, a["params"], (), jax.random.key(0), a["model"]))
        finally:
            left = [p.name for p in pathlib.Path(d).iterdir()]
        assert not [n for n in left if n.endswith(".tmp")], f"half-written files left: {left}"


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
    p = jax.tree.map(lambda l: jnp.stack([l, l]), a["params"])
    return population.train_population(train.manual_grad(a["model"], l1=a["l1"], l2=a["l2"]),
                                       optim.sgd(a["learning_rate"]), p, a["x"], a["y"],
                                       keys=jax.random.split(jax.random.key(0), 2), steps=a["steps"],
                                       scheme=a["scheme"], batch_size=a["batch_size"], log_every=a["log_every"],
                                       progress=False)


# --- entry points: name -> (models, the bad values that apply, call(args)) ------------------------------------------
ENTRIES = {
    "loss": ((CLS, REG), DATA + REGS,
             lambda a: jaxmlp.loss(a["model"], a["params"], a["x"], a["y"], l1=a["l1"], l2=a["l2"])),
    "value_and_grad": ((CLS, REG), DATA + REGS,
                       lambda a: jaxmlp.value_and_grad(a["model"], a["params"], a["x"], a["y"], l1=a["l1"], l2=a["l2"])),
    "lemma1_grad": ((CLS, REG), DATA + REGS,
                    lambda a: jaxmlp.lemma1_grad(a["model"], a["params"], a["x"], a["y"], l1=a["l1"], l2=a["l2"])),
    "predict": ((CLS,), [k for k in DATA if BAD[k][0] != "y"], lambda a: jaxmlp.predict(a["model"], a["params"], a["x"])),
    "loss_with_manual_vjp": ((CLS, REG), DATA + REGS,
                             lambda a: jaxmlp.loss_with_manual_vjp(a["model"], a["params"], a["x"], a["y"], a["l1"], a["l2"])),
    "train.train/manual_grad": ((CLS, REG), DATA + REGS + LOOP,
                                lambda a: train.train(train.manual_grad(a["model"], l1=a["l1"], l2=a["l2"]),
                                                      a["optimizer"], a["params"], a["x"], a["y"], key=a["key"],
                                                      steps=a["steps"], scheme=a["scheme"], batch_size=a["batch_size"],
                                                      log_every=a["log_every"], progress=False)),
    "train.train/own_grad_fn": ((CLS,), ["y_label_too_large", "y_label_negative", "x_nan", "y_wrong_rows", "steps_zero"],
                                lambda a: train.train(lambda p, x, y: jaxmlp.value_and_grad(a["model"], p, x, y, check=False),
                                                      optim.sgd(0.1), a["params"], a["x"], a["y"], key=jax.random.key(0),
                                                      steps=a["steps"], progress=False)),
    "train_population": ((CLS, REG), DATA + ["steps_zero", "unknown_scheme", "learning_rate_negative", "batch_size_zero",
                                             "batch_size_too_large", "log_every_zero"], _population),
    "levenberg_marquardt": ((REG,), DATA, lambda a: jaxmlp.levenberg_marquardt(a["model"], a["params"], a["x"], a["y"],
                                                                               max_iters=2)),
    "residuals": ((REG,), DATA, lambda a: jaxmlp.residuals(a["model"], a["params"], a["x"], a["y"])),
    "residual_jacobian": ((REG,), [k for k in DATA if BAD[k][0] != "y"],
                          lambda a: jaxmlp.residual_jacobian(a["model"], a["params"], a["x"])),
    "gauss_newton_product": ((REG,), DATA, lambda a: jaxmlp.gauss_newton_product(a["model"], a["params"], a["params"],
                                                                                 a["x"], a["y"])),
    "checkpoint.save": ((CLS,), ["params_wrong_shape", "params_nan", "params_int", "params_too_few_layers",
                                 "params_dict", "params_inf", "params_complex", "params_mixed_dtypes",
                                 "params_too_many_layers", "params_bias_wrong_shape", "params_none"], _ckpt_save),
    "checkpoint.load": ((CLS, REG), [k for k in BAD if k.startswith("ckpt_")], _ckpt_load),
    "MLP": ((CLS,), ["unknown_activation", "unknown_head"],
            lambda a: jaxmlp.MLP((2, 3, 2), a["activation"], a["head"])),
    "init": ((CLS,), ["unknown_init", "key_int", "key_wrong_shape"],
             lambda a: jaxmlp.init(a["model"], a["key"], a["init"])),
    **{f"optim.{name}": ((CLS,), LR + bad, lambda a, f=getattr(optim, name): f(a["learning_rate"], **a["opt_kw"]))
       for name, bad in [("sgd", ["momentum_out_of_range", "weight_decay_negative"]),
                         ("momentum", ["momentum_out_of_range"]), ("heavy_ball", ["momentum_out_of_range"]),
                         ("nesterov", ["momentum_out_of_range"]), ("rmsprop", ["decay_out_of_range", "eps_negative"]),
                         ("adam", ["b1_out_of_range", "b2_negative", "eps_negative"]),
                         ("adamw", ["b1_out_of_range", "b2_negative", "eps_negative", "weight_decay_negative"])]},
}
# Documented acceptances (docs/reliability.md): features of another numeric dtype are cast to the params'
# dtype, and one row is a batch.  The label checks apply only where labels exist: a regression model's targets
# are floats, so the classifier's label values do not apply to it (they are not generated for REG).
ACCEPTED = {"x_int", "x_half", "one_row"}
COMBOS = [(e, m.head, b) for e, (models, bads, _) in ENTRIES.items() for m in models for b in bads
          if not (m is REG and b in LABELS_ONLY)]
CLI_BAD = {
    "learning_rate_negative": ["--learning-rate", "-0.5"], "steps_zero": ["--steps", "0"],
    "steps_negative": ["--steps", "-3"], "unknown_activation": ["--activation", "gelu"],
    "unknown_head": ["--head", "hinge"], "unknown_scheme": ["--scheme", "adagrad"],
    "unknown_init": ["--init", "orthogonal"], "l1_negative": ["--l1", "-1"], "l2_nan": ["--l2", "nan"],
    "x_wrong_width": ["--sizes", "3,3,2"], "learning_rate_zero": ["--learning-rate", "0"],
}
COMBOS += [("jaxmlp train (CLI)", "sigmoid_quadratic", b) for b in CLI_BAD]


def test_fuzz_covers_enough():
    """Issue 19's target: >= 500 (entry point x bad value) pairs over >= 15 entry points, every bad value used."""
    entries = {e for e, _, _ in COMBOS}
    assert len(entries) >= 15 and len(COMBOS) >= 500, (len(entries), len(COMBOS))
    assert set(BAD) == {b for _, _, b in COMBOS}, set(BAD) - {b for _, _, b in COMBOS}


def _judge(entry, bad, run):
    try:
        run()
    except (ValueError, TypeError, FileNotFoundError) as e:  # FileNotFoundError: checkpoint.load of no file
        msg = str(e)
        arg = BAD[bad][0]
        assert "expected" in msg and "got" in msg, f"{entry} x {bad}: message lacks expected/got: {msg}"
        names = {"x": ("x",), "y": ("y",), "params": ("params",), "l1": ("l1",), "l2": ("l2",), "steps": ("steps",),
                 "learning_rate": ("learning_rate",), "activation": ("activation",), "head": ("head",),
                 "scheme": ("scheme",), "init": ("scheme", "init")}.get(arg, (arg,))
        if bad.startswith("x_") and "empty" in bad:
            names = names + ("example",)
        assert any(n in msg for n in names), f"{entry} x {bad}: message does not name {names}: {msg}"
        return "error"
    assert bad in ACCEPTED, f"{entry} x {bad}: silently accepted invalid data"
    return "accepted"


@pytest.mark.parametrize("entry, head, bad", COMBOS, ids=["|".join(c) for c in COMBOS])
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1))
def test_every_entry_against_every_bad_value(entry, head, bad, seed):
    rng = np.random.default_rng(seed)
    if entry == "jaxmlp train (CLI)":
        with tempfile.TemporaryDirectory() as d:
            code = cli_main(["train", "--steps", "2", "--out", d] + CLI_BAD[bad])
        assert code == 2, f"CLI x {bad}: exit {code}"
        return
    model = CLS if head == CLS.head else REG
    _, _, call = ENTRIES[entry]
    args = BAD[bad][1](base(model), rng)
    _judge(entry, bad, lambda: call(args))


def test_the_three_reported_cases():
    """Issue 19's reproduction: train and train_population refuse these labels."""
    a = base(CLS)
    for y in ([0, 1, 2, 0, 1], [-1, 0, 0, 0, 0], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]):
        args = {**a, "y": jnp.asarray(y)}
        for run in (ENTRIES["train.train/manual_grad"][2], _population):
            with pytest.raises(ValueError, match="y: expected (class labels in|one-hot)"):
                run(args)


def test_check_false_skips_value_checks():
    a = base(CLS)
    y = jnp.array([0, 1, 1, 0, 1])
    x = a["x"].at[0, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="x: expected finite"):
        jaxmlp.loss(CLS, a["params"], x, y)
    assert not np.isfinite(float(jaxmlp.loss(CLS, a["params"], x, y, check=False)))
    r = train.train(train.manual_grad(CLS), optim.sgd(0.1), a["params"], a["x"], y, key=jax.random.key(0), steps=1,
                    progress=False, check=False)
    assert r.losses.shape == (2,)
