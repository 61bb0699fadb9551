"""A hand gradient whose pytree differs from the parameters' (a leaf left ``None``): the lines of the user's
code that can hand ``None`` on where an array belongs.

No value is wrong here, so nothing can be replaced and re-run: the lines come from the source of the
functions the trace ran.  A conditional whose other branch computes an array that never ran (``db = None
if p.b is not None else jnp.sum(delta, 0)``: the condition inverted) comes first, then a conditional that
hands on a name or ``None``, then a plain ``None`` (``grads = [None] * depth`` a loop never fills), each in
program order.

>>> import ast
>>> [type(n).__name__ for n in _none_exprs(ast.parse("db = None if b is None else s(d)"))]
['IfExp']
"""
from __future__ import annotations

import ast
from typing import Callable, List, Optional, Sequence

import jax

from verification.checker.backward import program
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
        found = program.source_function(line)
        if found is not None:
            funcs.setdefault((found[0], id(found[1])), found[:2])
    ranked = []
    for path, func in funcs.values():
        inner = program.nested(func)  # (a nested function is its own entry where it ran)
        for node in _none_exprs(func):
            if id(node) in inner:
                continue
            span = range(node.lineno, (node.end_lineno or node.lineno) + 1)
            if any(f"{path}:{k}" in traced for k in span):
                continue  # it computed an array here
            other = node.orelse if isinstance(node, ast.IfExp) and _is_none(node.body) else getattr(node, "body", None)
            conditional = isinstance(node, ast.IfExp)
            rank = 0 if conditional and program.computes(other) else 1 if conditional else 2
            ranked.append((rank, path, node.lineno))
    return [f"{p}:{n}" for _, p, n in sorted(set(ranked))][:MAX_LINES]


def locate(fn: Callable, leaves: Sequence, names: Sequence[str], structure_error: str) -> Optional[BackwardFinding]:
    """The :class:`BackwardFinding` of a pytree mismatch: the lines that can hand ``None`` on (``None``
    where there is none)."""
    lines = none_lines(fn, leaves, names)
    if not lines:
        return None
    return BackwardFinding([f"{l} {program.code_at(l)}".rstrip() for l in lines], lines[0], program.code_at(lines[0]),
                           "an array for every parameter leaf", float("inf"), [], "structure",
                           f"it can hand on None where a gradient leaf belongs ({structure_error})", repaired=False)
