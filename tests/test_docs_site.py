"""The documentation site (issue 18): it builds with warnings as errors, needs no network, its code
examples run, and its formulas are typeset in a real browser (when Chromium is installed)."""
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The gradient-checking guide is not here: tests/test_docs.py runs its blocks as a doctest (each block's
# printed output compared with the page), which this test would repeat without the comparison.
PAGES_WITH_EXAMPLES = ["README.md", "docs/guide_higham.md", "docs/guide_levenberg_marquardt.md"]
CLUSTER_ONLY = ("distributed.initialize", "srun ")  # needs a cluster: shown, not run
pytestmark = pytest.mark.xdist_group("docs_site")  # one worker: the module's site is built once


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("sphinx")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           str(ROOT / "docs"), str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def test_site_builds_without_warnings(site):
    for page in ("index", "derivations", "guide_check_gradient", "scale_out", "api/verification"):
        assert (site / f"{page}.html").exists(), page
    api = (site / "api" / "verification.html").read_text()
    assert "check_custom_vjp" in api and "check_hvp" in api  # the reference comes from the docstrings


def test_site_needs_no_network(site):
    for html in site.rglob("*.html"):
        text = html.read_text()
        remote = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"', text)
        assert not remote, f"{html.name} loads {remote}"
    assert (site / "_static" / "mathjax" / "tex-chtml.js").exists()


def _python_blocks(path):
    return re.findall(r"```python\n(.*?)```", (ROOT / path).read_text(), flags=re.S)


@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES)
def test_examples_run(page, monkeypatch):
    """Every ```python block of the page runs, in order, in one namespace (as a reader would paste them)."""
    blocks = [b for b in _python_blocks(page) if not any(c in b for c in CLUSTER_ONLY)]
    assert blocks, page
    monkeypatch.chdir(ROOT)
    ns = {}
    for code in blocks:
        code = code.replace("steps=10_000", "steps=200")  # the README's spiral run, shortened
        exec(compile(code, f"{page} example", "exec"), ns)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium (Debian package) is not installed")
def test_formulas_are_typeset_in_chromium(site, tmp_path):
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from check_rendered import check
    finally:
        sys.path.pop(0)
    r = check(site, tmp_path)
    assert r["passed"], r
    assert r["typeset"] >= 50 and pathlib.Path(r["screenshot"]).exists()
