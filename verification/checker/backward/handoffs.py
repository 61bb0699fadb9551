"""Where a value is handed to the wrong place without a computation the trace can show: a wrong argument
at a call site (``add_penalty_grad(g, p, l1, l1)`` where ``l2`` belongs), or a wrong name in a result
(``return BatchNorm(sum_dy_xhat, sum_dy_xhat)``).

The first wrong value is computed inside the callee, on a line that is right for the values it is given
(``l2 * p.W``): the mistake is where the caller passed them.  Each equation carries the user's frames out
to the outermost call (:func:`verification.checker.jaxpr.source_lines.user_frames`); from the wrong line,
each parameter the line reads is followed outward through the call sites while it is passed on under its
own name (``penalty_grad(p, l1, l2)``).  The first call site that binds it to another name is where the
value came in.  It is named first where that call passes the same name for two parameters (``f(a, a)``:
one of them is the slip) and second otherwise (renaming at a call is also how right code is written).
A right value returned for another result is handed on by a ``return`` that reads its name and computes
nothing (:func:`returned_in`), or stored at the wrong index of a list (``grads[l - 2] = g``: :func:`stored_in`).

>>> import ast
>>> call = ast.parse("add_penalty_grad(g, p, l1, l1)").body[0].value
>>> func = ast.parse("def add_penalty_grad(g, p, l1, l2): pass").body[0]
>>> _argument(call, func, "l2").id, _duplicated(call)
('l1', True)
"""
from __future__ import annotations

import ast
from typing import List, Optional, Tuple

from verification.checker.backward.source_code import assigned_name, parsed, source_function, statement_at
from verification.checker.jaxpr import source_lines

__all__ = ["passed_in", "returned_in", "stored_in"]

MAX_DEPTH = 8  # call sites followed outward from the wrong line


def passed_in(eqn) -> List[Tuple[str, bool]]:
    """``("file:line", duplicated)`` of each call site that binds a parameter read on ``eqn``'s line to
    another name (``duplicated``: the call passes one name for two parameters), nearest first."""
    frames = source_lines.user_frames(eqn)
    if len(frames) < 2:
        return []
    found = source_function(frames[0])
    if found is None or isinstance(found[1], ast.Lambda):
        return []
    _, func, at = found
    stmt = statement_at(func, at)
    read = sorted({x.id for x in ast.walk(stmt) if isinstance(x, ast.Name) and isinstance(x.ctx, ast.Load)}
                  if stmt is not None else set())
    out = []
    for name in read:
        if name not in _params(func):
            continue
        site = _follow(frames, name)
        if site is not None and site[0] not in [s for s, _ in out]:
            out.append(site)
    return sorted(out, key=lambda s: not s[1])


def _follow(frames: List[str], name: str) -> Optional[Tuple[str, bool]]:
    """The first call site, outward from ``frames[0]``, that passes parameter ``name`` under another name."""
    for k in range(min(len(frames) - 1, MAX_DEPTH)):
        inner, outer = source_function(frames[k]), source_function(frames[k + 1])
        if inner is None or outer is None or isinstance(inner[1], ast.Lambda) or name not in _params(inner[1]):
            return None
        stmt = statement_at(outer[1], outer[2])
        calls = [c for c in ast.walk(stmt) if isinstance(c, ast.Call)] if stmt is not None else []
        named = [c for c in calls if _called(c) == inner[1].name]  # or through an alias: ``head.delta``
        named = named or [c for c in calls if _called(c) and inner[1].name.endswith("_" + _called(c))]
        if len(named) != 1:
            return None
        calls = named
        arg = _argument(calls[0], inner[1], name)
        if isinstance(arg, ast.Name) and arg.id == name:
            name = arg.id  # handed on as it is: the value came from further out
            continue
        if arg is None:
            return None
        return frames[k + 1], _duplicated(calls[0])
    return None


def _params(func) -> List[str]:
    a = func.args
    return [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]


def _called(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")


def _argument(call: ast.Call, func, name: str):
    """The expression ``call`` binds to parameter ``name`` of ``func`` (``None``: a default, or ``*args``)."""
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    positional = [x.arg for x in func.args.posonlyargs + func.args.args]
    if isinstance(call.func, ast.Attribute) and positional[:1] in (["self"], ["cls"]):
        positional = positional[1:]
    if name not in positional or any(isinstance(a, ast.Starred) for a in call.args):
        return None
    k = positional.index(name)
    return call.args[k] if k < len(call.args) else None


def _duplicated(call: ast.Call) -> bool:
    names = [a.id for a in call.args if isinstance(a, ast.Name)]
    names += [kw.value.id for kw in call.keywords if isinstance(kw.value, ast.Name)]
    return len(names) != len(set(names))


def returned_in(name: str, live_lines: set) -> List[str]:
    """``"file:line"`` of each ``return`` that reads ``name`` and computes nothing that reaches the results,
    in a function of a file the results were computed in that ran (it holds a line that did)."""
    out = []
    for path in sorted({l.rpartition(":")[0] for l in live_lines}):
        tree = parsed(path)
        if tree is None:
            continue
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            span = range(func.lineno, (func.end_lineno or func.lineno) + 1)
            if not any(f"{path}:{k}" in live_lines for k in span):
                continue
            for r in ast.walk(func):
                lines = range(r.lineno, (r.end_lineno or r.lineno) + 1) if isinstance(r, ast.Return) else ()
                if (lines and not any(f"{path}:{k}" in live_lines for k in lines)
                        and any(isinstance(x, ast.Name) and x.id == name for x in ast.walk(r))
                        and source_function(f"{path}:{r.lineno}")[1] is func):
                    out.append(f"{path}:{r.lineno}")
    return out


def stored_in(eqn, live_lines: set) -> List[str]:
    """``"file:line"`` of each store into a list or dict (``grads[l - 1] = g``) that reads a name the value of
    ``eqn`` is assigned to, on its line or at a call site out from it (``g = add_penalty_grad(...)``), in a
    function of a file the results were computed in that ran."""
    names = {assigned_name(f) for f in source_lines.user_frames(eqn)} - {""}
    out = []
    for path in sorted({l.rpartition(":")[0] for l in live_lines}):
        tree = parsed(path)
        for st in ast.walk(tree) if tree is not None and names else ():
            if (isinstance(st, ast.Assign) and any(isinstance(t, ast.Subscript) for t in st.targets)
                    and any(isinstance(x, ast.Name) and x.id in names for x in ast.walk(st.value))):
                found = source_function(f"{path}:{st.lineno}")
                func = found[1] if found is not None else None
                span = range(func.lineno, (func.end_lineno or func.lineno) + 1) if func is not None else ()
                if any(f"{path}:{k}" in live_lines for k in span):
                    out.append((path, st.lineno))
    return [f"{p}:{n}" for p, n in sorted(set(out))]
