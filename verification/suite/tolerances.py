"""Tolerances of jaxmlp's own proofs (the suite), each with its reason; the checker's are in
:mod:`verification.checker.base.tolerances`."""

# jax.test_util.check_grads compares the custom_vjp's reverse mode with its
# own numerical directional derivatives (eps 1e-6 in float64); its tolerances
# are absolute+relative per entry.  1e-5 is its documented float64 default.
CHECK_GRADS_TOL = 1e-5

# Optimizer trajectories: same problem, both sides jitted, different
# operation order, after 1000 steps.
OPT_F32_RTOL = 1e-6
OPT_F64_RTOL = 1e-12
# A *mapping* to Optax (Adam without bias correction as inject_hyperparams with a rescaled rate and eps)
# computes different operations, so each float32 step rounds differently at ~eps32 = 1.2e-7; on the MLP with
# the warm-up cosine schedule 1000 steps accumulated 1.65e-6.  1e-5 keeps an order of headroom
# and still fails a wrong mapping (which is off by O(1)).
OPT_F32_MAPPING_RTOL = 1e-5

# Levenberg-Marquardt step forms: two Cholesky solves and a dense
# LU solve of systems with condition numbers up to ~1e6 (mu = 1e-3) lose
# about six digits of float64's sixteen: 1e-10 relative.
LM_STEP_RTOL = 1e-10

# A printed erratum "fails" when it is off by at least this much relative to
# the truth: far above any rounding, so a FAIL is a wrong formula, not noise.
ERRATUM_MIN_REL = 1e-3
