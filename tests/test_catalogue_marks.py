"""Every planted bug of the catalogue is marked ``# bwd: NAME`` on exactly one line of its hand gradient (or
of its rule's bwd / jvp), and no mark names a bug that does not exist: the gradient families (FAMILIES), the
backward families (BACKWARD_FAMILIES) and the rule catalogue (``rule_bugs.CASES``).  Fast: parsing only,
no checker runs."""
import inspect
import io
import tokenize

import pytest

from verification.catalogue import BACKWARD_FAMILIES, FAMILIES, bwd_lines, rule_bugs
from verification.catalogue.backward import BWD, is_rule_family
from verification.catalogue.planted import SITE

MODULES = FAMILIES + BACKWARD_FAMILIES + (rule_bugs,)


def _id(module):
    return module.__name__.rsplit(".", 1)[-1]


def _names(module):
    return [c.name for c in module.CASES] if module is rule_bugs else [b.bug for b in module.BUGS]


def _line(where):
    return int(where.rsplit(":", 1)[1])


def _span(fn):
    code, start = inspect.getsourcelines(fn)
    return range(start, start + len(code))


def test_registries_cover_the_catalogue():
    assert len(set(MODULES)) == len(MODULES) >= 23
    assert all(_names(m) for m in MODULES) and sum(len(_names(m)) for m in MODULES) >= 170


@pytest.mark.parametrize("module", MODULES, ids=_id)
def test_every_bug_is_marked_on_exactly_one_line(module):
    names = _names(module)
    assert len(set(names)) == len(names), "bug names are unique within a family"
    marks = bwd_lines(module)  # raises when a name is marked on two lines
    assert sorted(set(names) - set(marks)) == [], "bugs without a '# bwd:' mark"
    assert sorted(set(marks) - set(names)) == [], "'# bwd:' marks that name no planted bug"


@pytest.mark.parametrize("module", MODULES, ids=_id)
def test_marks_are_well_formed_comments_off_the_primal(module):
    """Every comment that says ``bwd:`` is a mark the parser reads (a typo would hide a bug), none shares a
    line with a ``# site:`` mark of the primal, and each lies in the backward code."""
    source = inspect.getsource(module)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and "bwd:" in tok.string:
            assert BWD.search(tok.string), f"line {tok.start[0]}: {tok.string!r} is not read as a mark"
            assert not SITE.search(tok.string), f"line {tok.start[0]}: a bwd mark on a site line"
    marks = bwd_lines(module)
    if module is rule_bugs:  # each case's mark inside that case's own function
        for case in module.CASES:
            assert _line(marks[case.name]) in _span(case.check), case.name
    elif is_rule_family(module):
        assert all(_line(w) in _span(module.rule) for w in marks.values()), marks
    else:  # in grad or a helper of it, never in the loss or the problem
        primal = set(_span(module.loss)) | set(_span(module.problem))
        assert not [w for w in marks.values() if _line(w) in primal], marks
        helpers = [f for name, f in vars(module).items()
                   if inspect.isfunction(f) and f.__module__ == module.__name__ and name not in ("loss", "problem")]
        assert all(any(_line(w) in _span(f) for f in helpers) for w in marks.values()), marks
