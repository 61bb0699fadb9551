"""Hand-written optimizers as ``optax.GradientTransformation`` pairs (no optax calls inside).

Every optimizer here is checked against its Optax baseline over 1000-step
trajectories by ``python -m verification`` (rows ``optim/...``).
"""
from jaxmlp.optim.adam import AdamState, adam, adamw, weights_only
from jaxmlp.optim.momentum import MomentumState, heavy_ball, momentum, nesterov
from jaxmlp.optim.rmsprop import RmspropState, rmsprop
from jaxmlp.optim.sgd import SgdState, sgd

__all__ = [
    "AdamState",
    "MomentumState",
    "RmspropState",
    "SgdState",
    "adam",
    "adamw",
    "heavy_ball",
    "momentum",
    "nesterov",
    "rmsprop",
    "sgd",
    "weights_only",
]
