"""What is mutated, and which verification checks exercise it.

``TARGETS``: per file of ``jaxmlp/``, the functions that hold a hand-derived formula (a derivative, a fused
delta, a backward pass, an update rule).  Forward passes are not mutated: the suite compares each hand
formula with ``jax.grad`` of the forward, so a mutated forward mostly moves both sides.

``CHECKS``: per file, the checks of :data:`verification.suite.registry.CHECKS` (by function name) that
exercise it, cheapest first: a mutant is killed at the first failing row, so the cheap rows kill most
mutants and only survivors pay for the whole list.  An entry ``(name, argument)`` passes ``select=`` (or the
optimizer rows' dtype) the way tests/test_verification.py samples a cross.
"""
from __future__ import annotations

__all__ = ["BACKWARD", "CHECKED", "CHECKS", "FULL_CHECKS", "OPTIMIZERS_OF", "TARGETS"]

_OPT_RULES = ("optim/sgd.py", "optim/momentum.py", "optim/rmsprop.py", "optim/adam.py", "optim/validation.py")

TARGETS: dict[str, tuple[str, ...]] = {
    "activations.py": ("sigmoid_derivative", "tanh_derivative", "relu_derivative", "leaky_relu_derivative",
                       "softplus_derivative", "identity_derivative"),
    "dense.py": ("dense_backward",),
    "heads.py": ("softmax_cross_entropy_delta", "sigmoid_quadratic_delta", "sum_squares_delta", "mse_delta",
                 "sigmoid_bce_delta", "linear_target_delta", "sigmoid_quadratic_target_delta",
                 "sum_squares_target_delta", "mse_target_delta", "weighted_loss_and_delta", "=residual_scale"),
    "regularizers.py": ("penalty_grad", "add_penalty_grad"),
    "network.py": ("backward", "_value_and_backward", "value_and_input_grads"),
    "lemma1.py": ("_one_example", "lemma1_grad"),
    "batchnorm.py": ("bn_backward",),
    "least_squares.py": ("per_example_dense_backward", "jacobian"),
    "gauss_newton.py": ("tangent_forward", "gauss_newton_product"),
    "manual_vjp.py": ("_fwd", "_bwd"),
    "optim/sgd.py": ("sgd.update",),
    "optim/momentum.py": ("momentum.update",),
    "optim/rmsprop.py": ("rmsprop.update",),
    "optim/adam.py": ("_adam.update",),
    "optim/validation.py": ("descend",),
}

# the checks each module's mutants run (registry names; a tuple passes an argument: see the docstring).
# FULL_CHECKS: every row of every check that exercises the module (the suite's crosses in full);
# CHECKS: the first pass, the same checks with each cross cut to its diagonal (every activation and every head
# once, as tests/test_verification.py samples them) and the optimizer rows cut to the optimizers that run the
# mutated file.  A mutant that survives the first pass runs FULL_CHECKS (``--survivors-of``), so a survivor
# is one that no row of the suite kills.
_NET_FULL = ("network_float32", ("network_finite_differences", "diagonal"), "network_grid")
FULL_CHECKS: dict[str, tuple] = {
    "activations.py": ("activations", "layer_rows") + _NET_FULL,
    "dense.py": ("dense_layer", "layer_rows") + _NET_FULL,
    "heads.py": ("heads", "layer_rows", "weighted_rows", "padding_rows", ("jacobians", "all"), ("gauss_newton_rows", "all"))
                + _NET_FULL + (("manual_vjp_rows", "all"),),
    "regularizers.py": ("regularizers",) + _NET_FULL,
    "network.py": _NET_FULL + ("weighted_rows", "padding_rows", "no_bias_rows", ("manual_vjp_rows", "all"), ("bn_network", "all"),
                               ("jacobians", "all"), ("gauss_newton_rows", "all")),
    "lemma1.py": ("no_bias_rows", "network_grid"),
    "batchnorm.py": ("bn_layer", "layer_rows", ("bn_network", "all")),
    "least_squares.py": (("jacobians", "all"),),
    "gauss_newton.py": (("gauss_newton_rows", "all"),),
    "manual_vjp.py": (("manual_vjp_rows", "all"), "network_check_grads"),
    **{m: ("no_params_rows", ("optimizer_trajectories", None)) for m in _OPT_RULES},
}

# the optimizer rows (tests/test_verification.py's names) that run each optimizer file's update
OPTIMIZERS_OF = {"optim/sgd.py": ("sgd", "sgd_weight_decay", "heavy_ball", "nesterov"),
                 "optim/momentum.py": ("momentum_ema",), "optim/rmsprop.py": ("rmsprop", "rmsprop_eps_in_sqrt"),
                 "optim/adam.py": ("adam", "adam_no_bias_correction", "adamw_masked"),
                 "optim/validation.py": None}  # descend: every optimizer

def _first_pass(spec, module):
    """A ``FULL_CHECKS`` entry cut for the first pass: a whole cross to its diagonal, the network grid to
    its diagonal, the optimizer trajectories to those that run ``module``."""
    if spec == "network_grid":
        return ("network_grid", "diagonal")
    if isinstance(spec, tuple) and spec[0] == "optimizer_trajectories":
        return ("optimizer_trajectories", module)
    if isinstance(spec, tuple) and spec[1] == "all":
        return (spec[0], "diagonal")
    return spec


CHECKS: dict[str, tuple] = {m: tuple(_first_pass(c, m) for c in specs) for m, specs in FULL_CHECKS.items()}

# modules whose killed mutants the checker is scored on (a backward function a user's check_gradients sees)
BACKWARD = ("activations.py", "dense.py", "heads.py", "regularizers.py", "network.py", "batchnorm.py")
# modules the checker's benchmark scores (``python -m verification --bugs --mutants``): every mutant of the backward
# modules, Lemma 1's per-example gradient (``check_gradients`` against ``lemma1_grad``) and the manual VJP
# (``check_custom_vjp``); the mutation run's own sample stays drawn from ``BACKWARD`` so that its runs compare.
CHECKED = BACKWARD + ("lemma1.py", "manual_vjp.py")
