"""A loss function as a list of equations: where each parameter leaf enters, with the user's source lines.
The equations are run by :mod:`verification.checker.jaxpr.interpreter`, and re-run with a derivative
edited by :mod:`verification.checker.explain.edits`.

The equations come from ``jax.make_jaxpr`` (which inlines ``jit``); higher-order equations
(``custom_jvp_call``, ``custom_vjp_call``, control flow) stay whole units.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from verification.checker.jaxpr import inline
from verification.checker.jaxpr.source_lines import library_line, user_line

# Shape and bookkeeping primitives: never worth naming as "where the error enters".
PLUMBING = {"broadcast_in_dim", "reshape", "convert_element_type", "squeeze", "expand_dims", "transpose", "copy",
            "stop_gradient", "is_finite", "sign", "iota", "eq", "ne", "lt", "le", "gt", "ge",
            "pjit", "jit", "slice", "concatenate", "reduce_max", "argmax"}

# The one list of kinks (op names as :func:`op_name` writes them): elementwise ops of one input whose
# derivative jumps at 0, and ops of two inputs whose derivative jumps where they tie.
KINKS_AT_ZERO = ("abs", "custom_jvp_call[relu]", "custom_jvp_call[leaky_relu]")
KINKS_AT_TIES = ("max", "min")



def op_name(eqn) -> str:
    """The primitive's name; a custom rule is named by its function (``custom_jvp_call[relu]``)."""
    name = eqn.primitive.name
    inner = eqn.params.get("call_jaxpr") or eqn.params.get("fun_jaxpr")
    info = getattr(getattr(inner, "jaxpr", inner), "debug_info", None)
    fname = getattr(info, "func_name", None)
    return f"{name}[{fname}]" if fname and name.startswith("custom") else name


@dataclasses.dataclass
class Graph:
    """The traced loss ``f(params) -> scalar``: its equations, and where each parameter leaf enters."""

    closed: Any  # jax.core.ClosedJaxpr
    leaf_names: List[str]
    treedef: Any
    uses: Dict[int, List[int]]  # leaf index -> indices of the equations that read it directly
    edges: List[tuple]  # (equation, input position) of every floating input that depends on the params
    producer: Dict[Any, int]  # var -> index of the equation that computes it
    _groups: Dict[str, Dict[tuple, List[int]]] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def eqns(self):
        return self.closed.jaxpr.eqns

    @property
    def live(self) -> set:
        """Indices of the equations with a floating input that depends on the params."""
        return {i for i, _ in self.edges}

    def user_line(self, i: int) -> Optional[str]:
        return user_line(self.eqns[i])

    def key(self, i: int) -> tuple:
        """The same line of a loop body (or of a Python loop): op, user line, input shapes, and the value of
        each scalar literal (``2 * k2`` and ``dt / 6 * s`` on one line are different ops)."""
        e = self.eqns[i]
        lits = tuple(float(v.val) if isinstance(v, jcore.Literal) and np.ndim(v.val) == 0
                     and np.issubdtype(np.asarray(v.val).dtype, np.number) else None for v in e.invars)
        return (
            op_name(e),
            user_line(e),
            library_line(e),
            tuple(tuple(getattr(v.aval, "shape", ())) for v in e.invars),
            lits,
        )

    def describe(self, i: int, instance: bool = False) -> str:
        """``op at file:line`` (with the library line it ran, ``(in equinox/nn/_mlp.py:25)``).  With
        ``instance``, where one line serves several equations (a Python loop over layers, a module called
        per layer) it adds which one: ``[3 of 24: params[2]['W']]``, named by the leaf that enters there or
        last before it."""
        e = self.eqns[i]
        where, library = user_line(e), library_line(e)
        text = f"{op_name(e)} at {where}" if where else op_name(e)
        if library:
            text += f" (in {library})"
        if instance and where:
            same = self.instances(i, by="line")
            if len(same) > 1:
                leaf = self.nearest_leaf(i)
                text += f" [{same.index(i) + 1} of {len(same)}{': ' + leaf if leaf else ''}]"
        return text

    def instance_groups(self, by: str = "op", keep: Optional[Callable[[int], bool]] = None) -> Dict[tuple, List[int]]:
        """The one grouping of a line's instances (the iterations of a loop body, the layers of a Python loop,
        the calls of a helper): equations with the same :meth:`key` (``by="op"``: the same op with the same
        shapes and literals) or the same op at the same user and library line (``by="line"``), in program
        order; with ``keep``, only the equations it accepts."""
        if by not in ("op", "line"):
            raise ValueError(f"by: expected 'op' or 'line', got {by!r}")
        cache = self._groups.setdefault(by, {})
        if not cache:
            for k in range(len(self.eqns)):
                cache.setdefault(self.key(k) if by == "op" else self.key(k)[:3], []).append(k)
        if keep is None:
            return cache
        out = {key: [k for k in ks if keep(k)] for key, ks in cache.items()}
        return {key: ks for key, ks in out.items() if ks}

    def instances(self, i: int, by: str = "op") -> List[int]:
        """The instances of equation ``i``'s line (:meth:`instance_groups`), ``i`` among them."""
        return self.instance_groups(by)[self.key(i) if by == "op" else self.key(i)[:3]]

    def nearest_leaf(self, i: int) -> Optional[str]:
        """The parameter leaf read at equation ``i``, or else the one read last before it."""
        best = max(((max(u for u in uses if u <= i), k) for k, uses in self.uses.items() if any(u <= i for u in uses)),
                   default=None)
        return None if best is None or best[1] >= len(self.leaf_names) else self.leaf_names[best[1]]

    def backward_order(self) -> List[int]:
        """Leaf indices in the order the backward pass reaches them: latest use first."""
        return sorted(self.uses, key=lambda k: -max(self.uses[k], default=-1))


def trace(loss: Callable, params, leaf_names: Sequence[str], unroll_max: int = inline.UNROLL_MAX) -> Graph:
    """Trace ``loss(params)``; ``leaf_names`` name the flattened leaves of ``params``.

    Short loops are unrolled (tracing under ``jax.disable_jit``): every iteration is its own equations,
    with its own line and instance.  Where the program's scans would unroll into more than
    ``unroll_max`` (:data:`verification.checker.jaxpr.inline.UNROLL_MAX`) equations, each scan stays one
    equation, its body edited as a whole (:mod:`verification.checker.explain.loop_bodies`): the cost no longer
    grows with the number of iterations."""
    leaves, treedef = jax.tree.flatten(params)
    f = lambda *ls: loss(jax.tree.unflatten(treedef, ls))  # noqa: E731
    closed = jax.make_jaxpr(f)(*leaves)
    if inline.scan_size(closed.jaxpr) <= unroll_max:
        with jax.disable_jit():  # inline jit and unroll scan / fori_loop: their ops are visible, with their lines
            closed = jax.make_jaxpr(f)(*leaves)
    if inline.needs_inlining(closed.jaxpr):  # jit, cond, while_loop, checkpoint: the program run at this point
        closed = inline.inline(closed, leaves)
    return graph_of(closed, leaf_names, treedef)


def graph_of(closed, leaf_names: Sequence[str], treedef=None) -> Graph:
    """The :class:`Graph` of a closed jaxpr whose inputs are the leaves named ``leaf_names``."""
    invars = closed.jaxpr.invars
    index = {v: k for k, v in enumerate(invars)}
    uses: Dict[int, List[int]] = {k: [] for k in range(len(invars))}
    live, edges, producer = set(invars), [], {}
    for i, eqn in enumerate(closed.jaxpr.eqns):
        carries = False
        for j, v in enumerate(eqn.invars):
            if isinstance(v, jcore.Var) and v in live and is_float(v):
                edges.append((i, j))
                carries = True
                if v in index and i not in uses[index[v]]:
                    uses[index[v]].append(i)
                    if eqn.primitive.name in PLUMBING and len(eqn.outvars) == 1:
                        index[eqn.outvars[0]] = index[v]  # a reshaped or broadcast leaf is the leaf
        if carries:
            live.update(eqn.outvars)
        for v in eqn.outvars:
            producer[v] = i
    return Graph(closed, list(leaf_names), treedef, uses, edges, producer)


def is_float(v) -> bool:
    return isinstance(v, jcore.Var) and jnp.issubdtype(v.aval.dtype, jnp.inexact)
