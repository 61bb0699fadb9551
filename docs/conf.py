"""Sphinx configuration: MyST Markdown pages, the API from the docstrings, math rendered offline.

Build: ``python -m sphinx -W -b html docs docs/_build/html`` (extra ``[docs]``).  MathJax comes from the
``sphinx-mathjax-offline`` package and is copied into the site, so the built pages need no network.

Numbers that live in code are never typed in the pages.  Every upper-case numeric constant of the
modules in :data:`CONSTANT_MODULES` is a MyST substitution: ``{{F64_RTOL}}`` renders ``1e-12``; a dict of
numbers gives one name per key (``{{FIT_RTOL_float32}}``), and ``{{SCHEMA_check_gradients}}`` names a
report's JSON schema.  The directive ``{constants} MODULE`` renders a module's constants as a table, each
with the comment that gives its reason.
"""
import ast
import importlib
import numbers
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

project = "jaxmlp"
author = "the jaxmlp developers"
copyright = "2026, the jaxmlp developers"
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
]
myst_enable_extensions = ["dollarmath", "amsmath", "substitution"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = []
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
suppress_warnings = ["myst.header"]
nitpicky = False

# The modules whose constants the pages may name: the tolerances (each written once, here in code) and
# the checker's limits.  A constant that moves or is renamed breaks the build (a missing substitution is
# a warning, and warnings are errors), and tests/test_docs.py checks every {{NAME}} of the pages.
CONSTANT_MODULES = (
    "verification.checker.base.tolerances",
    "verification.suite.tolerances",
    "verification.checker.base.sampled_differences",
    "verification.checker.base.taylor",
    "verification.checker.explain.hypotheses",
    "verification.checker.explain.two_sites",
    "verification.checker.explain.edit_effects",
    "verification.checker.explain.first_order",
    "verification.checker.explain.kinks",
    "verification.checker.jaxpr.inline",
    "verification.checker.rules.linear_maps",
    "verification.checker.rules.check_rules",
)
SCHEMA_MODULES = {  # a report's JSON schema string: {{SCHEMA_<kind>}}
    "check_gradients": "verification.checker.gradients.report",
    "check_rule": "verification.checker.rules.report",
    "check_rules": "verification.checker.rules.check_rules",
}


def number(value) -> str:
    """``1e-05`` -> ``1e-5`` (below 0.01 in e-notation); integers as they are; a power of two above
    2**16 as ``2^27``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"value: expected a real number, got {value!r}")
    if isinstance(value, numbers.Integral):
        v = int(value)
        return f"2^{v.bit_length() - 1}" if v > 2 ** 16 and v & (v - 1) == 0 else str(v)
    v = float(value)
    text = f"{v:.6e}" if v and abs(v) < 1e-2 else f"{v:.6g}"
    mantissa, _, exponent = text.partition("e")
    if not exponent:
        return text
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    return f"{mantissa}e{int(exponent)}"


def constants(module_name: str) -> dict:
    """``{NAME: text}`` for every upper-case number (or dict of numbers, one ``NAME_key`` each) of the module."""
    module = importlib.import_module(module_name)
    out = {}
    for name in dir(module):
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            continue
        value = getattr(module, name)
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            out[name] = number(value)
        elif isinstance(value, dict) and value and all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value.values()):
            out.update({f"{name}_{key}": number(v) for key, v in value.items()})
    return out


def substitutions() -> dict:
    """Every page's substitutions; a name defined by two modules with two values is an error."""
    subs = {}
    for module_name in CONSTANT_MODULES:
        for name, text in constants(module_name).items():
            if subs.get(name, text) != text:
                raise ValueError(f"{name}: defined as {subs[name]} and as {text} ({module_name})")
            subs[name] = text
    for kind, module_name in SCHEMA_MODULES.items():
        subs[f"SCHEMA_{kind}"] = importlib.import_module(module_name).SCHEMA
    return subs


def reasons(module_name: str) -> list:
    """``(name, value, reason)`` for every top-level constant of the module, in source order: the reason
    is the comment block just above the assignment, or the comment at the end of its line."""
    module = importlib.import_module(module_name)
    source = pathlib.Path(module.__file__).read_text()
    lines = source.splitlines()
    rows = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
            continue
        name = node.targets[0].id
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            continue
        above, i = [], node.lineno - 2
        while i >= 0 and lines[i].lstrip().startswith("#"):
            above.insert(0, lines[i].strip().lstrip("#").strip())
            i -= 1
        trailing = lines[node.end_lineno - 1].partition("  # ")[2].strip()
        if not above and not trailing and rows and rows[-1][3] == node.lineno - 1:
            trailing = f"as `{rows[-1][0]}`, just above"  # one comment for two constants
        reason = re.sub(r"\s*\(issues? \d+\)", "", " ".join(above) or trailing)  # tracker numbers mean nothing here
        rows.append((name, getattr(module, name), reason, node.end_lineno))
    return [row[:3] for row in rows]


def shown(value) -> str:
    """A constant as the table shows it: a number, a dict of numbers key by key, else its repr in code."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return number(value)
    if isinstance(value, dict) and all(isinstance(v, numbers.Real) for v in value.values()):
        return ", ".join(f"{k}: {number(v)}" for k, v in value.items())
    return f"`{value!r}`"


myst_substitutions = substitutions()


def setup(app):
    from docutils import nodes
    from docutils.parsers.rst import Directive
    from docutils.statemachine import StringList

    class ConstantsTable(Directive):
        """``{constants} MODULE``: the module's constants, value and reason, as a table."""
        required_arguments = 1

        def run(self):
            rows = reasons(self.arguments[0])
            if not rows:
                raise self.error(f"{self.arguments[0]}: expected module-level constants, found none")
            cell = lambda text: text.replace("|", "\\|")  # noqa: E731
            text = ["| name | value | reason |", "|---|---|---|"]
            for name, value, reason in rows:
                text.append(f"| `{name}` | {cell(shown(value))} | {cell(reason) or '—'} |")
            container = nodes.container()
            self.state.nested_parse(StringList(text, source=self.arguments[0]), self.content_offset, container)
            return container.children

    app.add_directive("constants", ConstantsTable)
    return {"parallel_read_safe": True}
