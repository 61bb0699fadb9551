"""The user's backward code as a program whose every value can be read and replaced.

:func:`trace` traces a hand-written gradient (or a rule's ``bwd``) with the same machinery as the loss
(:func:`verification.checker.jaxpr.graph.trace`: ``jit``, ``checkpoint``, ``cond`` and ``while_loop``
inlined, Python loops unrolled by tracing, short scans unrolled), so that each equation carries the
user's line.  :meth:`Program.replaced` re-runs only what depends on one value, with that value replaced
by a batch of candidates (``vmap``), through the one interpreter.  What the source says at a line (the
name it assigns, a rename that hands a value on) is :mod:`verification.checker.backward.source_code`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence

import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from verification.checker.jaxpr import graph as jg
from verification.checker.jaxpr import interpreter

# A backward program unrolls loops up to this many equations (a BPTT's forward and reverse scans over a
# few dozen steps), so that each step's values meet the loss's per-step cotangents; past it a loop stays
# one equation and is judged as a whole.
UNROLL_MAX = 4096


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
        return sorted(seen, key=lambda v: (self.producer(v), self.eqns[self.producer(v)].outvars.index(v)))  # (an
        # equation's outputs in its order: a variable's name holds its id, which differs from run to run)

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
        return self.replaced_parts([(variables, candidates)], targets)[0]

    def replaced_parts(self, parts, targets=None) -> List[List[np.ndarray]]:
        """:meth:`replaced_all` for each ``(variables, candidates)`` of ``parts``, all in one batched run: each
        row belongs to one part, and a variable is replaced only on its own parts' rows (a mask), so that
        the lines of a loop are tried together (a gated recurrence's 22 loop lines: one run, not 22)."""
        variables = list(dict.fromkeys(v for vs, _ in parts for v in vs))
        sizes = [len(cs[0]) for _, cs in parts]
        at = np.cumsum([0] + sizes)
        stacked, masks = [], []
        for v in variables:
            s = np.zeros((int(at[-1]),) + tuple(v.aval.shape), v.aval.dtype)
            m = np.zeros(int(at[-1]), bool)
            for p, (vs, cs) in enumerate(parts):
                for u, c in zip(vs, cs):
                    if u is v:
                        s[at[p]:at[p + 1]] = np.stack([np.asarray(x) for x in c])
                        m[at[p]:at[p + 1]] = True
            stacked.append(s)
            masks.append(m)
        starts = [self.producer(v) for v in variables]
        start = min(-1 if s is None else s for s in starts)  # a parameter or an input: any equation may read it
        outvars = self.outvars if targets is None else targets
        last = max((self.producer(v) for v in outvars if self.producer(v) is not None), default=len(self.eqns))
        jaxpr = self.graph.closed.jaxpr
        k = len(variables)

        def one(base, xs):
            new = {v: (x, m) for v, x, m in zip(variables, xs[:k], xs[k:])}
            touched = set(variables)

            def put(v, o):  # the replacement on its rows, what the program computes elsewhere
                return jnp.where(new[v][1], new[v][0], o) if v in new else o

            def on_eqn(i, eqn, invals, env):
                if i < start or i > last or not any(isinstance(u, jcore.Var) and u in touched for u in eqn.invars):
                    return [put(v, env[v]) for v in eqn.outvars]
                touched.update(eqn.outvars)
                return [put(v, o) for v, o in zip(eqn.outvars, interpreter.bind(eqn, invals))]

            env = dict(base)
            env.update((v, put(v, env[v])) for v in variables if self.producer(v) is None)
            env = interpreter.run(jaxpr, [env[v] for v in jaxpr.invars], on_eqn, env=env)
            return [jnp.asarray(interpreter.read(env, v)) for v in outvars]

        outs = self._batched(one, stacked + masks, max(start, 0))
        return [[o[at[p]:at[p + 1]] for o in outs] for p in range(len(parts))]

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

        def one(base, xs):
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

            env = interpreter.run(jaxpr, [base[v] for v in jaxpr.invars], on_eqn, env=dict(base))
            return [jnp.asarray(interpreter.read(env, v)) for v in outvars]

        return self._batched(one, stacked, start)

    def _batched(self, one, stacked, start) -> List[np.ndarray]:
        """``one(env, xs)`` vmapped over ``stacked``: run op by op (each op's program cached), or compiled whole,
        the values of ``env`` its arguments, where a loop kept whole from equation ``start`` on re-runs (a loop
        run op by op under ``vmap`` compiles a program of its own at every run: a 100-step recurrence's
        localisation, 33 of them)."""
        if not any(e.primitive.name == "scan" for e in self.eqns[start:]):
            return interpreter.vmapped(lambda *xs: one(self.env, xs), stacked)
        keys = list(self.env)
        return interpreter.vmapped(lambda *a: one(dict(zip(keys, a[:len(keys)])), a[len(keys):]), stacked,
                                   [self.env[k] for k in keys], compiled=True)


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
