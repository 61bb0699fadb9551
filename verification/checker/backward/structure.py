"""A hand gradient whose pytree differs from the parameters' (a leaf left ``None``): the lines of the user's
code that can hand ``None`` on where an array belongs.

No value is wrong here, so nothing can be replaced and re-run: the lines come from the source of the
functions the trace ran.  A conditional whose other branch computes an array that never ran (``db = None
if p.b is not None else jnp.sum(delta, 0)``: the condition inverted) comes first, then a conditional that
hands on a name or ``None``, then a plain ``None`` (``grads = [None] * depth`` a loop never fills: the stores
into that list first, then the loops around them, then the list), each in program order.

>>> import ast
>>> [type(n).__name__ for n in _none_exprs(ast.parse("db = None if b is None else s(d)"))]
['IfExp']
"""
from __future__ import annotations

import ast
from typing import Callable, List, Optional, Sequence

import jax

from verification.checker.backward import program, source_code
from verification.checker.base.findings import BackwardFinding

MAX_LINES = 3  # candidate lines reported


def _is_none(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _none_exprs(func) -> List[ast.AST]:
    """The expressions of ``func`` that hand ``None`` on as a value: a conditional with a ``None`` branch, a
    ``None`` assigned or returned, or listed in a display (``[None] * depth``); not a comparison with it, an
    index (``x[:, None]``) or an argument (``axis=None``)."""
    out = []
    for node in ast.walk(func):
        if isinstance(node, ast.IfExp) and (_is_none(node.body) or _is_none(node.orelse)):
            out.append(node)
        elif isinstance(node, (ast.Assign, ast.Return)) and node.value is not None and _holds_none(node.value):
            out.append(node)
    return out


def _holds_none(value) -> bool:
    """``None`` itself, or a display of it (``[None]``, ``(None, x)``, ``[None] * n``)."""
    if _is_none(value):
        return True
    if isinstance(value, (ast.List, ast.Tuple)):
        return any(_is_none(e) for e in value.elts)
    return isinstance(value, ast.BinOp) and (_holds_none(value.left) or _holds_none(value.right))


def none_lines(fn: Callable, leaves: Sequence, names: Sequence[str]) -> List[str]:
    """``"file:line"`` of the lines that can hand ``None`` on, in the functions ``fn(*leaves)`` ran (its
    results flattened: a ``None`` leaf drops out), most likely first (the module's order)."""
    prog = program.trace(lambda *ls: jax.tree.leaves(fn(*ls)), list(leaves), list(names))
    traced = prog.traced_lines()
    funcs = {}
    for line in sorted(traced):
        found = source_code.source_function(line)
        if found is not None:
            funcs.setdefault((found[0], id(found[1])), found[:2])
    ranked = []
    for path, func in funcs.values():
        inner = source_code.nested(func)  # (a nested function is its own entry where it ran)
        for node in _none_exprs(func):
            if id(node) in inner:
                continue
            span = range(node.lineno, (node.end_lineno or node.lineno) + 1)
            if any(f"{path}:{k}" in traced for k in span):
                continue  # it computed an array here
            other = node.orelse if isinstance(node, ast.IfExp) and _is_none(node.body) else getattr(node, "body", None)
            conditional = isinstance(node, ast.IfExp)
            rank = 0 if conditional and source_code.computes(other) else 1 if conditional else 2
            ranked.append((rank, 2, path, node.lineno))
            for sub, line in _fillers(func, node, inner):
                ranked.append((rank, sub, path, line))
    return list(dict.fromkeys(f"{p}:{n}" for *_, p, n in sorted(set(ranked))))[:MAX_LINES]


def _fillers(func, node, inner) -> List[tuple]:
    """``(0, line)`` of each store into a list that ``node`` fills with ``None`` (``grads = [None] * depth``;
    ``grads[l - 1] = g``: a store to the wrong index), and ``(1, line)`` of the loops around them (the loop's
    range leaves a slot unfilled)."""
    if not isinstance(node, ast.Assign) or not all(isinstance(t, ast.Name) for t in node.targets):
        return []
    names = {t.id for t in node.targets}
    out = []
    for loop in [n for n in ast.walk(func) if isinstance(n, (ast.For, ast.While)) and id(n) not in inner] + [func]:
        for st in ast.walk(loop):
            if (isinstance(st, ast.Assign) and id(st) not in inner and any(
                    isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id in names
                    for t in st.targets)):
                out.append((0, st.lineno))
                if loop is not func:
                    out.append((1, loop.lineno))
    return out


def locate(fn: Callable, leaves: Sequence, names: Sequence[str], structure_error: str) -> Optional[BackwardFinding]:
    """The :class:`BackwardFinding` of a pytree mismatch: the lines that can hand ``None`` on (``None``
    where there is none)."""
    lines = none_lines(fn, leaves, names)
    if not lines:
        return None
    return BackwardFinding([f"{l} {source_code.code_at(l)}".rstrip() for l in lines], lines[0], source_code.code_at(lines[0]),
                           "an array for every parameter leaf", float("inf"), [], "structure",
                           f"it can hand on None where a gradient leaf belongs ({structure_error})", repaired=False)
