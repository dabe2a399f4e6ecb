"""Atomic writes: a reader sees the old file or the whole new one, never a part, and no temporary is left."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from leadscore.features.files import write_atomic


@pytest.mark.parametrize(
    "content",
    [b"a,b\n1,2\n", "a,b\n1,2\n", lambda tmp: Path(tmp).write_text("a,b\n1,2\n")],
    ids=["bytes", "text", "writer"],
)
def test_a_written_file_is_whole_and_readable_by_others(tmp_path: Path, content) -> None:
    path = write_atomic(tmp_path / "sub" / "out.csv", content)
    assert path == tmp_path / "sub" / "out.csv"
    assert path.read_bytes() == b"a,b\n1,2\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600: a scored file is for others to read
    assert [p.name for p in path.parent.iterdir()] == ["out.csv"]


def test_text_is_written_as_utf8(tmp_path: Path) -> None:
    assert write_atomic(tmp_path / "t.txt", "café → ✓").read_bytes() == "café → ✓".encode()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_text("old")

    def half_then_fail(tmp: Path) -> None:
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half_then_fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_the_new_file_replaces_the_old_rather_than_overwriting_it(tmp_path: Path) -> None:
    """A reader that opened the old file before the write still reads the old content, whole."""
    path = tmp_path / "pointer.json"
    path.write_text('{"version": "1"}')
    with path.open() as reader:
        write_atomic(path, '{"version": "2"}')
        assert reader.read() == '{"version": "1"}'
    assert path.read_text() == '{"version": "2"}'


def test_content_of_another_kind_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"out\.json: content must be bytes, str or a writer"):
        write_atomic(tmp_path / "out.json", {"a": 1})  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
