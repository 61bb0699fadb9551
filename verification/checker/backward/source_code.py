"""What the user's source says at a line of the hand gradient: its code (:func:`code_at`), the name it
assigns (:func:`assigned_name`), the assignments that hand a value on without computing anything
(:func:`silent_assignments`: a rename, a literal zero, an argument), the function a line belongs to and
its return line.  Read with ``linecache`` and ``ast``; every file parsed once (:func:`parsed`).
"""
from __future__ import annotations

import ast
import linecache
import re
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from verification.checker.jaxpr import source_lines

_ASSIGNED = re.compile(r"^\s*([A-Za-z_][\w\[\]'\", .]*?)\s*(?:[+\-*/@]?=)(?!=)")


def code_at(line: Optional[str]) -> str:
    """The source text of ``file:line`` (stripped, without a trailing comment), or ``""``."""
    if not line or ":" not in line:
        return ""
    path, _, n = line.rpartition(":")
    text = linecache.getline(path, int(n)) if n.isdigit() else ""
    return text.split("  #")[0].strip()


def assigned_name(line: Optional[str]) -> str:
    """The name the code at ``line`` assigns (``dh`` of ``dh = dz @ W.T``, also from the continuation line
    of a statement written over several lines), or ``""``."""
    m = _ASSIGNED.match(code_at(line))
    if m:
        return m.group(1).strip()
    if not line or ":" not in line or not line.rpartition(":")[2].isdigit():
        return ""
    path, _, n = line.rpartition(":")
    tree, at = parsed(path), int(n)
    spans = [s for s in ast.walk(tree) if isinstance(s, ast.Assign) and s.lineno <= at <= (s.end_lineno or s.lineno)
             and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)] if tree is not None else []
    return min(spans, key=lambda s: (s.end_lineno or s.lineno) - s.lineno).targets[0].id if spans else ""


def parsed(path: str):
    """The module's syntax tree of a source file (read once), or ``None`` where it cannot be read."""
    if path not in _TREES:
        try:
            with open(path) as f:
                _TREES[path] = ast.parse(f.read())
        except (OSError, SyntaxError, ValueError):
            _TREES[path] = None
    return _TREES[path]


_TREES: Dict[str, Any] = {}


def _passes(value) -> list:
    """The expressions that can hand a name on unchanged (``ast.Name`` nodes, each with its own line): a
    name, a conditional's name branch, a name among the values of ``{...}.get(key, default)``; with
    :func:`_zero`, a literal zero there."""
    if isinstance(value, ast.Name) or _zero(value):
        return [value]
    if isinstance(value, ast.IfExp):
        return _passes(value.body) + _passes(value.orelse)
    if (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr == "get"
            and isinstance(value.func.value, ast.Dict)):
        return [n for v in list(value.func.value.values) + list(value.args[1:]) for n in _passes(v)]
    return []


def _zero(value) -> bool:
    """A literal zero or ``zeros_like(...)``: a term left out."""
    if isinstance(value, ast.Constant):
        return isinstance(value.value, (int, float)) and not isinstance(value.value, bool) and value.value == 0
    if isinstance(value, ast.Call):
        f = value.func
        return (f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")) in ("zeros_like", "zeros")
    return False


def computes(expr) -> bool:
    """``expr`` computes with arrays (an operator or a call) whichever branch of a conditional expression runs,
    not only hands on names and constants."""
    if isinstance(expr, ast.IfExp):
        return computes(expr.body) and computes(expr.orelse)
    return any(isinstance(n, (ast.BinOp, ast.UnaryOp, ast.Call)) for n in ast.walk(expr))


def silent_assignments(line: Optional[str], live_lines: set, passing: set, returns: bool = False,
                       zeros: bool = False, ran: Optional[set] = None) -> List["Silent"]:
    """The lines that assign a name read at ``line`` ("file:line") by handing on one of the names
    ``passing`` unchanged and compute nothing that reaches the results (``dxhat = g``: a rename where a
    product was meant), latest first: a forgotten operation is written there, on a line the trace cannot
    show.  With ``returns``, the names the function returns are read too; with ``zeros``, a name set to a
    literal zero (``mean_dn = 0.0``: a term left out) is one too.  Every name a statement may hand on is
    a candidate (``{...}.get`` of several): :func:`verification.checker.backward.first_wrong` confirms the
    one the trace ran.  ``ran``: the lines where any equation ran (dead ones too); an assignment that computes
    but ran nowhere (the other branch of an ``if``) is not one a line reads."""
    found = source_function(line)
    if found is None:
        return []
    path, func, at = found
    stmts = [s for s in ast.walk(func) if isinstance(s, ast.stmt) and s.lineno <= at <= (s.end_lineno or s.lineno)]
    called = {id(c.func) for s in stmts[-1:] for c in ast.walk(s) if isinstance(c, ast.Call)}
    read = {x.id: at for s in stmts[-1:] for x in ast.walk(s) if isinstance(x, ast.Name)
            and isinstance(x.ctx, ast.Load) and id(x) not in called}  # a name called is a function, not a value
    if returns:
        read.update({x.id: s.lineno for s in ast.walk(func) if isinstance(s, ast.Return) for x in ast.walk(s)
                     if isinstance(x, ast.Name) and x.id not in read})
    params = {a.arg for a in func.args.posonlyargs + func.args.args + func.args.kwonlyargs}  # right as given

    def last_assign(name, before):  # (not one that computes something the trace never ran: the other branch)
        found = [a for a in ast.walk(func) if isinstance(a, ast.Assign) and a.lineno < before
                 and any(isinstance(t, ast.Name) and t.id == name for t in a.targets)
                 and not never_ran(a)]
        return max(found, key=lambda a: a.lineno, default=None)

    def never_ran(a) -> bool:
        return ran is not None and computes(a.value) and not any(
            f"{path}:{k}" in ran for k in range(a.lineno, (a.end_lineno or a.lineno) + 1))

    def silent(a) -> bool:  # an assignment that computes nothing that reaches the results
        return not any(f"{path}:{k}" in live_lines for k in range(a.lineno, (a.end_lineno or a.lineno) + 1))

    def assigned_on(name, before, depth=0):  # the lines of the statement that computed what ``name`` holds
        a = last_assign(name, before)
        if a is None:
            return (0, 0)
        names = [n.id for n in _passes(a.value) if isinstance(n, ast.Name)]
        if depth < 4 and silent(a) and names:  # an alias: ``quad = r``
            return assigned_on(names[0], a.lineno, depth + 1)
        return (a.lineno, a.end_lineno or a.lineno)

    for _ in range(3):  # aliases of a passing name pass it too (``quad = r``, then ``d = quad``)
        passing = passing | {t.id for a in ast.walk(func) if isinstance(a, ast.Assign) and silent(a)
                             and {n.id for n in _passes(a.value) if isinstance(n, ast.Name)} & passing
                             for t in a.targets if isinstance(t, ast.Name)}

    def handed(s):  # the expressions of assignment s that hand on a passing name, an argument (or a zero)
        return [n for n in _passes(s.value) if (n.id in passing | params if isinstance(n, ast.Name) else zeros)]

    out = []
    for name, before in sorted(read.items()):
        last = last_assign(name, before)  # the assignment the line reads
        if last is None:
            continue
        span = range(last.lineno, (last.end_lineno or last.lineno) + 1)
        nodes = handed(last)
        if not nodes or any(f"{path}:{k}" in live_lines for k in span):
            continue
        later = [a.lineno for a in ast.walk(func) if isinstance(a, ast.Assign) and a.lineno > last.lineno
                 and any(isinstance(t, ast.Name) and t.id == name for t in a.targets)
                 and not never_ran(a)]  # (the other branch, never run)
        end = min(later, default=func.end_lineno or at)
        reads = {x.lineno for x in ast.walk(func) if isinstance(x, ast.Name) and x.id == name
                 and isinstance(x.ctx, ast.Load) and (last.end_lineno or last.lineno) < x.lineno <= end}
        if returns and name in {x.id for r in ast.walk(func) if isinstance(r, ast.Return) for x in ast.walk(r)
                                if isinstance(x, ast.Name)}:
            reads |= {r.lineno for r in ast.walk(func) if isinstance(r, ast.Return)}
        def lines_of(n):
            lo, hi = assigned_on(n.id, last.lineno) if isinstance(n, ast.Name) else (0, 0)
            return tuple(f"{path}:{k}" for k in range(lo, hi + 1) if k)

        for n in nodes:  # which branch ran, the trace tells (:func:`first_wrong` confirms each)
            arg = isinstance(n, ast.Name) and not lines_of(n) and n.id in params
            others = tuple(x for o in _passes(last.value) if o is not n and isinstance(o, ast.Name)
                           for x in lines_of(o))
            out.append((last.lineno, Silent(f"{path}:{n.lineno}", lines_of(n),
                                            tuple(f"{path}:{k}" for k in sorted(reads)), arg, others)))
    return [found for _, found in sorted(out, key=lambda t: t[0], reverse=True)]


class Silent(NamedTuple):
    """A line that hands a value on under a new name without computing anything: ``where`` ("file:line"),
    ``source`` (the lines of the statement that computed the value handed on; empty for a literal zero or
    an argument), ``reads`` (the lines that read the new name), ``argument`` (it hands on one of the
    function's arguments: ``dxhat = g``) and ``others``."""

    where: str
    source: Tuple[str, ...]
    reads: Tuple[str, ...]
    argument: bool = False
    others: Tuple[str, ...] = ()  # the lines that computed the statement's other names it may hand on


def return_line(fn) -> Optional[str]:
    """``"file:line"`` of the statement that hands ``fn``'s results back (its last ``return``; a lambda's
    own line), or ``None`` where the source cannot be read (a builtin, a partial, a jitted wrapper that
    hides it)."""
    fn = getattr(fn, "__wrapped__", fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    path, first = source_lines.shown(code.co_filename), code.co_firstlineno
    tree = parsed(path)
    if tree is None:
        return None
    if code.co_name == "<lambda>":
        return f"{path}:{first}"
    defs = [d for d in ast.walk(tree) if isinstance(d, (ast.FunctionDef, ast.AsyncFunctionDef))
            and d.name == code.co_name
            and (d.decorator_list[0].lineno if d.decorator_list else d.lineno) <= first <= d.lineno]
    if not defs:
        return None
    inner = nested(defs[0])
    returns = [r.lineno for r in ast.walk(defs[0]) if isinstance(r, ast.Return) and id(r) not in inner]
    return f"{path}:{max(returns)}" if returns else None


def nested(func) -> set:
    """The ids of the nodes of ``func`` (a def or lambda node) that lie inside a function nested in it."""
    return {id(n) for d in ast.walk(func) if d is not func
            and isinstance(d, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) for n in ast.walk(d)}


def source_function(line: Optional[str]):
    """``(path, the innermost def or lambda around line, line number)`` of ``"file:line"``, or ``None``."""
    if not line or ":" not in line or not line.rpartition(":")[2].isdigit():
        return None
    path, _, n = line.rpartition(":")
    tree = parsed(path)
    funcs = [f for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
             and f.lineno <= int(n) <= (f.end_lineno or f.lineno)] if tree is not None else []
    inner = min(funcs, key=lambda f: (f.end_lineno or f.lineno) - f.lineno, default=None)
    return None if inner is None else (path, inner, int(n))


def statement_at(func, at: int):
    """The innermost statement of ``func`` (a def or lambda node) that spans line ``at``, or ``None``."""
    stmts = [s for s in ast.walk(func) if isinstance(s, ast.stmt) and s is not func
             and s.lineno <= at <= (s.end_lineno or s.lineno)]
    return min(stmts, key=lambda s: (s.end_lineno or s.lineno) - s.lineno, default=None)


def same_function(line: Optional[str], other: Optional[str]) -> bool:
    """Lines ``line`` and ``other`` ("file:line") lie in the same innermost function (def or lambda)."""
    a, b = source_function(line), source_function(other)
    return a is not None and b is not None and a[0] == b[0] and a[1] is b[1]

