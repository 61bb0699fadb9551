"""The differentiable leaves of any params pytree: what a gradient check compares, and what it skips.

Research code keeps more than weights in its params: an int32 step count, a bool mask, a ``float0``
tangent, an activation function inside an equinox Module.  None of them has a gradient.  A check is
taken over the *inexact array leaves* only (the rule of ``equinox.is_inexact_array``); every other leaf
is held fixed at its value, and the report names it in a note.  The hand-written gradient may carry
anything at a skipped leaf (``None`` as ``equinox.filter_grad`` returns, a ``float0`` zero, an integer
zero) or leave it out: its leaves are matched to the params' by their paths.

The rule checks take the differentiable leaves of a rule's arguments the same way
(:class:`verification.checker.rules.args.Args` is a :class:`DiffLeaves` over the argument tuple, its
leaves named by the primal's parameter names and its ``nondiff_argnums`` held).

>>> import jax.numpy as jnp
>>> p = {"W": jnp.ones((2, 2)), "step": jnp.array(3), "act": jnp.tanh}
>>> s = DiffLeaves(p)
>>> s.names, s.skipped
(["['W']"], ["['act'] (PjitFunction)", "['step'] (int64)"])
>>> s.select({"W": jnp.zeros((2, 2)), "step": None, "act": None})[0].shape
(2, 2)
"""
from __future__ import annotations

from typing import Any, List

import jax
import jax.numpy as jnp
import numpy as np

from verification.checker.base.compare import leaf_name


def is_inexact_array(x) -> bool:
    """The one test of a leaf with a gradient: a floating (or complex) array, or a Python float."""
    if isinstance(x, float):
        return True
    return isinstance(x, (jax.Array, np.ndarray, np.generic)) and jnp.issubdtype(x.dtype, jnp.inexact)


def is_traceable(x) -> bool:
    """A leaf that can be an input of a traced program: an array or a Python number of *any* dtype, an
    integer or a bool included.  Not a test of a gradient (that is :func:`is_inexact_array`): it splits a
    program's arguments into the values a jaxpr takes as inputs and the others (functions, strings, an
    equinox Module's methods), which are held in the program as constants."""
    return isinstance(x, (jax.Array, np.ndarray, np.generic, int, float, complex, bool))


def put(flat, positions, values) -> list:
    """A copy of the leaves ``flat`` with ``values`` at ``positions``: a pytree's leaves, some replaced."""
    out = list(flat)
    for k, x in zip(positions, values):
        out[k] = x
    return out


def _kind(x) -> str:
    dtype = getattr(x, "dtype", None)
    return str(dtype) if dtype is not None else type(x).__name__


class DiffLeaves:
    """The inexact array leaves of ``tree`` (``leaves``, named ``names`` by their paths), the skipped
    ones (``skipped``: ``"name (kind)"``), and the way back to a full tree (:meth:`rebuild`).

    ``name(path)`` names a leaf by its path (:func:`verification.checker.base.compare.leaf_name`
    unless given); ``held(path)`` holds an inexact leaf fixed all the same (a rule's
    ``nondiff_argnums``)."""

    def __init__(self, tree, name=leaf_name, held=None):
        self.params, self._name = tree, name
        named, self.treedef = jax.tree_util.tree_flatten_with_path(tree)
        self.flat = [x for _, x in named]
        self.positions = [k for k, (p, x) in enumerate(named)
                          if is_inexact_array(x) and not (held is not None and held(p))]
        names = [name(p) for p, _ in named]
        self.names = [names[k] for k in self.positions]
        self.leaves = [jnp.asarray(self.flat[k]) for k in self.positions]
        chosen = set(self.positions)
        self.skipped = [f"{names[k]} ({_kind(x)})" for k, x in enumerate(self.flat) if k not in chosen]

    @property
    def all_inexact(self) -> bool:
        return not self.skipped

    def rebuild(self, leaves) -> Any:
        """The tree with its differentiable leaves replaced by ``leaves`` (the others as they were)."""
        return jax.tree.unflatten(self.treedef, put(self.flat, self.positions, leaves))

    def _named(self, tree):
        """``[(name, leaf)]`` of ``tree``, ``None`` kept as a leaf (``filter_grad``'s empty slots)."""
        flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)[0]
        return [(self._name(p), x) for p, x in flat]

    def select(self, grads) -> List[Any]:
        """The leaves of ``grads`` at the paths of the differentiable leaves (at their positions when
        ``grads`` has the tree's structure); a ``ValueError`` that names the missing paths when ``grads``
        lacks some."""
        flat, treedef = jax.tree.flatten(grads)
        if treedef == self.treedef:
            return [flat[k] for k in self.positions]
        named = self._named(grads)
        by_name = dict(named)
        missing = [n for n in self.names if by_name.get(n) is None]
        if missing:
            raise ValueError(f"the hand gradient has no leaf at {missing[:4]}{' ...' if len(missing) > 4 else ''}; "
                             f"expected one at every floating leaf of params ({len(self.names)}: "
                             f"{self.names[:4]}{' ...' if len(self.names) > 4 else ''}), got leaves at "
                             f"{[n for n, x in named if x is not None][:6]}")
        return [by_name[n] for n in self.names]

    def note(self) -> str:
        """The report's note on the skipped leaves."""
        shown = ", ".join(self.skipped[:6]) + (f" and {len(self.skipped) - 6} more" if len(self.skipped) > 6 else "")
        return (f"{len(self.skipped)} leaves of params are not floating arrays and have no gradient; they are held "
                f"fixed and not compared: {shown}")
