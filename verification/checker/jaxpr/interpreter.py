"""The one jaxpr interpreter: every evaluation of a traced program in the checker is this loop.

As ``eval_jaxpr`` in ``jax/_src/core.py``: :func:`read` an atom (a literal's own value, or a variable's
value in the environment), :func:`bind` one equation to its input values, and :func:`run` the equations in
order, writing each output into the environment.  An analysis changes what one equation computes through
``on_eqn`` (an edited derivative, a probe, a renaming into another program) and never writes the loop
again.

>>> import jax, jax.numpy as jnp
>>> closed = jax.make_jaxpr(lambda x: jnp.sin(x) * 2.0)(1.0)
>>> env = run(closed, [jnp.asarray(0.5)])
>>> float(read(env, closed.jaxpr.outvars[0])) == 2 * float(jnp.sin(0.5))
True
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import jax
import jax.extend.core as jcore
import numpy as np

OnEqn = Callable[[int, Any, List[Any], Dict[Any, Any]], List[Any]]  # (index, eqn, input values, env) -> outputs


_REQUIRED = object()


def read(env: Dict[Any, Any], atom, default: Any = _REQUIRED) -> Any:
    """The value of ``atom``: a literal's own value, else the variable's value in ``env`` (or ``default``
    where ``env`` lacks it, when one is given)."""
    if isinstance(atom, jcore.Literal):
        return atom.val
    return env[atom] if default is _REQUIRED else env.get(atom, default)


def bind(eqn, invals: Sequence[Any], params: Optional[Dict[str, Any]] = None) -> List[Any]:
    """Equation ``eqn`` applied to ``invals`` (with ``params`` in place of its own), as a list of outputs."""
    primitive = eqn.primitive
    out = primitive.bind(*invals, **primitive.get_bind_params(eqn.params if params is None else params))
    return list(out) if primitive.multiple_results else [out]


def run(closed, args: Sequence[Any], on_eqn: Optional[OnEqn] = None, *,
        env: Optional[Dict[Any, Any]] = None) -> Dict[Any, Any]:
    """Run ``closed`` (a ``ClosedJaxpr``, or a ``Jaxpr`` whose constants ``env`` holds) on ``args``; returns
    the environment, every variable's value.

    ``on_eqn(i, eqn, invals, env)`` computes equation ``i``'s outputs in place of :func:`bind` (it may
    call :func:`bind` itself and change what it returns).  ``env`` is written in place: values given there
    beforehand (a value an edit reads before its equation runs) are read until their equation overwrites
    them.
    """
    jaxpr = getattr(closed, "jaxpr", closed)
    env = {} if env is None else env
    env.update(zip(jaxpr.constvars, getattr(closed, "consts", ())))
    env.update(zip(jaxpr.invars, args))
    for i, eqn in enumerate(jaxpr.eqns):
        invals = [read(env, v) for v in eqn.invars]
        outs = bind(eqn, invals) if on_eqn is None else on_eqn(i, eqn, invals, env)
        env.update(zip(eqn.outvars, outs))
    return env


def scan(eqn, invals: Sequence[Any], body: Callable[[List[Any]], List[Any]]) -> List[Any]:
    """Scan equation ``eqn`` run on ``invals`` with ``body(consts + carry + x) -> carry + ys`` as its step
    (the equation's own body, run through :func:`run` with an ``on_eqn``, or changed): ``carry + ys``."""
    p = eqn.params
    nc, ncar = p["num_consts"], p["num_carry"]
    consts, init, xs = invals[:nc], invals[nc:nc + ncar], invals[nc + ncar:]

    def step(carry, x):
        out = body(list(consts) + list(carry) + list(x))
        return out[:ncar], out[ncar:]

    carry, ys = jax.lax.scan(step, list(init), list(xs), length=p["length"], reverse=p["reverse"])
    return list(carry) + list(ys)


# XLA's options for a program the checker compiles to run once or a few times (a batch of exact evaluations,
# the pullbacks of a search): LLVM at -O0 and XLA's older CPU emitter, which compile such a program in a third
# of the time (a GRU's batched exact gradients, 8 steps unrolled: 2.7 s -> 0.85 s each at XLA's default flags,
# 2-core CPU) and run it slower, which one run does not see.  The same IEEE operations (XLA's CPU fast-math is
# off either way).  CPU only: other backends compile with their defaults.  The test suite and the mutation workers
# compile everything so (``verification.mutants.run.QUICK_COMPILE_XLA_FLAGS``, these as flags).
ONE_SHOT_CPU_OPTIONS = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def compile_once(fn: Callable, *args) -> Callable:
    """``jax.jit(fn)`` lowered for ``args`` and compiled for a few runs (:data:`ONE_SHOT_CPU_OPTIONS` on the
    CPU); it takes arguments of the same shapes, dtypes and devices as ``args``."""
    lowered = jax.jit(fn).lower(*args)
    cpu = all(d.platform == "cpu" for d in jax.devices())
    return lowered.compile(compiler_options=ONE_SHOT_CPU_OPTIONS if cpu else None)


def bucket(n: int) -> int:
    """The number of rows a batch of ``n`` is padded to: ``n`` rounded up to one of eight steps per power of
    two (1, 2, 4, 8, 9-10, ..., 15-16, 18, 20, ...; at most 1/8 more rows).  An equation run eagerly
    compiles once per new shape, and a batch's size is one of its shapes: rounded, the checks of one process
    reuse each other's programs (the fourth mutant's check in one process: 127 compiles -> 59, 21 s -> 11 s
    with a power of two, whose doubled rows took the 24-layer diagnosis from 2.0 to 2.8 GiB)."""
    n = int(n)
    if n <= 8:
        return 1 << max(0, n - 1).bit_length()
    step = 1 << ((n - 1).bit_length() - 3)
    return -(-n // step) * step


def vmapped(fn: Callable, stacked: Sequence[Any], shared: Sequence[Any] = (), *, compiled: bool = False,
            rows: Optional[int] = None) -> List[np.ndarray]:
    """``jax.vmap(fn)(*shared, *stacked)`` (``shared`` not batched) as numpy arrays.  Every array of
    ``stacked`` (rows on axis 0) is padded to :func:`bucket` rows, or to a multiple of ``rows`` where it
    has more (run ``rows`` at a time), with copies of its first row, put on the device without compiling
    (``jnp.asarray`` of a numpy array compiles a program per shape), and the padding's results are
    dropped.  ``compiled``: the batched ``fn`` compiled whole, once (one program, not one per new
    operation); ``shared`` are its arguments, never constants folded into it."""
    stacked = [np.asarray(s) for s in stacked]
    n = stacked[0].shape[0]
    size = bucket(n) if rows is None or n <= rows else rows
    pad = -n % size
    if pad:
        stacked = [np.concatenate([s, np.repeat(s[:1], pad, axis=0)]) for s in stacked]
    batched = jax.vmap(fn, in_axes=(None,) * len(shared) + (0,) * len(stacked))
    chunks = [jax.device_put([s[lo:lo + size] for s in stacked]) for lo in range(0, n + pad, size)]
    if compiled:
        batched = compile_once(batched, *shared, *chunks[0])
    outs = [batched(*shared, *chunk) for chunk in chunks]
    return [np.concatenate([np.asarray(o[k]) for o in outs])[:n] for k in range(len(outs[0]))]


def outputs(closed, env: Dict[Any, Any]) -> List[Any]:
    """The values of ``closed``'s outputs in ``env``."""
    return [read(env, v) for v in getattr(closed, "jaxpr", closed).outvars]
