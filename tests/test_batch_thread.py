"""Batches are scored in the batch worker process at the lowest CPU priority, with the cyclic collector paused;
a worker that dies fails its batch with 503 and is started again; a caller that goes away still waits for its
batch (serving.batch, serving.batch_work, serving.batch_worker)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError

from leadscore.models.lead_hash import lead_hasher
from leadscore.models.scorer import Scorer
from leadscore.serving import batch_work
from leadscore.serving.batch import BatchFailed, BatchWorker, SegmentNotWritten, batch_executor, in_batch_thread
from leadscore.serving.batch_work import collector_paused, score_batch_body
from leadscore.serving.frames import _LENGTH, decode_rows
from leadscore.serving.priority import NICE
from leadscore.serving.schemas import EXAMPLE_LEAD, MINIMAL_LEAD
from leadscore.serving.state import LoadedModel
from tests.factories import thread_policies

KEY = b"k" * 32
BODY = orjson.dumps({"leads": [EXAMPLE_LEAD, MINIMAL_LEAD]})


@pytest.fixture
def worker() -> BatchWorker:
    worker = BatchWorker(KEY)
    yield worker
    worker.close()


def test_a_batch_is_scored_in_the_worker_as_it_would_be_in_process(worker: BatchWorker, scorer: Scorer) -> None:
    model = LoadedModel(scorer, "lead-scoring", "3", "static")
    scored = worker.score(BODY, 10, model, "req-1", None, True)
    assert worker.process is not None and worker.process.pid != os.getpid()
    here = score_batch_body(BODY, 10, model, "req-1", None, True, lead_hasher(KEY))
    answer, local = orjson.loads(scored.answer), orjson.loads(here.answer)
    for result in (*answer["results"], *local["results"]):  # scored a moment apart: times aside, the same
        result.pop("scored_at")
        for reason in (*result["reasons"]["positive"], *result["reasons"]["negative"]):
            if reason["feature"].startswith("days_since"):
                reason.pop("value")
    assert answer == local and answer["model"] == {"name": "lead-scoring", "version": "3"}
    assert (scored.rows, scored.tiers) == (here.rows, here.tiers)
    assert _logged(scored.frames) == _logged(here.frames)


def test_the_worker_writes_a_batchs_rows_as_the_spool_segment_it_is_given(
    worker: BatchWorker, scorer: Scorer, tmp_path: Path
) -> None:
    """With a segment, the rows reach the API only as a ready spool segment the worker wrote (the same rows as
    the frames it would have sent back), and the reply's frames are empty."""
    model = LoadedModel(scorer, "lead-scoring", "3", "static")
    scored = worker.score(BODY, 10, model, "req-1", None, True, (tmp_path / "000000000007.part", False))
    assert scored.frames == b"" and scored.rows == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000000000007.ready"]
    here = score_batch_body(BODY, 10, model, "req-1", None, True, lead_hasher(KEY))
    assert _logged((tmp_path / "000000000007.ready").read_bytes()) == _logged(here.frames)


def test_a_segment_the_worker_cannot_publish_is_a_segment_not_written_and_replaces_nothing(
    worker: BatchWorker, scorer: Scorer, tmp_path: Path
) -> None:
    """A segment whose number is taken already (a ``.ready`` of that number is there) is a SegmentNotWritten, an
    OSError (the route answers 503): the segment there is left as it was, the worker's ``.part`` is removed,
    and the same worker scores the next batch."""
    model = LoadedModel(scorer, "lead-scoring", "3", "static")
    taken = tmp_path / "000000000001.ready"
    taken.write_bytes(b"answered rows")
    with pytest.raises(SegmentNotWritten):
        worker.score(BODY, 10, model, "r", None, True, (tmp_path / "000000000001.part", True))
    assert [p.name for p in tmp_path.iterdir()] == [taken.name] and taken.read_bytes() == b"answered rows"
    pid = worker.process.pid
    assert worker.score(BODY, 10, model, "r", None, True, (tmp_path / "000000000002.part", True)).rows == 2
    assert worker.process.pid == pid
    assert sorted(p.name for p in tmp_path.iterdir()) == [taken.name, "000000000002.ready"]


def test_a_segment_half_written_by_a_worker_that_died_is_removed(
    worker: BatchWorker, scorer: Scorer, tmp_path: Path
) -> None:
    """A worker that dies while it writes a batch's segment: the batch gets 503 and no ``.part`` is left."""
    dying = (  # the real worker, dying halfway through the segment's write
        "import os; from leadscore.serving import batch_worker as w; "
        "w.write_segment_file = lambda part, data, fsync: (part.write_bytes(data[:10]), os._exit(9)); w.main()"
    )
    worker.command = [sys.executable, "-P", "-c", dying]
    with pytest.raises(HTTPException) as refused:
        worker.score(
            BODY,
            10,
            LoadedModel(scorer, "lead-scoring", "3", "static"),
            "r",
            None,
            True,
            (tmp_path / "000000000003.part", False),
        )
    assert refused.value.status_code == 503 and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_worker_dies_with_its_api_even_in_the_middle_of_a_batch(tmp_path: Path) -> None:
    """An API killed (SIGKILL) while its worker holds a batch: the worker is killed with it, so it never writes
    a segment into a folder another API may have taken over since."""
    script = """
import os, signal, sys, threading, time
from leadscore.serving.batch import BatchWorker
worker = BatchWorker(b"k" * 32)
# the real worker, whose batches never end
worker.command = [sys.executable, "-P", "-c", "import time; from leadscore.serving import batch_worker as w; "
                  "w.answer = lambda *a: time.sleep(60); w.main()"]
threading.Thread(target=lambda: worker.score(b"{}", 10, None, "r", None, True), daemon=True).start()
while worker.process is None:
    time.sleep(0.01)
time.sleep(1.0)  # the batch is in the worker's hands
print(worker.process.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    api = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert api.returncode == -signal.SIGKILL, api.stderr
    pid = int(api.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed and waiting for its reaper, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_an_idle_worker_is_ended_and_the_next_batch_starts_a_new_one(worker: BatchWorker, scorer: Scorer) -> None:
    """stop_if_idle ends the worker only past its idle time and never while a batch is in hand; the next batch
    is scored by a new worker."""
    model = LoadedModel(scorer, "lead-scoring", "1", "static")
    worker.score(BODY, 10, model, "r", None, False)
    first = worker.process
    assert first is not None
    assert worker.stop_if_idle(3600) is False and first.poll() is None
    with worker._lock:  # a batch in hand
        assert worker.stop_if_idle(0) is False
    assert first.poll() is None
    assert worker.stop_if_idle(0) is True
    assert first.poll() is not None and worker.process is None
    assert worker.stop_if_idle(0) is False  # nothing left to end
    scored = worker.score(BODY, 10, model, "r", None, False)
    assert scored.rows == 2 and worker.started == 2 and worker.process is not None


def _logged(frames: bytes) -> list[dict]:
    """The score-log rows in ``frames``, without what depends on the moment they were scored."""
    rows, at = [], 0
    while at < len(frames):
        (length,) = _LENGTH.unpack_from(frames, at)
        rows.extend(decode_rows(frames[at + _LENGTH.size : at + _LENGTH.size + length]))
        at += _LENGTH.size + length
    for row in rows:
        row.pop("scored_at")
        features = orjson.loads(row.pop("model_input"))
        row["model_input"] = {k: v for k, v in features.items() if not k.startswith("days_since")}
    return rows


def test_the_worker_runs_at_the_lowest_cpu_priority_and_the_api_does_not(worker: BatchWorker, scorer: Scorer) -> None:
    worker.score(BODY, 10, LoadedModel(scorer, "lead-scoring", "1", "static"), "r", None, False)
    assert worker.process is not None
    assert os.getpriority(os.PRIO_PROCESS, worker.process.pid) == NICE == 19
    assert os.getpriority(os.PRIO_PROCESS, 0) < NICE
    assert set(thread_policies(worker.process.pid)) == {os.SCHED_IDLE}
    assert set(thread_policies(os.getpid())) == {os.SCHED_OTHER}


@pytest.mark.parametrize("priority", ["nice", "normal"])
def test_the_worker_runs_at_the_helper_priority_it_is_given(scorer: Scorer, priority: str) -> None:
    """``LEADSCORE_HELPER_PRIORITY``: ``nice`` is nice 19 without ``SCHED_IDLE`` (a share of a busy core),
    ``normal`` leaves the worker as the API is."""
    worker = BatchWorker(KEY, priority=priority)
    try:
        worker.score(BODY, 10, LoadedModel(scorer, "lead-scoring", "1", "static"), "r", None, False)
        assert worker.process is not None
        expected = NICE if priority == "nice" else os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, worker.process.pid) == expected
        assert set(thread_policies(worker.process.pid)) == {os.SCHED_OTHER}
    finally:
        worker.close()


def test_an_unknown_helper_priority_is_refused() -> None:
    from pydantic import ValidationError

    from leadscore.serving.priority import helper_priority
    from leadscore.serving.settings import ServingSettings

    with pytest.raises(ValidationError, match="helper_priority"):
        ServingSettings(helper_priority="lowest")
    with pytest.raises(ValueError, match="idle, nice, normal"):
        helper_priority("lowest")


def test_invalid_and_oversized_batches_are_answered_as_fastapi_would(worker: BatchWorker, scorer: Scorer) -> None:
    model = LoadedModel(scorer, "lead-scoring", "1", "static")
    with pytest.raises(RequestValidationError) as invalid:
        worker.score(orjson.dumps({"leads": [{"lead_id": "a"}, {"lead_id": 7}]}), 10, model, "r", None, True)
    assert [error["loc"] for error in invalid.value.errors()] == [("body", "leads", 1, "lead_id")]
    with pytest.raises(HTTPException) as too_big:
        worker.score(BODY, 1, model, "r", None, True)
    assert too_big.value.status_code == 413 and "2 leads" in too_big.value.detail
    assert worker.score(BODY, 10, model, "r", None, True).rows == 2  # the same worker goes on
    assert worker.started == 1


def test_each_batch_is_scored_by_its_own_version(worker: BatchWorker, scorer: Scorer) -> None:
    versions = [LoadedModel(scorer, "lead-scoring", v, "static") for v in ("1", "2", "1")]
    seen = [orjson.loads(worker.score(BODY, 10, m, "r", None, False).answer)["model"]["version"] for m in versions]
    assert seen == ["1", "2", "1"]


def test_a_failure_inside_the_worker_is_a_batch_failure_and_the_worker_goes_on(
    worker: BatchWorker, scorer: Scorer
) -> None:
    broken = LoadedModel(None, "lead-scoring", "9", "static")  # type: ignore[arg-type]
    with pytest.raises(BatchFailed, match="AttributeError"):
        worker.score(BODY, 10, broken, "r", None, True)
    assert worker.score(BODY, 10, LoadedModel(scorer, "lead-scoring", "1", "static"), "r", None, True).rows == 2
    assert worker.started == 1


def test_a_worker_that_dies_fails_its_batch_with_503_and_the_next_batch_starts_a_new_one(
    worker: BatchWorker, scorer: Scorer, caplog: pytest.LogCaptureFixture
) -> None:
    model = LoadedModel(scorer, "lead-scoring", "1", "static")
    worker.command = [sys.executable, "-c", "import sys; sys.stdin.buffer.read(8); sys.exit(3)"]  # dies at once
    with caplog.at_level(logging.ERROR, logger="leadscore.serving.batch"), pytest.raises(HTTPException) as failed:
        worker.score(BODY, 10, model, "r", None, True)
    assert failed.value.status_code == 503 and failed.value.headers == {"Retry-After": "1"}
    assert "batch worker failed" in caplog.text
    worker.command = BatchWorker(KEY).command
    assert worker.score(BODY, 10, model, "r", None, True).rows == 2
    assert worker.process is not None
    os.kill(worker.process.pid, signal.SIGKILL)  # killed between batches: the next batch starts a new one
    worker.process.wait()
    assert worker.score(BODY, 10, model, "r", None, True).rows == 2
    assert worker.started == 3


def test_the_worker_ends_with_its_input(scorer: Scorer) -> None:
    worker = BatchWorker(KEY)
    worker.score(BODY, 10, LoadedModel(scorer, "lead-scoring", "1", "static"), "r", None, True)
    process = worker.process
    assert process is not None
    process.send_signal(signal.SIGTERM)  # a signal to the process group does not end it: it finishes its work
    time.sleep(0.2)
    assert process.poll() is None
    worker.close(timeout=10)
    assert process.returncode == 0


def test_the_collector_is_paused_while_batches_are_in_flight_and_resumes_after_the_last() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # a second batch in flight
            assert not gc.isenabled()
        assert not gc.isenabled()  # the first is still in flight
    assert gc.isenabled()
    gc.disable()  # someone else's choice is kept
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_score_batch_body_works_with_the_collector_paused_and_resumes_it_on_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[bool] = []

    def parse(body: bytes, max_batch: int) -> list:
        seen.append(gc.isenabled())
        raise ValueError("refused")

    monkeypatch.setattr(batch_work, "parse_batch", parse)
    with pytest.raises(ValueError, match="refused"):
        batch_work.score_batch_body(b"{}", 10, None, "r", None, True, str)  # type: ignore[arg-type]
    assert seen == [False] and gc.isenabled()


def test_a_cancelled_caller_waits_for_its_batch_to_end() -> None:
    executor = batch_executor(1)
    ended: list[float] = []

    def job() -> batch_work.ScoredBatch:
        time.sleep(0.3)
        ended.append(time.monotonic())
        return batch_work.ScoredBatch(b"{}", b"", 0, [])

    async def main() -> float:
        task = asyncio.create_task(in_batch_thread(executor, job))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic()

    try:
        cancelled_at = asyncio.run(main())
    finally:
        executor.shutdown()
    assert ended and ended[0] <= cancelled_at  # the job had ended when the cancellation reached the caller


def test_a_worker_that_does_not_answer_is_killed_and_its_batch_gets_503(scorer: Scorer) -> None:
    silent = "import sys, time; sys.stdin.buffer.read(1); time.sleep(60)"  # reads, never answers
    worker = BatchWorker(KEY, reply_seconds=0.5)
    worker.command = [sys.executable, "-c", silent]
    try:
        began = time.monotonic()
        with pytest.raises(HTTPException) as failed:
            worker.score(BODY, 10, LoadedModel(scorer, "lead-scoring", "1", "static"), "r", None, True)
        assert failed.value.status_code == 503 and time.monotonic() - began < 5
        assert worker.process is None  # killed and forgotten: the next batch starts a new one
    finally:
        worker.close()


def test_after_close_batches_get_503_and_no_worker_starts(worker: BatchWorker, scorer: Scorer) -> None:
    model = LoadedModel(scorer, "lead-scoring", "1", "static")
    worker.score(BODY, 10, model, "r", None, True)
    worker.close()
    with pytest.raises(HTTPException) as refused:
        worker.score(BODY, 10, model, "r", None, True)
    assert refused.value.status_code == 503
    assert worker.process is None and worker.started == 1


def test_the_worker_keeps_its_heap_between_batches_and_returns_it_after_a_pause(
    worker: BatchWorker, scorer: Scorer, tmp_path
) -> None:
    """Back-to-back batches reuse the worker's heap (nothing is trimmed between them); ``TRIM_AFTER_SECONDS``
    without a batch gives it back, once."""
    trims = tmp_path / "trims"
    counting = (  # the real worker, its trims counted in a file
        "from leadscore.serving import batch_worker as w; w.TRIM_AFTER_SECONDS = 0.5; "
        f"w.trim = lambda: open({str(trims)!r}, 'a').write('t') > 0; w.main()"
    )
    worker.command = [sys.executable, "-P", "-c", counting]
    model = LoadedModel(scorer, "lead-scoring", "1", "static")
    for _ in range(3):
        assert worker.score(BODY, 10, model, "r", None, True).rows == 2
    assert not trims.exists()
    deadline = time.monotonic() + 10
    while not trims.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.7)  # idle on: no more trims
    assert trims.read_text() == "t"


def test_what_the_worker_prints_does_not_reach_its_answers(worker: BatchWorker, scorer: Scorer) -> None:
    noisy = (  # the real worker, printing on stdout before each answer (as a chatty library would)
        "from leadscore.serving import batch_worker as w; real = w.answer; "
        "w.answer = lambda *a: (print('noise', flush=True), real(*a))[1]; w.main()"
    )
    worker.command = [sys.executable, "-P", "-c", noisy]
    model = LoadedModel(scorer, "lead-scoring", "1", "static")
    for _ in range(2):
        assert worker.score(BODY, 10, model, "r", None, True).rows == 2
    assert worker.started == 1
