"""Batches are scored on a thread of their own at the lowest CPU priority, with the cyclic collector paused,
and a caller that goes away still waits for its batch (serving.batch)."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time

import pytest

from leadscore.serving import batch
from leadscore.serving.batch import BATCH_NICE, batch_executor, collector_paused, in_batch_thread


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's")
def test_the_batch_thread_runs_at_the_lowest_cpu_priority_and_the_caller_does_not() -> None:
    executor = batch_executor(1)
    try:
        theirs = executor.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
    finally:
        executor.shutdown()
    assert theirs == BATCH_NICE == 19
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < BATCH_NICE


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

    monkeypatch.setattr(batch, "parse_batch", parse)
    with pytest.raises(ValueError, match="refused"):
        batch.score_batch_body(b"{}", 10, None, "r", None, True, str)  # type: ignore[arg-type]
    assert seen == [False] and gc.isenabled()


def test_a_cancelled_caller_waits_for_its_batch_to_end() -> None:
    executor = batch_executor(1)
    ended: list[float] = []

    def job() -> batch.ScoredBatch:
        time.sleep(0.3)
        ended.append(time.monotonic())
        return batch.ScoredBatch(b"{}", b"", 0, [])

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
