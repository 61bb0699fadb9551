"""The one file writer of jaxmlp: every file it writes goes through :func:`write_atomic`.

The bytes go to a hidden temporary name in the target folder, are flushed and
``fsync``-ed, then renamed over the final name with ``os.replace`` (atomic on
POSIX and Windows), and the folder is ``fsync``-ed so that the rename itself
survives a power loss.  A reader therefore sees the old file or the new one,
never a half-written one, and a failed write leaves no temporary file behind.

>>> import pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_atomic(d / "notes.txt", "hello")
PosixPath('...notes.txt')
>>> (d / "notes.txt").read_text()
'hello'
>>> sorted(p.name for p in d.iterdir())  # no temporary file is left
['notes.txt']
"""
from __future__ import annotations

import os
import pathlib
from typing import Union


def _fsync_folder(folder: pathlib.Path):
    if os.name != "posix":  # pragma: no cover - folders cannot be opened for fsync on Windows
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path, data: Union[bytes, str]) -> pathlib.Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically; create the folder if needed.

    Returns the path written.
    """
    path = pathlib.Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected bytes or str, got {type(data).__name__}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_folder(path.parent)
    return path
