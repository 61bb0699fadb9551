"""A planted bug, and the judge of what the checker said about it."""
from __future__ import annotations

import dataclasses
import inspect
import os
import re
from typing import Dict

SITE = re.compile(r"#\s*site:\s*(\w+)")


@dataclasses.dataclass(frozen=True)
class Planted:
    bug: str  # the name the family's ``grad`` takes as ``bug=``
    description: str  # the mistake, as someone made it by hand
    cause: str  # the cause the checker should name (verification.checker.gradients.check.CAUSES)
    site: str  # the ``# site: NAME`` mark on the loss line where the error enters
    also: str = ""  # a two-site mistake: the second site's mark (the same cause at both)


def site_lines(module) -> Dict[str, str]:
    """``NAME -> "file.py:LINE"`` for every ``# site: NAME`` mark in ``module``'s source."""
    path = inspect.getsourcefile(module)
    with open(path) as f:
        lines = f.read().splitlines()
    base = os.path.basename(path)
    return {m.group(1): f"{base}:{k}" for k, line in enumerate(lines, 1) if (m := SITE.search(line))}


def _at(where, target):
    return where is not None and os.path.basename(where.rsplit(" at ", 1)[-1].split(" ")[0]) == target


def judge(report, planted: Planted, target: str, second: str = ""):
    """``(located, explained)``: is the site ``target`` (``file.py:LINE``) named, and the cause with it?

    Located: a fitting hypothesis (or one of its equivalent sites) is at the target line; when no
    hypothesis fits, the report's ranked lines (or the localisation's bracket) contain it.  Explained: a
    fitting hypothesis names the expected cause at the target line, and for a two-site mistake also at
    ``second``, the other site's line (for an expected ``unknown``: none fits, and the report says so).
    """
    hyps = report.hypotheses
    at_target = [h for h in hyps if any(_at(w, target) for w in [h.where, *h.equivalent])]
    if second:
        at_target = [h for h in at_target if any(_at(w, second) for w in [h.where, *h.also_at, *h.equivalent])
                     and (second != target or h.changes > 1)]
    loc = report.localization
    ranked = getattr(report, "ranked", None) or []
    bracket = any(_at(w, target) for w in ranked) or (loc is not None and not ranked and
                                                       any(_at(w, target) for w in loc.between))
    located = bool(at_target) or (not hyps and bracket)
    if planted.cause == "unknown":
        explained = not hyps and any(d.cause == "unknown" for d in report.diagnoses)
    else:
        explained = any(h.cause == planted.cause for h in at_target)
    return located, explained
