"""Hand-written optimizers as ``optax.GradientTransformation`` pairs (no optax calls inside).

Each takes Optax's arguments, ``learning_rate`` first (a float or an Optax
schedule evaluated at the step count), and keeps its state in a NamedTuple
with a ``count`` of the steps taken: :func:`sgd`, :func:`momentum`,
:func:`heavy_ball`, :func:`nesterov`, :func:`rmsprop`, :func:`adam`, :func:`adamw`.

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
