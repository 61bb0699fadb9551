"""Equivalent mutants, by evaluation: a surviving mutant whose probes (:mod:`verification.mutants.probes`)
reach the mutated line and return the original's outputs, to ``EQUIVALENCE_RTOL``, on the same random
float64 inputs.  The same tracing records, on the original package, which locals share a kind and shape
(the ``variable`` operator's candidates).
"""
from __future__ import annotations

import ast
import sys

import numpy as np

from verification.mutants.operators import enclosing_functions
from verification.mutants.probes import run_probes

__all__ = ["EQUIVALENCE_RTOL", "compare_outputs", "probe_with_coverage", "record_peers"]

# float64 rounding: a mutant that only re-associates or reorders exact operations differs from the original by
# a few ulps (a relative 1e-15 per operation, ~1e-14 over the probes' short sums); any change of a formula moves
# a generic random point by far more than 1e-12.  Within this, the mutant computes the same function.
EQUIVALENCE_RTOL = 1e-12


def _trace_file(path: str, on_frame):
    """A ``sys.settrace`` function that calls ``on_frame(frame, event)`` for frames of ``path`` only."""
    def local(frame, event, arg):
        on_frame(frame, event)
        return local

    def global_(frame, event, arg):
        if frame.f_code.co_filename != path:
            return None
        on_frame(frame, event)
        return local

    return global_


def _run_traced(fn, path, on_frame):
    old = sys.gettrace()
    sys.settrace(_trace_file(path, on_frame))
    try:
        return fn()
    finally:
        sys.settrace(old)


def probe_with_coverage(jm, module: str, path: str) -> tuple[dict, set[int]]:
    """The module's probe outputs on package ``jm`` and the lines of ``path`` they executed."""
    lines: set[int] = set()

    def on_frame(frame, event):
        if event == "line":
            lines.add(frame.f_lineno)

    return _run_traced(lambda: run_probes(jm, module), path, on_frame), lines


def _kind(v):
    import jax

    if isinstance(v, bool):
        return None
    if isinstance(v, float):
        return ("float",)
    if isinstance(v, int):
        return ("int",)
    if isinstance(v, (jax.Array, np.ndarray, jax.core.Tracer)):
        return ("array", tuple(v.shape), str(v.dtype))
    return None


def _code_names(source: str) -> dict[tuple[int, str], list[str]]:
    """(first line, code name) -> qualified names, as a code object's ``co_firstlineno`` / ``co_name`` see them."""
    out: dict[tuple[int, str], list[str]] = {}
    tree = ast.parse(source)
    for node, q in enclosing_functions(tree).items():
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        out.setdefault((first, getattr(node, "name", "<lambda>")), []).append(q)
    return out


def _deleted(source: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for node, q in enclosing_functions(ast.parse(source)).items():
        out[q] = {t.id for d in ast.walk(node) if isinstance(d, ast.Delete) for t in d.targets if isinstance(t, ast.Name)}
    return out


def record_peers(jm, module: str, path: str, source: str) -> dict[str, dict[str, list[str]]]:
    """Per qualified function of ``path``, per local, the locals that had the same kind (float, int, or array
    shape and dtype) in every call of the probes where both were bound, and were both bound at least once.
    Names the function deletes (``del z``: declared unused) are left out."""
    codes = _code_names(source)
    snapshots: dict[str, list[dict[str, tuple]]] = {}

    def on_frame(frame, event):
        if event in ("call", "return"):
            kinds = {k: _kind(v) for k, v in frame.f_locals.items()}
            for q in codes.get((frame.f_code.co_firstlineno, frame.f_code.co_name), ()):
                snapshots.setdefault(q, []).append({k: v for k, v in kinds.items() if v is not None})

    _run_traced(lambda: run_probes(jm, module), path, on_frame)
    deleted = _deleted(source)
    peers: dict[str, dict[str, list[str]]] = {}
    for q, snaps in snapshots.items():
        seen: dict[tuple[str, str], bool] = {}
        for s in snaps:
            for a in s:
                for b in s:
                    if a != b:
                        seen[a, b] = seen.get((a, b), True) and s[a] == s[b]
        gone = deleted.get(q, set())
        table: dict[str, list[str]] = {}
        for (a, b), ok in sorted(seen.items()):
            if ok and a not in gone and b not in gone:
                table.setdefault(a, []).append(b)
        peers[q] = table
    return peers


def compare_outputs(got, ref) -> str | None:
    """None when ``got`` equals ``ref`` leaf by leaf to ``EQUIVALENCE_RTOL`` (NaNs where the original has
    them), else where they first differ."""
    import jax

    for name in ref:
        a, b = jax.tree.leaves(got.get(name)), jax.tree.leaves(ref[name])
        sa, sb = jax.tree.structure(got.get(name)), jax.tree.structure(ref[name])
        if str(sa) != str(sb):  # by text: each load of the package has its own Dense class
            return f"{name}: structure {str(sa)[:80]} != {str(sb)[:80]}"
        for i, (x, y) in enumerate(zip(a, b)):
            x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
            if x.shape != y.shape:
                return f"{name} leaf {i}: shape {x.shape} != {y.shape}"
            if not np.array_equal(np.isnan(x), np.isnan(y)):
                return f"{name} leaf {i}: NaNs differ"
            scale = np.max(np.abs(np.nan_to_num(y)), initial=0.0)
            err = np.max(np.abs(np.nan_to_num(x) - np.nan_to_num(y)), initial=0.0)
            if not err <= EQUIVALENCE_RTOL * max(scale, 1e-300):
                return f"{name} leaf {i}: off by {err:.3g} (scale {scale:.3g})"
    return None
