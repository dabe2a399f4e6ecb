"""Writing a file so that no reader ever sees it half-written: every layer's file writes go through here."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

Writer = Callable[[Path], Any]


def write_atomic(path: Path | str, content: bytes | str | Writer) -> Path:
    """Write ``path`` so that a reader sees either its old content or the whole new one, never a part.

    ``content`` is the file's bytes, its text (written as UTF-8, line endings as given), or a writer called
    with the path of a temporary file to fill (``lambda tmp: frame.to_parquet(tmp)``). The temporary file
    sits beside ``path`` (same file system, so the final ``os.replace`` is atomic), is flushed to disk
    before it replaces ``path``, and ends up readable by all and writable by its owner (0644, not mkstemp's
    private 0600). On any failure, the writer's included, the temporary file is removed and ``path`` is
    left as it was. Missing parent folders are created. Returns ``path``.
    """
    path = Path(path)
    if not (isinstance(content, (bytes, str)) or callable(content)):
        raise TypeError(f"{path}: content must be bytes, str or a writer taking a path, not {type(content).__name__}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        if isinstance(content, (bytes, str)):
            with os.fdopen(fd, "wb") as file:
                file.write(content.encode("utf-8") if isinstance(content, str) else content)
                file.flush()
                os.fsync(file.fileno())
        else:
            os.close(fd)
            content(tmp)
            _fsync_file(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
    return path


def _fsync_file(path: Path) -> None:
    """Flush a file another library wrote (and closed) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk where the platform allows it (POSIX; not Windows)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
