"""Backward-code localisation: the line of the user's own gradient code to fix, what it should compute, why.

Every value the hand gradient computes is evaluated and matched against the quantities known to be right
(:mod:`verification.checker.backward.references`).  The **first wrong value** is the most upstream value
on a path to a wrong leaf whose replacement by a right quantity repairs the wrong leaves (or the largest
part of their error): what it should equal is that quantity.  The **blame** is its line, or first an
unmatched factor it consumes that was built from right values only (a derivative written by hand); code
that matches nothing but lies on no repair path (a user's algebraic shortcut) is never blamed.  **Why**
(:mod:`verification.checker.backward.why`) compares what the line computes with what it should.

Three refinements: a line run many times (a loop body, unrolled) is judged as a group, every instance
replaced at once by the instances of one forward line (in program order, or reversed for a backward
loop), or by what reaches one operand of a repeated matrix product at each of its instances (a VJP helper
called per stage); of the lines whose groups repair, the one whose first wrong instance runs first is the
first wrong value, as in a loop kept whole (:mod:`verification.checker.backward.loop_lines`): a delta right
at the loop's first step and wrong after it only carries the error on; where no value repairs as it is,
one that repairs once scaled by a fitted constant is taken (a user who carries ``m`` times the cotangent
and divides at the end); and a line that hands the wrong value on without computing anything (``dxhat =
g`` where ``g * gamma`` was meant) is found in the source
(:func:`verification.checker.backward.source_code.silent_assignments`) and ranked first.

What a value may have been meant to be, and the groups of them for a loop line, are
:mod:`verification.checker.backward.substitutes`; the order of the lines to fix,
:mod:`verification.checker.backward.line_ranking`.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import jax.extend.core as jcore
import numpy as np

from verification.checker.backward import handoffs, line_order, line_ranking, loop_lines, sizes, substitutes, why
from verification.checker.backward import value_tries
from verification.checker.backward.value_tries import MAX_REPLAYED, MAX_TESTED
from verification.checker.backward.program import Program
from verification.checker.backward.source_code import assigned_name, code_at, same_function, silent_assignments
from verification.checker.backward.references import Match, Ref, References
from verification.checker.base.findings import BackwardFinding
from verification.checker.jaxpr import graph as jg

PARTIAL_REPAIR = 0.5  # a replacement that removes at least this share of the error repairs "largely"


def localize(program: Program, refs: References, expected: Sequence[Ref], wrong: Sequence[bool],
             returns_at: Optional[str] = None, loss_side: Optional[Callable] = None,
             hint: Optional[str] = None) -> Optional[BackwardFinding]:
    """The first wrong value of ``program`` (whose outputs should equal the quantities ``expected``;
    ``wrong`` marks the outputs that do not) and the ranked lines to fix, or ``None`` when no line of the
    program is reached.  A right quantity returned as it is in the wrong place (a saved value for its
    cotangent, one leaf's gradient for another's) blames ``returns_at``, the line that returns it.
    ``loss_side(values, outputs)``: a :class:`verification.checker.backward.loss_reads.LossRead` where the
    loss, not the hand code, reads a wrong value (one of ``values``, those near the first wrong one, is the
    intended loss's cotangent), else ``None``.  ``hint``: the cause the loss's side names (a hypothesis): a
    mask's cause (:data:`verification.checker.backward.line_order.MASK_CAUSES`) puts the lines that build the
    mask first where the hand's side finds no cause."""
    outvars = list(program.outvars)
    status = {v: refs.match(program.value(v)) for v in program.live_vars() if jg.is_float(v)}
    base = substitutes.leaf_errors([program.value(v) if isinstance(v, jcore.Var) else np.asarray(v.val)
                                    for v in outvars], [r.value for r in expected], stacked=False)
    tol = refs.rtol
    shaped = _wrong_shape(program, refs, outvars, expected, wrong, status, returns_at)
    if shaped is not None:
        return shaped
    handed = [(k, v) for k, v in enumerate(outvars) if wrong[k] and isinstance(v, jcore.Var)
              and program.producer(v) is not None and status.get(v) is not None and status[v].exact
              and not status[v].transposed and not status[v].ref.share  # (a share is right only with the others)
              and not (returns_at and program.line(v) == returns_at)]  # (computed where it is returned: judged)
    if handed:  # a right value handed on as it is for a result it is not: the hand-off is the mistake
        return _handed_on(program, refs, expected, *handed[0], status, returns_at)
    found = _first_wrong(program, refs, outvars, expected, wrong, status, base, tol)
    at = None if found is None else max([program.producer(found[0]) or 0] + list(found[3] if len(found) > 3 else ()))
    loops = [i for i in sorted(program.live_eqns() - {None}) if program.eqns[i].primitive.name == "scan"
             and (at is None or i <= at)]  # a loop kept whole at or before the first wrong value: opened
    if loops:
        in_loop = loop_lines.localize(program, refs, expected, substitutes.leaf_errors, tol, loops)
        if in_loop is not None:
            return in_loop
    if found is None:
        return None
    var, match, after = found[:3]
    readers = found[3] if len(found) > 3 else None  # the value is wrong only as these equations read it
    e = program.producer(var) if readers is None else min(readers)
    cause = why.explain(program, refs, var, match, status, tol)
    m = status.get(var)
    handed_back = returns_at and any(v is var for v in outvars) and readers is None
    back = returns_at if handed_back and ((m is not None and m.exact) or not same_function(program.line(var),
                                                                                          returns_at)) else None
    lines = line_ranking.ranked_lines(program, refs, expected, var, e, status, cause, readers, back, hint)
    if cause.cause == "unknown" and hint in line_order.MASK_CAUSES:
        lines = list(dict.fromkeys(line_order.mask_lines(program, e, status) + lines))
    cone = [e] + [program.producer(w) for w in why.cone(program, var, status)]
    plain = cause.cause in ("factor_2", "sign_flipped")  # a 2 or a sign dropped: likelier than a size
    sized = None if plain else sizes.wrong_size(program, [r.value for r in expected], cone, tol,
                                                substitutes.leaf_errors)
    if sized is not None:  # ``m = dy.shape[1]``: the size comes into the wrong line as a constant
        cause = sized[1]
        lines = list(dict.fromkeys([f"{sized[0]} {code_at(sized[0])}".rstrip()] + lines))
    for site, duplicated in handoffs.passed_in(program.eqns[e])[::-1]:  # a value passed in by a caller
        entry = f"{site} {code_at(site)}".rstrip()
        lines = [x for x in lines if x != entry]
        lines.insert(0 if duplicated else min(2, len(lines)), entry)
    read = None
    if loss_side is not None:
        try:
            read = loss_side(_near(program, var), [program.value(v) if isinstance(v, jcore.Var) else np.asarray(v.val)
                                                   for v in outvars])
        except Exception:  # noqa: BLE001 -- the loss's side is a second account: the hand's finding stands without it
            read = None
    line, inputs_ok = program.graph.user_line(e), line_ranking.right_inputs(program, e, status)
    if read is not None:  # the hand code is right for the loss the user meant: the loss's line is the one to fix
        cause = why.Why("loss_operand", read.sentence)
        lines = list(dict.fromkeys(read.lines + lines))
        line, inputs_ok = read.lines[0].split(" ", 1)[0], []
    if not lines:
        return None
    value = program.value(var)
    should = match.factor * refs.shaped(match, value.shape)
    rel = float(np.linalg.norm(value - should) / max(float(np.linalg.norm(should)), 1e-300))
    return BackwardFinding(
        lines=lines, line=line, code=code_at(line), should_equal=why.label_of(match), rel_error=rel,
        inputs_ok=inputs_ok, cause=cause.cause, explanation=cause.sentence,
        repaired=bool(np.all(after <= max(tol * 100, 1e-6))))


MAX_NEAR = 12  # values after (and before) the first wrong one tried as the loss's cotangent where the loss reads wrong


def _near(program: Program, var) -> List[np.ndarray]:
    """The values of ``var`` and of the equations after it on its way to the results, nearest first, then
    of the equations before it that it is computed from."""
    out, seen, live = [], set(), set(program.live_vars())
    for step in (lambda v: [w for i in program.consumers(v) for w in program.eqns[i].outvars],
                 lambda v: [u for u in program.eqns[program.producer(v)].invars if isinstance(u, jcore.Var)]
                 if program.producer(v) is not None else []):
        todo, n = [var], len(out)
        while todo and len(out) < n + MAX_NEAR:
            v = todo.pop(0)
            if v in seen and v is not var or v not in live or not jg.is_float(v) or program.value(v) is None:
                continue
            if v not in seen:
                out.append(program.value(v))
            seen.add(v)
            todo += step(v)
    return out


def _wrong_shape(program: Program, refs: References, outvars, expected, wrong, status,
                 returns_at: Optional[str]) -> Optional[BackwardFinding]:
    """An output of another shape than its leaf (``jnp.sum(delta, axis=1)`` for the bias): the equation
    that makes that shape, walking back through the equations that keep it (a scale, a sign), is the line
    to fix; no replacement is tried (the shapes downstream would not fit)."""
    for k, v in enumerate(outvars):
        value = program.value(v) if isinstance(v, jcore.Var) else None
        want = np.shape(expected[k].value)
        if not wrong[k] or value is None or value.shape == want or program.producer(v) is None:
            continue  # (an argument handed back as it is: the comparison says which leaf)
        m = status.get(v)
        if m is not None and m.exact and not m.transposed:  # a right quantity of another shape handed back
            return _handed_on(program, refs, expected, k, v, status, returns_at)
        match = Match(expected[k], 1.0)
        var = v
        while True:
            eqn = program.eqns[program.producer(var)]
            same = [u for u in eqn.invars if isinstance(u, jcore.Var) and jg.is_float(u) and u in status
                    and np.shape(program.value(u)) == value.shape and not (status[u] is not None and status[u].exact)]
            if len(same) != 1 or program.producer(same[0]) is None:
                break
            var = same[0]
        e = program.producer(var)
        cause = why.wrong_shape(program, program.eqns[e], var, match, refs.rtol)
        lines = line_ranking.ranked_lines(program, refs, expected, var, e, status, cause)
        line = program.graph.user_line(e)
        if not lines or line is None:
            return None
        return BackwardFinding(lines=lines, line=line, code=code_at(line), should_equal=why.label_of(match),
                               rel_error=float("inf"), inputs_ok=line_ranking.right_inputs(program, e, status),
                               cause=cause.cause, explanation=cause.sentence, repaired=False)
    return None


def _handed_on(program: Program, refs: References, expected, k: int, v, status,
               returns_at: Optional[str]) -> Optional[BackwardFinding]:
    """Output ``k`` is ``v``, a right quantity for another role, handed on as it is (``db = da``, a result
    named twice, a saved value returned for its gradient): the statement that hands it on is the line to
    fix: a rename, then a ``return`` that reads its name and computes nothing, then the lines around it."""
    m, match, value = status[v], Match(expected[k], 1.0), program.value(v)
    want = np.shape(expected[k].value)
    shapes = f", of shape {value.shape}," if value.shape != want else ""
    cause = why.Why("wrong_leaf", f"it hands on {why.label_of(m)}{shapes} where {why.label_of(match)}"
                                  f"{f', of shape {want},' if shapes else ''} belongs")
    lines = line_ranking.ranked_lines(program, refs, expected, v, program.producer(v), status, cause, back=returns_at)
    name = assigned_name(program.line(v))
    renames = [a.where for a in silent_assignments(returns_at, program.live_lines(), {name} - {""}, returns=True)]
    returns = handoffs.returned_in(name, program.live_lines()) if name else []
    if m.ref.kind == "value":  # a forward function returning its own value (an output, a residual) is right
        returns = [w for w in returns if not same_function(w, program.line(v))]
    renames += returns or handoffs.stored_in(program.eqns[program.producer(v)], program.live_lines())
    lines = list(dict.fromkeys([f"{w} {code_at(w)}".rstrip() for w in renames[:1]] + lines))
    line = renames[0] if renames else program.line(v)
    return None if line is None or not lines else BackwardFinding(
        lines=lines, line=line, code=code_at(line), should_equal=why.label_of(match), rel_error=float("inf"),
        inputs_ok=[], cause=cause.cause, explanation=cause.sentence, repaired=False)


def _first_wrong(program, refs, outvars, expected, wrong, status, base, tol):
    """``(var, match, errors after its replacement)`` of the most upstream value whose replacement by a
    right quantity repairs the wrong outputs, else the one that removes the most error, else ``None``."""
    wrong_idx = [k for k, w in enumerate(wrong) if w]
    targets = [outvars[k] for k in wrong_idx if isinstance(outvars[k], jcore.Var)]
    out_of = {v: k for k, v in enumerate(outvars) if isinstance(v, jcore.Var)}
    total = float(np.sum(base))
    best = None
    scaled = []  # values that repair once scaled by a fitted constant: only where none repairs as it is
    tested = replayed = 0
    seen_groups = set()
    per_layer = []  # (value, whether it is right as it is) that repair their own share: a line run per layer
    right = []  # values equal to a right quantity: tried only where no other value repairs (the right
    # quantity for another role: ``da`` that equals the cotangent before the activation's derivative)
    grouped = None  # a loop line whose instances, all replaced, repair: the one whose first wrong instance
    # comes first wins (a delta right at the loop's first step and wrong after it only carries the error on)
    repairs, replays = value_tries.prepared(program, refs, targets, expected, status, out_of, tol)
    for v in program.ancestors(targets):
        if grouped is not None and program.producer(v) > program.producer(grouped[0]):
            return grouped
        m = status.get(v)
        if v not in status:
            continue
        if value_tries.is_right(m, v, out_of):
            right.append(v)  # (one path's share is right only where the other shares are added to it)
            continue
        group = substitutes.loop_group(program, v, seen_groups)
        if group:
            found = repairs[v]
            if found is not None and (grouped is None or program.producer(found[0]) < program.producer(grouped[0])):
                grouped = found
            if found is not None:
                continue
        if len(program.graph.instances(program.producer(v), by="op")) >= substitutes.LOOP_MIN:
            continue  # one step of a loop repairs one step's share: its line is judged as a group
        tried = value_tries.try_value(program, refs, v, m, expected, out_of, status, tol, total,
                                      replayed=replays.get(v))
        if tried is None:
            continue
        tested += 1
        replayed += len(program.eqns) - program.producer(v)
        full, fitted, gain, option, errs = tried
        if not full and gain > 0:
            per_layer.append((v, False))
        if full:
            carried = _carried(program, refs, v, option, [e for e in scaled if status.get(e[0]) is None])
            if carried is not None and why.explain(program, refs, v, option, status, tol).cause == "unknown":
                return carried  # v's line is no simpler a mistake than its input's (a term it leaves out)
            return v, option, errs
        if fitted is not None:
            scaled.append((v,) + fitted)
        if gain >= PARTIAL_REPAIR and (best is None or gain > best[0] + 1e-3):
            best = (gain, v, option, errs)
        if tested >= MAX_TESTED or replayed >= MAX_REPLAYED:
            break
    if grouped is not None:
        return grouped
    replays = value_tries.replays(program, refs, right[:MAX_TESTED], expected, out_of, status, right=True)
    for v in right[:MAX_TESTED]:  # a value that repairs as it is comes before a fitted constant
        if len(program.graph.instances(program.producer(v), by="op")) >= substitutes.LOOP_MIN:
            continue
        tried = value_tries.try_value(program, refs, v, None, expected, out_of, status, tol, total,
                                      skip=status[v], replayed=replays.get(v))
        if tried is not None and tried[0]:  # right, and read where another quantity belongs: blame the reader
            reader = _wrong_reader(program, refs, v, tried[3], expected, tol)
            return (v, tried[3], tried[4]) + ((reader,) if reader else ())
        if tried is not None and tried[2] > 0:
            per_layer.append((v, True))
    split = _split(program, refs, program.ancestors(targets), expected, status, tol)
    if split is not None:
        return split
    if scaled:  # one value that repairs every wrong output, scaled: a simpler account than the next
        return scaled[0]
    seen_lines = set()
    for v, skip in sorted(per_layer, key=lambda p: program.producer(p[0]))[:MAX_TESTED]:  # most upstream first
        each = substitutes.repair_each(program, refs, v, seen_lines, expected, out_of, status, tol, skip=skip)
        if each is not None:
            return each
    return None if best is None else best[1:]


def _wrong_reader(program: Program, refs: References, v, option: Match, expected, tol) -> List[int]:
    """``[i]``: the one equation that reads the right value ``v`` where ``option`` belongs (replaced there
    alone, the outputs are repaired), or ``[]``: v's own line is kept."""
    live = program.live_eqns()
    readers = [i for i in program.consumers(v) if i in live]
    if len(readers) == 1:
        return readers
    value = program.value(v)
    want = option.factor * refs.shaped(option, value.shape)
    for i in readers[:MAX_READERS]:
        outs = program.replaced_all([v], [[want]], readers=[i])
        if np.all(substitutes.leaf_errors(outs, [r.value for r in expected]) <= max(100 * tol, 1e-6)):
            return [i]
    return []


MAX_SPLIT = 24  # values whose readers are split (the most upstream first)


MAX_READERS = 4  # a value read by more equations is not split (2**n - 2 splits each)


def _split(program: Program, refs: References, candidates, expected, status, tol):
    """A value read under two names (``du = dr`` where ``dr * tanh'`` was meant: one variable, two roles):
    the value replaced by a right quantity only where some of its readers read it.  ``(var, match, errors,
    readers)`` of the most upstream split that repairs the wrong outputs, else ``None``."""
    split = replayed = 0
    live = program.live_eqns()
    for v in candidates:
        readers = [i for i in program.consumers(v) if i in live]
        value = program.value(v)
        if not 2 <= len(readers) <= MAX_READERS or value is None or value.size < 2:
            continue
        split += 1
        if split > MAX_SPLIT:
            break
        m = status.get(v)
        options = [o for o in substitutes.replacements(refs, value, m, None) if m is None or o.ref is not m.ref]
        if not options:
            continue
        stacked = [o.factor * refs.shaped(o, value.shape) for o in options]
        for k in range(1, 2 ** len(readers) - 1):
            some = [r for j, r in enumerate(readers) if k >> j & 1]
            replayed += len(program.eqns) - min(some)
            if replayed > MAX_REPLAYED:
                return None
            outs = program.replaced_all([v], [stacked], readers=some)
            errs = substitutes.leaf_errors(outs, [r.value for r in expected])
            best = int(np.argmin(errs.sum(axis=1)))
            if np.all(errs[best] <= max(100 * tol, 1e-6)):
                return v, options[best], errs[best], some
    return None


def _carried(program: Program, refs: References, v, option: Match, scaled):
    """``v``'s line only scales its input by a constant (``dz / m``), and that input (a value that matches
    no right quantity) repairs once scaled by the same constant: the input's line is the first wrong one
    (``v`` rescales what it was handed), its entry of ``scaled``; else ``None``."""
    eqn = program.eqns[program.producer(v)]
    if eqn.primitive.name not in ("mul", "div") or len(eqn.invars) != 2:
        return None
    lits = [u for u in eqn.invars if isinstance(u, jcore.Literal) and np.ndim(u.val) == 0]
    ins = [u for u in eqn.invars if isinstance(u, jcore.Var)]
    if len(lits) != 1 or len(ins) != 1:
        return None
    c = float(np.asarray(lits[0].val))
    c = 1 / c if eqn.primitive.name == "div" and c else c
    if not c:
        return None
    shape = program.value(v).shape
    meant = option.factor * refs.shaped(option, shape) / c  # what the input would be, for v to be right
    for entry in scaled:
        if entry[0] is ins[0] and why.close(entry[1].factor * refs.shaped(entry[1], shape), meant, refs.rtol):
            return entry
    return None


