"""The backward families (verification/catalogue/, registered apart in BACKWARD_FAMILIES): each correct
gradient or rule equals autodiff, every planted bug changes it, and every bug is marked ``# bwd: NAME`` on
exactly one line, inside the hand gradient (or the rule's bwd).  Fast: no checker runs here."""
import inspect

import jax
import jax.numpy as jnp
import pytest

from verification import CAUSES
from verification.catalogue import (BACKWARD_FAMILIES, FAMILIES, FIRST_SCORE_OF_BACKWARD_FAMILIES, bwd_lines,
                                    site_lines)
from verification.catalogue.backward import is_rule_family

GRADIENT_FAMILIES = [f for f in BACKWARD_FAMILIES if not is_rule_family(f)]
RULE_FAMILIES = [f for f in BACKWARD_FAMILIES if is_rule_family(f)]
NEW_CAUSES = {"wrong_derivative"}  # named by the issue that asks for it, not yet in the vocabulary


def _rel(a, b):
    return max(float(jnp.max(jnp.abs(a[k] - b[k]))) / max(float(jnp.max(jnp.abs(b[k]))), 1e-300) for k in b)


def test_registered_apart_with_a_first_score():
    assert len(BACKWARD_FAMILIES) >= 4 and not set(BACKWARD_FAMILIES) & set(FAMILIES)
    assert RULE_FAMILIES, "a long custom_vjp bwd is among them"
    assert any("reverse=True" in inspect.getsource(f.grad) for f in GRADIENT_FAMILIES), "a BPTT as a reverse scan"
    assert "bugs" in FIRST_SCORE_OF_BACKWARD_FAMILIES
    assert sum(len(f.BUGS) for f in BACKWARD_FAMILIES) >= 32


@pytest.mark.parametrize("family", BACKWARD_FAMILIES, ids=lambda f: f.__name__.rsplit(".", 1)[-1])
def test_every_bug_is_marked_once_inside_the_backward(family):
    marks = bwd_lines(family)  # raises when a name is marked on two lines
    names = [b.bug for b in family.BUGS]
    assert len(set(names)) == len(names) and set(marks) == set(names)
    code, start = inspect.getsourcelines(family.rule if is_rule_family(family) else family.grad)
    span = range(start, start + len(code))
    assert all(int(where.rsplit(":", 1)[1]) in span for where in marks.values()), marks
    sites = site_lines(family)
    for b in family.BUGS:
        assert b.site in sites and (not b.also or b.also in sites)
        assert b.cause in set(CAUSES) | NEW_CAUSES, b


@pytest.mark.parametrize("family", GRADIENT_FAMILIES, ids=lambda f: f.__name__.rsplit(".", 1)[-1])
def test_gradient_family_correct_and_every_bug_differs(family):
    p, x, y = family.problem(0)
    correct = (None, *getattr(family, "CORRECT_VARIANTS", ()))
    bugs = [b.bug for b in family.BUGS]
    # one compiled program for the reference and every variant: a compile per bug would take seconds each
    ref, *grads = jax.jit(lambda p, x, y: [jax.grad(family.loss)(p, x, y)] +
                          [family.grad(p, x, y, bug=b) for b in correct + tuple(bugs)])(p, x, y)
    for variant, g in zip(correct, grads):
        assert _rel(g, ref) < 1e-10, variant
    for bug, g in zip(bugs, grads[len(correct):]):
        assert _rel(g, ref) > 1e-6, bug


@pytest.mark.parametrize("family", RULE_FAMILIES, ids=lambda f: f.__name__.rsplit(".", 1)[-1])
def test_rule_family_correct_and_every_bug_differs(family):
    args = family.args(0)
    bugs = [b.bug for b in family.BUGS]

    def pullbacks(ct, *a):
        return [jax.vjp(family.rule(None).fun, *a)[1](ct)] + [jax.vjp(family.rule(b), *a)[1](ct) for b in [None] + bugs]

    out = family.rule(None).fun(*args)
    ct = jax.random.normal(jax.random.key(7), out.shape, out.dtype)
    ref, correct, *wrong = (dict(enumerate(g)) for g in jax.jit(pullbacks)(ct, *args))
    assert _rel(correct, ref) < 1e-10
    for bug, g in zip(bugs, wrong):
        assert _rel(g, ref) > 1e-6, bug
