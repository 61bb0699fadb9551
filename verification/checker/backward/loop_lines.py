"""The line to fix inside a loop of the user's code that stays whole.

Where the loss keeps a long ``lax.scan`` whole, so does the user's code (unrolled, a BPTT of a hundred
steps is thousands of equations, and every replay of them would be compiled afresh).  Its loops are then
opened here: every float value of a body is evaluated at every iteration (stacked on axis 0) and matched
against the right quantities, the loss's own per-step ones among them
(:mod:`verification.checker.backward.loop_steps`).  A body value that is wrong is tried as the first wrong
value in the order in which its first wrong instance runs (a BPTT's first reverse step runs the step
``T - 1``), and the first whose replacement at every iteration, by a right quantity stacked over the
iterations, repairs the wrong results is it (:meth:`verification.checker.backward.program.Program.in_loop`).
That order matters: in a recurrence, a value fed by a wrong carry is wrong too, and replacing it also
repairs; its first wrong instance, though, runs after the carry's.
"""
from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np

from verification.checker.backward import why
from verification.checker.backward.program import Program
from verification.checker.backward.source_code import assigned_name, code_at, silent_assignments
from verification.checker.backward.references import Match, References
from verification.checker.base.findings import BackwardFinding
from verification.checker.jaxpr import graph as jg
from verification.checker.jaxpr import inline, interpreter

MAX_LOOP_TESTED = 24  # body values tried as the first wrong one, per loop
CANDIDATES_PER_BODY_VALUE = 8  # right quantities (stacked over the iterations) tried for one body value


class Body(NamedTuple):
    """Scan equation ``scan`` of the user's program: its body (calls inlined), the body's graph (its lines)
    and every float value of the body at every iteration."""

    scan: int
    closed: Any
    graph: jg.Graph
    values: Dict[Any, np.ndarray]  # body variable -> (T, ...)
    order: List[Any]  # the body's variables in program order (the carry and the slices first)


def body_of(program: Program, i: int) -> Body:
    """The values of scan equation ``i``'s body at every iteration."""
    eqn = program.eqns[i]
    closed = eqn.params["jaxpr"]
    if inline.needs_inlining(closed.jaxpr):
        closed = inline.inline_calls(closed)
    graph = jg.graph_of(closed, [f"input {k}" for k in range(len(closed.jaxpr.invars))])
    nc = eqn.params["num_consts"]
    order = [v for v in closed.jaxpr.invars[nc:] if jg.is_float(v)]
    order += [v for e in graph.eqns for v in e.outvars if jg.is_float(v)]

    def step(args):
        env = interpreter.run(closed, args)
        return interpreter.outputs(closed, env) + [env[v] for v in order]

    invals = [interpreter.read(program.env, u) for u in eqn.invars]
    res = interpreter.scan(eqn, invals, step)[len(eqn.outvars):]
    return Body(i, closed, graph, {v: np.asarray(x) for v, x in zip(order, res)}, order)


def _first_bad_step(refs: References, stack: np.ndarray, reverse: bool) -> int:
    """The position, in the order the iterations run, of the first iteration whose value equals no right
    quantity exactly (``len``: every one does)."""
    steps = range(stack.shape[0] - 1, -1, -1) if reverse else range(stack.shape[0])
    for n, t in enumerate(steps):
        if not np.any(stack[t]):
            continue  # (a zero carry at the first step: no quantity to match, not a mistake)
        if refs.match(stack[t], exact_only=True) is None:
            return n
    return stack.shape[0]


def localize(program: Program, refs: References, expected, leaf_errors, tol: float,
             loops: List[int]) -> Optional[BackwardFinding]:
    """The first wrong body value of the first of ``loops`` (scan equations of ``program``, in program order)
    whose replacement repairs the wrong outputs, as a finding; ``None`` where none does."""
    for i in loops:
        body = body_of(program, i)
        reverse = program.eqns[i].params["reverse"]
        suspects = []
        for k, v in enumerate(body.order):
            stack = body.values[v]
            if stack.size < 2 or stack.ndim < 2 or refs.match(stack, exact_only=True) is not None:
                continue  # right at every iteration
            suspects.append((_first_bad_step(refs, stack, reverse), k, v))
        for _, _, v in sorted(suspects, key=lambda s: s[:2])[:MAX_LOOP_TESTED]:
            stack = body.values[v]
            options = [m for m, c in refs.ranked(stack)[:CANDIDATES_PER_BODY_VALUE] if c > 0]
            options += [Match(m.ref, 1.0, m.transposed) for m in options]
            if not options:
                continue
            outs = program.in_loop(i, body.closed, v, [o.factor * refs.shaped(o, stack.shape) for o in options])
            errs = leaf_errors(outs, [r.value for r in expected])
            best = int(np.argmin(errs.sum(axis=1)))
            if np.all(errs[best] <= max(100 * tol, 1e-6)):
                return _finding(program, refs, body, v, options[best], errs[best], tol)
    return None


def _finding(program: Program, refs: References, body: Body, v, match: Match, errs, tol) -> BackwardFinding:
    e = body.graph.producer.get(v)
    line = body.graph.user_line(e) if e is not None else program.graph.user_line(body.scan)
    stack = body.values[v]
    cause = why.of_values(program, refs, stack, match, refs.match(stack), tol)
    should = match.factor * refs.shaped(match, stack.shape)
    rel = float(np.linalg.norm(stack - should) / max(float(np.linalg.norm(should)), 1e-300))
    inputs_ok = []
    for u in (body.graph.eqns[e].invars if e is not None else ()):
        m = refs.match(body.values[u]) if u in body.values else None
        if m is not None and m.exact and not m.transposed:
            inputs_ok.append(f"{m.ref.name or 'an input'} = {m.ref.label} ✔")
    loop_line = program.graph.user_line(body.scan)
    # a rename that hands the value on where another was meant (``dz = dh`` for ``dh * tanh'``): the name the
    # value's line assigns, handed on unchanged to a line that reads it
    name = assigned_name(line)
    body_lines = {body.graph.user_line(k) for k in range(len(body.graph.eqns))}
    readers = [body.graph.user_line(k) for k, b in enumerate(body.graph.eqns) if any(u is v for u in b.invars)]
    live = (program.live_lines() | body_lines) - {None}
    ran = program.traced_lines() | body_lines
    silent = [s.where for r in dict.fromkeys(readers) if name for s in silent_assignments(r, live, {name}, ran=ran)]
    lines = [f"{x} {code_at(x)}".rstrip() for x in dict.fromkeys(silent[:1] + [line, loop_line]) if x]
    return BackwardFinding(lines=lines, line=line, code=code_at(line), should_equal=why.label_of(match),
                           rel_error=rel, inputs_ok=inputs_ok, cause=cause.cause,
                           explanation=f"{cause.sentence}, at every iteration of the loop at {loop_line}",
                           repaired=bool(np.all(errs <= max(tol * 100, 1e-6))))
