"""The report of :func:`verification.check_gradients` (JSON schema :data:`SCHEMA`, docs/checker.md)."""
from __future__ import annotations

import dataclasses
from typing import List, Optional

from verification.checker.base.compare import LeafResult
from verification.checker.base.findings import BackwardFinding, Diagnosis, Hypothesis
from verification.checker.base.report import CheckReport, json_number
from verification.checker.base.taylor import TaylorResult
from verification.checker.explain.localize import Localization

SCHEMA = "verification.check_gradients/4"


@dataclasses.dataclass
class GradientReport(CheckReport):
    """What :func:`check_gradients` found.  ``to_json()`` follows the schema in docs/checker.md."""

    SCHEMA = SCHEMA

    leaves: List[LeafResult]
    rtol: float
    structure_error: str = ""
    diagnoses: List[Diagnosis] = dataclasses.field(default_factory=list)
    finite_differences: Optional[List[LeafResult]] = None
    unregularised_passed: Optional[bool] = None
    localization: Optional[Localization] = None
    hypotheses: List[Hypothesis] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)  # e.g. leaves passed at a kink
    precision: str = "float64"  # the dtype the check was judged in
    taylor: Optional[TaylorResult] = None  # the Taylor-remainder test, when asked for
    ranked: List[str] = dataclasses.field(default_factory=list)  # no hypothesis fits: the 3 likeliest sites
    backward: Optional[BackwardFinding] = None  # the line of the hand gradient to fix, when found

    @property
    def passed(self) -> bool:
        ok = not self.structure_error and all(l.passed for l in self.leaves)
        ok = ok and all(l.passed for l in (self.finite_differences or []))
        return ok and (self.taylor is None or self.taylor.passed)

    def __str__(self):
        lines = self.backward.lead() if self.backward is not None and not self.passed else []
        lines += [
            f"{'leaf':<22} {'shape':<12} {'max abs':>10} {'max rel':>10} {'worst':<10} {'cs231n band':<27} verdict"
        ]
        for l in self.leaves:
            lines.append(f"{l.path:<22} {str(l.shape):<12} {l.max_abs:>10.2e} {l.max_rel:>10.2e} "
                         f"{str(list(l.worst_index)):<10} {l.band:<27} {'PASS' if l.passed else 'FAIL'}"
                         + ("" if l.reference_shape is None else f" (the reference's shape is {l.reference_shape})"))
        if self.structure_error:
            lines.append(f"structure: {self.structure_error}")
        for l in self.finite_differences or []:
            lines.append(
                f"fd {l.path:<19} {str(l.shape):<12} {l.max_abs:>10.2e} {l.max_rel:>10.2e} "
                f"{str(list(l.worst_index)):<10} {'(central differences)':<27} {'PASS' if l.passed else 'FAIL'}"
            )
        if self.taylor is not None:
            lines.append(str(self.taylor))
        if self.unregularised_passed is not None:
            lines.append(f"with the regulariser off: {'PASS' if self.unregularised_passed else 'FAIL'}")
        lines.append(f"overall: {'PASS' if self.passed else 'FAIL'} (rtol {self.rtol:g}, {self.precision})")
        lines += [f"note: {n}" for n in self.notes]
        if self.localization is not None and self.localization.first_wrong is not None:
            lines += [f"where: {l}" for l in self.localization.lines()]
        for d in self.diagnoses:
            lines.append(
                f"diagnosis: {d.leaf}: {d.cause}"
                + (f" at {d.where}" if d.where else "")
                + f" -- {d.evidence}"
            )
        if self.ranked:
            lines.append("likeliest sites (no hypothesis fits): " + "; ".join(self.ranked))
        for h in self.hypotheses[1:]:
            lines.append(f"also fits: {h.cause} at {h.where} -- {h.explanation}")
        return "\n".join(lines)

    def failure_title(self) -> str:
        return "hand-derived gradient does not match jax.grad"

    def json_fields(self):
        """Schema ``verification.check_gradients/4`` (docs/checker.md)."""
        by_leaf = {d.leaf: d for d in self.diagnoses}
        num = json_number

        def leaf(l):
            d = by_leaf.get(l.path)
            return {"leaf": l.path, "shape": list(l.shape), "max_abs": num(l.max_abs), "max_rel": num(l.max_rel),
                    "elem_rel": num(l.elem_rel), "worst_index": list(l.worst_index), "passed": l.passed,
                    "cause": d and d.cause, "where": d and d.where, "evidence": d and d.evidence,
                    "reference_shape": None if l.reference_shape is None else list(l.reference_shape)}

        t = self.taylor
        return {"rtol": self.rtol, "precision": self.precision, "structure_error": self.structure_error or None,
                "leaves": [leaf(l) for l in self.leaves],
                "localization": None if self.localization is None else dataclasses.asdict(self.localization),
                "hypotheses": [h.as_dict() for h in self.hypotheses], "ranked": self.ranked, "notes": self.notes,
                "backward": None if self.backward is None else self.backward.as_dict(),
                "unregularised_passed": self.unregularised_passed,
                "taylor": None if t is None else {"slope": num(t.slope), "passed": t.passed, "steps": t.steps,
                                                  "remainders": t.remainders}}
