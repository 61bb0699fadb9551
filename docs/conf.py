"""Sphinx configuration: MyST Markdown pages, the API from the docstrings, math rendered offline.

Build: ``python -m sphinx -W -b html docs docs/_build/html`` (extra ``[docs]``).  MathJax comes from the
``sphinx-mathjax-offline`` package and is copied into the site, so the built pages need no network.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

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
myst_enable_extensions = ["dollarmath", "amsmath"]
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
