"""Local derivatives by name: which function's derivative a factor of the user's backward code is.

A hand gradient multiplies the cotangent of an activation's output by the activation's derivative, and
writes that derivative by hand: in terms of the input (``σ(z)(1 - σ(z))``) or of the output
(``h(1 - h)``).  The commonest mistakes are another function's derivative (tanh's ``1 - h²`` for a
sigmoid, the exact GELU's for the tanh approximation) and the right formula at the wrong value (the output
form evaluated at the input).  :func:`identify` names a factor against :data:`TABLE` at the forward
values given, so a report can say "your factor is tanh's derivative 1 − h²; the forward op is a sigmoid,
whose derivative is h(1 − h)".

>>> import numpy as np
>>> h = np.array([0.2, 0.5, 0.7])
>>> [(d.name, d.form, arg) for d, arg in identify(1 - h ** 2, {"h": h})]
[('tanh', 'output', 'h')]
>>> TABLE_BY_NAME["sigmoid"][1].text.format(a="h")
'h(1 − h)'
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Mapping, NamedTuple, Tuple

import numpy as np

from verification.checker.jaxpr import graph as jg

_GELU_K = math.sqrt(2 / math.pi)
_LEAKY_SLOPE = 0.01  # jax.nn.leaky_relu's default negative_slope


def _sigmoid(a):
    return 0.5 * (1 + np.tanh(0.5 * a))


def _erf(a):
    return np.vectorize(math.erf, otypes=[float])(a)


def _gelu_tanh_prime(a):
    u = _GELU_K * (a + 0.044715 * a ** 3)
    t = np.tanh(u)
    return 0.5 * (1 + t) + 0.5 * a * (1 - t ** 2) * _GELU_K * (1 + 3 * 0.044715 * a ** 2)


def _gelu_erf_prime(a):
    return 0.5 * (1 + _erf(a / math.sqrt(2))) + a * np.exp(-0.5 * a ** 2) / math.sqrt(2 * math.pi)


class Derivative(NamedTuple):
    """The derivative of ``name``, written in terms of its input (``form="input"``) or its output."""

    name: str
    form: str
    text: str  # with ``{a}`` for the value it is evaluated at
    fn: Callable[[np.ndarray], np.ndarray]


_D = Derivative
TABLE: Tuple[Derivative, ...] = (
    _D("tanh", "input", "1 − tanh({a})²", lambda a: 1 - np.tanh(a) ** 2),
    _D("tanh", "output", "1 − {a}²", lambda a: 1 - a ** 2),
    _D("sigmoid", "input", "σ({a})(1 − σ({a}))", lambda a: _sigmoid(a) * (1 - _sigmoid(a))),
    _D("sigmoid", "output", "{a}(1 − {a})", lambda a: a * (1 - a)),
    _D("exp", "input", "exp({a})", np.exp),
    _D("exp", "output", "{a}", lambda a: a),
    _D("log", "input", "1/{a}", lambda a: 1 / a),
    _D("log", "output", "exp(−{a})", lambda a: np.exp(-a)),
    _D("softplus", "input", "σ({a})", _sigmoid),
    _D("softplus", "output", "1 − exp(−{a})", lambda a: 1 - np.exp(-a)),
    _D("relu", "input", "[{a} > 0]", lambda a: (a > 0).astype(float)),
    _D("leaky_relu", "input", f"[{{a}} > 0] + {_LEAKY_SLOPE}·[{{a}} ≤ 0]",
       lambda a: np.where(a > 0, 1.0, _LEAKY_SLOPE)),
    _D("elu", "input", "[{a} > 0] + exp({a})·[{a} ≤ 0]", lambda a: np.where(a > 0, 1.0, np.exp(np.minimum(a, 0)))),
    _D("elu", "output", "[{a} > 0] + ({a} + 1)·[{a} ≤ 0]", lambda a: np.where(a > 0, 1.0, a + 1)),
    _D("gelu (tanh approximation)", "input", "GELU_tanh'({a})", _gelu_tanh_prime),
    _D("gelu (exact, erf)", "input", "Φ({a}) + {a}·φ({a})", _gelu_erf_prime),
    _D("silu", "input", "σ({a})(1 + {a}(1 − σ({a})))", lambda a: _sigmoid(a) * (1 + a * (1 - _sigmoid(a)))),
    _D("sin", "input", "cos({a})", np.cos),
    _D("cos", "input", "−sin({a})", lambda a: -np.sin(a)),
    _D("sqrt", "input", "1/(2√{a})", lambda a: 0.5 / np.sqrt(a)),
    _D("sqrt", "output", "1/(2{a})", lambda a: 0.5 / a),
    _D("reciprocal", "input", "−1/{a}²", lambda a: -1 / a ** 2),
    _D("reciprocal", "output", "−{a}²", lambda a: -a ** 2),
    _D("square", "input", "2{a}", lambda a: 2 * a),
    _D("abs", "input", "sign({a})", np.sign),
)
TABLE_BY_NAME: Dict[str, List[Derivative]] = {}
for _d in TABLE:
    TABLE_BY_NAME.setdefault(_d.name, []).append(_d)

# The forward op (as :func:`verification.checker.jaxpr.graph.op_name` writes it) -> its name in TABLE.
OPS = {"tanh": "tanh", "logistic": "sigmoid", "exp": "exp", "log": "log", "sin": "sin", "cos": "cos",
       "sqrt": "sqrt", "abs": "abs", "custom_jvp_call[relu]": "relu", "custom_jvp_call[softplus]": "softplus",
       "custom_jvp_call[silu]": "silu", "custom_jvp_call[leaky_relu]": "leaky_relu", "custom_jvp_call[elu]": "elu",
       "max": "relu", "integer_pow": "square", "square": "square", "log1p": None}


def op_function(eqn) -> str:
    """The :data:`TABLE` name of a forward equation's function, or ``""``."""
    name = jg.op_name(eqn)
    if name == "integer_pow" and eqn.params.get("y") != 2:
        return ""
    return OPS.get(name) or ""


def identify(factor, args: Mapping[str, np.ndarray], rtol: float = 1e-6,
             where=None) -> List[Tuple[Derivative, str]]:
    """Every ``(derivative, arg)`` of :data:`TABLE` that ``factor`` equals at the forward value ``args[arg]``
    (on the entries ``where`` selects, all by default), the input form first."""
    f = np.asarray(factor, dtype=np.float64)
    found = []
    for label, a in args.items():
        a = np.asarray(a, dtype=np.float64)
        if a.shape != f.shape:
            continue
        mask = np.ones(f.shape, bool) if where is None else np.asarray(where, bool)
        if not mask.any():
            continue
        for d in TABLE:
            with np.errstate(all="ignore"):
                g = d.fn(a)
            if np.all(np.isfinite(g[mask])) and np.allclose(f[mask], g[mask], rtol=rtol,
                                                           atol=rtol * max(1.0, float(np.max(np.abs(f[mask]))))):
                found.append((d, label))
    # one derivative per (name, arg): relu's input and output forms coincide
    seen, out = set(), []
    for d, label in sorted(found, key=lambda t: t[0].form != "input"):
        if (d.name, label) not in seen and not _is_constant(f, where):
            seen.add((d.name, label))
            out.append((d, label))
    return out


def _is_constant(f, where) -> bool:
    sel = f if where is None else f[np.asarray(where, bool)]
    return sel.size > 0 and bool(np.all(sel == sel.ravel()[0]))
