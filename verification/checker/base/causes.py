"""The one vocabulary of causes, shared by gradient and rule reports, and the one classifier of a fitted scale.

Every ``cause`` a report carries (a :class:`verification.Diagnosis`, a :class:`verification.Hypothesis`,
a :class:`verification.RuleFinding`) is a key of :data:`CAUSES`.  Where the manual result is a constant
``c`` times the reference (a whole leaf, one edge of the traced loss, one block of a rule),
:func:`name_scale` names it, with one threshold (:data:`verification.checker.base.tolerances.SCALE_MATCH_RTOL`),
and :func:`scale_cause` gives the cause with its sentence, each check saying it in its own words:

>>> name_scale(-1.0), name_scale(32.0, sizes=(32,)), name_scale(0.5), name_scale(0.7)
('sign_flipped', 'mean_sum_confused', 'factor_2', 'wrong_constant')
>>> scale_cause(0.25, (4,), {"mean_sum_confused": lambda n: f"a mean over {n} taken as a sum"}, "a constant")
('mean_sum_confused', 'a mean over 4 taken as a sum')
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Optional, Tuple, Union

from verification.checker.base.tolerances import SCALE_MATCH_RTOL

CAUSES = {
    # a scale (any check): the manual result is c times the reference, on a leaf, an edge or a block
    "path_dropped": "one operand's path dropped (a forgotten skip connection, tied weight, regulariser or label "
                    "term; a rule that returns zero for one input)",
    "sign_flipped": "the sign flipped",
    "mean_sum_confused": "mean and sum confused (off by a reduction's size or a batch size m)",
    "factor_2": "off by a factor 2 (a 1/2 dropped or doubled)",
    "wrong_constant": "scaled by a wrong constant (e.g. a leaky-relu slope)",
    # a rule edit inside the traced loss (gradient checks)
    "derivative_dropped": "an elementwise derivative left out (treated as 1)",
    "derivative_at_output": "an elementwise derivative evaluated at the op's output instead of its input",
    "derivative_at_input": "a derivative written in terms of the output (1 - a^2, a(1 - a)) evaluated at the input",
    "transposed_operand": "a transposed operand in a matrix product's backward",
    "wrong_saved_operand": "a matrix product's backward uses the wrong saved forward value",
    "wrong_branch": "the wrong branch of a select / where / max / relu taken in the backward",
    "transposed_cotangent": "a matrix product's backward uses the transposed incoming cotangent",
    "wrong_selection": "a max / min reduction (max pooling) routes the cotangent to the wrong elements: all of "
                       "them, averaged, the opposite extreme, or the neighbouring window",
    "wrong_axis": "a sum (or mean) over the wrong axis: over the features instead of the batch",
    "wrong_size": "a size taken from the wrong axis (m = x.shape[1] where the batch size x.shape[0] belongs)",
    "wrong_derivative": "an elementwise derivative written as another function's (tanh's 1 - h^2 for a sigmoid, "
                        "the exact GELU's for the tanh approximation)",
    "inverted_factor": "a right factor divided by where it should multiply, or the reverse",
    "wrong_threshold": "a mask computed with the wrong condition (a hinge's margin or an offset left out)",
    "custom_rule_wrong": "autodiff is the wrong side: a custom_vjp / custom_jvp rule inside the loss disagrees with "
                         "its primal, and the hand gradient agrees with autodiff of the primals",
    "loss_operand": "autodiff is the wrong side: the loss reads one value where another belongs (an argument "
                    "repeated or swapped), and the hand gradient is exactly the gradient of the loss with the other "
                    "value read there",
    "stabiliser": "a difference at the level of a numerical stabiliser (an eps added to a denominator): far "
                  "below float32's precision; set that eps to 0 to confirm, or check at float32's rtol",
    "kink_convention": "differs only by a consistent one-sided derivative at exact kinks (passes, with a note)",
    # a pattern of a whole leaf or block
    "transposed": "a whole leaf (or a rule's block) returned transposed",
    "wrong_leaf": "the result of another leaf (or input) of the same shape: gradients or results swapped",
    "l2_missing": "the L2 term forgotten", "l2_extra": "an L2 term added",
    "l1_missing": "the L1 term forgotten", "l1_extra": "an L1 term added",
    "l1_without_sign": "lambda where lambda sign(W) belongs (DNN Maths (2020-01-12)'s printed L1 gradient)",
    "regulariser_wrong": "passes with the regulariser off only",
    "constant_offset": "a constant added to the whole leaf",
    "missing_term": "a term missing or extra: constant along an axis, or proportional to a primal value",
    "overflow": "non-finite values where the reference is finite (a naive exp or log)",
    # rule checks only
    "ignores_probe": "the rule ignores the cotangent (tangent): correct only when it is 1",
    "not_linear": "the rule is not linear in the cotangent (tangent)",
    "primal_mismatch": "the rule's forward pass returns a different primal output",
    "gauss_newton_not_hessian": "a product checked as a Hessian is the Gauss-Newton product",
    "hessian_not_gauss_newton": "a product checked as Gauss-Newton is the full Hessian",
    # the shape of the answer
    "shape": "a result of the wrong shape",
    "structure": "the result's pytree differs from the reference's",
    "unknown": "no hypothesis or pattern fits; the localisation (or the block and index) says where",
}

# Schema 2 (gradient) and 1 (rule) codes that changed in schema 3 / 2, and what they became (docs/checker.md).
RENAMED = {
    "missing 1/m": "mean_sum_confused", "extra 1/m": "mean_sum_confused", "sign flipped": "sign_flipped",
    "factor 1/2": "factor_2", "scale": "wrong_constant", "missing L2": "l2_missing", "extra L2": "l2_extra",
    "missing L1": "l1_missing", "extra L1": "l1_extra", "L1 without sign": "l1_without_sign",
    "constant offset": "constant_offset", "wrong layer": "wrong_leaf", "swapped_inputs": "wrong_leaf",
    "regulariser term wrong": "regulariser_wrong",
}


def near(a: float, b: float) -> bool:
    """``a`` is ``b`` up to :data:`SCALE_MATCH_RTOL` (relative, absolute below 1)."""
    return abs(a - b) <= SCALE_MATCH_RTOL * max(abs(b), 1.0)


def reduction_match(c: float, sizes: Iterable[int]):
    """The size ``n > 1`` in ``sizes`` with ``c = n`` or ``c = 1/n``, or ``None``."""
    for n in sorted({int(n) for n in sizes}):
        if n > 1 and (near(c, n) or near(c * n, 1.0)):
            return n
    return None


def name_scale(c: float, sizes: Iterable[int] = ()) -> str:
    """The cause of "manual = ``c`` x reference": 0, -1, a size in ``sizes`` (or its inverse), 2 or 1/2,
    else a wrong constant.  ``sizes`` are the reductions or batch sizes that could have been confused."""
    if near(c, 0.0):
        return "path_dropped"
    if near(c, -1.0):
        return "sign_flipped"
    if reduction_match(c, sizes) is not None:
        return "mean_sum_confused"
    if near(c, 2.0) or near(c, 0.5):
        return "factor_2"
    return "wrong_constant"


Sentence = Union[str, Callable[[Optional[int]], str]]


def scale_cause(c: float, sizes: Iterable[int], sentences: Mapping[str, Sentence],
                otherwise: Sentence) -> Tuple[str, str]:
    """The one scale-to-cause mapper: ``(cause, sentence)`` of "manual = ``c`` x reference".

    The cause is :func:`name_scale` ``(c, sizes)``; the sentence is the caller's ``sentences[cause]``, or
    ``otherwise`` for a cause it has no words of its own for.  A sentence is a string, or a function of
    the size ``n`` that ``c`` matches (:func:`reduction_match`; ``None`` unless the cause is
    ``mean_sum_confused``)."""
    sizes = list(sizes)
    cause = name_scale(c, sizes)
    say = sentences.get(cause, otherwise)
    if not callable(say):
        return cause, say
    return cause, say(reduction_match(c, sizes) if cause == "mean_sum_confused" else None)


def stabiliser_sentence(rel: float) -> str:
    """What a failure at most ``rel`` relative, below
    :data:`verification.checker.base.tolerances.STABILISER_REL`, is."""
    return (f"the worst relative difference is {rel:.2g}: the size of a numerical stabiliser (an eps added to a "
            "denominator, a clamp), far below float32's precision (1.2e-7) and above float64's rounding; set "
            "that eps to 0 and the difference should vanish, or check at float32's rtol")
