"""Atomic writes: a reader sees the old file or the whole new one, never a part, and no temporary is left."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from leadscore.features.files import write_via_temp


def test_a_written_file_is_whole_and_readable_by_others(tmp_path: Path) -> None:
    path = write_via_temp(tmp_path / "sub" / "out.csv", lambda tmp: Path(tmp).write_text("a,b\n1,2\n"))
    assert path.read_text() == "a,b\n1,2\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600: a scored file is for others to read
    assert [p.name for p in path.parent.iterdir()] == ["out.csv"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_text("old")

    def half_then_fail(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_via_temp(path, half_then_fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]
