"""A catalogue of wrong ``custom_vjp`` / ``custom_jvp`` rules, hand VJPs and JVPs and curvature products,
each with its correct twin.

Every case builds its rule with ``bug=False`` (the twin, which must pass in float64 and float32) or
``bug=True`` (which must fail, with the expected cause named).  ``python -m verification --bugs`` and
``tests/test_rule_checks.py`` run them all.

>>> case = CASES[0]
>>> case.name, case.cause
('logsumexp_vjp_ignores_cotangent', 'ignores_probe')
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from verification.checker.rules.curvature import check_hvp
from verification.checker.rules.jvp_checks import check_custom_jvp, check_jvp
from verification.checker.rules.vjp_checks import check_custom_vjp, check_vjp


class RuleCase(NamedTuple):
    name: str
    cause: str  # the cause the diagnosis must give for the bug
    check: Callable  # (bug: bool, dtype) -> RuleReport


def _data(shape, dtype, seed=0, scale=1.0):
    return (scale * jax.random.normal(jax.random.key(seed), shape, jnp.float64 if jax.config.jax_enable_x64
                                      else jnp.float32)).astype(dtype)


def logsumexp_vjp(bug, dtype):
    @jax.custom_vjp
    def lse(x):  # (m, n) -> (m,)
        mx = jnp.max(x, axis=1, keepdims=True)
        return (mx + jnp.log(jnp.sum(jnp.exp(x - mx), axis=1, keepdims=True)))[:, 0]

    def fwd(x):
        y = lse(x)
        return y, jnp.exp(x - y[:, None])

    lse.defvjp(fwd, lambda p, g: (p if bug else g[:, None] * p,))  # bwd: logsumexp_vjp_ignores_cotangent
    return check_custom_vjp(lse, _data((3, 4), dtype, 1, 3.0))


def softplus_jvp(bug, dtype):
    @jax.custom_jvp
    def softplus(x):
        return jnp.logaddexp(x, jnp.zeros_like(x))

    @softplus.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        return softplus(x), (-1 if bug else 1) * jax.nn.sigmoid(x) * t  # bwd: softplus_jvp_sign

    return check_custom_jvp(softplus, _data((5,), dtype, 2, 2.0))


def matmul_vjp(bug, dtype):
    @jax.custom_vjp
    def mm(x, W):  # (m, n) @ (n, n)
        return x @ W

    mm.defvjp(lambda x, W: (x @ W, (x, W)),
              lambda r, g: (g @ r[1].T, (g.T @ r[0]) if bug else r[0].T @ g))  # bwd: matmul_vjp_weight_transposed
    return check_custom_vjp(mm, _data((4, 3), dtype, 3), _data((3, 3), dtype, 4))


def newton_cbrt_vjp(bug, dtype):
    """The root y of y^3 + y = a by Newton in a while_loop; dy/da = 1 / (3 y^2 + 1) by the implicit
    function theorem.  ``f.fun`` cannot be reverse-differentiated, so the reference is finite differences."""

    @jax.custom_vjp
    def solve(a):
        def body(s):
            y, _ = s
            y_new = y - (y ** 3 + y - a) / (3 * y ** 2 + 1)
            return y_new, jnp.max(jnp.abs(y_new - y))

        y0 = jnp.zeros_like(a)
        return jax.lax.while_loop(lambda s: s[1] > 10 * jnp.finfo(a.dtype).eps, body, (y0, jnp.ones((), a.dtype)))[0]

    def fwd(a):
        y = solve(a)
        return y, y

    solve.defvjp(fwd, lambda y, g: (
        (-1 if bug else 1) * g / (3 * y ** 2 + 1),))  # bwd: newton_while_loop_implicit_sign
    return check_custom_vjp(solve, _data((4,), dtype, 5, 2.0))


def layer_norm_vjp(bug, dtype):
    @jax.custom_vjp
    def ln(x):  # normalise each row of (m, n)
        mu = jnp.mean(x, axis=1, keepdims=True)
        return (x - mu) / jnp.sqrt(jnp.mean((x - mu) ** 2, axis=1, keepdims=True) + 1e-5)

    def fwd(x):
        mu = jnp.mean(x, axis=1, keepdims=True)
        s = jnp.sqrt(jnp.mean((x - mu) ** 2, axis=1, keepdims=True) + 1e-5)
        return (x - mu) / s, ((x - mu) / s, s)

    def bwd(r, g):
        xh, s = r
        mean_g = 0 if bug else jnp.mean(g, axis=1, keepdims=True)  # bwd: layer_norm_vjp_missing_mean
        return ((g - mean_g - xh * jnp.mean(g * xh, axis=1, keepdims=True)) / s,)

    ln.defvjp(fwd, bwd)
    return check_custom_vjp(ln, _data((3, 5), dtype, 6, 2.0))


def softmax_jvp(bug, dtype):
    @jax.custom_jvp
    def softmax(x):  # rows of (m, n)
        e = jnp.exp(x - jnp.max(x, axis=1, keepdims=True))
        return e / jnp.sum(e, axis=1, keepdims=True)

    @softmax.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        s = softmax(x)
        return s, (s * t if bug  # bwd: softmax_jvp_missing_subtraction
                   else s * (t - jnp.sum(s * t, axis=1, keepdims=True)))

    return check_custom_jvp(softmax, _data((3, 4), dtype, 7))


def square_vjp(bug, dtype):
    @jax.custom_vjp
    def sq(x):
        return jnp.sum(x ** 2)

    sq.defvjp(lambda x: (sq(x), x), lambda x, g: (g * x if bug else 2 * g * x,))  # bwd: square_vjp_missing_2
    return check_custom_vjp(sq, _data((4,), dtype, 8))


def product_vjp(bug, dtype):
    @jax.custom_vjp
    def mul(x, y):
        return x * y

    mul.defvjp(lambda x, y: (x * y, (x, y)),
               lambda r, g: ((g * r[0], g * r[1]) if bug else (g * r[1], g * r[0])))  # bwd: product_vjp_swapped
    return check_custom_vjp(mul, _data((5,), dtype, 9), _data((5,), dtype, 10))


def affine_vjp(bug, dtype):
    @jax.custom_vjp
    def affine(x, W, b):
        return x @ W + b[None, :]

    def bwd(r, g):
        x, W, b = r
        return g @ W.T, x.T @ g, jnp.zeros_like(b) if bug else jnp.sum(g, axis=0)  # bwd: affine_vjp_bias_dropped

    affine.defvjp(lambda x, W, b: (x @ W + b[None, :], (x, W, b)), bwd)
    return check_custom_vjp(affine, _data((4, 3), dtype, 11), _data((3, 2), dtype, 12), _data((2,), dtype, 13))


def tanh_jvp(bug, dtype):
    @jax.custom_jvp
    def th(x):
        return jnp.tanh(x)

    th.defjvp(lambda p, t: (jnp.tanh(p[0]),
                            (1 - jnp.tanh(p[0]) ** 2) * (1 if bug else t[0])))  # bwd: tanh_jvp_ignores_tangent
    return check_custom_jvp(th, _data((4,), dtype, 14))


def mean_vjp(bug, dtype):
    @jax.custom_vjp
    def mean_rows(x):  # (m, n) -> (n,)
        return jnp.mean(x, axis=0)

    n = 6
    mean_rows.defvjp(lambda x: (mean_rows(x), None),
                     lambda _, g: (
                         jnp.broadcast_to(g, (n, g.shape[0])) / (1 if bug else n),))  # bwd: mean_vjp_missing_1_over_n
    return check_custom_vjp(mean_rows, _data((n, 3), dtype, 15))


def dense_vjp(bug, dtype):
    f = lambda W, b, x: x @ W + b[None, :]  # noqa: E731

    def f_vjp(W, b, x):
        return f(W, b, x), lambda g: (x.T @ g, jnp.mean(g, axis=0) if bug  # bwd: dense_hand_vjp_bias_mean
                                      else jnp.sum(g, axis=0), g @ W.T)

    return check_vjp(f, f_vjp, _data((3, 2), dtype, 16), _data((2,), dtype, 17), _data((5, 3), dtype, 18))


def normalize_jvp(bug, dtype):
    f = lambda x: x / jnp.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731

    def f_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        n = jnp.linalg.norm(x, axis=1, keepdims=True)
        return f(x), (t / n if bug else  # bwd: normalize_hand_jvp_missing_projection
                      (t - x * jnp.sum(x * t, axis=1, keepdims=True) / n ** 2) / n)

    return check_jvp(f, f_jvp, _data((2, 4), dtype, 19))


def _tanh_net(dtype):
    model = lambda w, x: jnp.tanh(x @ w)  # noqa: E731
    outer = lambda z, x: 0.5 * jnp.sum(z ** 2)  # noqa: E731
    return model, outer, _data((3, 2), dtype, 20, 0.7), _data((5, 3), dtype, 21)


def hessian_as_gauss_newton(bug, dtype):
    model, outer, w, x = _tanh_net(dtype)

    def hvp(w, v, x):
        t = model(w, x)
        d = 1 - t ** 2  # tanh'
        jv = d * (x @ v)
        second = 0 if bug else t * (-2 * t * d) * (x @ v)  # dl/dz * tanh'' along v  # bwd: hvp_is_gauss_newton
        return x.T @ (d * jv + second)

    return check_hvp((model, outer), hvp, w, x, kind="hessian")


def gauss_newton_factor(bug, dtype):
    model, outer, w, x = _tanh_net(dtype)

    def gn(w, v, x):
        d = 1 - model(w, x) ** 2
        return (2 if bug else 1) * x.T @ (d * d * (x @ v))  # bwd: gauss_newton_factor_2

    return check_hvp((model, outer), gn, w, x, kind="gauss_newton")


def primal_vjp(bug, dtype):
    @jax.custom_vjp
    def logsig(x):
        return -jnp.logaddexp(-x, jnp.zeros_like(x))

    def fwd(x):  # a buggy forward: log(sigmoid) with log(1 + e^x) swapped in
        return (jnp.logaddexp(x, jnp.zeros_like(x)) if bug else logsig(x)), x  # bwd: logsigmoid_fwd_wrong_primal

    logsig.defvjp(fwd, lambda x, g: (g * jax.nn.sigmoid(-x),))
    return check_custom_vjp(logsig, _data((4,), dtype, 22))


def sign_vjp(bug, dtype):
    @jax.custom_vjp
    def sin(x):
        return jnp.sin(x)

    sin.defvjp(lambda x: (jnp.sin(x), x),
               lambda x, g: ((jnp.sign(g) if bug else g) * jnp.cos(x),))  # bwd: sin_vjp_sign_of_cotangent
    return check_custom_vjp(sin, _data((4,), dtype, 23))


def power_jvp(bug, dtype):
    @functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
    def power(n, x):
        return x ** n

    @power.defjvp
    def _(n, primals, tangents):
        (x,), (t,) = primals, tangents
        return x ** n, ((n - 1) if bug else n) * x ** (n - 1) * t  # bwd: power_jvp_nondiff_wrong_constant

    return check_custom_jvp(power, 3, _data((4,), dtype, 24))


CASES = tuple(RuleCase(*c) for c in (
    ("logsumexp_vjp_ignores_cotangent", "ignores_probe", logsumexp_vjp),
    ("softplus_jvp_sign", "sign_flipped", softplus_jvp),
    ("matmul_vjp_weight_transposed", "transposed", matmul_vjp),
    ("newton_while_loop_implicit_sign", "sign_flipped", newton_cbrt_vjp),
    ("layer_norm_vjp_missing_mean", "missing_term", layer_norm_vjp),
    ("softmax_jvp_missing_subtraction", "missing_term", softmax_jvp),
    ("square_vjp_missing_2", "factor_2", square_vjp),
    ("product_vjp_swapped", "wrong_leaf", product_vjp),
    ("affine_vjp_bias_dropped", "path_dropped", affine_vjp),
    ("tanh_jvp_ignores_tangent", "ignores_probe", tanh_jvp),
    ("mean_vjp_missing_1_over_n", "mean_sum_confused", mean_vjp),
    ("dense_hand_vjp_bias_mean", "mean_sum_confused", dense_vjp),
    ("normalize_hand_jvp_missing_projection", "missing_term", normalize_jvp),
    ("hvp_is_gauss_newton", "gauss_newton_not_hessian", hessian_as_gauss_newton),
    ("gauss_newton_factor_2", "factor_2", gauss_newton_factor),
    ("logsigmoid_fwd_wrong_primal", "primal_mismatch", primal_vjp),
    ("sin_vjp_sign_of_cotangent", "not_linear", sign_vjp),
    ("power_jvp_nondiff_wrong_constant", "wrong_constant", power_jvp),
))
