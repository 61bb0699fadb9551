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
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from verification.checker.jaxpr import graph as jg
from verification.checker.jaxpr import interpreter, source_lines

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
    _live: Optional[List[Any]] = dataclasses.field(default=None, init=False, repr=False)
    _readers: Optional[Dict[Any, List[int]]] = dataclasses.field(default=None, init=False, repr=False)

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
        """The equations that read ``var`` (indexed once: the program never changes)."""
        if self._readers is None:
            self._readers = {}
            for i, e in enumerate(self.eqns):
                for u in dict.fromkeys(u for u in e.invars if isinstance(u, jcore.Var)):
                    self._readers.setdefault(u, []).append(i)
        return list(self._readers.get(var, [])) if isinstance(var, jcore.Var) else []

    def ends_line(self, var) -> bool:
        """``var`` is its line's result: no equation of the same line reads it (``a + b + c``: the second
        add's, not the first's)."""
        line = self.line(var)
        return not any(self.graph.user_line(i) == line for i in self.consumers(var))

    def live_vars(self) -> List[Any]:
        """Every variable on a path to the results, in program order (found once: the program never changes;
        its replays run on copies of ``env``)."""
        if self._live is None:
            self._live = self.ancestors(self.outvars)
        return self._live

    def live_eqns(self) -> set:
        """The equations whose values reach the results."""
        return {self.producer(v) for v in self.live_vars()}

    def traced_lines(self) -> set:
        """The user's lines with any equation, whether or not its value reaches the results."""
        return {self.graph.user_line(i) for i in range(len(self.eqns))} - {None}

    def live_lines(self) -> set:
        """The user's lines with an equation whose value reaches the results."""
        return {self.graph.user_line(i) for i in self.live_eqns()} - {None}

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

    def replaced_all(self, variables, candidates, targets=None, readers=None) -> List[np.ndarray]:
        """As :meth:`replaced`, with every one of ``variables`` replaced at once (the instances of one line
        of a loop), ``candidates[i]`` stacked for ``variables[i]``; with ``readers`` (equation indices),
        only as those equations read them (one name of a value, where two names share it)."""
        if readers is not None:
            return self._replaced_for(variables, candidates, targets, set(readers))
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

        return interpreter.vmapped(lambda *xs: one(xs), _stacked(variables, candidates))


    def _replaced_for(self, variables, candidates, targets, readers) -> List[np.ndarray]:
        def rewrite(i, eqn, invals, new):
            if i not in readers or not any(isinstance(u, jcore.Var) and u in new for u in eqn.invars):
                return None
            return [new[u] if isinstance(u, jcore.Var) and u in new else x for u, x in zip(eqn.invars, invals)]

        return self._rerun(min(readers), rewrite, lambda xs: dict(zip(variables, xs)),
                           _stacked(variables, candidates), targets)

    def with_literal(self, eqn_ids, olds: Sequence[float], news: Sequence[float]) -> List[np.ndarray]:
        """The outputs with every scalar literal of ``olds`` (or ``1/old``) that the equations ``eqn_ids``
        read set to each of ``news`` (``1/new``), stacked on axis 0: a Python constant of another value (a
        size ``m = x.shape[1]`` taken from the wrong axis, one per layer)."""
        ids = set(eqn_ids)

        def rewrite(i, eqn, invals, c):
            if i not in ids:
                return None
            out = []
            for u, x in zip(eqn.invars, invals):
                lit = isinstance(u, jcore.Literal) and np.ndim(u.val) == 0
                out.append(c.astype(x.dtype) if lit and any(_near(u.val, o) for o in olds) else
                           (1 / c).astype(x.dtype) if lit and any(_near(u.val, 1 / o) for o in olds) else x)
            return out

        return self._rerun(min(ids), rewrite, lambda xs: xs[0], [np.asarray(news, np.float64)], None)

    def in_loop(self, i: int, body, var, candidates) -> List[np.ndarray]:
        """The outputs with the value ``var`` of the body ``body`` (a closed jaxpr: scan equation ``i``'s own
        body, its calls inlined) replaced at every iteration by each of ``candidates`` (each stacked over the
        iterations on axis 0; the candidates on the axis before): the loop re-run with that body."""
        def run_scan(k, e, invals, new):
            if k != i:
                return None

            def step(args):
                *args, c = args  # this iteration's slice of the candidate
                args = [c if u is var else x for u, x in zip(body.jaxpr.invars, args)]

                def on_eqn(_, b, ins, env):
                    return [c if u is var else o for u, o in zip(b.outvars, interpreter.bind(b, ins))]

                return interpreter.outputs(body, interpreter.run(body, args, on_eqn))

            return interpreter.scan(e, list(invals) + [new], step)

        return self._rerun(i, lambda *a: None, lambda xs: xs[0], _stacked([var], [candidates]), None,
                           compute=run_scan)

    def _rerun(self, start, rewrite, unpack, stacked, targets, compute=None) -> List[np.ndarray]:
        """One batched re-run from equation ``start`` on: ``rewrite(i, eqn, invals, unpack(xs))`` gives an
        equation's new inputs (or ``None``: as they are), ``compute`` (same arguments), where given, its new
        outputs (or ``None``), and what depends on a changed one runs again."""
        outvars = self.outvars if targets is None else targets
        jaxpr = self.graph.closed.jaxpr

        def one(*xs):
            new = unpack(xs)
            touched = set()

            def on_eqn(i, eqn, invals, env):
                outs = compute(i, eqn, invals, new) if compute is not None and i >= start else None
                if outs is not None:
                    touched.update(eqn.outvars)
                    return outs
                changed = rewrite(i, eqn, invals, new) if i >= start else None
                if changed is None and (i < start or not any(isinstance(u, jcore.Var) and u in touched
                                                             for u in eqn.invars)):
                    return [env[v] for v in eqn.outvars]
                touched.update(eqn.outvars)
                return interpreter.bind(eqn, invals if changed is None else changed)

            env = interpreter.run(jaxpr, [self.env[v] for v in jaxpr.invars], on_eqn, env=dict(self.env))
            return [jnp.asarray(interpreter.read(env, v)) for v in outvars]

        return interpreter.vmapped(one, stacked)


def _stacked(variables, candidates) -> List[np.ndarray]:
    """Each variable's candidates stacked on axis 0, in its dtype."""
    return [np.stack([np.asarray(c) for c in cs]).astype(v.aval.dtype) for v, cs in zip(variables, candidates)]


def _near(x, c: float) -> bool:
    x = float(np.asarray(x))
    return bool(np.isfinite(c) and abs(x - c) <= 1e-12 * max(abs(c), 1.0))


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

