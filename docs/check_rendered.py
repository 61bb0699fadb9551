"""Open the built derivations page in headless Chromium and check that its formulas were typeset.

    python docs/check_rendered.py [SITE_DIR] [--out DIR]

SITE_DIR is the built site (default docs/_build/html).  Chromium (the Debian package ``chromium``) loads
``derivations.html`` from disk with no network, runs MathJax (copied into the site), and dumps the DOM;
the check counts MathJax's ``mjx-container`` elements against the page's math spans and fails if any
formula is left as raw TeX.  A screenshot and the counts (``rendered.json``) go to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import re
import shutil
import subprocess
import sys

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BUDGET_MS = 15000  # virtual time for MathJax to typeset before the DOM is dumped


def browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def check(site: pathlib.Path, out: pathlib.Path) -> dict:
    exe = browser()
    if exe is None:
        raise FileNotFoundError(f"chromium: expected one of {list(BROWSERS)} on PATH, got none (apt install chromium)")
    page = (site / "derivations.html").resolve()
    if not page.exists():
        raise FileNotFoundError(f"site: expected a built site with derivations.html, got {site}")
    out.mkdir(parents=True, exist_ok=True)
    # No network at all: without the background-networking flags Chromium keeps trying to reach its update
    # and sync hosts; a fresh profile folder keeps runs independent.
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={out / 'chromium-profile'}", f"--virtual-time-budget={BUDGET_MS}"]
    dom = subprocess.run([exe, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    shot = out / "derivations.png"
    subprocess.run([exe, *flags, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    source = page.read_text()
    spans = len(re.findall(r'class="math[^"]*"', source))
    typeset = dom.count("<mjx-container")
    raw = len(re.findall(r'<span class="math notranslate nohighlight">\\\(', dom))
    result = {"page": str(page), "math_spans": spans, "typeset": typeset, "left_as_tex": raw,
              "screenshot": str(shot) if shot.exists() else None, "browser": exe,
              "passed": spans > 0 and typeset >= spans and raw == 0}
    (out / "rendered.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("site", nargs="?", default="docs/_build/html")
    ap.add_argument("--out", default="docs/_build/rendered")
    args = ap.parse_args(argv)
    r = check(pathlib.Path(args.site), pathlib.Path(args.out))
    print(json.dumps(r, indent=1))
    return 0 if r["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
