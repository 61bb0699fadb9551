"""The findings a report carries: why a check failed, each with a ``cause`` of the one vocabulary
(:data:`verification.checker.base.causes.CAUSES`) and a sentence that says it.

There are three types, not one, because they answer three different questions and carry different
evidence; one type would need fields that are meaningless for two of the three:

* :class:`Hypothesis`: one change of a derivative rule *at a site of the traced loss* (an equation, or a
  pair of them) that reproduces the hand gradient.  It carries the site (``eqn``, ``sites``,
  ``also_at``, ``equivalent``), how well it fits (``residual``) and the fitted ``scale``; a gradient
  report lists every hypothesis that fits (``GradientReport.hypotheses``, JSON schema
  ``verification.check_gradients/4``).
* :class:`Diagnosis`: the verdict on *one leaf* of a gradient check: a whole-leaf pattern if one fits
  (transposed, an L2 term missing, ...), else the best hypothesis, with the site where the error
  enters when one is known (``GradientReport.diagnoses``).
* :class:`RuleFinding`: the cause of *one failing block* (output leaf, input leaf) of a custom rule's
  Jacobian, and the rule function (``RuleReport.findings``, schema ``verification.check_rule/3``).

All three are public (``verification.Hypothesis``, ``verification.Diagnosis``,
``verification.RuleFinding``); their fields are their JSON.

>>> RuleFinding("out", "x", "sign_flipped", "the rule has the opposite sign").as_dict()["cause"]
'sign_flipped'
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional


@dataclasses.dataclass
class Hypothesis:
    """A change of one derivative rule (or two) inside the traced loss that reproduces the hand gradient."""

    cause: str  # a code of the documented vocabulary (verification.CAUSES)
    eqn: int  # equation index in the traced loss
    where: str  # "tanh at model.py:12"
    explanation: str  # "manual equals autodiff if ..."
    residual: float  # ||M - H|| / ||M - G||
    scale: Optional[float] = None  # for scalings: the fitted a
    equivalent: List[str] = dataclasses.field(default_factory=list)  # other sites with the same effect
    also_at: List[str] = dataclasses.field(default_factory=list)  # the same change made at these sites too
    sites: List[int] = dataclasses.field(default_factory=list)  # every equation index named above
    changes: int = 1  # distinct rule changes: 2 for a two-site (or two-operand) pair

    def as_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Diagnosis:
    """The verdict on one failing leaf of a gradient check."""

    leaf: str
    cause: str  # a code of the vocabulary (verification.checker.base.causes.CAUSES)
    evidence: str
    where: Optional[str] = None  # "op at file:line" where the error enters, when located


@dataclasses.dataclass
class RuleFinding:
    """A cause for one failing block, with its evidence and where the rule sits."""

    output: str
    input: str
    cause: str
    explanation: str
    where: str = ""  # the rule's function and file:line

    def as_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class BackwardFinding:
    """Where the user's own backward code (a hand gradient, a rule's ``bwd`` or ``jvp``) goes wrong: the
    ranked lines to fix and the first wrong value (``GradientReport.backward``, ``RuleReport.backward``;
    docs/checker.md)."""

    lines: List[str]  # "file:line code", the likeliest line to fix first
    line: Optional[str]  # the first wrong value's line, "file:line"
    code: str  # its source text
    should_equal: str  # what it should compute: "∂L/∂z1 (the cotangent of ... at model.py:6)"
    rel_error: float  # ||value - should|| / ||should||
    inputs_ok: List[str]  # the inputs of that line that are right: "dh = ∂L/∂h ✔"
    cause: str  # a code of the vocabulary (verification.CAUSES)
    explanation: str  # how what it computes relates to what it should compute
    repaired: bool = True  # replacing the value by what it should equal repairs every wrong leaf

    def as_dict(self):
        d = dataclasses.asdict(self)
        d["first_wrong"] = {"line": d.pop("line"), "code": d.pop("code"), "should_equal": d.pop("should_equal"),
                            "rel_error": d.pop("rel_error")}
        return d

    def agree(self, cause: Optional[str], where: str = "") -> None:
        """Reconcile with the cause found on the loss's side (a hypothesis, a rule's block diagnosis): an
        ``unknown`` here takes it; two different known causes are both said."""
        if not cause or cause == "unknown" or cause == self.cause or self.cause == "loss_operand":
            return  # (the loss's side sees a slip of the loss as the hand's: its account is the same change)
        if cause == "stabiliser":  # the whole failure is below float32's precision: say that, not a line's cause
            self.cause = cause
            self.explanation = f"the difference here is the size of a stabiliser ({self.rel_error:.2g} " \
                "relative): an eps in a denominator or a clamp, not a derivation mistake"
        elif self.cause == "unknown":
            self.cause = cause
            self.explanation += f"; seen from the loss's side: {cause}{' at ' + where if where else ''}"
        else:
            self.explanation += (f"; the loss's side calls it {cause}{' at ' + where if where else ''} (the same "
                                 "change, seen from the forward program)")

    def lead(self) -> List[str]:
        """The first lines of a failing report: the answer, the inputs that are right, the next lines."""
        out = [f"{self.cause}: {self.headline()}"]
        if self.inputs_ok:
            out.append("  its inputs that are right: " + "; ".join(self.inputs_ok))
        if len(self.lines) > 1:
            out.append("  next likeliest lines: " + "; ".join(self.lines[1:3]))
        return out

    def headline(self) -> str:
        """The answer in one or two sentences: the line to fix, what it should compute, and why."""
        first = self.lines[0] if self.lines else (self.line or "")
        text = f"fix {first}: {self.explanation}"
        if self.line and not first.startswith(self.line):
            text += f" (first wrong value at {self.line}: it should equal {self.should_equal})"
        elif "should" not in self.explanation:
            text += f"; it should equal {self.should_equal}"
        return text
