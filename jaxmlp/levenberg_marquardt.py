r"""Levenberg-Marquardt training (Higham & Higham notes (2024-09-10)), with both step forms and two damping schedules.

With :math:`J = \partial r/\partial p` for :math:`r = \mathrm{vec}(Y - F)`
(so :math:`J = -J_F`), Higham & Higham notes (2024-09-10)'s step
:math:`p \leftarrow p + (J_F^\top J_F + \mu I)^{-1} J_F^\top (y - F)` reads

.. math::  \delta p = -(J^\top J + \mu I)^{-1} J^\top r \qquad (n \times n,\ \text{"normal" form}).

When there are more parameters :math:`n` than residuals :math:`R`, the
push-through identity :math:`(J^\top J + \mu I)^{-1} J^\top = J^\top (J J^\top + \mu I)^{-1}`
(the Woodbury identity applied to :math:`\mu I + J^\top J`) gives the
:math:`R \times R` form

.. math::  \delta p = -J^\top (J J^\top + \mu I)^{-1} r \qquad (\text{"woodbury" form}).

Higham & Higham notes (2024-09-10) prints Woodbury without its leading :math:`A^{-1} -` and the LM
specialisation with one :math:`\lambda^{-1}` too many; the correct one is
:math:`(\lambda I + J^\top J)^{-1} = \lambda^{-1}(I - J^\top(\lambda I + J J^\top)^{-1} J)`.
Both systems are solved by Cholesky (``cho_factor`` / ``cho_solve``), never
an explicit inverse.  The cost is :math:`\|r\|^2` (the MATLAB scale, Σ‖y − F‖²).

Damping:

* ``"trainlm"`` (MATLAB): :math:`\mu_0 = 10^{-3}`; a step that lowers the cost
  is accepted and :math:`\mu \leftarrow 0.1\mu`; otherwise it is rejected and
  :math:`\mu \leftarrow 10\mu`; stop when :math:`\mu > 10^{10}`.
* ``"nielsen"`` (Nielsen 1999; Madsen, Nielsen & Tingleff): gain ratio
  :math:`\rho = (C(p) - C(p+\delta)) / (L(0) - L(\delta))` with the model
  decrease :math:`L(0) - L(\delta) = \delta^\top(\mu\delta - 2J^\top r)` for
  :math:`C = \|r\|^2`; accept if :math:`\rho > 0` and set
  :math:`\mu \leftarrow \mu\max(1/3, 1 - (2\rho - 1)^3),\ \nu = 2`; else
  :math:`\mu \leftarrow \nu\mu,\ \nu \leftarrow 2\nu`.  :math:`\mu_0 = 10^{-3}\max\mathrm{diag}(J^\top J)`.
"""
from __future__ import annotations

import enum
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.scipy.linalg import cho_factor, cho_solve

from jaxmlp import checks, values
from jaxmlp.least_squares import check_least_squares, jacobian, residuals

FORMS = ("auto", "normal", "woodbury")
DAMPINGS = ("trainlm", "nielsen")


def lm_step(J, r, mu, form="auto"):
    """The LM step :math:`\\delta p` for Jacobian ``J`` (R, n), residuals ``r`` (R,), damping ``mu``,
    solved by Cholesky in ``form`` ``"normal"`` (n x n) or ``"woodbury"`` (R x R); ``"auto"`` takes the
    smaller system."""
    if form not in FORMS:
        raise ValueError(f"form: expected one of {list(FORMS)}, got {form!r}")
    if jnp.ndim(J) != 2 or jnp.shape(r) != jnp.shape(J)[:1]:
        raise ValueError(f"r: expected shape ({jnp.shape(J)[0] if jnp.ndim(J) else 'R'},) for J of shape (R, n) = "
                         f"{jnp.shape(J)}, got {jnp.shape(r)}")
    if values.is_concrete(mu) and not np.all(np.asarray(mu) > 0):
        raise ValueError(f"mu: expected a damping > 0, got {mu!r}")
    rows, n = J.shape
    if form == "auto":
        form = "normal" if n <= rows else "woodbury"
    if form == "normal":
        A = J.T @ J + mu * jnp.eye(n, dtype=J.dtype)  # (n, n)
        return -cho_solve(cho_factor(A), J.T @ r)
    A = J @ J.T + mu * jnp.eye(rows, dtype=J.dtype)  # (R, R)
    return -(J.T @ cho_solve(cho_factor(A), r))


class StopReason(enum.IntEnum):
    """Why :func:`levenberg_marquardt` stopped; ``LMResult.reason`` holds the value (an int array, jittable)."""

    MAX_ITERS = 0
    COST_TOL = 1
    GRAD_TOL = 2
    MU_MAX = 3

    @property
    def message(self) -> str:
        return {
            StopReason.MAX_ITERS: "reached max_iters trial steps",
            StopReason.COST_TOL: "the cost ||r||^2 fell to cost_tol or below",
            StopReason.GRAD_TOL: "the gradient ||J^T r||_inf fell to grad_tol or below (a stationary point)",
            StopReason.MU_MAX: "the damping mu grew past mu_max: no step lowers the cost",
        }[self]


class LMResult(NamedTuple):
    """Result of :func:`levenberg_marquardt`; histories have one entry per iteration (trial step)."""

    params: tuple
    cost: jax.Array  # (max_iters + 1,) ||r||^2 before each trial (entry 0: initial); NaN past n_iters
    mu: jax.Array  # (max_iters,) damping used by each trial
    accepted: jax.Array  # (max_iters,) bool
    n_iters: jax.Array  # trials taken
    reason: jax.Array  # a StopReason value; see stop_reason

    @property
    def stop_reason(self) -> StopReason:
        """The :class:`StopReason` (needs a concrete result, outside ``jit``); ``.message`` says it in words."""
        return StopReason(int(self.reason))


def levenberg_marquardt(model, params, x, y, *, max_iters=100, damping="trainlm", form="auto", mu0=None,
                        cost_tol=0.0, grad_tol=1e-12, mu_max=1e10, check=True) -> LMResult:
    r"""Train ``params`` by Levenberg-Marquardt inside one ``lax.while_loop`` (jittable, model static).

    Args:
      model, params, x, y: a least-squares model (head ``sigmoid_quadratic``, ``sum_squares`` or ``mse``;
        no batch norm: the Jacobian is per example) and its data.
      max_iters: trial steps at most.
      damping: ``"trainlm"`` (MATLAB) or ``"nielsen"`` (gain ratio); see the module docstring.
      form: ``"auto"``, ``"normal"`` or ``"woodbury"`` (:func:`lm_step`).
      mu0: the first damping (default: that of the schedule).
      cost_tol, grad_tol, mu_max: stop once the cost :math:`\|r\|^2 \le` ``cost_tol``, the gradient
        :math:`\|J^\top r\|_\infty \le` ``grad_tol``, or :math:`\mu >` ``mu_max``.
      check: the value checks of the data (:mod:`jaxmlp.checks`); shapes are always checked.

    Returns:
      :class:`LMResult` ``(params, cost, mu, accepted, n_iters, reason)``: the final params and the
      histories of every trial step; :meth:`LMResult.stop_reason` says why it stopped.
    """
    check_least_squares(model)
    if damping not in DAMPINGS:
        raise ValueError(f"damping: expected one of {list(DAMPINGS)}, got {damping!r}")
    if form not in FORMS:
        raise ValueError(f"form: expected one of {list(FORMS)}, got {form!r}")
    values.check_int("max_iters", max_iters, lo=1)
    if mu0 is not None and values.is_concrete(mu0) and not mu0 > 0:
        raise ValueError(f"mu0: expected a damping > 0, got {mu0!r}")
    x, y = checks.check_all(model, params, x, y, check=check)
    flat, unravel = ravel_pytree(params)
    dt = flat.dtype

    def lin(f):
        p = unravel(f)
        r = residuals(model, p, x, y, check=False)
        return r, jacobian(model, p, x, check=False)

    r, J = lin(flat)
    cost = r @ r
    if mu0 is None:
        mu0 = 1e-3 * jnp.max(jnp.sum(J * J, axis=0)) if damping == "nielsen" else 1e-3
    mu = jnp.asarray(mu0, dt)
    nan = jnp.full((max_iters,), jnp.nan, dt)
    hist = (jnp.full((max_iters + 1,), jnp.nan, dt).at[0].set(cost), nan, jnp.zeros((max_iters,), bool))

    def reason(cost, g, mu, it):
        return jnp.where(cost <= cost_tol, StopReason.COST_TOL,
                         jnp.where(jnp.max(jnp.abs(g)) <= grad_tol, StopReason.GRAD_TOL,
                                   jnp.where(mu > mu_max, StopReason.MU_MAX,
                                             jnp.where(it >= max_iters, StopReason.MAX_ITERS, -1))))

    def body(c):
        f, r, J, cost, mu, nu, it, (hc, hm, ha), _ = c
        g = J.T @ r  # half the gradient of ||r||^2
        d = lm_step(J, r, mu, form)
        f_new = f + d
        r_new, J_new = lin(f_new)
        cost_new = r_new @ r_new
        if damping == "trainlm":
            ok = cost_new < cost
            mu_next, nu_next = jnp.where(ok, 0.1 * mu, 10 * mu), nu
        else:
            rho = (cost - cost_new) / (d @ (mu * d - 2 * g))
            ok = rho > 0
            mu_next = jnp.where(ok, mu * jnp.maximum(1 / 3, 1 - (2 * rho - 1) ** 3), mu * nu)
            nu_next = jnp.where(ok, 2.0, 2 * nu).astype(dt)
        pick = lambda a, b: jnp.where(ok, a, b)  # noqa: E731
        f, r, J, cost = pick(f_new, f), pick(r_new, r), pick(J_new, J), pick(cost_new, cost)
        hist = (hc.at[it + 1].set(cost), hm.at[it].set(mu), ha.at[it].set(ok))
        return f, r, J, cost, mu_next, nu_next, it + 1, hist, reason(cost, J.T @ r, mu_next, it + 1)

    init = (flat, r, J, cost, mu, jnp.asarray(2.0, dt), jnp.asarray(0, jnp.int32), hist,
            reason(cost, J.T @ r, mu, 0))
    f, _, _, _, _, _, it, (hc, hm, ha), why = jax.lax.while_loop(lambda c: c[-1] < 0, body, init)
    return LMResult(unravel(f), hc, hm, ha, it, why)
