"""Bad input at the public API gets a clear error naming the argument, expected and actual."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmlp

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
    ("y_onehot_sum", PARAMS, X, jnp.full((5, 2), 0.7), ValueError, ["y:", "sum to 1", "1.4"], True),
    ("y_nan", PARAMS, X, jax.nn.one_hot(Y, 2).at[0, 0].set(jnp.nan), ValueError, ["y:", "finite"], True),
    ("params_len", PARAMS[:1], X, Y, ValueError, ["params:", "2 Dense", "length 1"], False),
    ("params_W_shape", _swap(1, W=jnp.ones((2, 4))), X, Y, ValueError, ["params[1].W", "layer 2", "(4, 2)", "(2, 4)"], False),
    ("params_b_shape", _swap(0, b=jnp.ones(3)), X, Y, ValueError, ["params[0].b", "layer 1", "(4,)", "(3,)"], False),
    ("params_int", _swap(0, W=jnp.ones((3, 4), jnp.int32)), X, Y, TypeError, ["params[0].W", "floating", "int32"], False),
    ("params_mixed_dtype", _swap(1, W=jnp.ones((4, 2), jnp.float32)), X, Y, TypeError, ["params[1].W", "float64", "float32"], False),
    ("params_not_dense", ({"W": PARAMS[0].W}, PARAMS[1]), X, Y, TypeError, ["params[0]", "Dense"], False),
]


@pytest.mark.parametrize("fn", sorted(PUBLIC))
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(fn, case):
    _, params, x, y, err, fragments, needs_y = case
    if needs_y and fn == "predict":
        pytest.skip("predict takes no y")
    with pytest.raises(err) as info:
        PUBLIC[fn](params, x, y)
    for frag in fragments:
        assert frag in str(info.value), (frag, str(info.value))


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="activation: unknown name 'gelu'.*'relu'"):
        jaxmlp.MLP((2, 2), "gelu")
    with pytest.raises(ValueError, match="head: unknown name 'hinge'.*'mse'"):
        jaxmlp.MLP((2, 2), "relu", "hinge")
    with pytest.raises(ValueError, match="scheme: unknown init scheme 'lecun'"):
        jaxmlp.init(MODEL, jax.random.key(0), "lecun")
    with pytest.raises(ValueError, match=r"sizes\[1\]: expected a positive int, got 0"):
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
