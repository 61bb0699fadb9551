"""docs/derivations.md names every family of verification rows."""
import pathlib

from verification.suite.registry import CHECKS

DOC = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "derivations.md").read_text()


def test_every_verification_row_family_is_documented():
    missing = [p for check in CHECKS for p in check.prefixes if f"`{p}" not in DOC]
    assert not missing, f"rows with no entry in docs/derivations.md: {missing}"


def test_every_documented_code_path_exists():
    import importlib
    import re

    for mod, name in re.findall(r"`(jaxmlp\.[a-z_.]+)\.([a-z_]+)`", DOC):
        assert hasattr(importlib.import_module(mod), name), f"{mod}.{name}"


def test_reliability_page_lists_every_bad_input_case():
    from tests.test_errors import CALLS, CASES

    page = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text()
    missing = [c[0] for c in CASES + CALLS if f"`{c[0]}`" not in page]
    assert not missing, f"bad-input cases missing from docs/reliability.md: {missing}"
    assert f"**{len(CASES) + len(CALLS)} cases**" in page
