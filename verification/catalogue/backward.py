"""The backward families' marks and runner: ``# bwd: NAME`` on the line of the hand gradient (or of a
rule's ``bwd``) where each bug is written, and the scoring of those families.

A gradient family (a ``loss`` and a hand ``grad``) is checked with ``check_gradients`` and judged as the
catalogue's families are (:func:`verification.catalogue.planted.judge`).  A rule family (``KIND ==
"custom_vjp"``, with ``rule(bug)`` and ``args(seed, dtype)``) is checked with ``check_custom_vjp``, as
the rule catalogue is: explained when the first finding names the expected cause (for ``unknown``: it
fails and no finding names a known cause); located when a finding's ``where`` names the bug's ``# bwd:``
line or its ``# site:`` line in the primal.  For both, ``bwd_first`` / ``bwd_top3`` say whether the
report's ranked backward lines (``report.backward``'s ``lines``, where the report has them) put the bug's
``# bwd:`` line first / in the first three.  :func:`line_of` and :func:`ranked` name those lines for the
tests' own bugs (a line found by its code; the report's lines as ``"file.py:LINE"``).
"""
from __future__ import annotations

import inspect
import os
import re
import time
from typing import Dict, Iterator, List, NamedTuple, Optional

import jax.numpy as jnp

from verification.catalogue.planted import Planted, judge, site_lines

BWD = re.compile(r"#\s*bwd:\s*([\w\s,]+)$")  # a comment ending the line (not a docstring's mention)
_FILE_LINE = re.compile(r"([\w.\-]+\.py):(\d+)")


def bwd_lines(module) -> Dict[str, str]:
    """``BUG -> "file.py:LINE"`` for every name in a ``# bwd: NAME[, NAME]`` mark in ``module``'s source.

    A name marked on two lines raises: each bug is written on one line."""
    path = inspect.getsourcefile(module)
    with open(path) as f:
        lines = f.read().splitlines()
    base, marks = os.path.basename(path), {}
    for k, line in enumerate(lines, 1):
        m = BWD.search(line)
        for name in (m.group(1).replace(",", " ").split() if m else ()):
            if name in marks:
                raise ValueError(f"{base}: '# bwd: {name}' on lines {marks[name]} and {k}")
            marks[name] = f"{base}:{k}"
    return marks


def is_rule_family(module) -> bool:
    return getattr(module, "KIND", None) == "custom_vjp"


def backward_lines(report) -> List[str]:
    """The report's ranked lines of the user's backward code (``report.backward.lines`` or
    ``report.backward["lines"]``), most likely first; empty where the report has none."""
    b = getattr(report, "backward", None)
    if b is None:
        return []
    lines = b.get("lines") if isinstance(b, dict) else getattr(b, "lines", None)
    return [str(entry) for entry in (lines or [])]


def _names(entry: str, target: str) -> bool:
    m = _FILE_LINE.search(entry or "")
    return m is not None and f"{os.path.basename(m.group(1))}:{m.group(2)}" == target


def line_of(fn, text: str) -> str:
    """``"file.py:LINE"`` of the first line of ``fn``'s source that contains ``text`` (a bug's line, found by
    its code: the tests' way of naming the line a report should put first)."""
    src, start = inspect.getsourcelines(fn)
    k = next(i for i, line in enumerate(src) if text in line)
    return f"{os.path.basename(inspect.getsourcefile(fn))}:{start + k}"


def ranked(report) -> List[str]:
    """``"file.py:LINE"`` of each of the report's ranked backward lines, most likely first (an entry that
    names no such line kept as it is, so that positions hold)."""
    return [f"{m.group(1)}:{m.group(2)}" if m else entry
            for entry, m in ((e, _FILE_LINE.search(e or "")) for e in backward_lines(report))]


def line_hits(report, target: str):
    """``(first, top3)``: the report's ranked backward lines put ``target`` ("file.py:LINE") first / in the
    first three."""
    entries = backward_lines(report)
    return bool(entries) and _names(entries[0], target), any(_names(e, target) for e in entries[:3])


def judge_rule(report, planted: Planted, bwd_target: str, site_target: str):
    """``(located, explained)`` of a rule report (see the module's docstring)."""
    findings = list(getattr(report, "findings", []) or [])
    located = any(_names(getattr(f, "where", "") or "", t) for f in findings for t in (bwd_target, site_target))
    if planted.cause == "unknown":
        explained = not report.passed and all(f.cause == "unknown" for f in findings)
    else:
        explained = bool(findings) and findings[0].cause == planted.cause
    return located, explained


class BackwardOutcome(NamedTuple):
    family: str
    planted: Optional[Planted]  # None: the correct gradient / rule (or a correct variant, named in ``variant``)
    report: object  # a GradientReport or RuleReport; None when the checker raised (``error`` says what)
    located: bool
    explained: bool
    bwd_first: bool
    bwd_top3: bool
    seconds: float
    error: str = ""
    variant: str = ""


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"


def check_bug(family, bug, seed: int = 0, dtype=None):
    """The check a user runs on one bug of ``family`` (``bug=None``: its correct gradient or rule):
    ``check_custom_vjp`` for a rule family, else ``check_gradients``; its report."""
    from verification import check_custom_vjp, check_gradients

    if is_rule_family(family):
        return check_custom_vjp(family.rule(bug), *family.args(seed, *(() if dtype is None else (dtype,))))
    p, x, y = family.problem(seed)
    return check_gradients(family.loss, lambda p, x, y, bug=bug: family.grad(p, x, y, bug=bug), p, x, y)


def run(families, seed: int = 0) -> Iterator[BackwardOutcome]:
    """Check the correct gradient (or rule: in float64 and float32), each correct variant, and every planted
    bug of every family.  A correct row is ``located``/``explained`` when it passes."""
    for family in families:
        sites, marks = site_lines(family), bwd_lines(family)
        correct = [(None, "")] + [(None, v) for v in getattr(family, "CORRECT_VARIANTS", ())]
        for planted, variant in correct + [(b, "") for b in family.BUGS]:
            t0 = time.perf_counter()
            bug = variant or (planted.bug if planted else None)
            try:
                report = check_bug(family, bug, seed)
                if planted is None and is_rule_family(family) and report.passed:
                    f32 = check_bug(family, None, seed, jnp.float32)
                    report = report if f32.passed else f32
            except Exception as e:  # noqa: BLE001 -- a crash is scored (and printed), not raised
                yield BackwardOutcome(family.NAME, planted, None, False, False, False, False,
                                      time.perf_counter() - t0, _error(e), variant)
                continue
            seconds = time.perf_counter() - t0
            if planted is None:
                yield BackwardOutcome(family.NAME, None, report, report.passed, report.passed, False, False,
                                      seconds, "", variant)
                continue
            target = marks[planted.bug]
            if is_rule_family(family):
                located, explained = judge_rule(report, planted, target, sites[planted.site])
            else:
                second = sites[planted.also] if planted.also else ""
                located, explained = judge(report, planted, sites[planted.site], second)
            yield BackwardOutcome(family.NAME, planted, report, located, explained, *line_hits(report, target),
                                  seconds)
