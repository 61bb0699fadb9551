"""The report of a rule check (:mod:`verification.checker.rules.vjp_checks`, ``jvp_checks``, ``curvature``): one row
per (output leaf, input leaf) block.

A :class:`verification.checker.base.report.CheckReport`, like the gradient report: ``.passed``, ``str()``,
``to_json()`` (schema ``verification.check_rule/3``, documented in docs/checker.md) and ``raise_if_failed()``.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional

from verification.checker.base.compare import LeafResult
from verification.checker.rules.linear_maps import Block
from verification.checker.base.report import CheckReport, json_number
from verification.checker.base.findings import BackwardFinding, RuleFinding

SCHEMA = "verification.check_rule/3"


@dataclasses.dataclass
class RuleReport(CheckReport):
    """What a rule check found.

    ``kind`` is the check ("custom_vjp", "vjp", "custom_jvp", "jvp", "hvp/hessian", "hvp/gauss_newton"),
    ``reference`` what the rule was compared with ("autodiff of f.fun", "finite differences", ...), and
    ``rule_side`` / ``reference_side`` name the two columns so that no one has to guess which is which.
    """

    SCHEMA = SCHEMA

    kind: str
    reference: str
    blocks: List[Block]
    rtol: float
    precision: str  # "float32 rule vs float64 reference"
    primal: Optional[LeafResult] = None  # the rule's primal output against the reference's
    findings: List[RuleFinding] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)
    batched: List[LeafResult] = dataclasses.field(default_factory=list)  # vmapped rule vs per-example calls
    structure_error: str = ""
    backward: Optional[BackwardFinding] = None  # the line of the rule's fwd / bwd to fix, when found

    @property
    def passed(self) -> bool:
        return (not self.structure_error and all(b.passed for b in self.blocks)
                and (self.primal is None or self.primal.passed) and all(r.passed for r in self.batched))

    @property
    def max_rel(self) -> float:
        """The worst judged error (:meth:`verification.checker.rules.linear_maps.Block.judged_rel`)."""
        rels = [b.judged_rel(self.rtol) for b in self.blocks] + [r.max_rel for r in self.batched]
        if self.primal is not None:
            rels.append(self.primal.max_rel)
        return float(max(rels)) if rels and not self.structure_error else float("inf")

    def __str__(self):
        lines = self.backward.lead() if self.backward is not None and not self.passed else []
        lines += [f"{self.kind}: rule against {self.reference} ({self.precision}, rtol {self.rtol:g})",
                 f"{'output':<16} {'input':<18} {'probes':>6} {'max abs':>10} {'max rel':>10} {'worst':<14} verdict"]
        for b in self.blocks:
            r = b.result
            lines.append(f"{b.output:<16} {b.input:<18} {len(b.probes):>6} {r.max_abs:>10.2e} {r.max_rel:>10.2e} "
                         f"{str(list(r.worst_index)):<14} {'PASS' if r.passed else 'FAIL'}")
        if self.primal is not None:
            p = self.primal
            lines.append(f"{'primal output':<35} {'':>6} {p.max_abs:>10.2e} {p.max_rel:>10.2e} "
                         f"{str(list(p.worst_index)):<14} {'PASS' if p.passed else 'FAIL'}")
        for r in self.batched:
            lines.append(f"{'vmap: ' + r.path:<42} {r.max_abs:>10.2e} {r.max_rel:>10.2e} "
                         f"{str(list(r.worst_index)):<14} {'PASS' if r.passed else 'FAIL'}")
        if self.structure_error:
            lines.append(f"structure: {self.structure_error}")
        lines.append("worst index: [probe, *entry]; the probes are random first, then unit vectors")
        lines.append(f"overall: {'PASS' if self.passed else 'FAIL'}")
        lines += [f"note: {n}" for n in self.notes]
        for f in self.findings:
            lines.append(f"diagnosis: {f.output} | {f.input}: {f.cause} -- {f.explanation}"
                         + (f" [rule: {f.where}]" if f.where else ""))
        return "\n".join(lines)

    def failure_title(self) -> str:
        return f"{self.kind} rule does not match {self.reference}"

    def json_fields(self):
        """Schema ``verification.check_rule/3`` (docs/checker.md)."""
        def leaf(r: LeafResult):
            return {"max_abs": json_number(r.max_abs), "max_rel": json_number(r.max_rel),
                    "worst_index": list(r.worst_index), "passed": r.passed}

        return {"kind": self.kind, "reference": self.reference, "precision": self.precision, "rtol": self.rtol,
                "structure_error": self.structure_error or None,
                "blocks": [{"output": b.output, "input": b.input, "probes": len(b.probes), **leaf(b.result)}
                           for b in self.blocks],
                "primal": None if self.primal is None else leaf(self.primal),
                "batched": [{"leaf": r.path, **leaf(r)} for r in self.batched],
                "findings": [f.as_dict() for f in self.findings], "notes": self.notes,
                "backward": None if self.backward is None else self.backward.as_dict()}
