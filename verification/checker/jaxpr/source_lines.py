"""Where an equation comes from: the user's own line, and the installed library's line it ran.

Every equation of a traced program carries the Python traceback of the call that emitted it.  The
user's line is the innermost frame outside JAX, NumPy, the checker and installed packages; the library
line is the innermost installed-package frame inside it (``equinox/nn/_linear.py:99``).
"""
from __future__ import annotations

import os
from typing import Dict, Optional

import jax
import numpy as np

_CHECKER_DIR = os.path.dirname(__file__) + os.sep
# JAX, NumPy and this checker's own package: never "the user's line".  By directory, so that a user's
# file that happens to share a name with one of ours (checker.py) is still named.
_SKIP_DIRS = tuple(os.path.dirname(m.__file__) + os.sep for m in (jax, np)) + (_CHECKER_DIR,)

_USER_PSEUDO_FILES = ("<string>", "<stdin>", "<ipython-input")  # exec'd code, python -c, a console: the user's

_LIBRARY_DIRS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)


def _frames(eqn):
    """``(user frame, library frame)`` of an equation as ``file:line``: the innermost frame outside JAX,
    NumPy, the checker and installed packages (the user's own code), and the innermost installed-package
    frame inside it (``equinox/nn/_linear.py:99``: the library line the user's call ran), either ``None``."""
    si = eqn.source_info
    hit = _FRAMES.get(id(si))
    if hit is not None and hit[0] is si:
        return hit[1]
    if len(_FRAMES) > 200000:
        _FRAMES.clear()
    found = _scan_frames(getattr(si, "traceback", None))
    _FRAMES[id(si)] = (si, found)
    return found


_FRAMES: Dict[int, tuple] = {}  # id(source_info) -> (source_info, frames): a long program names each line once


def _scan_frames(tb):
    library = None
    for f in (tb.frames if tb is not None else ()):
        name = f.file_name
        if name.startswith(_SKIP_DIRS) or (name.startswith("<") and not name.startswith(_USER_PSEUDO_FILES)):
            continue
        if any(d in name for d in _LIBRARY_DIRS):
            if library is None:
                tail = name.split(os.sep + "site-packages" + os.sep)[-1].split(os.sep + "dist-packages" + os.sep)[-1]
                library = f"{tail}:{f.line_num}"
            continue
        return f"{shown(name)}:{f.line_num}", library
    return None, library


def user_frames(eqn) -> list:
    """``file:line`` of every frame of the user's own code that emitted ``eqn``, innermost first: its line,
    then the call sites out to the outermost (where a wrong argument is passed)."""
    tb = getattr(eqn.source_info, "traceback", None)
    return [f"{shown(f.file_name)}:{f.line_num}" for f in (tb.frames if tb is not None else ())
            if not f.file_name.startswith(_SKIP_DIRS) and not any(d in f.file_name for d in _LIBRARY_DIRS)
            and (not f.file_name.startswith("<") or f.file_name.startswith(_USER_PSEUDO_FILES))]


def shown(path: str) -> str:
    """A source file as reports write it: relative to the working directory when inside it."""
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def user_line(eqn) -> Optional[str]:
    """``file:line`` of the innermost frame of the user's own code (outside JAX, NumPy, the checker and
    installed packages); an installed package's line where no user frame exists; else ``None``."""
    user, library = _frames(eqn)
    return user or library


def library_line(eqn) -> Optional[str]:
    """The installed package's line the user's line ran (``equinox/nn/_mlp.py:25``), or ``None``."""
    user, library = _frames(eqn)
    return library if user else None


