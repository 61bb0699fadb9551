"""A size read from the wrong axis: ``m = dy.shape[1]`` where the batch size ``dy.shape[0]`` was meant.

Such a size is a Python number when the gradient is traced: it reaches the program as a literal of the lines
that use it, and the statement that took it from the wrong axis computes nothing the trace can show.  It is
found from both sides: in the source, a name read on a line of the first wrong value's cone whose last
assignment reads a shape (``.shape``, ``.size``, ``len(...)``); in the program, that line's literals set to
each other axis length of the inputs (:meth:`verification.checker.backward.program.Program.with_literal`)
repair every wrong output.  Then the assignment is the line to fix.

>>> _reads_shape(ast.parse("m = dy.shape[-1]").body[0].value), _reads_shape(ast.parse("m = 2.0").body[0].value)
(True, False)
"""
from __future__ import annotations

import ast
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from verification.checker.backward import why
from verification.checker.backward.program import Program
from verification.checker.backward.source_code import code_at, source_function, statement_at

__all__ = ["wrong_size"]


def _reads_shape(value) -> bool:
    return any((isinstance(n, ast.Attribute) and n.attr in ("shape", "size", "ndim"))
               or (isinstance(n, ast.Call) and getattr(n.func, "id", "") == "len") for n in ast.walk(value))


def _shape_names(line: str, live: set) -> List[Tuple[str, str]]:
    """``(name, "file:line")`` of each name read at ``line`` whose last assignment before it, in the same
    function, takes a size from a shape and computes nothing that reaches the results."""
    found = source_function(line)
    if found is None:
        return []
    path, func, at = found
    stmt = statement_at(func, at)
    read = {x.id for x in ast.walk(stmt) if isinstance(x, ast.Name) and isinstance(x.ctx, ast.Load)} if stmt else set()
    out = []
    for name in sorted(read):
        assigns = [a for a in ast.walk(func) if isinstance(a, ast.Assign) and a.lineno < at
                   and any(isinstance(t, ast.Name) and t.id == name for t in a.targets)]
        last = max(assigns, key=lambda a: a.lineno, default=None)
        if last is None or not _reads_shape(last.value):
            continue
        if any(f"{path}:{k}" in live for k in range(last.lineno, (last.end_lineno or last.lineno) + 1)):
            continue
        out.append((name, f"{path}:{last.lineno}"))
    return out


def wrong_size(program: Program, expected: Sequence[np.ndarray], eqns: Sequence[int], tol: float,
               leaf_errors: Callable) -> Optional[Tuple[str, why.Why]]:
    """``("file:line" of the assignment to fix, why)`` when a size read on the lines of ``eqns`` (the first
    wrong value and its cone) was taken from the wrong axis: the literals it gives those lines (axis lengths
    of the inputs), set to another axis length, repair every output; else ``None``.  The caller keeps a
    plainer account where one fits (a factor 2 that the ratio of two axis lengths happens to equal).
    ``leaf_errors`` is the localisation's one comparison of the outputs with what they should be."""

    lines = list(dict.fromkeys(program.graph.user_line(i) for i in eqns if program.graph.user_line(i)))
    live = program.live_lines()
    sizes = why.sizes_of(program)
    for line in lines:
        names = _shape_names(line, live)
        if not names:
            continue
        on_line = [i for i in program.live_eqns() if i is not None and program.graph.user_line(i) == line]
        found = [c for c in _size_literals(program, on_line) if c in sizes]  # what ``x.shape[k]`` can give
        tries = [[c] for c in found] + ([found] if len(found) > 1 else [])  # one size, or one per instance
        for olds in tries:
            news = [s for s in sizes if s not in olds]
            if not news:
                continue
            errs = leaf_errors(program.with_literal(on_line, olds, news), expected)  # (only its literals change)
            ok = np.all(errs <= max(100 * tol, 1e-6), axis=1)
            if np.any(ok):
                s = news[int(np.argmax(ok))]
                name, where = names[0]
                was = " and ".join(f"{c:g}" for c in olds)
                return where, why.Why("wrong_size", f"`{code_at(where)}` makes {name} = {was}; with {name} = {s:g} "
                                                    f"(another axis's length) the gradient is right: the size is "
                                                    "taken from the wrong axis")
    return None


def _size_literals(program: Program, eqn_ids) -> List[float]:
    """The sizes (integers >= 2) the equations read as scalar literals, themselves or as ``1/size``."""
    out = []
    for i in eqn_ids:
        for u in program.eqns[i].invars:
            if hasattr(u, "val") and np.ndim(u.val) == 0 and float(np.asarray(u.val)) != 0:
                x = float(np.asarray(u.val))
                for c in (x, 1 / x):
                    if c >= 2 and abs(c - round(c)) <= 1e-9 * c and round(c) not in out:
                        out.append(float(round(c)))
    return out

