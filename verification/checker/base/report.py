"""The one report base of the checker: every check returns a :class:`CheckReport`.

A report says ``passed``, prints as a table (``str``), serialises as JSON (``to_json``, with a ``schema``
name and version, docs/checker.md) and fails a test with the table (``raise_if_failed``).  Subclasses give
``SCHEMA``, ``passed``, ``__str__``, ``json_fields`` and ``failure_title``.
"""
from __future__ import annotations

import json
import math
from typing import Any, ClassVar, Dict


def json_number(x) -> Any:
    """A float for JSON: finite values as they are, ``inf``/``nan`` as the strings ``"inf"``/``"nan"``."""
    x = float(x)
    return x if math.isfinite(x) else str(x)


class CheckReport:
    """Base of :class:`verification.GradientReport` and :class:`verification.RuleReport`."""

    SCHEMA: ClassVar[str] = ""

    @property
    def passed(self) -> bool:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def failure_title(self) -> str:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def json_fields(self) -> Dict[str, Any]:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def to_json(self) -> str:
        """The report as JSON: ``{"schema": ..., "passed": ..., **fields}`` (documented in docs/checker.md)."""
        return json.dumps({"schema": self.SCHEMA, "passed": bool(self.passed), **self.json_fields()})

    def raise_if_failed(self):
        """Raise ``AssertionError`` with the whole report when the check failed; else return the report."""
        if not self.passed:
            raise AssertionError(f"{self.failure_title()}:\n{self}")
        return self
