"""The report row of ``python -m verification``."""
from __future__ import annotations

import dataclasses
from verification.suite.comparison import Comparison
from verification.checker.base.report import json_number


@dataclasses.dataclass
class Row:
    """One check: what it verifies, how far off it was, and PASS/FAIL."""

    name: str
    derivation: str  # source document and equation the check verifies
    max_abs: float
    max_rel: float
    tol: float
    passed: bool
    where: str = ""  # worst leaf and index, or why it failed

    @classmethod
    def from_comparison(cls, name, derivation, cmp: Comparison, tol) -> "Row":
        return cls(name, derivation, cmp.max_abs, cmp.max_rel, tol, cmp.ok and cmp.max_rel <= tol, cmp.where)

    def as_dict(self):
        d = dataclasses.asdict(self)
        d.update(max_abs=json_number(self.max_abs), max_rel=json_number(self.max_rel), tol=float(self.tol),
                 passed=bool(self.passed))
        d["status"] = "PASS" if self.passed else "FAIL"
        return d
