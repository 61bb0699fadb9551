"""Whole-network checks: value_and_grad and Lemma 1 against jax.grad, finite differences, check_grads."""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

import jaxmlp
from verification.checker.base import finite_differences as fd
from verification.suite.comparison import Comparison, compare_trees
from verification.suite.problems import grid_problem
from verification.suite.rows import Row
from verification.checker.base.tolerances import F32_RTOL, F64_RTOL, FD_RTOL
from verification.suite.tolerances import CHECK_GRADS_TOL

F64 = jnp.float64
REGS = {"none": (0.0, 0.0), "l1": (0.01, 0.0), "l2": (0.0, 0.1), "l1+l2": (0.01, 0.1)}
DEPTHS = (1, 2, 3, 4)
WIDTHS = (1, 3, 8)
BATCHES = (1, 2, 7)
MATRIX = "delta^l=(delta^{l+1} W^T)*g'(Z^l), dW=A^T delta (Batch Backprop (2019-05-06), summary, DNN Maths (2020-01-12))"
LEMMA1 = "Higham & Higham Lemma 1 (1.1)-(1.4), per example, vmapped (Higham & Higham notes (2024-09-10))"


def _autodiff(model, params, x, y, l1, l2):
    return jax.value_and_grad(lambda p: jaxmlp.loss(model, p, x, y, l1=l1, l2=l2))(params)


def network_grid():
    """Every activation x head x {none, l1, l2, both} x depths 1-4, widths and batch sizes cycled."""
    for act in jaxmlp.ACTIVATIONS:
        yield from grid_rows(act)


def grid_rows(act, heads=None, regs=None, depths=None):
    """The grid's rows for one hidden activation (on ``heads``, ``regs`` and ``depths`` only, if given: the
    test suite's sample)."""
    for head, reg in itertools.product(jaxmlp.HEADS if heads is None else heads, REGS if regs is None else regs):
        l1, l2 = REGS[reg]
        cmp_m = cmp_l = None
        for i, depth in enumerate(DEPTHS):
            if depths is not None and depth not in depths:
                continue
            width, batch = WIDTHS[i % 3], BATCHES[(i + len(reg)) % 3]
            model, params, x, y = grid_problem(act, head, depth, width, batch, seed=i)
            ref_v, ref = _autodiff(model, params, x, y, l1, l2)
            v, g = jaxmlp.value_and_grad(model, params, x, y, l1=l1, l2=l2)
            c = compare_trees((v, g), (ref_v, ref), F64_RTOL)
            cl = compare_trees(jaxmlp.lemma1_grad(model, params, x, y, l1=l1, l2=l2), ref, F64_RTOL)
            if not c.ok:
                c.where = f"depth {depth}, width {width}, m={batch}: {c.where}"
            if not cl.ok:
                cl.where = f"depth {depth}, width {width}, m={batch}: {cl.where}"
            cmp_m = c if cmp_m is None else cmp_m.merge(c)
            cmp_l = cl if cmp_l is None else cmp_l.merge(cl)
        yield Row.from_comparison(f"net/matrix/{act}/{head}/{reg}", MATRIX, cmp_m, F64_RTOL)
        yield Row.from_comparison(f"net/lemma1/{act}/{head}/{reg}", LEMMA1, cmp_l, F64_RTOL)


def network_float32():
    """float32 default dtype, and logits of magnitude 1e4 (the sources' naive exp overflows there)."""
    for head in jaxmlp.HEADS:
        for act in ("sigmoid", "relu"):
            model, params, x, y = grid_problem(act, head, 3, 8, 16, dtype=jnp.float32, seed=5)
            ref = _autodiff(model, params, x, y, 0.01, 0.1)
            got = jaxmlp.value_and_grad(model, params, x, y, l1=0.01, l2=0.1)
            yield Row.from_comparison(f"net/f32/{act}/{head}", MATRIX, compare_trees(got, ref, F32_RTOL), F32_RTOL)
        # Large logits: identity hidden layer, inputs scaled so |Z^L| ~ 1e4.
        model, params, x, y = grid_problem("identity", head, 2, 4, 8, dtype=jnp.float32, seed=6, x_scale=1e4)
        zmax = float(jnp.max(jnp.abs(jaxmlp.forward(model, params, x)[0][-1])))
        ref = _autodiff(model, params, x, y, 0.0, 0.0)
        got = jaxmlp.value_and_grad(model, params, x, y)
        cmp = compare_trees(got, ref, F32_RTOL)
        cmp.where = f"max|Z^L|={zmax:.3g}; {cmp.where}"
        if zmax < 1e3:
            cmp.ok = False
        yield Row.from_comparison(f"net/f32_large_logits/{head}", "stable logsumexp / log-sigmoid", cmp, F32_RTOL)


def network_finite_differences(select=None):
    """Central differences in float64 on every parameter, for every activation x head, with L1+L2 (with
    ``select``, ``select(act, head) -> bool``, the pairs it keeps: the test suite's sample)."""
    for i, (act, head) in enumerate(itertools.product(jaxmlp.ACTIVATIONS, jaxmlp.HEADS)):
        if select is not None and not select(act, head):
            continue
        model, params, x, y = grid_problem(act, head, 3, 3, 5, seed=10 + i)
        l1, l2 = REGS["l1+l2"]
        num = fd.gradient(lambda p: jaxmlp.loss(model, p, x, y, l1=l1, l2=l2, check=False), params)
        _, g = jaxmlp.value_and_grad(model, params, x, y, l1=l1, l2=l2)
        yield Row.from_comparison(f"net/finite_diff/{act}/{head}", "central differences, h=1e-6, float64",
                                  compare_trees(g, num, FD_RTOL), FD_RTOL)


def network_check_grads():
    """jax.test_util.check_grads (reverse mode vs numerical) on the custom_vjp of the manual backward."""
    for i, head in enumerate(jaxmlp.HEADS):
        act = list(jaxmlp.ACTIVATIONS)[i % len(jaxmlp.ACTIVATIONS)]
        model, params, x, y = grid_problem(act, head, 3, 4, 6, seed=30 + i)
        f = lambda p, model=model, x=x, y=y: jaxmlp.loss_with_manual_vjp(model, p, x, y, 0.01, 0.1)  # noqa: E731
        try:
            check_grads(f, (params,), order=1, modes=["rev"], atol=CHECK_GRADS_TOL, rtol=CHECK_GRADS_TOL)
            cmp = Comparison(0.0, 0.0, True, "check_grads passed")
        except AssertionError as e:
            cmp = Comparison(np.inf, np.inf, False, str(e).splitlines()[0][:200])
        yield Row.from_comparison(f"net/check_grads/{act}/{head}", "custom_vjp(manual backward) vs numerical",
                                  cmp, CHECK_GRADS_TOL)
