"""The user's backward code as a program whose every value can be read and replaced.

:func:`trace` traces a hand-written gradient (or a rule's ``bwd``) with the same machinery as the loss
(:func:`verification.checker.jaxpr.graph.trace`: ``jit``, ``checkpoint``, ``cond`` and ``while_loop``
inlined, Python loops unrolled by tracing, short scans unrolled), so that each equation carries the
user's line.  :meth:`Program.replaced` re-runs only what depends on one value, with that value replaced
by a batch of candidates (``vmap``), through the one interpreter.
"""
from __future__ import annotations

import ast
import dataclasses
import linecache
import re
from typing import Any, Callable, Dict, List, Optional, Sequence

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from verification.checker.jaxpr import graph as jg
from verification.checker.jaxpr import interpreter

# A backward program unrolls loops up to this many equations (a BPTT's forward and reverse scans over a
# few dozen steps), so that each step's values meet the loss's per-step cotangents; past it a loop stays
# one equation and is judged as a whole.
UNROLL_MAX = 4096
_ASSIGNED = re.compile(r"^\s*([A-Za-z_][\w\[\]'\", .]*?)\s*(?:[+\-*/@]?=)(?!=)")


@dataclasses.dataclass
class Program:
    """A traced function of the parameter leaves, its values at the point, and who computes what."""

    graph: jg.Graph
    env: Dict[Any, Any]

    @property
    def eqns(self):
        return self.graph.eqns

    @property
    def outvars(self):
        return self.graph.closed.jaxpr.outvars

    def value(self, var) -> Optional[np.ndarray]:
        x = interpreter.read(self.env, var, None)
        return None if x is None else np.asarray(x)

    def producer(self, var) -> Optional[int]:
        return self.graph.producer.get(var) if isinstance(var, jcore.Var) else None

    def line(self, var) -> Optional[str]:
        i = self.producer(var)
        return None if i is None else self.graph.user_line(i)

    def consumers(self, var) -> List[int]:
        """The equations that read ``var``."""
        return [i for i, e in enumerate(self.eqns) if any(u is var for u in e.invars)]

    def live_lines(self) -> set:
        """The user's lines with an equation whose value reaches the results."""
        return {self.graph.user_line(self.producer(v)) for v in self.ancestors(self.outvars)} - {None}

    def ancestors(self, outs) -> List[Any]:
        """Every variable computed by an equation on a path to ``outs``, in program order."""
        seen, stack = set(), [v for v in outs if isinstance(v, jcore.Var)]
        while stack:
            v = stack.pop()
            if v in seen or self.producer(v) is None:
                continue
            seen.add(v)
            stack.extend(u for u in self.eqns[self.producer(v)].invars if isinstance(u, jcore.Var))
        return sorted(seen, key=lambda v: (self.producer(v), str(v)))

    def replaced(self, var, candidates, targets=None) -> List[np.ndarray]:
        """The program's outputs (or the values ``targets``) with ``var`` (a computed value, a parameter or
        an input) replaced by each of ``candidates`` (stacked on axis 0): one batched run of the equations
        that depend on ``var``."""
        return self.replaced_all([var], [candidates], targets)

    def replaced_all(self, variables, candidates, targets=None) -> List[np.ndarray]:
        """As :meth:`replaced`, with every one of ``variables`` replaced at once (the instances of one line
        of a loop), ``candidates[i]`` stacked for ``variables[i]``."""
        starts = [self.producer(v) for v in variables]
        start = min(-1 if s is None else s for s in starts)  # a parameter or an input: any equation may read it
        outvars = self.outvars if targets is None else targets
        last = max((self.producer(v) for v in outvars if self.producer(v) is not None), default=len(self.eqns))
        jaxpr = self.graph.closed.jaxpr

        def one(xs):
            new = dict(zip(variables, xs))
            touched = set(variables)

            def on_eqn(i, eqn, invals, env):
                if i < start or i > last or not any(isinstance(u, jcore.Var) and u in touched for u in eqn.invars):
                    return [new.get(v, env[v]) for v in eqn.outvars]
                touched.update(eqn.outvars)
                outs = interpreter.bind(eqn, invals)
                return [new.get(v, o) for v, o in zip(eqn.outvars, outs)]

            env = dict(self.env)
            env.update(new)
            env = interpreter.run(jaxpr, [env[v] for v in jaxpr.invars], on_eqn, env=env)
            return [jnp.asarray(interpreter.read(env, v)) for v in outvars]

        stacked = [jnp.asarray(np.stack([np.asarray(c) for c in cs]), dtype=v.aval.dtype)
                   for v, cs in zip(variables, candidates)]
        return [np.asarray(o) for o in jax.vmap(one)(stacked)]


def trace(fn: Callable, leaves: Sequence[Any], names: Sequence[str], unroll: bool = True) -> Program:
    """Trace ``fn(*leaves)`` (returning a flat list of arrays) and evaluate every value at ``leaves``; loops
    up to :data:`UNROLL_MAX` equations are unrolled (with ``unroll=False``, as the loss's are)."""
    graph = jg.trace(lambda ls: fn(*ls), list(leaves), names, **({"unroll_max": UNROLL_MAX} if unroll else {}))
    env = interpreter.run(graph.closed, list(leaves))
    return Program(graph, env)


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
    tree, at = _parsed(path), int(n)
    spans = [s for s in ast.walk(tree) if isinstance(s, ast.Assign) and s.lineno <= at <= (s.end_lineno or s.lineno)
             and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)] if tree is not None else []
    return min(spans, key=lambda s: (s.end_lineno or s.lineno) - s.lineno).targets[0].id if spans else ""


def _parsed(path: str):
    if path not in _TREES:
        try:
            with open(path) as f:
                _TREES[path] = ast.parse(f.read())
        except (OSError, SyntaxError, ValueError):
            _TREES[path] = None
    return _TREES[path]


_TREES: Dict[str, Any] = {}


def _passes(value) -> set:
    """The names an expression can hand on unchanged: a name, a conditional's name branch, a name among
    the values of ``{...}.get(key, default)``."""
    if isinstance(value, ast.Name):
        return {value.id}
    if isinstance(value, ast.IfExp):
        return _passes(value.body) | _passes(value.orelse)
    if (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr == "get"
            and isinstance(value.func.value, ast.Dict)):
        return set().union(*[_passes(v) for v in list(value.func.value.values) + list(value.args[1:])])
    return set()


def silent_assignments(line: Optional[str], live_lines: set, passing: set, returns: bool = False) -> List[str]:
    """The lines that assign a name read at ``line`` ("file:line") by handing on one of the names
    ``passing`` unchanged and compute nothing that reaches the results (``dxhat = g``: a rename where a
    product was meant), latest first: a forgotten operation is written there, on a line the trace cannot
    show.  With ``returns``, the names the function returns are read too."""
    if not line or ":" not in line:
        return []
    path, _, n = line.rpartition(":")
    tree = _parsed(path) if n.isdigit() else None
    if tree is None:
        return []
    at = int(n)
    funcs = [f for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.Lambda))
             and f.lineno <= at <= (f.end_lineno or f.lineno)]
    if not funcs:
        return []
    func = min(funcs, key=lambda f: (f.end_lineno or f.lineno) - f.lineno)
    stmts = [s for s in ast.walk(func) if isinstance(s, ast.stmt) and s.lineno <= at <= (s.end_lineno or s.lineno)]
    read = {x.id: at for s in stmts[-1:] for x in ast.walk(s) if isinstance(x, ast.Name)
            and isinstance(x.ctx, ast.Load)}
    if returns:
        read.update({x.id: s.lineno for s in ast.walk(func) if isinstance(s, ast.Return) for x in ast.walk(s)
                     if isinstance(x, ast.Name) and x.id not in read})
    out = []
    for name, before in sorted(read.items()):
        assigns = [s for s in ast.walk(func) if isinstance(s, ast.Assign) and s.lineno < before
                   and any(isinstance(t, ast.Name) and t.id == name for t in s.targets) and _passes(s.value) & passing]
        if not assigns:
            continue
        last = max(assigns, key=lambda s: s.lineno)
        span = range(last.lineno, (last.end_lineno or last.lineno) + 1)
        if not any(f"{path}:{k}" in live_lines for k in span):
            out.append((last.lineno, f"{path}:{last.lineno}"))
    return [where for _, where in sorted(out, reverse=True)]
