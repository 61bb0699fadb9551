"""Why the first wrong line of the user's backward code is wrong: how what it computes relates to what
it should compute, in the vocabulary of :data:`verification.checker.base.causes.CAUSES`.

In order: a constant factor (sign, 2, a batch size, another constant), a transpose, zero, a derivative
factor that is another function's derivative or the right one at the wrong value (``wrong_derivative``,
``derivative_at_input``, ``derivative_at_output``; :mod:`verification.checker.backward.derivatives`), an
operand that is another right quantity (the wrong saved value, a cotangent before the activation's
derivative), a term missing or extra that is a right quantity.
"""
from __future__ import annotations

import itertools
from typing import Any, List, NamedTuple, Optional

import jax.extend.core as jcore
import numpy as np

from verification.checker.backward import derivatives as bd
from verification.checker.backward.program import Program
from verification.checker.backward.source_code import assigned_name, code_at
from verification.checker.backward.references import Match, References
from verification.checker.base import causes
from verification.checker.jaxpr import graph as jg
from verification.checker.jaxpr import interpreter


class Why(NamedTuple):
    cause: str
    sentence: str
    factor: Any = None  # the input of the wrong line to fix first (a hand-written derivative), or None


_SCALE_WORDS = {
    "sign_flipped": "the opposite sign",
    "factor_2": lambda n: "off by a factor 2",
    "mean_sum_confused": lambda n: f"off by the reduction size {n} (a mean taken as a sum, or 1/{n} applied twice)",
    "path_dropped": "zero",
}


def sizes_of(program: Program) -> List[int]:
    """The array sizes a 1/m or a mean can be confused with: every axis length of the inputs."""
    vals = list(program.graph.closed.consts) + [program.env[v] for v in program.graph.closed.jaxpr.invars]
    return sorted({int(n) for x in vals for n in np.shape(x) if int(n) > 1})


def _scale_words(c: float, program: Program):
    """The cause and words of a constant ``c``; in hand-written code a 2 or a 1/2 is a factor 2 first, even
    where an axis has length 2."""
    if causes.near(c, 2.0) or causes.near(c, 0.5):
        return "factor_2", "off by a factor 2"
    return causes.scale_cause(c, sizes_of(program), _SCALE_WORDS, "a wrong constant")


def _fit(v, r):
    """The least-squares constant ``c`` of ``v ≈ c r`` (0 where there is none: ``r`` zero, or a value not finite,
    an overflowed user's value)."""
    with np.errstate(invalid="ignore", over="ignore"):
        rr, vr = float(np.sum(r * r)), float(np.sum(v * r))
    return vr / rr if rr > 0 and np.isfinite(rr) and np.isfinite(vr) else 0.0


def close(a, b, tol) -> bool:
    """``a`` and ``b`` agree to ``tol`` relative to the larger norm."""
    return bool(np.linalg.norm(a - b) <= tol * max(float(np.linalg.norm(a)), float(np.linalg.norm(b)), 1e-300))


def name_of(program: Program, var, status=None, at: Optional[str] = None) -> str:
    """How the user calls ``var``: a literal's value, a parameter's path, the name its line assigns, or
    (an operand computed inside line ``at`` itself) the right quantity it equals."""
    if isinstance(var, jcore.Literal):
        return repr(float(np.asarray(var.val))) if np.ndim(var.val) == 0 else "a constant"
    if var in program.graph.closed.jaxpr.invars:
        return program.graph.leaf_names[list(program.graph.closed.jaxpr.invars).index(var)]
    m = (status or {}).get(var)
    if program.line(var) == at or not assigned_name(program.line(var)):
        if m is not None:
            name = m.ref.name or m.ref.label
            return f"{name}.T" if m.transposed else name
        code = code_at(program.line(var))
        if code:  # the value a line hands on without naming it (``return (z > 0).astype(z.dtype)``)
            return f"`{code if len(code) <= 48 else code[:45] + '...'}`"
        return "an intermediate value" if program.line(var) else "an input"
    return assigned_name(program.line(var))


def label_of(match: Match) -> str:
    """What a value should equal, in words: the right quantity, times the factor the user carries."""
    t = "the transpose of " if match.transposed else ""
    return t + (match.ref.label if causes.near(match.factor, 1.0) else f"{match.factor:.6g} × {match.ref.label}")


def explain(program: Program, refs: References, var, match: Match, status, tol: float) -> Why:
    v = np.asarray(program.value(var), np.float64)
    r = match.factor * refs.shaped(match, v.shape)
    should = label_of(match)
    plain = _zero_or_scaled(program, v, r, should, tol)
    if plain is not None:
        e = program.producer(var)
        by_factor = _factor(program, refs, program.eqns[e], r, status, tol, program.graph.user_line(e))
        if by_factor is not None and by_factor.factor is not None:  # a mask that is all zero (``z > 1``), or
            return by_factor  # the scale comes in with a factor the line reads (``du * dudz``, dudz wrong)
        return plain
    plain = _transposed_or_another(v, r, should, status.get(var), match, tol)
    if plain is not None:
        return plain
    e = program.producer(var)
    eqn = program.eqns[e]
    at = program.graph.user_line(e)
    for test in (lambda: _branches_swapped(program, eqn, r, tol),
                 lambda: _wrong_axis(program, eqn, r, tol),
                 lambda: _wrong_axis_upstream(program, refs, var, status),
                 lambda: _operand_swap(program, refs, eqn, r, status, tol, at, var),
                 lambda: _factor(program, refs, eqn, r, status, tol, at),
                 lambda: _scaled_in_cone(program, var, r, status, tol),
                 lambda: _unused_term(program, var, v, r, tol)):
        found = test()
        if found is not None:
            return found
    return _term_or_unknown(refs, v, r, should)


def _branches_swapped(program: Program, eqn, r, tol: float) -> Optional[Why]:
    """A ``where`` with its two branches swapped (or its condition inverted): ``select_n`` of two cases that
    gives what the line should compute with the cases the other way round."""
    if eqn.primitive.name != "select_n" or len(eqn.invars) != 3:
        return None
    which, a, b = [program.value(u) if isinstance(u, jcore.Var) else np.asarray(u.val) for u in eqn.invars]
    if which is None or a is None or b is None:
        return None
    swapped = np.where(np.asarray(which).astype(bool), a, b)  # (select_n picks case 1 where the condition holds)
    if np.shape(swapped) != np.shape(r) or not close(swapped, r, tol):
        return None
    return Why("wrong_branch", "its two branches are swapped (or its condition inverted): each case is taken "
                               "where the other belongs")


def of_values(program: Program, refs: References, v, match: Match, other: Optional[Match], tol: float) -> Why:
    """How ``v`` relates to what it should compute (``match``), from the values alone: zero, a constant
    factor, a transpose, another right quantity (``other``, the one ``v`` equals), a term missing or extra.
    For a value whose equation is not in ``program`` (a body value of a loop kept whole, stacked over its
    iterations)."""
    v = np.asarray(v, np.float64)
    r = match.factor * refs.shaped(match, v.shape)
    should = label_of(match)
    plain = _zero_or_scaled(program, v, r, should, tol) or _transposed_or_another(v, r, should, other, match, tol)
    return plain if plain is not None else _term_or_unknown(refs, v, r, should)


def _transposed_or_another(v, r, should: str, other: Optional[Match], match: Match, tol: float) -> Optional[Why]:
    if v.ndim == 2 and v.shape[0] == v.shape[1] and close(v, r.T, tol):
        return Why("transposed", f"it computes the transpose of {should}")
    if other is not None and other.exact and other.ref is not match.ref:
        return _another_quantity(other, match)
    return None


def _zero_or_scaled(program: Program, v, r, should: str, tol: float) -> Optional[Why]:
    if not np.any(v):
        return Why("path_dropped", f"it computes zero; it should compute {should}")
    c = _fit(v, r)
    if close(v, c * r, tol) and not causes.near(c, 1.0):
        cause, words = _scale_words(c, program)
        return Why(cause, f"it computes {c:.6g} × {should} ({words})")
    return None


def _term_or_unknown(refs: References, v, r, should: str) -> Why:
    d = refs.match(v - r)
    if d is not None:
        term = f"{abs(d.factor):.6g} × {d.ref.label}" if not causes.near(abs(d.factor), 1.0) else d.ref.label
        if d.factor < 0 and d.ref.kind == "cotangent":
            return Why("path_dropped", f"a term is missing: it should add {term} (the path through that value)")
        return Why("missing_term", f"it differs from {should} by a term {'extra' if d.factor > 0 else 'missing'}: "
                                   f"{term}")
    rel = float(np.linalg.norm(v - r) / max(float(np.linalg.norm(r)), 1e-300))
    return Why("unknown", f"it should compute {should} (relative error {rel:.2g}); no constant factor, transpose, "
                          "derivative or operand swap explains the difference")


def _another_quantity(got: Match, match: Match) -> Why:
    """The line computes another right quantity than the one it should: the cotangent before an
    activation's derivative where the one after it belongs, or another value."""
    should = label_of(match)
    if got.ref.kind == "cotangent" and match.ref.kind == "cotangent" and match.ref.fn:
        return Why("derivative_dropped", f"it computes {got.ref.label} where {should} belongs: the derivative of the "
                                         f"{match.ref.fn} is left out")
    if got.ref.kind == match.ref.kind == "value":
        return Why("wrong_saved_operand", f"it computes {got.ref.label} where {should} belongs")
    if got.ref.kind == match.ref.kind == "cotangent":
        return Why("path_dropped", f"it computes {got.ref.label} where {should} belongs: the term of another path "
                                   "is missing")
    return Why("unknown", f"it computes {got.ref.label} where {should} belongs")


def _factor(program: Program, refs: References, eqn, r, status, tol, at) -> Optional[Why]:
    """An elementwise product (or quotient) of a right value and a hand-written factor: is the factor the
    wrong one?  The factor it needs is ``r / a``; the table names both."""
    if eqn.primitive.name not in ("mul", "div") or len(eqn.invars) != 2:
        return None
    ins = eqn.invars
    vals = [np.asarray(program.value(u) if isinstance(u, jcore.Var) else u.val, np.float64) for u in ins]
    right = [isinstance(u, jcore.Var) and (u in program.graph.closed.jaxpr.invars or (status.get(u) is not None
             and status[u].exact)) for u in ins]
    known = [r_ or (isinstance(u, jcore.Var) and status.get(u) is not None) for r_, u in zip(right, ins)]
    for j in (1, 0):  # the factor is input j, the other a right value
        u, a = _made(program, ins[j], at), vals[1 - j]
        if not isinstance(u, jcore.Var) or right[j] or not known[1 - j] or vals[j].size < 2:
            continue
        with np.errstate(all="ignore"):
            if eqn.primitive.name == "mul":
                need = r / a
            elif j == 1:
                need = a / r
            else:
                need = r * a
        mask = np.isfinite(need) & (np.abs(a) > 1e-12 * max(float(np.max(np.abs(a))), 1e-300))
        got = np.broadcast_to(vals[j], need.shape)
        if np.allclose(got[mask], need[mask], rtol=tol * 10, atol=0):
            continue  # the factor is right: the line itself is wrong
        if eqn.primitive.name == "mul" or j == 1:  # the factor right, the operation inverted (``/`` for ``*``)
            with np.errstate(all="ignore"):
                inverse = mask & np.isfinite(1 / got)  # (every entry: a 0/1 mask has no inverse at its zeros)
                if np.any(inverse) and np.array_equal(inverse, mask) \
                        and np.allclose(1 / got[inverse], need[inverse], rtol=tol * 10, atol=0):
                    did, meant = ("multiplies", "divide") if eqn.primitive.name == "mul" else ("divides", "multiply")
                    return Why("inverted_factor", f"it {did} by {name_of(program, u, status, at)} where it should "
                                                  f"{meant} by it")
        return _name_factor(program, refs, u, got, need, mask, tol, name_of(program, u, status, at))
    return None


_MOVES = ("convert_element_type", "broadcast_in_dim", "reshape", "copy")  # a value moved, not computed


def _made(program: Program, u, at):
    """``u``, or where it is a value moved on line ``at`` itself (a cast, a broadcast), the value moved:
    the factor's own line is where it was computed."""
    while isinstance(u, jcore.Var) and program.producer(u) is not None:
        eqn = program.eqns[program.producer(u)]
        if eqn.primitive.name not in _MOVES or program.line(u) != at or not isinstance(eqn.invars[0], jcore.Var):
            break
        u = eqn.invars[0]
    return u


def _name_factor(program, refs, u, got, need, mask, tol, name) -> Optional[Why]:
    held = {ref.name or ref.label: ref for ref in refs.refs if ref.kind == "value" and ref.value.size == need.size}
    args = {k: ref.value.reshape(need.shape) for k, ref in held.items()}
    mine = bd.identify(got, args, rtol=tol * 10)
    right = bd.identify(need, args, rtol=tol * 10, where=mask)
    c = _fit(got[mask], need[mask])
    if not np.any(got[mask]):  # a mask from the wrong condition that happens to be zero everywhere here
        meant = f"{right[0][0].name}'s derivative {right[0][0].text.format(a=right[0][1])}" if right else "nonzero"
        return Why("path_dropped", f"its factor {name} is zero everywhere; it should be {meant}", u)
    if close(got[mask], c * need[mask], tol) and not causes.near(c, 1.0):
        cause, words = _scale_words(c, program)
        return Why(cause, f"its factor {name} is {c:.6g} × what it should be ({words})", u)
    two = _two_valued(got[mask], need[mask], tol)
    if two is not None:
        return Why(two[0], f"its factor {name} is a mask {two[1]}", u)
    if right:
        for m, marg in mine:
            d, arg = next(((d, a) for d, a in right if d.form == m.form), right[0])
            should = f"{d.name}'s derivative {d.text.format(a=arg)}"
            if m.name != d.name:
                return Why("wrong_derivative", f"its factor {name} is {m.name}'s derivative {m.text.format(a=marg)}; "
                                               f"it should be {should}", u)
            cause = "derivative_at_input" if m.form == "output" else "derivative_at_output"
            return Why(cause, f"its factor {name} is {m.text.format(a=marg)}, {d.name}'s derivative in terms of its "
                              f"{m.form} evaluated at {marg}; it should be {should}", u)
        d, arg = right[0]
        return Why("wrong_derivative", f"its factor {name} is not the local derivative; it should be {d.name}'s "
                                       f"derivative {d.text.format(a=arg)}", u)
    # a factor that is the derivative of a function the forward program applies at that very value is the
    # right one for it: what else the line computes is wrong (a term left out), not this factor
    mine = [(m, a) for m, a in mine if held[a].var is None or (m.name, m.form) not in refs.applied.get(held[a].var, ())]
    if mine:
        m, marg = mine[0]
        return Why("wrong_derivative", f"its factor {name} is {m.name}'s derivative {m.text.format(a=marg)}, "
                                       "which is not the local derivative here", u)
    return None


def _two_valued(got, need, tol):
    """``(cause, words)`` where the factor and the one it should be are masks of the same two values (a
    step's derivative: 0 / 1, or 1 and a leaky slope) chosen by different conditions, else ``None``."""
    levels = np.unique(np.round(need, 12))
    if not 1 <= levels.size <= 2 or got.size < 2:
        return None
    near = [np.isclose(got, x, rtol=tol * 10, atol=0) for x in levels]
    if not np.all(np.any(near, axis=0)) or np.all(np.isclose(got, need, rtol=tol * 10, atol=0)):
        return None
    wrong = int(np.sum(~np.isclose(got, need, rtol=tol * 10, atol=0)))
    if levels.size == 2 and wrong == got.size:
        return "wrong_branch", "with its two values swapped: the other branch is taken everywhere"
    return "wrong_threshold", (f"from the wrong condition: it differs from the right one at {wrong} of {got.size} "
                               "entries")


def cone(program: Program, var, status) -> List[Any]:
    """The values that ``var`` is computed from since the last right ones (those that match nothing, or
    match only up to a factor), ``var`` included, in program order."""
    seen, stack = set(), [var]
    while stack:
        w = stack.pop()
        if w in seen or program.producer(w) is None:
            continue
        seen.add(w)
        for u in program.eqns[program.producer(w)].invars:
            m = status.get(u) if isinstance(u, jcore.Var) else None
            if isinstance(u, jcore.Var) and jg.is_float(u) and not (m is not None and m.exact and not m.transposed):
                stack.append(u)
    return sorted(seen, key=program.producer)


def _scaled_in_cone(program: Program, var, r, status, tol) -> Optional[Why]:
    """One value ``w`` of the cone that, scaled by a constant, makes the line right (a constant dropped or
    doubled inside a longer expression): ``v(c w)`` is affine in ``c``; the most upstream such ``w``."""
    inside = cone(program, var, status)
    inputs = [u for w in inside for u in program.eqns[program.producer(w)].invars
              if isinstance(u, jcore.Var) and jg.is_float(u) and program.producer(u) is not None and u not in inside]
    for w in inside + sorted(set(inputs), key=program.producer):  # unmatched values first
        x = program.value(w)
        if x is None or w is var:
            continue
        ends = program.replaced(w, [np.zeros_like(x), x], targets=[var])[0].astype(np.float64)
        alpha, beta = ends[0], ends[1] - ends[0]
        if not np.any(beta) or not np.all(np.isfinite(ends)):
            continue
        c = _fit(r - alpha, beta)
        if not causes.near(c, 1.0) and close(alpha + c * beta, r, tol * 10):
            if causes.near(c, 0.0):
                return Why("missing_term", f"its term {name_of(program, w, status)} should not be there", w)
            if not np.isfinite(c):
                continue
            cause, words = _scale_words(c, program)
            user = w if w in inside else next(x for x in inside if w in program.eqns[program.producer(x)].invars)
            m = status.get(w)
            share = m is not None and m.exact and not m.transposed and m.ref.share  # a term, right as it is
            if m is not None and not m.transposed and not share and causes.near(c * m.factor, 1.0):
                user = w  # w is a right quantity times 1/c: scaled where it is made
            if user is not w and not share and _has_literal_scale(program, program.line(w)) \
                    and not _has_literal_scale(program, program.line(user)):
                user = w  # the constant is written on w's own line (unless w is a share, right as it is)
            return Why(cause, f"{name_of(program, w, status)} should be {c:.6g} × what it is ({words})", user)
    return None


def _has_literal_scale(program: Program, line) -> bool:
    """Line ``line`` multiplies or divides by a literal constant."""
    return any(program.graph.user_line(i) == line and e.primitive.name in ("mul", "div")
               and any(isinstance(u, jcore.Literal) for u in e.invars) for i, e in enumerate(program.eqns))


def _unused_term(program: Program, var, v, r, tol) -> Optional[Why]:
    """The difference is a value the user computed (and did not add): ``r - v = c x``."""
    d = r - v
    for w in program.graph.producer:
        x = program.value(w)
        if x is None or x.shape != v.shape or not jg.is_float(w) or not np.any(x) or w is var:
            continue
        c = _fit(d, x.astype(np.float64))
        if close(d, c * x, tol * 10):
            term = name_of(program, w)
            return Why("path_dropped" if causes.near(c, 1.0) else "missing_term",
                       f"it leaves out {'' if causes.near(c, 1.0) else f'{c:.6g} × '}{term} "
                       f"({program.line(w)}), a term it should add")
    return None


def wrong_shape(program: Program, eqn, var, match: Match, tol: float) -> Why:
    """Why a value has another shape than the quantity it should equal (``match``, at its own shape): a sum
    over the wrong axes, a transpose, or a shape of its own."""
    r = np.asarray(match.ref.value, np.float64) * match.factor
    v = np.asarray(program.value(var), np.float64)
    axis = _wrong_axis(program, eqn, r, tol)
    if axis is not None:
        return axis
    if v.ndim == 2 and v.T.shape == r.shape and close(v.T, r, tol):
        return Why("transposed", f"it computes the transpose of {label_of(match)}")
    return Why("shape", f"it computes an array of shape {v.shape}; {label_of(match)} has shape {r.shape}")


def _wrong_axis(program: Program, eqn, r, tol) -> Optional[Why]:
    """A sum over the wrong axes: the same sum over other axes computes what the line should."""
    if eqn.primitive.name != "reduce_sum":
        return None
    x = interpreter.read(program.env, eqn.invars[0])
    axes = tuple(eqn.params["axes"])
    for other in itertools.chain.from_iterable(itertools.combinations(range(np.ndim(x)), k) for k in
                                               range(1, np.ndim(x) + 1)):
        if other != axes:
            out = np.asarray(np.sum(np.asarray(x, np.float64), axis=other))
            if out.shape == r.shape and close(out, r, tol * 10):
                return Why("wrong_axis", f"it sums over axis {', '.join(map(str, axes))}; the sum over axis "
                                         f"{', '.join(map(str, other))} is what it should compute")
    return None


def _wrong_axis_upstream(program: Program, refs: References, var, status) -> Optional[Why]:
    """A sum that the wrong line is computed from, over the wrong axes (its result broadcasts on): the same
    sum over other axes is a right quantity.  The sum's line is blamed."""
    for w in cone(program, var, status):
        eqn = program.eqns[program.producer(w)]
        if w is var or eqn.primitive.name != "reduce_sum" or (status.get(w) is not None and status[w].exact):
            continue
        x = np.asarray(interpreter.read(program.env, eqn.invars[0]), np.float64)
        axes = tuple(eqn.params["axes"])
        for other in itertools.chain.from_iterable(itertools.combinations(range(x.ndim), k) for k in range(1, x.ndim)):
            m = refs.match(np.sum(x, axis=other)) if other != axes else None
            simple = [1.0] + [float(n) for n in sizes_of(program)]  # a sign, or a 1/n, may follow
            if m is not None and not m.transposed and any(causes.near(abs(m.factor), c) for c in simple):
                return Why("wrong_axis", f"{name_of(program, w, status)} sums over axis {', '.join(map(str, axes))}; "
                                         f"over axis {', '.join(map(str, other))} it is {m.ref.label}", w)
    return None


def _operand_swap(program: Program, refs: References, eqn, r, status, tol, at, var=None) -> Optional[Why]:
    """A right input of the wrong line (or of a value it is computed from since the last right ones) that
    is not the one the line needs: with that input replaced by another right quantity, or by its transpose,
    the line computes what it should.  The line that reads the input is blamed."""
    target = var if var is not None else eqn.outvars[0]
    users = [(program.eqns[program.producer(w)], w) for w in cone(program, target, status)]
    tried = set()
    for e, out in users[::-1]:
        for u in e.invars:
            if not (isinstance(u, jcore.Var) and jg.is_float(u)) or u in tried:
                continue
            tried.add(u)
            m0 = status.get(u)
            if not (u in program.graph.closed.jaxpr.invars or u in program.graph.closed.jaxpr.constvars
                    or program.producer(u) is None or (m0 is not None and m0.exact)):
                continue
            x = program.value(u)
            if x is None or x.size < 2:
                continue
            m0 = m0 if u in status else refs.match(x)
            kinds = ("value",) if m0 is None or m0.ref.kind == "value" else ("cotangent", "gradient")
            tries = [(m, m.ref.label) for m, _ in refs.ranked(x, kinds)[:12]]  # the same kind of quantity
            tries = [(m, label) for m, label in tries  # a multiple of x itself is a scale, not another operand
                     if not close(x, _fit(x, refs.shaped(m, x.shape)) * refs.shaped(m, x.shape), tol)
                     and not (x.ndim == 2 and x.shape[0] == x.shape[1] and close(x.T, refs.shaped(m, x.shape), tol))]
            alts = [refs.shaped(m, x.shape) for m, _ in tries]
            if x.ndim == 2 and x.shape[0] == x.shape[1]:
                tries.append((None, "its transpose"))
                alts.append(x.T)
            if not alts:
                continue
            outs = program.replaced(u, alts, targets=[target])[0].astype(np.float64)
            for (m, label), o in zip(tries, outs):
                if o.shape == r.shape and close(o, r, tol * 10):
                    here = program.graph.user_line(program.producer(out))
                    name = name_of(program, u, status, here)
                    if m is None:  # a computed operand: its own line writes the product in the wrong order,
                        # unless it is a right quantity as it stands that other lines read as it is (``ds`` for
                        # ``dq = ds @ k``): the product reads it untransposed
                        live = program.live_eqns()
                        upright = m0 is not None and m0.exact and not m0.transposed and any(
                            program.graph.user_line(i) != here for i in program.consumers(u) if i in live)
                        return Why("transposed_operand", f"its operand {name} should be transposed",
                                   u if program.producer(u) is not None and not upright else out)
                    if m.ref.kind == "cotangent" and m.ref.fn:
                        return Why("derivative_dropped", f"it uses {name} where {label} belongs: the derivative of "
                                                         f"the {m.ref.fn} is left out", out)
                    if m.ref.kind != "value" and program.producer(u) is not None:  # a partial cotangent computed
                        return Why("path_dropped", f"{name} is only part of {label}: a path's term is missing", u)
                    return Why("wrong_saved_operand", f"it uses {name} where {label} belongs", out)
    return None
