"""What a fitted scale of one edge means: the cause code and the sentence of a hypothesis
"the cotangent that equation ``i`` sends to input ``j`` is ``a`` times the true one".

A scale of 0 is a dropped path, -1 a flipped sign, the size of a reduction (of any subset of its axes:
a mean over time and batch taken over the batch only) or its inverse mean and sum confused, 2 or 1/2 a
factor 2, anything else a wrong constant (:func:`verification.checker.base.causes.name_scale`).
"""
from __future__ import annotations

import itertools
from typing import List

import jax.extend.core as jcore
import numpy as np

from verification.checker.base import causes
from verification.checker.jaxpr import graph as jg


CANONICAL_SCALES = (0.0, -1.0, 2.0, 0.5)  # the scales that mean something: a dropped path, a sign, a factor 2


def _subset_products(sizes) -> List[int]:
    sizes = [int(s) for s in sizes]
    out = {int(np.prod(c)) for r in range(1, len(sizes) + 1) for c in itertools.combinations(sizes, r)}
    return sorted(n for n in out if n > 1)


def reduced_sizes(eqn, j) -> List[int]:
    """How many terms the op's forward (``reduce_sum``) or its backward to input ``j`` (a broadcast) adds
    up, over every subset of the axes involved."""
    if eqn.primitive.name == "reduce_sum":
        shape = eqn.invars[0].aval.shape
        return _subset_products([shape[a] for a in eqn.params["axes"]])
    if eqn.primitive.name == "broadcast_in_dim" and j == 0:
        shape, kept = eqn.params["shape"], set(eqn.params["broadcast_dimensions"])
        return _subset_products([n for a, n in enumerate(shape) if a not in kept])
    shape, out = tuple(eqn.invars[j].aval.shape), tuple(eqn.outvars[0].aval.shape)
    if shape == () and out:  # a scalar operand broadcast over every axis
        return _subset_products(out)
    if len(shape) == len(out):
        return _subset_products([o for s, o in zip(shape, out) if s == 1 and o > 1])
    size, n = int(np.prod(shape)), int(np.prod(out))
    return [n // size] if 0 < size < n else []


def _mean_count(graph, eqn, const) -> List[int]:
    """For ``x / const`` completing a mean (``x`` a reduce_sum over ``const`` terms): the sizes of the
    reduction's axis subsets, else []."""
    p = graph.producer.get(eqn.invars[0])
    if p is None:
        return []
    sizes = reduced_sizes(graph.eqns[p], 0)
    return sizes if sizes and max(sizes) == const else []


def literal_operand(eqn, j):
    """The literal constant of a two-input ``mul``/``div`` whose other operand is input ``j``, or None."""
    if jg.op_name(eqn) in ("mul", "div") and len(eqn.invars) == 2 and isinstance(eqn.invars[1 - j], jcore.Literal):
        return float(np.asarray(eqn.invars[1 - j].val))
    return None


def _mean_sum_text(eqn, j, a, where, sizes):
    n = causes.reduction_match(a, sizes)
    const = literal_operand(eqn, j)
    if const is not None and jg.op_name(eqn) == "div":
        if causes.near(a, const):
            return f"the backward of {where} skips the division by {const:g} (a mean taken as a sum)"
        if n and n != const:
            return (f"the backward of {where} divides by {const * a:.6g} where the forward divides by {const:g} "
                    f"(a mean over only part of the axes: factor {a:.6g})")
        return f"the backward of {where} divides by {const:g} twice"
    how = "sums where the forward averages" if a > 1 else "averages where the forward sums"
    if eqn.primitive.name != "reduce_sum":
        how = "sums over the broadcast axes twice" if a > 1 else "averages over the broadcast axes where it sums"
    return f"the backward of {where} {how} (factor {a:.6g}, over {n} of the terms)"


def classify(graph, i, j, a):
    """The cause code and the sentence of a fitted scale ``a`` of the cotangent equation ``i`` sends to ``j``."""
    eqn = graph.eqns[i]
    name, where = jg.op_name(eqn), graph.describe(i)
    operand = f"input {j + 1}" if len(eqn.invars) > 1 else "its input"
    const = literal_operand(eqn, j)
    sizes = list(reduced_sizes(eqn, j))
    if const is not None and name == "div" and j == 0:
        sizes += _mean_count(graph, eqn, const) + ([int(const)] if _mean_count(graph, eqn, const) else [])

    def wrong_constant(_):
        if const is not None:
            used = const * a if name == "mul" else const / a  # the backward of x / c is g / c
            return f"the backward of {where} uses the constant {used:.6g} where the forward uses {const:g}"
        return f"the backward of {where} is scaled by {a:.6g} (a wrong constant)"

    return causes.scale_cause(a, sizes, {
        "path_dropped": f"the backward of {where} drops the path to {operand} (a forgotten term)",
        "sign_flipped": f"the backward of {where} flips the sign of the cotangent to {operand}",
        "mean_sum_confused": lambda _: _mean_sum_text(eqn, j, a, where, sizes),
        "factor_2": f"the backward of {where} is {a:.6g} x the true one (a factor 2: a 1/2 dropped or doubled)"},
        wrong_constant)


# Among edges with the same effect, the one whose scale means the most names the group: a reduction's
# size beats a factor 2, which beats a literal constant, which beats a bare scale.
_SPECIFICITY = {"path_dropped": 0, "sign_flipped": 0, "mean_sum_confused": 0, "factor_2": 1}


def specificity(cause, text):
    return _SPECIFICITY.get(cause, 2 if "uses the constant" in text else 3)
