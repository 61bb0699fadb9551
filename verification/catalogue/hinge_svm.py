"""The multiclass SVM (hinge) loss of cs231n with an L2 penalty: ``max(0, s_j - s_y + delta)`` over the
wrong classes.

.. math:: J = \\frac{1}{m}\\sum_i\\sum_{j\\ne y_i}\\max(0, s_{ij} - s_{iy_i} + \\Delta) + \\lambda\\lVert W\\rVert^2
"""
import jax.numpy as jnp

from verification.catalogue.planted import Planted
from verification.catalogue.data import random_data, random_tree

NAME = "multiclass SVM (hinge)"
DELTA, LAM = 1.0, 0.05


def loss(p, x, y):
    s = x @ p["W"]  # site: scores
    correct = jnp.sum(s * y, axis=1, keepdims=True)  # site: correct
    margins = s - correct + DELTA  # site: margins
    hinge = jnp.maximum(margins, 0.0)  # site: hinge
    hinge = hinge * (1 - y)  # site: wrong_classes
    return jnp.sum(hinge) / x.shape[0] + LAM * jnp.sum(p["W"] ** 2)  # site: total


def grad(p, x, y, bug=None):
    m = x.shape[0]
    s = x @ p["W"]
    correct = jnp.sum(s * y, axis=1, keepdims=True)
    margins = s - correct + DELTA
    active = ((s - correct) > 0 if bug == "margin_left_out"  # bwd: margin_left_out
              else margins > 0).astype(s.dtype) * (1 - y)
    count = jnp.sum(active, axis=1, keepdims=True)
    ds = active - (0.0 if bug == "correct_class_forgotten" else count * y)  # bwd: correct_class_forgotten
    ds = ds / m
    reg = LAM if bug == "l2_half" else 2 * LAM
    return {"W": x.T @ ds + reg * p["W"]}  # bwd: l2_half


def problem(seed=0):
    p = random_tree({"W": (4, 3)}, seed=seed, scale=0.5)
    return (p, *random_data(seed, 6, 4, 3, classes=True))


BUGS = [
    Planted("margin_left_out", "the active set computed from s_j - s_y > 0, the margin delta left out",
            "wrong_threshold", "hinge"),
    Planted("correct_class_forgotten", "the correct class's -count term forgotten", "path_dropped", "correct"),
    Planted("l2_half", "d(lam ||W||^2) = lam W", "factor_2", "total"),
]
