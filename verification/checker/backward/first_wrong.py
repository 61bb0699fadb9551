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
(:func:`verification.checker.backward.program.silent_assignments`) and ranked first.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence

import jax.extend.core as jcore
import numpy as np

from verification.checker.backward import handoffs, line_order, loop_lines, sizes, why
from verification.checker.backward.program import Program, assigned_name, code_at, same_function, silent_assignments
from verification.checker.backward.references import Match, Ref, References
from verification.checker.base.findings import BackwardFinding
from verification.checker.jaxpr import graph as jg

CANDIDATES_PER_VALUE = 8  # right quantities tried as the replacement of one value (the most similar first)
MAX_COTANGENTS = 64  # and every cotangent and gradient leaf of its shape, up to this many
MAX_TESTED = 64  # values tried as the first wrong one, most upstream first
MAX_REPLAYED = 6000  # and at most this many equations re-run for them in all (a long unrolled loop)
PARTIAL_REPAIR = 0.5  # a replacement that removes at least this share of the error repairs "largely"


def leaf_errors(outs: Sequence[np.ndarray], expected: Sequence[np.ndarray], stacked: bool = True) -> np.ndarray:
    """Per output leaf: ``||out - expected|| / ||expected||`` (with ``stacked``, candidates on axis 0)."""
    errs = []
    with np.errstate(all="ignore"):  # a non-finite output is an infinite error
        for o, e in zip(outs, expected):
            e = np.asarray(e, np.float64)
            o = np.asarray(o, np.float64)
            axes = tuple(range(int(stacked), o.ndim))
            if o.shape[int(stacked):] != e.shape:  # a result of another leaf's shape: never right here
                errs.append(np.full(o.shape[:1] if stacked else (), np.inf))
                continue
            diff = np.sqrt(np.sum((o - e) ** 2, axis=axes)) if axes else np.abs(o - e)
            errs.append(diff / max(float(np.linalg.norm(e)), 1e-300))
    out = np.stack(errs, axis=-1)
    return np.where(np.isnan(out), np.inf, out)


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
    base = leaf_errors([program.value(v) if isinstance(v, jcore.Var) else np.asarray(v.val) for v in outvars],
                       [r.value for r in expected], stacked=False)
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
        in_loop = loop_lines.localize(program, refs, expected, leaf_errors, tol, loops)
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
    lines = _ranked_lines(program, refs, expected, var, e, status, cause, readers, back, hint)
    if cause.cause == "unknown" and hint in line_order.MASK_CAUSES:
        lines = list(dict.fromkeys(line_order.mask_lines(program, e, status) + lines))
    cone = [e] + [program.producer(w) for w in why.cone(program, var, status)]
    plain = cause.cause in ("factor_2", "sign_flipped")  # a 2 or a sign dropped: likelier than a size
    sized = None if plain else sizes.wrong_size(program, [r.value for r in expected], cone, tol, leaf_errors)
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
    line, inputs_ok = program.graph.user_line(e), _inputs_ok(program, e, status)
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
        lines = _ranked_lines(program, refs, expected, var, e, status, cause)
        line = program.graph.user_line(e)
        if not lines or line is None:
            return None
        return BackwardFinding(lines=lines, line=line, code=code_at(line), should_equal=why.label_of(match),
                               rel_error=float("inf"), inputs_ok=_inputs_ok(program, e, status), cause=cause.cause,
                               explanation=cause.sentence, repaired=False)
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
    lines = _ranked_lines(program, refs, expected, v, program.producer(v), status, cause, back=returns_at)
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
    for v in program.ancestors(targets):
        if grouped is not None and program.producer(v) > program.producer(grouped[0]):
            return grouped
        m = status.get(v)
        if v not in status:
            continue
        if m is not None and m.exact and not m.transposed and v not in out_of and not m.ref.share:
            right.append(v)  # (one path's share is right only where the other shares are added to it)
            continue
        group = _loop_group(program, v, seen_groups)
        if group:
            found = _repair_group(program, refs, group, expected, tol)
            if found is not None and (grouped is None or program.producer(found[0]) < program.producer(grouped[0])):
                grouped = found
            if found is not None:
                continue
        if len(program.graph.instances(program.producer(v), by="op")) >= LOOP_MIN:
            continue  # one step of a loop repairs one step's share: its line is judged as a group
        tried = _try(program, refs, v, m, expected, out_of, status, tol, total)
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
    for v in right[:MAX_TESTED]:  # a value that repairs as it is comes before a fitted constant
        if len(program.graph.instances(program.producer(v), by="op")) >= LOOP_MIN:
            continue
        tried = _try(program, refs, v, None, expected, out_of, status, tol, total, skip=status[v])
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
        each = _repair_each(program, refs, v, seen_lines, expected, out_of, status, tol, skip=skip)
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
        if np.all(leaf_errors(outs, [r.value for r in expected]) <= max(100 * tol, 1e-6)):
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
        options = [o for o in _replacements(refs, value, m, None) if m is None or o.ref is not m.ref]
        if not options:
            continue
        stacked = [o.factor * refs.shaped(o, value.shape) for o in options]
        for k in range(1, 2 ** len(readers) - 1):
            some = [r for j, r in enumerate(readers) if k >> j & 1]
            replayed += len(program.eqns) - min(some)
            if replayed > MAX_REPLAYED:
                return None
            outs = program.replaced_all([v], [stacked], readers=some)
            errs = leaf_errors(outs, [r.value for r in expected])
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


def _try(program, refs, v, m, expected, out_of, status, tol, total, skip=None):
    """``v`` replaced by each right quantity it might have been meant to be (never ``skip``, the one it
    equals): ``(repairs, (match, errors) of a fitted-constant repair or None, share of the error removed,
    best match, its errors)``, or ``None`` when nothing is tried."""
    value = program.value(v)
    if value is None or (value.size < 2 and v not in out_of):
        return None
    options = _replacements(refs, value, m, expected[out_of[v]] if v in out_of else None,
                            _input_factors(program, v, status))
    if skip is not None:
        options = [o for o in options if o.ref is not skip.ref or o.transposed != skip.transposed]
    if not options:
        return None
    outs = program.replaced(v, [np.zeros_like(value)] + [o.factor * refs.shaped(o, value.shape) for o in options])
    errs = leaf_errors([o[1:] for o in outs], [r.value for r in expected])  # (candidates, leaves)
    totals = errs.sum(axis=1)
    k = int(np.argmin(totals))
    repaired = lambda e: bool(np.all(e <= max(100 * tol, 1e-6)))  # noqa: E731
    if repaired(errs[k]):
        return True, None, 1.0, options[k], errs[k]
    c, errs_c = _fitted(outs, expected)  # the factor that later code divides out
    kc = int(np.argmin(errs_c.sum(axis=1)))
    fitted = None
    if repaired(errs_c[kc]) and abs(c[kc]) > 0:
        fitted = (Match(options[kc].ref, options[kc].factor * c[kc], options[kc].transposed), errs_c[kc])
    return False, fitted, 1 - totals[k] / max(total, 1e-300), options[k], errs[k]


LOOP_MIN = 5  # a line run this many times is a loop body: judged as a group only (a Python loop over a
# few layers is also judged value by value, a mistake in one layer being possible)
MISSING_TERM_LINES = 4  # a missing term: the nearest lines upstream searched for a zero left there
MAX_GROUP_CANDIDATES = 48  # a loop line's group is tried against twice this many groups of right quantities
# (in order and reversed), the most similar first, and this many more shifted one step (a carried delta)


def _loop_group(program: Program, v, seen: set) -> List[Any]:
    """The values of every instance of ``v``'s line when it runs more than once (a loop body unrolled, a
    helper called per step), the first time one of them is met; else ``[]``."""
    i = program.producer(v)
    key = program.graph.key(i)
    if key in seen:
        return []
    k = list(program.eqns[i].outvars).index(v)
    shape = np.shape(program.value(v))  # (one op on one line may make values of several shapes: a broadcast)
    group = [w for w in (program.eqns[j].outvars[k] for j in program.graph.instances(i, by="op"))
             if program.value(w) is not None and np.shape(program.value(w)) == shape]
    ends = [program.ends_line(w) for w in group]
    if 2 * sum(ends) == len(group) >= 4:  # two equal ops of one line (``a + b + c`` in a loop): the line's
        # result apart from its partial sum (a recurrence on one line, ``y = y + dt * k``, stays one group)
        mine = program.ends_line(v)
        if key + (mine,) in seen:
            return []
        seen.add(key + (mine,))
        group = [w for w, e in zip(group, ends) if e == mine]
    else:
        seen.add(key)
    if len(group) >= 2:
        return group
    if key[:3] in seen:
        return []
    seen.add(key[:3])  # a helper called once per layer: the line's instances on values of different shapes
    layers = [w for w in (program.eqns[j].outvars[k] for j in program.graph.instances(i, by="line")
                          if k < len(program.eqns[j].outvars)) if program.value(w) is not None]
    return layers if len(layers) >= 2 and len({np.shape(program.value(w)) for w in layers}) > 1 else []


def _repair_group(program: Program, refs: References, group, expected, tol):
    """Every instance of a loop line replaced at once, instance ``k`` by the ``k``-th (or, for a loop run
    backwards, the ``k``-th from the end) of a group of right quantities of one forward line (:func:`_aligned`):
    ``(first wrong instance, its match, errors)`` when that repairs the wrong outputs."""
    values = [np.asarray(program.value(w), np.float64) for w in group]
    aligned = _aligned(refs, values)
    if not aligned:
        return None
    stacks = [[refs.shaped(ms[k], v.shape) for ms in aligned] for k, v in enumerate(values)]
    errs = leaf_errors(program.replaced_all(group, stacks), [r.value for r in expected])
    best = int(np.argmin(errs.sum(axis=1)))
    if not np.all(errs[best] <= max(100 * tol, 1e-6)):
        return None
    rights = aligned[best]
    ours = [k for k, v in enumerate(values) if rights[k].ref.value is v]  # an instance kept as it is (no partner)
    wrong = [k for k, v in enumerate(values)  # the first instance that differs from its right quantity
             if k not in ours and leaf_errors([v], [refs.shaped(rights[k], v.shape)], stacked=False)[0]
             > max(100 * tol, 1e-6)]
    k = wrong[0] if wrong else next(k for k in range(len(values)) if k not in ours)
    return group[k], rights[k], errs[best]


def _aligned(refs: References, values: Sequence[np.ndarray]) -> List[List[Match]]:
    """The groups of right quantities of one forward line aligned with a loop line's instances ``values``,
    most similar first: in program order or reversed (a loop run backwards), each also shifted by one step (a
    carried cotangent: the reverse step for ``t`` computes ∂L/∂h_{t-1}, the forward line's instance before
    it), the instance left without a partner kept as it is (the last carry, read by nothing).  Instances of
    different shapes (a line run once per layer: a per-example forward under ``vmap``) take one forward
    line's instances of those shapes, transposed where needed (:meth:`References.layer_groups`)."""
    n = len(values)
    plain, shifted = [], []
    if len({v.shape for v in values}) > 1:
        plain = refs.layer_groups([v.shape for v in values])
    else:
        kept = [Match(Ref("value", "", v), 1.0) for v in values]
        for g in refs.groups(values[0].shape, n, short=1 if n > 2 else 0):
            for order in (1, -1):
                g_o = [Match(r, 1.0) for r in g[::order]]
                if len(g_o) < n:  # a quantity the loop's first (or last) step has none of: the initial carry's
                    shifted += [g_o + kept[-1:], kept[:1] + g_o]
                else:
                    plain.append(g_o)
                    shifted += [g_o[1:] + kept[-1:], kept[:1] + g_o[:-1]]

    def unlike(ms):  # (a mistake leaves most instances right: the most similar first)
        return -float(np.mean([_cosine(v.ravel(), refs.shaped(m, v.shape).ravel())
                               for v, m in zip(values, ms) if m.ref.value is not v]))

    # the aligned groups first, as many as before the shifted ones were tried; then the most similar shifted
    return sorted(plain, key=unlike)[:2 * MAX_GROUP_CANDIDATES] + sorted(shifted, key=unlike)[:MAX_GROUP_CANDIDATES]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """``|cos|`` of the angle between two flat arrays (0 where one is zero)."""
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return abs(float(np.dot(a, b))) / den if den > 0 else 0.0


def _repair_each(program: Program, refs: References, v, seen: set, expected, out_of, status, tol, skip=False):
    """``v``'s line run more than once on values of different shapes (a helper called once per layer:
    ``penalty_grad(p)`` for every ``p``), each instance repairing only its own share: every instance
    replaced at once by the right quantity that serves it best alone.  ``(v, its match, errors)`` when that
    repairs the wrong outputs, else ``None`` (and ``None`` for a line already tried).  With ``skip``, never
    by the quantity an instance already equals (a right quantity for another role)."""
    i = program.producer(v)
    line = program.graph.user_line(i)
    k = list(program.eqns[i].outvars).index(v)
    key = (program.graph.key(i)[:3], k, skip)  # the op on that line (instances(by="line"))
    if line is None or key in seen:
        return None
    seen.add(key)
    live = set(program.live_vars())
    group = [program.eqns[j].outvars[k] for j in program.graph.instances(i, by="line")]
    group = [w for w in group if w in live and program.value(w) is not None]
    if not 2 <= len(group) <= MAX_EACH or v not in group:
        return None
    best = []
    for w in group:
        value = program.value(w)
        m = status.get(w)
        options = _replacements(refs, value, m, expected[out_of[w]] if w in out_of else None,
                                _input_factors(program, w, status))
        if skip and m is not None:
            options = [o for o in options if o.ref is not m.ref or o.transposed != m.transposed]
        if not options:
            return None
        outs = program.replaced(w, [value] + [o.factor * refs.shaped(o, value.shape) for o in options])
        errs = leaf_errors(outs, [r.value for r in expected]).sum(axis=1)
        j = int(np.argmin(errs))
        best.append(None if j == 0 else options[j - 1])  # j = 0: the instance is best as it is
    if all(o is None for o in best):
        return None
    shaped = [[program.value(w) if o is None else o.factor * refs.shaped(o, program.value(w).shape)]
              for w, o in zip(group, best)]
    errs = leaf_errors(program.replaced_all(group, shaped), [r.value for r in expected])[0]
    if not np.all(errs <= max(100 * tol, 1e-6)):
        return None
    pick = group.index(v) if best[group.index(v)] is not None else next(n for n, o in enumerate(best) if o is not None)
    return group[pick], best[pick], errs


MAX_EACH = 32  # instances of one line replaced each by its own right quantity (a helper called per layer)


def _fitted(outs, expected):
    """Per candidate (``outs[k][1:]``; ``outs[k][0]`` is the run with the value zeroed): the constant ``c``
    that makes the outputs best (they are affine in the replacement), and the leaf errors at ``c``."""
    with np.errstate(all="ignore"):  # a replacement may divide by zero downstream: its errors are inf
        alpha = [np.asarray(o[0], np.float64) for o in outs]
        betas = [np.asarray(o[1:], np.float64) - a for o, a in zip(outs, alpha)]
        target = [np.asarray(r.value, np.float64) - a for r, a in zip(expected, alpha)]
        num = sum(np.sum((b * t).reshape(b.shape[0], -1), axis=1) for b, t in zip(betas, target))
        den = sum(np.sum((b * b).reshape(b.shape[0], -1), axis=1) for b in betas)
        c = np.where(den > 0, num / den, 0.0)
        c = np.where(np.isfinite(c), c, 0.0)
        fitted = [a + c.reshape((-1,) + (1,) * (b.ndim - 1)) * b for a, b in zip(alpha, betas)]
    return c, leaf_errors(fitted, [r.value for r in expected])


def _input_factors(program: Program, v, status) -> List[float]:
    """The factors of the inputs of ``v``'s line that are right up to a constant (a user who carries ``m``
    times the cotangent and divides by ``m`` at the end): ``v`` may be meant to carry the same factor."""
    out = []
    for u in program.eqns[program.producer(v)].invars:
        m = status.get(u) if isinstance(u, jcore.Var) else None
        if m is not None and not m.exact and abs(m.factor) > 0 and not any(abs(m.factor - c) < 1e-9 for c in out):
            out.append(m.factor)
    return out


def _replacements(refs: References, value, match: Optional[Match], expected: Optional[Ref],
                  factors: Sequence[float] = ()) -> List[Match]:
    """What a value might have been meant to be: the expected output (for an output), the quantity it
    equals up to a factor or a transpose, then the most similar right quantities of its shape; each also
    times the factor its inputs carry (``factors``)."""
    out: List[Match] = []
    if expected is not None:
        out.append(Match(expected, 1.0))
    if match is not None:
        out.append(Match(match.ref, 1.0, match.transposed))
    ranked = [m for m, _ in refs.ranked(value)]
    backward = [m for m in ranked if m.ref.kind != "value"][:MAX_COTANGENTS]
    for m in ranked[:CANDIDATES_PER_VALUE] + backward:
        if not any(o.ref is m.ref and o.transposed == m.transposed for o in out):
            out.append(Match(m.ref, 1.0, m.transposed))
    return out + [Match(o.ref, c, o.transposed) for c in factors for o in out]


def _ranked_lines(program: Program, refs: References, expected, var, e: int, status, found: why.Why,
                  readers=None, back: Optional[str] = None, hint: Optional[str] = None) -> List[str]:
    """The user's lines to fix, most likely first: a silent assignment that hands the wrong value on
    (:func:`_confirmed`), the factor the cause blames (when it is another line) and the terms of that factor
    where it is a sum, the first wrong value's line, the lines that read it where it is right only
    transposed, the lines of its other unmatched inputs and (a sum) of its terms that equal a right
    cotangent, upstream lines that match nothing, a ``where``'s comparison after the where's line; a line
    that only scales a wrong cotangent comes after the line that computes it, for a derivative's slip
    (:mod:`verification.checker.backward.line_order`).  ``hint``: the cause the loss's side names."""
    ordered = []
    ancestors = program.ancestors([var])
    blamed = [i for i in ([program.producer(found.factor)] if found.factor is not None else []) if i is not None]
    derivative = line_order.derivative_slip(found.cause, hint)
    for k, i in enumerate(blamed + [e]):  # the factor the cause blames, then the first wrong value's line
        source = line_order.scaled_from(program, i, status) if derivative else None
        if source is not None:  # a line that only scales by a constant is wrong by a constant or not at all
            ordered.append(program.line(source))
        ordered.append(program.graph.user_line(i))
        if k == 0 and blamed:  # a sum: a right quantity may be the wrong term (``dz * eps * std``, halved)
            ordered += line_order.terms(program, i, status)
    live_eqns = program.live_eqns()
    if found.cause == "transposed":  # right once transposed: here, or where each line reads it
        ordered += [program.graph.user_line(i) for w in program.eqns[e].outvars for i in program.consumers(w)
                    if i in live_eqns]
    ordered += [program.line(u) for u in line_order.unmatched_inputs(program, e, status)]
    ordered += line_order.terms(program, e, status)
    ordered += [program.line(u) for u in ancestors[::-1] if status.get(u, False) is None]  # nearest first
    if found.cause in ("wrong_leaf", "wrong_branch", "unknown"):  # a where's condition, after the where's line
        ordered = line_order.with_conditions(program, ancestors, ordered)
    live = program.live_lines()
    involved = [var] + ([found.factor] if found.factor is not None else []) + why.cone(program, var, status)
    involved += [u for w in involved if program.producer(w) is not None
                 for u in program.eqns[program.producer(w)].invars if isinstance(u, jcore.Var)]
    passing = {assigned_name(program.line(u)) for u in involved}
    scan = [next((l for l in ordered if l), None), program.graph.user_line(e)]
    near = program.consumers(var)  # the lines that read it, and those that read what they compute
    near += [j for i in near for w in program.eqns[i].outvars for j in program.consumers(w)]
    scan += [program.graph.user_line(i) for i in near]
    dropped = found.cause in ("path_dropped", "missing_term")
    upstream = list(dict.fromkeys(l for l in map(program.line, ancestors[::-1]) if l))[
        :MISSING_TERM_LINES] if dropped else []
    scan += [program.line(u) for u in line_order.unmatched_inputs(program, e, status)]
    scan += upstream  # (a term's zero upstream)
    silent, at_line = [], set()  # at_line: read on the wrong line itself
    ran, zero_read = program.traced_lines(), line_order.zero_lines(program)
    for k, line in enumerate(scan):
        returned = k == 0 and any(v is var for v in program.outvars)
        zeros = found.cause in ("path_dropped", "missing_term", "unknown") and line in zero_read
        for s in silent_assignments(line, live, passing - {""}, returns=returned, zeros=zeros, ran=ran):
            if k <= 1:
                at_line.add(s)
            if s not in silent and (not s.argument or k <= 1):  # an argument handed on: read at the line itself
                silent.append(s)
    split = {program.graph.user_line(i) for i in readers or ()}  # the value is wrong as these lines read it
    # a rename read on a line whose mistake nothing else explains is taken as it is (what it should hand on
    # may be a partial quantity that no reference holds: ``direct = dxhat`` for ``dxhat / s``)
    # the first wrong value's statement is to fix where that value matches nothing right (one right up to a
    # factor may be what a rename should have scaled)
    m = status.get(var)
    wrong_at = program.graph.user_line(e) if m is None or m.transposed else None
    confirmed = list(dict.fromkeys(s.where for s in silent if (split and split <= set(s.reads))
                                   or (found.cause == "unknown" and s in at_line and _handed_size(program, s) >= 2)
                                   or _confirmed(program, refs, expected, s, status, wrong_at)))
    literal_zeros = line_order.zero_lines(program, literal=True)
    front, rest = confirmed[:1], confirmed[1:]
    if program.graph.user_line(e) in literal_zeros:  # the wrong line adds a literal zero itself: that term is the
        # one left out, not an array of zeros made earlier (``dh_next = jnp.zeros_like(h)``: a carry's start)
        named = {s.where for s in silent if not s.source and not s.argument and s.where in ran}
        front, rest = [w for w in confirmed if w not in named][:1], [w for w in confirmed if w in named] + rest
    zeros_added = [l for l in upstream if l != program.line(var) and l in literal_zeros]
    at = ordered.index(program.graph.user_line(e)) + 1 if program.graph.user_line(e) in ordered else 1
    ordered = front + ([back] if back else []) + ordered[:at] + zeros_added + ordered[at:] + rest
    if dropped and line_order.is_zeros(program, var):  # an accumulator's zero start: a zero term after it first
        ordered = line_order.zero_terms_after(program, var, literal_zeros) + ordered
    seen, lines = set(), []
    for line in ordered:
        if line and line not in seen:
            seen.add(line)
            lines.append(f"{line} {code_at(line)}".rstrip())
    return lines


def _handed(program: Program, s):
    """The value a silent assignment ``s`` hands on: the last value its source statement computes."""
    made = [v for v in program.live_vars() if program.line(v) in s.source and jg.is_float(v)]
    return made[-1] if made else None


def _handed_size(program: Program, s) -> int:
    w = _handed(program, s) if s.source else None
    value = None if w is None else program.value(w)
    return 0 if value is None else value.size


def _confirmed(program: Program, refs: References, expected, s, status, first: Optional[str] = None) -> bool:
    """The value a silent assignment ``s`` hands on, replaced by a right quantity only where its new name
    is read, repairs the wrong outputs (a literal zero handed on is taken as it is).  Not where it hands on
    what the statement on line ``first`` computes (the first wrong value's, where that value is no right
    quantity: the statement is to fix), nor by the same numbers or their transpose (a right value read
    untransposed: its reader is to fix)."""
    if not s.source:  # a zero (or an argument): not handed on where the line reads another branch's value
        live = program.live_eqns()
        other = {v for v in program.live_vars() if program.line(v) in s.others}
        return not any(isinstance(u, jcore.Var) and u in other for i in live
                       if i is not None and program.graph.user_line(i) in s.reads for u in program.eqns[i].invars)
    w = _handed(program, s)
    if w is None or (first is not None and first in s.source):
        return False
    live = program.live_eqns()
    if _confirmed_in_loop(program, refs, expected, s, w, live):
        return True
    readers = [i for i in program.consumers(w) if i in live and program.graph.user_line(i) in s.reads]
    value = program.value(w)
    if value is None or value.size < 2 or not (readers or any(v is w for v in program.outvars)):
        return False  # a scalar repairs too easily to tell
    m = status.get(w)
    options = [o for o in _replacements(refs, value, m, None) if m is None or not m.exact or o.ref is not m.ref]
    tol = max(100 * refs.rtol, 1e-6)
    shaped = [o.factor * refs.shaped(o, value.shape) for o in options]
    shaped = [a for a in shaped if not _same_numbers(a, value, tol)]
    if not shaped:
        return False
    outs = program.replaced_all([w], [[np.zeros_like(value)] + shaped], readers=readers or None)  # returned as
    _, errs = _fitted(outs, expected)  # it is: every use; up to a constant the user divides out later
    return bool(np.any(np.all(errs <= tol, axis=1)))


def _same_numbers(a: np.ndarray, value: np.ndarray, rtol: float) -> bool:
    """``a`` equals ``value`` or (square) its transpose: the same numbers, not another quantity (a multiple
    of ``value`` is another: a rename that leaves out a ``/ m``)."""
    cands = [value] + ([value.T] if value.ndim == 2 and value.shape[0] == value.shape[1] else [])
    return any(why.close(a, c, rtol) for c in cands)


def _confirmed_in_loop(program: Program, refs: References, expected, s, w, live) -> bool:
    """:func:`_confirmed` for a rename inside a loop body (unrolled): every instance of the value handed on,
    replaced where the new name is read by the instances of one forward line's right quantities
    (:func:`_aligned`), repairs the wrong outputs."""
    group = _loop_group(program, w, set())
    values = [np.asarray(program.value(u), np.float64) for u in group]
    if not group or values[0].size < 2:
        return False
    readers = [i for u in group for i in program.consumers(u) if i in live and program.graph.user_line(i) in s.reads]
    aligned = _aligned(refs, values)
    if not readers or not aligned:
        return False
    stacks = [[refs.shaped(ms[k], v.shape) for ms in aligned] for k, v in enumerate(values)]
    _, errs = _fitted(program.replaced_all(group, stacks, readers=readers), expected)
    return bool(np.any(np.all(errs <= max(100 * refs.rtol, 1e-6), axis=1)))


def _inputs_ok(program: Program, e: int, status) -> List[str]:
    """``"dh = ∂L/∂(...) ✔"`` for each input of equation ``e`` that equals a right quantity."""
    out = []
    invars = list(program.graph.closed.jaxpr.invars)
    for u in program.eqns[e].invars:
        if isinstance(u, jcore.Var) and u in invars:
            out.append(f"{program.graph.leaf_names[invars.index(u)]} (the point) ✔")
            continue
        m = status.get(u) if isinstance(u, jcore.Var) else None
        if m is not None and m.exact:
            name = why.name_of(program, u, status, program.graph.user_line(e))
            label = m.ref.name or m.ref.label
            out.append(f"{name} = {m.ref.label}{' (transposed)' if m.transposed else ''} ✔"
                       if name not in (label, label + ".T") else f"{name} ✔")
    return out
