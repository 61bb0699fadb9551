"""The bad-input catalogue: every case gets a clear error naming the argument, expected and actual.

Two tables.  ``CASES`` is crossed with the four model entry points (loss,
value_and_grad, lemma1_grad, predict).  ``CALLS`` covers the rest of the public
API: training, optimizers, Levenberg-Marquardt, checkpoints, the gradient
checker and the model constructors.  docs/reliability.md lists every case id
(``tests/test_docs.py`` checks that).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmlp
import verification
from jaxmlp import checkpoint
from jaxmlp import optim
from jaxmlp import train

MODEL = jaxmlp.MLP((3, 4, 2), "relu", "softmax_cross_entropy")
PARAMS = jaxmlp.init(MODEL, jax.random.key(0), dtype=jnp.float64)
X = jnp.ones((5, 3), jnp.float64)
Y = jnp.array([0, 1, 1, 0, 1])
PUBLIC = {
    "loss": lambda p, x, y: jaxmlp.loss(MODEL, p, x, y),
    "value_and_grad": lambda p, x, y: jaxmlp.value_and_grad(MODEL, p, x, y),
    "lemma1_grad": lambda p, x, y: jaxmlp.lemma1_grad(MODEL, p, x, y),
    "predict": lambda p, x, y: jaxmlp.predict(MODEL, p, x),
}


def _swap(i, **kw):
    layers = list(PARAMS)
    layers[i] = layers[i]._replace(**kw)
    return tuple(layers)


CASES = [
    # (id, params, x, y, error type, message fragments, needs y)
    ("x_columns", PARAMS, jnp.ones((5, 4)), Y, ValueError, ["x:", "(m, 3)", "(5, 4)"], False),
    ("x_rank", PARAMS, jnp.ones(3), Y, ValueError, ["x:", "(3,)"], False),
    ("x_empty", PARAMS, jnp.ones((0, 3)), Y[:0], ValueError, ["x:", "m >= 1", "(0, 3)"], False),
    ("x_nan", PARAMS, X.at[2, 1].set(jnp.nan), Y, ValueError, ["x:", "finite", "(2, 1)"], False),
    ("x_inf", PARAMS, X.at[0, 0].set(jnp.inf), Y, ValueError, ["x:", "finite"], False),
    ("x_complex", PARAMS, X.astype(jnp.complex64), Y, TypeError, ["x:", "complex"], False),
    ("y_rows", PARAMS, X, Y[:4], ValueError, ["y:", "(5,)", "(4,)"], True),
    ("y_shape", PARAMS, X, jnp.ones((5, 3)), ValueError, ["y:", "(5, 2)", "(5, 3)"], True),
    ("y_label_range", PARAMS, X, Y.at[3].set(2), ValueError, ["y:", "[0, 2)", "2", "index 3"], True),
    ("y_label_negative", PARAMS, X, Y.at[1].set(-1), ValueError, ["y:", "-1", "index 1"], True),
    ("y_onehot_sum", PARAMS, X, jnp.full((5, 2), 0.7), ValueError, ["y:", "summing to 1", "1.4"], True),
    ("y_nan", PARAMS, X, jax.nn.one_hot(Y, 2).at[0, 0].set(jnp.nan), ValueError, ["y:", "finite"], True),
    ("params_len", PARAMS[:1], X, Y, ValueError, ["params:", "2 Dense", "length 1"], False),
    ("params_W_shape", _swap(1, W=jnp.ones((2, 4))), X, Y, ValueError, ["params[1].W", "layer 2", "(4, 2)", "(2, 4)"], False),
    ("params_b_shape", _swap(0, b=jnp.ones(3)), X, Y, ValueError, ["params[0].b", "layer 1", "(4,)", "(3,)"], False),
    ("params_int", _swap(0, W=jnp.ones((3, 4), jnp.int32)), X, Y, TypeError, ["params[0].W", "floating", "int32"], False),
    ("params_mixed_dtype", _swap(1, W=jnp.ones((4, 2), jnp.float32)), X, Y, TypeError, ["params[1].W", "float64", "float32"], False),
    ("params_not_dense", ({"W": PARAMS[0].W}, PARAMS[1]), X, Y, TypeError, ["params[0]", "Dense"], False),
]


# Every case against every entry point that takes what it breaks: predict takes no y, so the y cases skip it.
INPUT_CASES = [(case, fn) for case in CASES for fn in sorted(PUBLIC) if not (case[6] and fn == "predict")]


@pytest.mark.parametrize("case, fn", INPUT_CASES, ids=[f"{c[0]}-{fn}" for c, fn in INPUT_CASES])
def test_bad_input(case, fn):
    _, params, x, y, err, fragments, _ = case
    with pytest.raises(err) as info:
        PUBLIC[fn](params, x, y)
    for frag in fragments:
        assert frag in str(info.value), (frag, str(info.value))



LM_MODEL = jaxmlp.MLP((3, 4, 2), "tanh", "mse")
LM_PARAMS = jaxmlp.init(LM_MODEL, jax.random.key(0), dtype=jnp.float64)
GRAD = train.manual_grad(MODEL)
SGD = optim.sgd(0.1)


def _train(**kw):
    args = dict(params=PARAMS, x=X, y=Y, key=jax.random.key(0), steps=10, scheme="full_batch", progress=False)
    args.update(kw)
    opt = args.pop("optimizer", SGD)
    return train.train(GRAD, opt, args.pop("params"), args.pop("x"), args.pop("y"), **args)


def _checkpoint_file(tmp, model=MODEL, params=PARAMS):
    return checkpoint.save(tmp, checkpoint.Checkpoint(3, params, SGD.init(params), jax.random.key(0), model))


def _corrupt(tmp, how):
    path = _checkpoint_file(tmp)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00" * 8 + data[8:],
                      "empty": b""}[how])
    return checkpoint.load(path, MODEL, SGD)


OTHER = jaxmlp.MLP((3, 5, 2), "relu", "softmax_cross_entropy")
CALLS = [
    # (id, call(tmp_path), error type, message fragments)
    ("train_steps_zero", lambda t: _train(steps=0), ValueError, ["steps:", ">= 1", "0"]),
    ("train_steps_float", lambda t: _train(steps=2.5), ValueError, ["steps:", "int", "2.5"]),
    ("train_batch_larger_than_data", lambda t: _train(scheme="minibatch", batch_size=6), ValueError,
     ["batch_size:", "[1, 5]", "6"]),
    ("train_batch_zero", lambda t: _train(scheme="minibatch", batch_size=0), ValueError, ["batch_size:", "0"]),
    ("train_scheme", lambda t: _train(scheme="adagrad"), ValueError, ["scheme:", "full_batch", "'adagrad'"]),
    ("train_empty_batch", lambda t: _train(x=X[:0], y=Y[:0]), ValueError, ["x:", "at least one example", "(0, 3)"]),
    ("train_y_rows", lambda t: _train(y=Y[:3]), ValueError, ["y:", "5 rows", "(3,)"]),
    ("train_x_nan", lambda t: _train(x=X.at[1, 2].set(jnp.nan)), ValueError, ["x:", "finite", "(1, 2)"]),
    ("train_x_inf", lambda t: _train(x=X.at[0, 0].set(-jnp.inf)), ValueError, ["x:", "finite", "-inf"]),
    ("train_optimizer_type", lambda t: _train(optimizer="adam"), TypeError, ["optimizer:", "GradientTransformation", "str"]),
    ("train_log_every", lambda t: _train(log_every=0), ValueError, ["log_every:", ">= 1", "0"]),
    ("train_check_finite", lambda t: _train(check_finite="yes"), TypeError, ["check_finite:", "bool", "'yes'"]),
    ("train_checkpoint_every", lambda t: _train(log_every=5, checkpoint=train.Checkpointer(t, MODEL, every=7)),
     ValueError, ["checkpoint.every", "multiple of log_every=5", "7"]),
    ("sgd_lr_zero", lambda t: optim.sgd(0.0), ValueError, ["learning_rate:", "> 0", "0.0"]),
    ("sgd_lr_negative", lambda t: optim.sgd(-0.1), ValueError, ["learning_rate:", "> 0", "-0.1"]),
    ("sgd_lr_nan", lambda t: optim.sgd(float("nan")), ValueError, ["learning_rate:", "finite", "nan"]),
    ("sgd_weight_decay_negative", lambda t: optim.sgd(0.1, weight_decay=-1e-4), ValueError, ["weight_decay:", ">= 0", "-0.0001"]),
    ("momentum_beta_one", lambda t: optim.momentum(0.1, 1.0), ValueError, ["momentum:", "[0, 1)", "1.0"]),
    ("nesterov_beta_negative", lambda t: optim.nesterov(0.1, -0.5), ValueError, ["momentum:", "[0, 1)", "-0.5"]),
    ("rmsprop_eps_negative", lambda t: optim.rmsprop(0.1, eps=-1e-8), ValueError, ["eps:", ">= 0", "-1e-08"]),
    ("adam_b1_one", lambda t: optim.adam(1e-3, b1=1.0), ValueError, ["b1:", "[0, 1)", "1.0"]),
    ("adam_b2_above_one", lambda t: optim.adam(1e-3, b2=1.5), ValueError, ["b2:", "[0, 1)", "1.5"]),
    ("adamw_lr_negative", lambda t: optim.adamw(-1e-3), ValueError, ["learning_rate:", "> 0", "-0.001"]),
    ("lm_mu0_zero", lambda t: jaxmlp.levenberg_marquardt(LM_MODEL, LM_PARAMS, X, jnp.ones((5, 2)), mu0=0.0),
     ValueError, ["mu0:", "> 0", "0.0"]),
    ("lm_step_mu_negative", lambda t: jaxmlp.lm_step(jnp.ones((4, 3)), jnp.ones(4), -1.0), ValueError,
     ["mu:", "> 0", "-1.0"]),
    ("lm_step_r_shape", lambda t: jaxmlp.lm_step(jnp.ones((4, 3)), jnp.ones(3), 1.0), ValueError,
     ["r:", "(4,)", "(3,)"]),
    ("lm_max_iters", lambda t: jaxmlp.levenberg_marquardt(LM_MODEL, LM_PARAMS, X, jnp.ones((5, 2)), max_iters=0),
     ValueError, ["max_iters:", ">= 1", "0"]),
    ("lm_not_least_squares", lambda t: jaxmlp.levenberg_marquardt(MODEL, PARAMS, X, Y), ValueError,
     ["head", "softmax_cross_entropy"]),
    ("lm_y_shape", lambda t: jaxmlp.levenberg_marquardt(LM_MODEL, LM_PARAMS, X, jnp.ones((5, 3))), ValueError,
     ["y:", "(5, 2)", "(5, 3)"]),
    ("checkpoint_truncated", lambda t: _corrupt(t, "truncated"), checkpoint.CheckpointError, ["corrupt or truncated"]),
    ("checkpoint_garbage", lambda t: _corrupt(t, "garbage"), checkpoint.CheckpointError, ["corrupt or truncated"]),
    ("checkpoint_empty", lambda t: _corrupt(t, "empty"), checkpoint.CheckpointError, ["corrupt or truncated"]),
    ("checkpoint_other_model", lambda t: checkpoint.load(_checkpoint_file(t), OTHER), checkpoint.CheckpointError,
     ["model:", "sizes=(3, 4, 2)", "sizes=(3, 5, 2)"]),
    ("checkpoint_other_optimizer", lambda t: checkpoint.load(_checkpoint_file(t), MODEL, optim.adam(1e-3)), checkpoint.CheckpointError,
     ["opt_state.mu[0].W", "got none", "another optimizer"]),
    ("checkpoint_missing", lambda t: checkpoint.load(t / "nope.safetensors"), FileNotFoundError, ["path:", "nope.safetensors"]),
    ("checkpoint_empty_folder", lambda t: checkpoint.load(t), FileNotFoundError, ["path:", "expected a checkpoint in folder"]),
    ("checkpoint_save_wrong_params", lambda t: checkpoint.save(t, checkpoint.Checkpoint(1, PARAMS, (), jax.random.key(0), OTHER)),
     ValueError, ["params[0].W", "(3, 5)", "(3, 4)"]),
    ("checkpoint_save_negative_step", lambda t: checkpoint.save(t, checkpoint.Checkpoint(-1, PARAMS, (), jax.random.key(0), MODEL)),
     ValueError, ["step:", ">= 0", "-1"]),
    ("checkpoint_save_not_a_key", lambda t: checkpoint.save(t, checkpoint.Checkpoint(1, PARAMS, (), 0, MODEL)),
     TypeError, ["key:", "PRNG key", "int"]),
    ("checkpoint_save_keep_zero", lambda t: checkpoint.save(t, checkpoint.Checkpoint(1, PARAMS, (), jax.random.key(0), MODEL), keep=0),
     ValueError, ["keep:", ">= 1", "0"]),
    ("checker_rtol_negative", lambda t: verification.check_gradients(lambda p: 0.0, lambda p: p, PARAMS, rtol=-1.0),
     ValueError, ["rtol:", ">= 0", "-1.0"]),
    ("checker_not_callable", lambda t: verification.check_gradients(lambda p: 0.0, None, PARAMS), TypeError,
     ["manual_fn:", "callable", "NoneType"]),
    ("init_int_dtype", lambda t: jaxmlp.init(MODEL, jax.random.key(0), dtype=jnp.int32), TypeError,
     ["dtype:", "floating", "int32"]),
    ("init_scheme", lambda t: jaxmlp.init(MODEL, jax.random.key(0), "lecun"), ValueError, ["scheme:", "'lecun'", "xavier"]),
    ("mlp_width_zero", lambda t: jaxmlp.MLP((2, 0, 1)), ValueError, ["sizes[1]", "int >= 1", "0"]),
    ("mlp_activation", lambda t: jaxmlp.MLP((2, 2), "gelu"), ValueError, ["activation:", "'gelu'", "'relu'"]),
    ("mlp_bn_momentum", lambda t: jaxmlp.MLP((2, 3, 2), batchnorm=True, bn_momentum=1.0), ValueError,
     ["bn_momentum:", "[0, 1)", "1.0"]),
    ("mlp_bn_eps", lambda t: jaxmlp.MLP((2, 3, 2), batchnorm=True, bn_eps=-1e-5), ValueError, ["bn_eps:", "> 0"]),
]


@pytest.mark.parametrize("case", CALLS, ids=[c[0] for c in CALLS])
def test_bad_call(case, tmp_path):
    _, call, err, fragments = case
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(err) as info:
        call(tmp_path)
    for frag in fragments:
        assert frag in str(info.value), (frag, str(info.value))
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]
    assert not leftovers, f"half-written files left behind: {leftovers}"
    if case[0].startswith("checkpoint_save"):
        assert sorted(p.name for p in tmp_path.rglob("*")) == before, "a refused save wrote something"


def catalogue_ids():
    return [c[0] for c in CASES] + [c[0] for c in CALLS]


def test_catalogue_ids_are_unique():
    """docs/reliability.md lists the cases by id (tests/test_docs.py), so an id names one case."""
    ids = catalogue_ids()
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="activation: expected one of .*'relu'.*, got unknown name 'gelu'"):
        jaxmlp.MLP((2, 2), "gelu")
    with pytest.raises(ValueError, match="head: expected one of .*'mse'.*, got unknown name 'hinge'"):
        jaxmlp.MLP((2, 2), "relu", "hinge")
    with pytest.raises(ValueError, match="scheme: expected an init scheme in .*, got unknown 'lecun'"):
        jaxmlp.init(MODEL, jax.random.key(0), "lecun")
    with pytest.raises(ValueError, match=r"sizes\[1\]: expected an int >= 1, got 0"):
        jaxmlp.MLP((2, 0, 1))


def test_negative_regularisation():
    with pytest.raises(ValueError, match="l2: expected a regularisation strength >= 0, got -0.1"):
        jaxmlp.loss(MODEL, PARAMS, X, Y, l2=-0.1)


def test_value_checks_are_skipped_inside_jit_and_on_request():
    bad_x = X.at[0, 0].set(jnp.nan)
    v = jax.jit(lambda x: jaxmlp.loss(MODEL, PARAMS, x, Y))(bad_x)  # traced: value checks cannot run
    assert np.isnan(v)
    assert np.isnan(jaxmlp.loss(MODEL, PARAMS, bad_x, Y, check=False))


def test_shape_checks_still_run_inside_jit():
    with pytest.raises(ValueError, match=r"x: expected shape \(m, 3\)"):
        jax.jit(lambda x: jaxmlp.loss(MODEL, PARAMS, x, Y))(jnp.ones((5, 4)))
