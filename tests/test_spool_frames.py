"""The spool's frames give back the rows that went in: the same keys, values and types."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from leadscore.serving.frames import _LENGTH, decode_rows, encode_rows, frame, write_segment_file
from leadscore.serving.spool import Spool, read_segment

ROW = {
    "request_id": "0190c2a4e1f27a3b8c9d0e1f2a3b4c5d",
    "lead_hash": "ab" * 32,
    "model_name": "lead-scoring",
    "model_version": "3",
    "probability": 0.1234567890123,
    "score": 41,
    "tier": "B",
    "scored_at": datetime(2026, 12, 1, 16, 5, 4, 123456, tzinfo=UTC),
    "queue": "sdr",
    "sla_hours": 24.0,
    "model_input": '{"industry":"saas","employees":120}',
    "note": None,
    "flag": True,
}


def _same(a: list[dict], b: list[dict]) -> None:
    assert a == b
    for x, y in zip(a, b, strict=True):
        assert list(x) == list(y)
        assert [type(v) for v in x.values()] == [type(v) for v in y.values()]


@pytest.mark.parametrize(
    "rows",
    [
        [ROW],
        [ROW, {**ROW, "scored_at": datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)}],
        [{**ROW, "scored_at": datetime(2030, 1, 1, 5, tzinfo=timezone(timedelta(hours=2)))}],
        [{**ROW, "probability": np.float64(0.5)}],  # a numpy scalar: not marshal's, so pickled
        [{**ROW, "scored_at": datetime(2026, 1, 1)}],  # a naive datetime stays naive
        [],
    ],
)
def test_rows_come_back_with_their_values_and_types(rows: list[dict]) -> None:
    back = decode_rows(encode_rows(rows))
    _same(back, rows)
    for row in back:
        if row["scored_at"].tzinfo is not None:
            assert row["scored_at"].tzinfo is UTC


def test_plain_rows_are_not_pickled() -> None:
    assert not encode_rows([ROW]).startswith(b"\x80")
    assert encode_rows([{**ROW, "probability": np.float64(0.5)}]).startswith(b"\x80")


def test_a_segment_mixing_pickled_and_marshal_frames_reads_in_order_and_stops_at_a_torn_frame(tmp_path: Path) -> None:
    first = [{**ROW, "request_id": "a"}]
    second = [{**ROW, "request_id": "b"}]
    frames = [pickle.dumps(first, protocol=pickle.HIGHEST_PROTOCOL), encode_rows(second)]
    data = b"".join(_LENGTH.pack(len(f)) + f for f in frames)
    torn = encode_rows([{**ROW, "request_id": "c"}])
    (tmp_path / "1.ready").write_bytes(data + _LENGTH.pack(len(torn)) + torn[: len(torn) // 2])
    _same(read_segment(tmp_path / "1.ready"), first + second)


def test_a_segment_is_published_whole_and_never_over_another(tmp_path: Path) -> None:
    """write_segment_file publishes ``<seq>.ready`` with the rows and no ``.part`` left; a segment of that
    number already there (a sealed one of single leads, say) is never replaced; a ``.part`` someone else is
    writing is left alone."""
    rows = [ROW, {**ROW, "request_id": "second"}]
    ready = write_segment_file(tmp_path / "000000000004.part", frame(rows), fsync=True)
    assert ready == tmp_path / "000000000004.ready" and [p.name for p in tmp_path.iterdir()] == [ready.name]
    assert read_segment(ready) == rows

    taken = tmp_path / "000000000005.ready"
    taken.write_bytes(frame([ROW]))
    with pytest.raises(FileExistsError):
        write_segment_file(tmp_path / "000000000005.part", frame(rows), fsync=False)
    assert read_segment(taken) == [ROW] and not (tmp_path / "000000000005.part").exists()

    theirs = tmp_path / "000000000006.part"
    theirs.write_bytes(b"being written")
    with pytest.raises(FileExistsError):
        write_segment_file(theirs, frame(rows), fsync=False)
    assert theirs.read_bytes() == b"being written" and not (tmp_path / "000000000006.ready").exists()


def test_a_restarted_spool_numbers_past_the_parts_it_removes(tmp_path: Path) -> None:
    """Spool.open removes half-written batch segments but never hands out their numbers again."""
    (tmp_path / "000000000003.ready").write_bytes(b"")
    (tmp_path / "000000000009.part").write_bytes(b"half")
    spool = Spool(tmp_path)
    spool.open()
    assert not (tmp_path / "000000000009.part").exists()
    assert spool.reserve_segment() == tmp_path / "000000000010.part"
