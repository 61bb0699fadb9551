"""Named tolerances of the verification, each with its reason.

Errors are *normwise per leaf*: ``max|manual - ref| / max(max|ref|, tiny)``,
so that a leaf whose entries are near zero does not turn rounding noise into a
huge elementwise ratio.  The two helpers every check uses are here too:
:func:`precision_of` (the dtype a check is judged in) and :func:`default_atol`.

>>> import jax.numpy as jnp
>>> precision_of({"w": jnp.ones(2, jnp.float32), "n": jnp.arange(3)})
'float32'
>>> default_atol(1e-12, [jnp.array([1.0, -4.0])])
4e-12
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# float64: hand-derived and autodiff gradients compute the same sums in a
# different order; each leaf's error is a few ulps of its largest entry
# (~1e-16), so 1e-12 leaves four orders of headroom and still catches any
# real mistake (a wrong term is O(1) relative).
F64_RTOL = 1e-12

# float32: the same reasoning at eps32 ~ 1.2e-7; deep sigmoid nets lose a
# little more through cancellation, so 1e-5 relative.
F32_RTOL = 1e-5

# Central finite differences in float64 with step FD_STEP: truncation error
# O(h^2 * f''') ~ 1e-12 plus cancellation eps/h ~ 1e-10, relative to the leaf
# scale; 1e-6 bounds both with margin on these smooth, small problems.
FD_STEP = 1e-6
FD_RTOL = 1e-6

# Half precision: the forward and backward run in the params' dtype,
# so every product and sum rounds at eps16 = 2^-11 ~ 4.9e-4 (float16) or
# eps_bf16 = 2^-8 ~ 3.9e-3 (bfloat16).  A gradient leaf of a small network is
# a few such roundings deep: ~10 eps relative, against float32 or autodiff.
F16_RTOL = 5e-3
BF16_RTOL = 4e-2

# The gradient checker's fit of a hypothesis (verification/checker/explain/hypotheses.py): a hypothesis reproduces the
# mistake when ||manual - H|| <= FIT * ||manual - autodiff||.  In float64 both sides agree to ~1e-15 of
# the gradient, and a real mistake moves it by O(1e-3) or more of its size: 1e-6 leaves a wide margin
# and still separates "explains the bug" from "is merely close".  In lower precisions the manual side
# carries its own rounding (~10 eps of the gradient), so the fit is judged at 1e-2 (float32) and 1e-1
# (half precisions) of the mismatch.
FIT_RTOL = {"float64": 1e-6, "float32": 1e-2, "bfloat16": 1e-1, "float16": 1e-1}

# At a kink (relu or abs at 0, a tie in max) the manual value must lie between the one-sided
# differences (f(p + h e) - f(p)) / h and (f(p) - f(p - h e)) / h, computed in float64 with h = FD_STEP;
# their truncation error is O(h |f''|) ~ 1e-6 of the leaf's scale, so 1e-4 relative is the slack.
KINK_RTOL = 1e-4

# Default checker tolerance per dtype of the params (a leaf fails above it).  The checker's default atol
# is rtol times the largest entry of the whole gradient: a leaf whose entries cancel (a bias gradient, a
# sum over the batch of deltas that nearly sum to 0) is small, but its rounding error is that of its
# terms.  Seen in float32: a softmax net's output bias off by 1.8e-5 of its own size, 1e-7 of the
# gradient's (tests/test_no_false_alarms.py).
RTOL_BY_DTYPE = {"float64": F64_RTOL, "float32": F32_RTOL, "bfloat16": BF16_RTOL, "float16": F16_RTOL}

# Finite differences as the reference of a rule check (verification/checker/rules/args.py), by the reference's dtype.
# Central differences err by O(h^2 f''') truncation plus O(eps/h) cancellation; the step that balances
# them is ~eps^(1/3) of the scale: 1e-6 in float64 (eps 2.2e-16, error ~1e-10), 5e-3 in float32 when x64
# is off (eps 1.2e-7, error ~2e-5).  The tolerances leave a factor of ~10-100 over that error.
FD_STEP_BY_DTYPE = {"float64": FD_STEP, "float32": 5e-3}
# Along a random unit direction in float64 the step is eps^(1/3) ~ 6e-6: it balances the truncation error
# (t^2) against cancellation (eps / t) of a loss that moves along every coordinate at once.
DIRECTION_STEP = 6e-6
FD_RTOL_BY_DTYPE = {"float64": FD_RTOL, "float32": 2e-3}

# A whole-leaf pattern (verification/checker/explain/patterns.py) fits when it explains manual - autodiff to this
# relative residual: above float32's rounding of a leaf (~1e-7 of its size, a few ulps), far below any
# real pattern mismatch (O(1)).
PATTERN_FIT_RTOL = 1e-5

# The one threshold of the one classifier of a fitted scale (verification/checker/base/causes.py): a fitted
# constant "is" 0, -1, 2, 1/2 or a reduction's size n when it lies within this relative distance of it
# (absolute below 1).  A fitted scale carries the fit's error: ~1e-10 in float64, ~1e-6 in float32, ~1e-3
# at worst in half precision; the named constants lie at least 1/n apart (n and n + 1), far more than
# 1e-3 for every reduction size below a thousand.
SCALE_MATCH_RTOL = 1e-3

PRECISIONS = ("float16", "bfloat16", "float32", "float64")  # lowest first


def precision_of(tree) -> str:
    """The lowest floating precision among the inexact leaves of ``tree`` (integer, bool and non-array
    leaves do not count); ``"float64"`` when there is none."""
    names = set()
    for leaf in jax.tree.leaves(tree):
        dtype = getattr(leaf, "dtype", None)
        if dtype is None and isinstance(leaf, float):
            dtype = jnp.result_type(leaf)
        if dtype is not None and jnp.issubdtype(dtype, jnp.inexact):
            names.add(jnp.dtype(dtype).name)
    return next((n for n in PRECISIONS if n in names), "float64")


def default_atol(rtol: float, reference) -> float:
    """``rtol`` times the largest entry of the whole ``reference`` (any pytree of arrays): the scale a
    leaf whose entries cancel (a bias's sum of deltas) is judged on."""
    sizes = [float(jnp.max(jnp.abs(l))) for l in jax.tree.leaves(reference) if np.size(l)]
    return rtol * max(sizes, default=0.0)

# The backward localisation (verification/checker/backward/): a value of the user's gradient code "is" a
# right quantity (a forward value, a true cotangent, a gradient leaf) when they differ by at most this
# much of their norm.  The user's code computes the same quantity in another order or form: ~1e-15 (float64)
# and ~1e-7 (float32) per operation, a few hundred operations deep at most; a wrong value is off by far
# more (a mistake changes it by O(1e-3) or more).  Half precisions carry ~1e-3 per operation.
BACKWARD_MATCH_RTOL = {"float64": 1e-8, "float32": 1e-4, "bfloat16": 5e-2, "float16": 2e-2}

# A check that fails by at most this relative error, in float64, fails at the level of a numerical
# stabiliser: an eps of 1e-10 .. 1e-8 added to a denominator (a flash-attention row sum, a norm) moves the
# result by about eps relative, a thousand times below float32's eps (1.2e-7) and far above float64's
# rounding (1e-16).  A real mistake (a wrong constant, a missing term) moves it by 1e-3 or more.
STABILISER_REL = 1e-6
