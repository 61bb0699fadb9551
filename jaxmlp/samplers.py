r"""Sampling schemes: which examples each training step uses.

The schemes (batch, epoch and iteration as in *The Mathematics of DNNs*
(2020-01-12); SGD as in Higham & Higham (2019)):

* ``"full_batch"``: every step uses all :math:`N` examples (gradient descent).
* ``"sgd_replacement"``: each step draws ``batch_size`` (default 1) indices
  uniformly with replacement, as Higham & Higham's SGD does.
* ``"sgd_shuffle"``: one example per step, without replacement: the data are
  reshuffled at the start of every epoch of :math:`N` steps.
* ``"minibatch"``: mini-batches of ``batch_size`` without replacement; an
  epoch is :math:`\lfloor N/b\rfloor` iterations (a ragged tail is dropped).

Every draw is a function of ``(key, step)`` only (``fold_in`` of the epoch, or
of the page of :data:`PAGE` steps for ``"sgd_replacement"``), so a run is
deterministic for its key and can be resumed at any step.

>>> import jax
>>> idx = replacement_indices(jax.random.key(0), 0, 3, 10, 2)  # 3 steps of 2 draws from 10 examples
>>> idx.shape, bool((idx >= 0).all() and (idx < 10).all())
((3, 2), True)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

SCHEMES = ("full_batch", "sgd_replacement", "sgd_shuffle", "minibatch")
PAGE = 256  # sgd_replacement: step s uses row s % PAGE of the draws of page s // PAGE


def epoch_permutation(key, epoch, n):
    """The order of the ``n`` examples in ``epoch`` (int32 whatever the x64 setting)."""
    return jax.random.permutation(jax.random.fold_in(key, epoch), n).astype(jnp.int32)


def replacement_indices(key, start, count, n, b):
    r"""Indices (count, b), uniform with replacement, for steps ``start .. start+count-1``.

    One ``fold_in`` and one ``random.bits`` call per page of :data:`PAGE` steps, so the draws are a
    function of ``(key, step)`` only, whatever ``start`` and ``count``.  The index is

    .. math::  i = u \bmod n,\qquad u \sim \mathcal U\{0,\dots,2^{32}-1\},

    whose probabilities differ from :math:`1/n` by less than :math:`2^{-32}` (relative error
    :math:`< n\,2^{-32}`: 2e-9 for Higham's 10 points).  Pages are drawn one after another
    (``lax.map``) so that the generator's working set stays in cache.
    """
    n_pages = -(-count // PAGE) + 1  # enough for any offset start % PAGE
    first = start // PAGE

    def page(i):
        bits = jax.random.bits(jax.random.fold_in(key, first + i), (PAGE, b), jnp.uint32)
        return (bits % jnp.uint32(n)).astype(jnp.int32)

    pages = jax.lax.map(page, jnp.arange(n_pages, dtype=jnp.int32))  # (n_pages, PAGE, b)
    return jax.lax.dynamic_slice_in_dim(pages.reshape(n_pages * PAGE, b), start % PAGE, count)


def epoch_indices(key, step, perm, n, b):
    """Epoch schemes: the ``b`` examples of ``step`` and the permutation, refreshed at each epoch's first step."""
    per_epoch = n // b
    new_epoch = step % per_epoch == 0
    perm = jax.lax.cond(new_epoch, lambda: epoch_permutation(key, step // per_epoch, n), lambda: perm)
    return jax.lax.dynamic_slice(perm, ((step % per_epoch) * b,), (b,)), perm
