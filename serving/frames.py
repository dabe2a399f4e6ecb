"""The score log's frames: rows encoded as the spool stores them (:mod:`serving.spool`).

A frame is a 4-byte big-endian length and a list of rows (the row dicts as given: a new field flows through
unchanged), encoded by :func:`encode_rows`: ``marshal`` (which builds plain values and can never run code)
with each timezone-aware ``datetime`` carried as its UTC microseconds, or a pickle when a row holds a value
marshal cannot write. Light on purpose (no database driver): the batch worker process makes frames, and
writes a batch's segment (:func:`write_segment_file`), too.
"""

from __future__ import annotations

import marshal
import os
import pickle
import struct
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["PART", "READY", "decode_rows", "encode_rows", "frame", "write_segment_file"]

PART, READY = ".part", ".ready"  # a batch's segment being written; complete, for the writer

_LENGTH = struct.Struct(">I")
_MARSHAL = b"M"  # a frame's first byte: marshal; a pickle's first byte is 0x80
_DATETIME = "\x00datetime-utc-us"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PLAIN = frozenset({str, int, float, bool, type(None)})


def encode_rows(rows: list[dict[str, Any]]) -> bytes:
    """A frame's payload: the rows as marshal data when every value is a ``str``, ``int``, ``float``,
    ``bool``, ``None`` or timezone-aware ``datetime`` (carried as UTC microseconds), else as a pickle (so
    every other type, a numpy scalar among them, comes back as it went in)."""
    plain = []
    for row in rows:
        converted = None
        for key, value in row.items():
            kind = value.__class__
            if kind in _PLAIN:
                continue
            if kind is datetime and value.tzinfo is not None:
                if converted is None:
                    converted = dict(row)
                converted[key] = (_DATETIME, (value - _EPOCH) // _MICROSECOND)
                continue
            return pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
        plain.append(row if converted is None else converted)
    return _MARSHAL + marshal.dumps(plain)


def decode_rows(payload: bytes) -> list[dict[str, Any]]:
    """The rows of a frame's payload (:func:`encode_rows`'s inverse)."""
    if payload[:1] != _MARSHAL:
        return pickle.loads(payload)
    rows = marshal.loads(payload[1:])
    for row in rows:
        for key, value in row.items():
            if value.__class__ is tuple and len(value) == 2 and value[0] == _DATETIME:
                row[key] = _EPOCH + timedelta(microseconds=value[1])
    return rows


_MICROSECOND = timedelta(microseconds=1)


def frame(rows: list[dict[str, Any]]) -> bytes:
    """One spool frame holding ``rows``: a 4-byte big-endian length, then :func:`encode_rows`' payload."""
    payload = encode_rows(rows)
    return _LENGTH.pack(len(payload)) + payload


def write_segment_file(part: Path, data: bytes, fsync: bool) -> Path:
    """Write ``data`` (frames) to the new file ``part`` (a ``<seq>.part``), fsync it when ``fsync``, and publish it
    as ``<seq>.ready``: a segment has its ready name only once it is whole. Returns the ready path.

    Publishing never replaces a file: the ready name is made with ``link`` (``FileExistsError`` when a segment
    of that number is there already, whoever wrote it), then the ``.part`` name is removed. A ``part`` that
    exists already is not ours: ``FileExistsError``, and it is left alone. Whatever this created and could
    not publish whole is removed and the OSError raised. The folder's entry is the caller's to fsync (with
    the rest of the spool's)."""
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    ready = part.with_suffix(READY)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.link(part, ready)
    except OSError:
        with suppress(OSError):
            part.unlink()
        raise
    with suppress(FileNotFoundError):
        part.unlink()
    return ready
