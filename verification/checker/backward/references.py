"""The quantities known to be right at the checked point, and the test of whether a value of the user's
backward code equals one of them.

A hand-written gradient computes, line by line, values that the traced loss already knows: the forward
values (recomputed, or saved), the parameters and the inputs, the true cotangent of every forward
equation (:func:`verification.checker.explain.edit_effects.at_point`, one reverse pass), and the true
gradient leaves.  :class:`References` holds them, indexed by shape, and :meth:`References.match` says
whether an array equals one of them up to a transpose, a reshape that only adds or drops axes of size 1,
and a constant factor (``c = 1``: the value is right; ``c = m``: right up to a batch size the user
divides out later).

>>> import numpy as np
>>> refs = References("float64")
>>> refs.add("value", "x", np.arange(6.0).reshape(2, 3))
>>> m = refs.match(2 * np.arange(6.0).reshape(2, 3).T)
>>> m.ref.label, m.transposed, round(m.factor, 6)
('x', True, 2.0)
"""
from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import jax.extend.core as jcore
import numpy as np

from verification.checker.backward import loop_steps
from verification.checker.backward.derivatives import op_function
from verification.checker.backward.source_code import assigned_name, code_at
from verification.checker.base.tolerances import BACKWARD_MATCH_RTOL
from verification.checker.explain.edit_effects import local_cotangents
from verification.checker.jaxpr import graph as jg
from verification.checker.jaxpr import interpreter

# A cosine this close to +-1 makes a candidate worth the exact test; the exact test decides.
_COSINE_SLACK = 1e-6


class Ref(NamedTuple):
    """One quantity known to be right: ``kind`` is "value" (a forward value, a parameter or an input),
    "cotangent" (the true ∂L/∂ of a forward value) or "gradient" (a true gradient leaf)."""

    kind: str
    label: str  # what it is, in the user's words: "∂L/∂(add at model.py:6)"
    value: np.ndarray
    var: Any = None  # the forward variable it belongs to (value / cotangent), else None
    line: Optional[str] = None  # the user's line of that forward variable
    name: str = ""  # its short name in the user's code ("h", "params['W1']"), where known
    fn: str = ""  # a cotangent of an activation's input: the activation (a name of backward.derivatives.TABLE)
    group: tuple = ()  # (kind, the forward equation's line key): the instances of one line of a loop body

    @property
    def share(self) -> bool:
        """One line's share of a cotangent (:func:`line_shares`): right only as a term of a sum."""
        return self.group[:1] == ("share",)


class Match(NamedTuple):
    """``value = factor * ref`` (with ``ref`` transposed where ``transposed``)."""

    ref: Ref
    factor: float
    transposed: bool = False

    @property
    def exact(self) -> bool:
        return abs(self.factor - 1.0) <= 1e-6


def squeezed(shape) -> Tuple[int, ...]:
    return tuple(int(n) for n in shape if n != 1)


class References:
    """The right quantities, by squeezed shape; :meth:`match` finds the one an array equals."""

    def __init__(self, precision: str):
        self.rtol = BACKWARD_MATCH_RTOL[precision]
        self.refs: List[Ref] = []
        self._seen: Dict[tuple, int] = {}
        self._by_shape: Dict[Tuple[int, ...], List[Tuple[int, bool]]] = {}
        self._stacked: Dict[Tuple[int, ...], tuple] = {}
        # a loop line's instances, each kept (equal values too), with its place in the program
        self._groups: Dict[tuple, List[Tuple[int, Ref]]] = {}
        # a held reference's forward variable -> {(function, form)}: the TABLE functions the forward program
        # applies to its value ("input") or that compute it ("output"), recorded under the reference that holds
        # the value (:meth:`note_applied`): a factor equal to one of their derivatives there is right
        self.applied: Dict[Any, set] = {}

    def add(self, kind: str, label: str, value, var=None, line=None, name="", fn="", group=(),
            at: Optional[int] = None) -> Optional[Ref]:
        """Add a right quantity; an array equal to one already held (the cotangent of a broadcast and of
        the sum it feeds) is kept once, under its first label.  ``at``: the index of the equation that
        makes it, which orders its group (else the order of the calls)."""
        a = np.asarray(value, dtype=np.float64)
        if group and a.size and np.all(np.isfinite(a)):  # a loop's instance: in its group even where held already
            members = self._groups.setdefault(group, [])
            members.append((len(members) if at is None else at, Ref(kind, label, a, var, line, name, fn, group)))
        if a.size == 0 or not np.all(np.isfinite(a)) or not np.any(a):
            return None
        key = (a.shape, hash(a.tobytes()))
        if key in self._seen:
            k = self._seen[key]
            if fn and not self.refs[k].fn:  # the cotangent of an activation's input, first met as another's
                self.refs[k] = self.refs[k]._replace(fn=fn)
            return self.refs[k]
        self._seen[key] = len(self.refs)
        self.refs.append(Ref(kind, label, a, var, line, name, fn, group))
        k = len(self.refs) - 1
        self._by_shape.setdefault(squeezed(a.shape), []).append((k, False))
        if a.ndim == 2 and min(a.shape) > 1:
            self._by_shape.setdefault(squeezed(a.shape[::-1]), []).append((k, True))
        self._stacked.clear()

    def add_slices(self, ref: Ref, at: int) -> None:
        """The slices of ``ref`` along its leading axis as one more group of right quantities, in order: a
        hand loop over the steps of a quantity the forward program computes for every step at once (a
        read-out ``hs @ V`` over the stacked states, its delta taken step by step).  Only a group: the whole
        array is the reference a value is matched against."""
        a = ref.value
        if a.ndim < 3 or not 2 <= a.shape[0] <= MAX_SLICES:
            return
        key = ("slices",) + ref.group[1:]
        for t in range(a.shape[0]):
            self._groups.setdefault(key, []).append(
                (at + t, ref._replace(label=f"{ref.label} at step {t} (its slice [{t}])", value=a[t], group=key)))

    def note_applied(self, value, fns) -> None:
        """Record ``(function, form)`` pairs the forward program applies to ``value`` (:attr:`applied`,
        under the variable of the reference that holds it)."""
        a = np.asarray(value, dtype=np.float64)
        k = self._seen.get((a.shape, hash(a.tobytes()))) if fns else None
        if k is not None and self.refs[k].var is not None:  # (not an expected result's, or a loop step's, ref)
            self.applied.setdefault(self.refs[k].var, set()).update(fns)

    def _stack(self, shape):
        if shape not in self._stacked:
            entries = self._by_shape.get(shape, [])
            rows = [(self.refs[k].value.T if t else self.refs[k].value).ravel() for k, t in entries]
            mat = np.stack(rows) if rows else np.zeros((0, int(np.prod(shape))))
            self._stacked[shape] = (entries, mat, np.linalg.norm(mat, axis=1))
        return self._stacked[shape]

    def groups(self, shape, n: int, short: int = 0) -> List[List[Ref]]:
        """The right quantities of one line of a loop body (or a line called ``n`` times), in program
        order: every group of ``n`` quantities of ``shape`` (with ``short``, of ``n - short`` too)."""
        found = [[r for _, r in sorted(g, key=lambda m: m[0]) if r.value.shape == tuple(shape)]
                 for g in self._groups.values()]
        return [g for g in found if n - short <= len(g) <= n and any(np.any(r.value) for r in g)]

    def layer_groups(self, shapes) -> List[List[Match]]:
        """The right quantities of one forward line run once per layer (a helper called on values of
        different shapes), in program order or reversed, whose ``k``-th member has ``shapes[k]`` (or, for a
        matrix, its transpose): each group as its members' :class:`Match` (factor 1)."""
        merged: Dict[tuple, List[Tuple[int, Ref]]] = {}
        for key, members in self._groups.items():
            if len(key) == 2 and key[0] in ("value", "cotangent") and isinstance(key[1], tuple) and len(key[1]) == 5:
                merged.setdefault((key[0],) + key[1][:3], []).extend(members)
        shapes = [tuple(s) for s in shapes]
        out = []
        for members in merged.values():
            refs = [r for _, r in sorted(members, key=lambda m: m[0])]
            if len(refs) != len(shapes) or len({r.value.shape for r in refs}) < 2:
                continue
            for order in (1, -1):
                fit = [Match(r, 1.0, r.value.shape != s) for r, s in zip(refs[::order], shapes)
                       if r.value.shape == s or (r.value.ndim == 2 and r.value.shape[::-1] == s)]
                if len(fit) == len(shapes) and any(np.any(m.ref.value) for m in fit):
                    out.append(fit)
        return out

    def ranked(self, value, kinds=None) -> List[Tuple[Match, float]]:
        """Every right quantity of ``value``'s shape (or its transpose), as the :class:`Match` that scales
        it onto ``value`` best (whether or not it fits) with its cosine, most similar first."""
        v = np.asarray(value, dtype=np.float64)
        entries, mat, norms = self._stack(squeezed(v.shape))
        if not entries or not np.all(np.isfinite(v)):  # (an overflowed value is like no right quantity)
            return []
        flat = v.ravel()
        dots = mat @ flat
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(norms > 0, dots / norms ** 2, 0.0)
            cosine = np.abs(dots) / (norms * max(float(np.linalg.norm(flat)), 1e-300))
        out = [(Match(self.refs[entries[i][0]], float(factor[i]), entries[i][1]), float(cosine[i]))
               for i in np.argsort(-cosine, kind="stable")]
        return [(m, c) for m, c in out if kinds is None or m.ref.kind in kinds]

    def shaped(self, m: Match, shape) -> np.ndarray:
        """The matched quantity in ``shape`` (transposed where the match says so), unscaled."""
        a = m.ref.value.T if m.transposed else m.ref.value
        return a.reshape(shape)

    def fits(self, value, m: Match) -> bool:
        """``value`` equals ``m.factor`` times the quantity, to :data:`BACKWARD_MATCH_RTOL` of its norm."""
        v = np.asarray(value, dtype=np.float64)
        r = m.factor * self.shaped(m, v.shape)
        return bool(np.linalg.norm(v - r) <= self.rtol * max(np.linalg.norm(v), np.linalg.norm(r)))

    def match(self, value, exact_only: bool = False) -> Optional[Match]:
        """The right quantity ``value`` equals, up to a transpose and a constant factor (``None``: none
        does, or ``value`` is zero or not finite).  An exact match (factor 1, untransposed) wins."""
        v = np.asarray(value, dtype=np.float64)
        if v.size < 2 or not np.all(np.isfinite(v)) or not np.any(v):
            return None
        found = []
        for m, cosine in self.ranked(v):
            if cosine < 1 - _COSINE_SLACK:
                break
            if self.fits(v, m):
                found.append(m)
        found = [m for m in found if not exact_only or (m.exact and not m.transposed)]
        if not found:
            return None
        return min(found, key=lambda m: (not m.exact, m.transposed, _KIND_ORDER.get(m.ref.kind, 3)))


_KIND_ORDER = {"gradient": 0, "cotangent": 1, "value": 2}
MAX_SHARE_USES = 256  # equations whose share of a cotangent is computed (each one local VJP)


def line_shares(graph, point, consumers) -> List[Tuple[Any, str, np.ndarray]]:
    """``(var, line, share)``: for a forward value read on two or more of the user's lines (a weight in its
    layer and in the penalty, the input of a residual block and its skip), the share of its cotangent that
    comes through the uses on one line.  A hand gradient adds those shares, each on its own line
    (``dW = a.T @ delta`` and ``dW += l2 * W``), and a mistake sits in one of them."""
    out = []
    budget = MAX_SHARE_USES
    for v, users in consumers.items():
        lines: Dict[str, List[int]] = {}
        for i in dict.fromkeys(users):
            line = graph.user_line(i)
            if line is not None:
                lines.setdefault(line, []).append(i)
        if len(lines) < 2 or point.values.get(v) is None:
            continue
        for line, eqns in lines.items():
            budget -= len(eqns)
            if budget < 0:
                return out
            share = None
            for i in eqns:
                e = graph.eqns[i]
                invals = [interpreter.read(point.values, u, None) for u in e.invars]
                if any(x is None for x in invals):
                    share = None
                    break
                back = local_cotangents(e, invals, [point.cotangents.get(o) for o in e.outvars])
                for u, b in zip(e.invars, back):
                    if u is v and b is not None:
                        share = np.asarray(b) if share is None else share + np.asarray(b)
            if share is not None:
                out.append((v, line, share))
    return out


RESHAPES = frozenset({"broadcast_in_dim", "reshape", "squeeze", "expand_dims", "convert_element_type", "copy"})


def _reshaped_share(graph, i: int, consumers) -> bool:
    """Equation ``i`` only reshapes a value that something else reads too (``h`` stacked into the loop's
    outputs and carried to the next step): its output's cotangent is one share of that value's, right only
    with the others added (a hand BPTT that leaves out the carried delta computes exactly that share)."""
    e = graph.eqns[i]
    u = e.invars[0] if e.invars else None
    return (e.primitive.name in RESHAPES and isinstance(u, jcore.Var) and len(set(consumers.get(u, ()))) >= 2
            and int(np.prod(u.aval.shape)) == int(np.prod(e.outvars[0].aval.shape)))


MAX_SLICES = 256  # steps of a stacked cotangent grouped slice by slice (``add_slices``)
MAX_OPERAND_USES = 256  # operands of repeated matrix products read elsewhere too: one local VJP each


def operand_cotangents(graph, point, consumers) -> List[Tuple[int, int, Any, np.ndarray]]:
    """``(equation, operand, var, cotangent)``: for a matrix product whose line runs more than once (a helper
    called per stage of a step, a loop body unrolled), the cotangent that reaches each float operand through
    that product alone, at every instance.  A hand backward that calls one VJP helper per use computes these,
    instance by instance, whatever forward line made the operand (``f(u + c k)``: a stage's input).  Each is
    one share of its operand's cotangent where something else reads the operand too (where nothing does, it
    equals the operand's own cotangent, held already under that name)."""
    out, budget = [], MAX_OPERAND_USES
    for i, e in enumerate(graph.eqns):
        if e.primitive.name != "dot_general" or len(graph.instances(i, by="op")) < 2:
            continue
        outs = [point.cotangents.get(o) for o in e.outvars]
        invals = [interpreter.read(point.values, w, None) for w in e.invars]
        for k, u in enumerate(e.invars):
            if not (isinstance(u, jcore.Var) and jg.is_float(u)) or point.values.get(u) is None:
                continue
            if set(consumers.get(u, ())) == {i} and u in point.cotangents:  # read here alone: its own cotangent
                out.append((i, k, u, np.asarray(point.cotangents[u])))
                continue
            budget -= 1
            if budget < 0 or any(x is None for x in invals) or any(g is None for g in outs):
                continue
            back = local_cotangents(e, invals, outs)[k]
            if back is not None:
                out.append((i, k, u, np.asarray(back)))
    return out


def _named(graph):
    """``(consumers, order, named)``: each float variable's reading equations; the equations, a line's own
    result first (the value the line assigns: no equation of the same line reads it); and per output
    ``(name, what it is, where)`` in the user's words."""
    consumers: Dict[Any, List[int]] = {}
    for i, e in enumerate(graph.eqns):
        for u in e.invars:
            if jg.is_float(u):
                consumers.setdefault(u, []).append(i)

    def result(i):
        line = graph.user_line(i)
        return line is not None and all(graph.user_line(k) != line for v in graph.eqns[i].outvars
                                        for k in consumers.get(v, []))

    order = sorted(range(len(graph.eqns)), key=lambda i: (jg.op_name(graph.eqns[i]) in jg.PLUMBING, not result(i)))
    named = {}
    for i in order:
        e, line = graph.eqns[i], graph.user_line(i)
        for v in e.outvars:
            name = assigned_name(line) if result(i) else ""
            named[v] = (name, name or f"{jg.op_name(e)} in `{code_at(line)}`", graph.describe(i, instance=True))
    return consumers, order, named


def _add_steps(refs: References, graph, point, d) -> None:
    """The per-iteration quantities of the loops the loss keeps whole (:mod:`loop_steps`), each body value's
    instances one group: its cotangents, then its values."""
    steps = loop_steps.per_step(graph, point)
    bodies = {}
    for s in steps:
        if id(s.body) not in bodies:
            bodies[id(s.body)] = _named(s.body)
    for kind in ("cotangent", "value"):
        for s in steps:
            consumers, _, named = bodies[id(s.body)]
            if s.role == "const" and kind == "value":
                continue  # (the parameter itself, the same at every step)
            loop = f"the loop at {graph.user_line(s.scan) or '?'}"
            if s.eqn is None:
                line, name, what_is = graph.user_line(s.scan), "", _input_words(graph, s, named, loop)
            else:
                line, (name, what_is, _) = s.body.user_line(s.eqn), named[s.var]
            users = consumers.get(s.var, [])
            fn = op_function(s.body.eqns[users[0]]) if kind == "cotangent" and len(users) == 1 else ""
            stack = s.cotangents if kind == "cotangent" else s.values
            group = ("share" if s.role == "const" else kind, ("step", s.scan, s.eqn, str(s.var)))
            every = f"{d(what_is)}" if kind == "cotangent" else f"the forward value {what_is}"
            if s.role == "const":
                every += " (one step's share)"
            refs.add(kind, f"{every} at every iteration of {loop}, stacked on axis 0 ({line})", stack, None, line,
                     name, fn, group=("share", ("stacked",) + group[1]) if s.role == "const" else ())
            # (a hand gradient that computes a step's quantity for all steps at once; a step's share is right only
            # summed with the others)
            if s.role == "carry" and kind == "cotangent":  # as a backward loop carries it: step t holds t + 1's
                later = np.concatenate([stack[1:], np.zeros_like(stack[:1])])
                refs.add(kind, f"{every} at the next iteration of {loop}, stacked on axis 0 ({line})", later, None,
                         line, name, fn)
            for t in range(stack.shape[0]):
                label = (f"{every} at iteration {t} of {loop} (the cotangent of `{code_at(line)}`, {line})"
                         if kind == "cotangent" else f"the forward value {what_is} at iteration {t} of {loop} ({line})")
                refs.add(kind, label, stack[t], None, line, name, fn, group=group)


def _input_words(graph, s, named, loop: str) -> str:
    """A loop body's input in words: a carry by the value the body hands on in its place."""
    if s.role == "carry":
        out = s.body.closed.jaxpr.outvars[s.position]
        name = named[out][0] if out in named else ""
        return f"{name or 'the carry'} (the carry from the previous iteration of {loop})"
    if s.role == "const":
        outer = graph.eqns[s.scan].invars[s.position]
        invars = list(graph.closed.jaxpr.invars)
        name = graph.leaf_names[invars.index(outer)] if outer in invars else ""
        return name or f"the constant {s.position} of {loop}"
    return f"the slice {s.position} of {loop}"


def of_forward(graph, point, expected, names, precision: str, what: str = "L",
               inputs: Sequence[Tuple[str, Any]] = (), forward: str = "") -> Tuple[References, List[Ref]]:
    """The right quantities of a traced forward program at a point (``point`` of
    :func:`verification.checker.explain.edit_effects.at_point`: every value and true cotangent): the
    ``expected`` results first (the true gradient leaves, named ``names``), then the cotangents, the
    forward values, the parameters and the inputs (``inputs``: ``(name, array)`` of the arguments, to name
    them).  Returns the references and the expected ones, in order.  With ``forward="tangent"`` the
    point's derivatives are tangents (a hand JVP's right quantities), named so; with ``forward="primal"``
    the expected results are the primal's own outputs (a rule's ``fwd``) and the point has values alone."""
    refs = References(precision)

    def d(name):
        return {"tangent": f"the true tangent of {name}", "primal": f"the primal's {name}"}.get(
            forward, f"∂{what}/∂{name}")

    wanted = [refs.add("gradient", d(n), e, name=n) or Ref("gradient", d(n), np.asarray(e))
              for n, e in zip(names, expected)]
    consumers, order, named = _named(graph)
    applied: Dict[Any, set] = {}
    for e in graph.eqns:
        fn = op_function(e)
        for form, vs in (("input", e.invars[:1]), ("output", e.outvars[:1])) if fn else ():
            for v in vs:
                if isinstance(v, jcore.Var):
                    applied.setdefault(v, set()).add((fn, form))
    for i in order:
        e, line = graph.eqns[i], graph.user_line(i)
        for v in e.outvars:
            name, what_is, where = named[v]
            if v in point.cotangents:
                users = consumers.get(v, [])
                fn = op_function(graph.eqns[users[0]]) if len(users) == 1 else ""
                kind = "tangent" if forward else "cotangent"
                label = f"{d(what_is)} (the {kind} of `{code_at(line)}`, {where})"
                group = ("share" if _reshaped_share(graph, i, consumers) else "cotangent", graph.key(i))
                refs.add("cotangent", label, point.cotangents[v], v, line, name, fn, group=group, at=i)
                refs.add_slices(Ref("cotangent", label, np.asarray(point.cotangents[v], np.float64), v, line, name,
                                    fn, group), at=i * MAX_SLICES)
    if not forward and point.cotangents:
        _add_steps(refs, graph, point, d)
    for i in order:
        for v in graph.eqns[i].outvars:
            if jg.is_float(v) and point.values.get(v) is not None:
                name, what_is, where = named[v]
                refs.add("value", f"the forward value {what_is} ({where})", point.values[v], v,
                         graph.user_line(i), name, group=("value", graph.key(i)), at=i)
                refs.note_applied(point.values[v], applied.get(v, ()))
    jaxpr = graph.closed.jaxpr
    leaf_names = dict(zip(jaxpr.invars, graph.leaf_names))
    if not forward and point.cotangents:
        for i, k, u, cot in operand_cotangents(graph, point, consumers):
            name = leaf_names.get(u) or (named[u][1] if u in named else "")
            line = graph.user_line(i)
            refs.add("cotangent", f"{d(name)} through `{code_at(line)}` ({graph.describe(i, instance=True)}: what "
                     f"reaches its operand {k})", cot, u, line, assigned_name(line),
                     group=("share", "operand", graph.key(i), k), at=i)
        shares = line_shares(graph, point, consumers)
        lines_of = {}
        for v, line, _ in shares:
            lines_of.setdefault(v, []).append(line)
        for v, line, share in shares:
            name = leaf_names.get(v) or (named[v][1] if v in named else "")
            refs.add("cotangent", f"{d(name)} through `{code_at(line)}` ({line}: the share of that line's uses)",
                     share, v, line, assigned_name(line), group=("share", line))
            if len(lines_of[v]) >= 3 and v in point.cotangents:  # the rest: a carried delta (dh_prev, the step's
                # own uses) without the read-out's
                refs.add("cotangent", f"{d(name)} through every use but `{code_at(line)}` ({line})",
                         np.asarray(point.cotangents[v]) - share, v, None, "", group=("share", "but", line))
    for v, n in zip(jaxpr.invars, graph.leaf_names):
        refs.add("value", n, point.values[v], v, None, n)
        refs.note_applied(point.values[v], applied.get(v, ()))
    for v in jaxpr.constvars:
        x = point.values.get(v)
        if x is not None and jg.is_float(v):
            arg = next((n for n, a in inputs if np.shape(a) == np.shape(x) and np.array_equal(a, x)), "")
            refs.add("value", f"the input {arg}" if arg else f"an input of shape {tuple(np.shape(x))}", x, v, None, arg)
    return refs, wanted
