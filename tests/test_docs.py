"""The documentation against the code: the pages name only what exists, pull every tolerance from the
code, and the gradient-checker guide's examples print what the guide shows."""
import ast
import contextlib
import doctest
import importlib
import importlib.util
import io
import linecache
import pathlib
import re

import pytest

from verification.suite.registry import CHECKS

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts) + [ROOT / "README.md"]
DOC = (DOCS / "derivations.md").read_text()
GUIDE = DOCS / "guide_check_gradient.md"
TOLERANCE_MODULES = ("verification.checker.base.tolerances", "verification.suite.tolerances")


def _text(page):
    return page.read_text()


def _prose(text):
    """The text without fenced code blocks, inline code spans and math: what a reader reads as prose."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)
    text = re.sub(r"\$[^$\n]+\$", "", text)
    return re.sub(r"`[^`\n]+`", "", text)


def _conf():
    spec = importlib.util.spec_from_file_location("docs_conf", DOCS / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


def test_every_verification_row_family_is_documented():
    missing = [p for check in CHECKS for p in check.prefixes if f"`{p}" not in DOC]
    assert not missing, f"rows with no entry in docs/derivations.md: {missing}"


def test_every_documented_code_path_exists():
    for mod, name in re.findall(r"`(jaxmlp\.[a-z_.]+)\.([a-z_]+)`", DOC):
        assert hasattr(importlib.import_module(mod), name), f"{mod}.{name}"


def _resolve(dotted):
    """The object a dotted path names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def test_every_verification_path_the_docs_name_exists():
    """Every ``verification.a.b`` dotted path and every ``verification/a/b.py`` file a page names: a moved
    or renamed module, function or constant fails here."""
    bad = []
    for page in PAGES:
        text = _text(page)
        for dotted in sorted(set(re.findall(r"(?<![\w/.])(verification(?:\.[A-Za-z_]\w*)+)(?![\w/])", text))):
            try:
                _resolve(dotted)
            except (ImportError, AttributeError) as e:
                bad.append(f"{page.name}: {dotted} ({e})")
        for path in sorted(set(re.findall(r"(?<![\w/.])verification/[\w/]*\w(?:\.py)?", text))):
            if not (ROOT / path).exists():
                bad.append(f"{page.name}: {path} (no such file)")
    assert not bad, "\n".join(bad)


def test_schema_strings_are_current():
    """A report schema named in the pages is the one the code writes (the changelog keeps history)."""
    current = {v for k, v in _conf().myst_substitutions.items() if k.startswith("SCHEMA_")}
    bad = [f"{page.name}: {s}" for page in PAGES if page.name != "changelog.md"
           for s in re.findall(r"verification\.check_\w+/\d+", _text(page)) if s not in current]
    assert not bad, f"schemas the code does not write ({sorted(current)}): {bad}"


def test_every_substitution_is_defined():
    """``{{NAME}}`` pulls a constant from the code (docs/conf.py); an unknown name is a typo or a moved
    constant."""
    known = set(_conf().myst_substitutions)
    bad = [f"{page.name}: {name}" for page in PAGES
           for name in re.findall(r"\{\{\s*(\w+)\s*\}\}", _text(page)) if name not in known]
    assert not bad, bad


def test_no_tolerance_value_is_typed():
    """Each tolerance is written once, in code; the pages use ``{{NAME}}``.  A number in e-notation equal
    to a tolerance is an error, except the sources' own hyperparameters (a learning rate, an L2 strength)."""
    values = set()
    for module in map(importlib.import_module, TOLERANCE_MODULES):
        for name in dir(module):
            value = getattr(module, name)
            if name.isupper():
                values |= {float(v) for v in (value.values() if isinstance(value, dict) else [value])
                           if isinstance(v, (int, float)) and not isinstance(v, bool)}
    hyper = re.compile(r"(?:\blr|\bL2|\bAdam|--l2|learning rate)\s*$")
    bad = []
    for page in PAGES:
        if page.name in ("changelog.md", "README.md"):
            continue
        prose = _prose(_text(page))
        for m in re.finditer(r"(?<![\w.])\d+(?:\.\d+)?e-\d+(?![\w.])", prose):
            if float(m.group()) in values and not hyper.search(prose[max(0, m.start() - 20):m.start()]):
                line = prose[:m.start()].count("\n") + 1
                bad.append(f"{page.name}: {m.group()} (near {prose[max(0, m.start() - 40):m.end()]!r}, line ~{line})")
    assert not bad, "tolerance values typed in the docs (use {{NAME}}):\n" + "\n".join(bad)


def test_no_tracker_numbers():
    """The pages say what a thing is, not which tracker entry asked for it."""
    bad = [f"{page.name}: {m.group()}" for page in PAGES
           for m in re.finditer(r"\b[Ii]ssues?\s*#?\d+|\(#\d+\)|/issues/\d+|-issue-\d+", _text(page))]
    assert not bad, bad


def _guide_examples():
    """``(code, expected output)`` of every ```python block of the guide; the output is the ```text block
    that directly follows it, or nothing."""
    return re.findall(r"```python\n(.*?)```\n(?:\n```text\n(.*?)```)?", GUIDE.read_text(), flags=re.S)


@pytest.fixture
def x64_restored():
    import jax

    before = jax.config.jax_enable_x64
    yield
    jax.config.update("jax_enable_x64", before)


def test_guide_examples_print_what_the_guide_shows(x64_restored, tmp_path, monkeypatch):
    """The guide is a doctest: its blocks, in order, are one file ``model.py`` (written to a temporary
    working directory, so that the reports can quote its lines), run block by block in one namespace, and
    each prints the text block under it (``...`` matches anything)."""
    examples = _guide_examples()
    assert len(examples) >= 5
    (tmp_path / "model.py").write_text("".join(code for code, _ in examples))
    monkeypatch.chdir(tmp_path)
    linecache.checkcache("model.py")
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    ns, offset = {}, 0
    for i, (code, want) in enumerate(examples):
        tree = ast.parse(code)
        ast.increment_lineno(tree, offset)  # the block's lines are model.py's
        offset += code.count("\n")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(tree, "model.py", "exec"), ns)
        got = out.getvalue()
        if not checker.check_output(want, got, flags):
            raise AssertionError(f"example {i + 1} of docs/guide_check_gradient.md:\n"
                                 + checker.output_difference(doctest.Example(code, want), got, flags))


def test_reliability_page_lists_every_bad_input_case():
    from tests.test_errors import CALLS, CASES

    page = (DOCS / "reliability.md").read_text()
    missing = [c[0] for c in CASES + CALLS if f"`{c[0]}`" not in page]
    assert not missing, f"bad-input cases missing from docs/reliability.md: {missing}"
    assert f"**{len(CASES) + len(CALLS)} cases**" in page
