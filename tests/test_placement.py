"""CPU placement (``LEADSCORE_HELPER_CPUS``, serving.priority): on a machine of a few CPUs one worker's API
process keeps one and its helpers, the batch worker and the score-log writer, run on the others."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from leadscore.models.scorer import Scorer
from leadscore.serving.batch import BatchWorker
from leadscore.serving.priority import AUTO_MAX_CPUS, format_cpus, parse_cpus, split_cpus
from leadscore.serving.schemas import EXAMPLE_LEAD
from leadscore.serving.settings import ServingSettings
from leadscore.serving.spool import SpooledScoreLog
from leadscore.serving.state import LoadedModel
from tests.test_scenarios import app_command, children, scenario_server

ALLOWED = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()
needs_two = pytest.mark.skipif(len(ALLOWED) < 2, reason="CPU placement needs at least 2 CPUs this process may use")


def affinity(pid: int) -> set[frozenset[int]]:
    """The CPU sets of the threads of ``pid``."""
    return {frozenset(os.sched_getaffinity(int(task.name))) for task in Path(f"/proc/{pid}/task").iterdir()}


def test_cpu_lists_read_as_taskset_writes_them() -> None:
    assert parse_cpus("0") == {0} and parse_cpus("0,2-3") == {0, 2, 3} and parse_cpus(" 1 , 4-5") == {1, 4, 5}
    assert format_cpus({3, 0, 2}) == "0,2,3"
    for bad in ("", "a", "1-", "3-1", "0;1", "-1"):
        with pytest.raises(ValueError, match="not a CPU list"):
            parse_cpus(bad)
    with pytest.raises(ValidationError, match="not a CPU list"):
        ServingSettings(helper_cpus="first")
    assert ServingSettings(helper_cpus=" AUTO ").helper_cpus == "auto"


def test_auto_splits_a_small_machine_only_and_one_worker_only() -> None:
    assert split_cpus("auto", allowed=frozenset({0, 1})) == ({1}, {0})
    assert split_cpus("auto", allowed=frozenset({2, 5, 7})) == ({7}, {2, 5})
    assert split_cpus("auto", allowed=frozenset(range(AUTO_MAX_CPUS))) is not None
    assert split_cpus("auto", allowed=frozenset(range(AUTO_MAX_CPUS + 1))) is None  # likely shared: the scheduler's
    assert split_cpus("auto", allowed=frozenset({0})) is None
    assert split_cpus("all", allowed=frozenset({0, 1})) is None


def test_a_cpu_list_places_the_helpers_there_and_the_api_on_the_rest() -> None:
    assert split_cpus("0", allowed=frozenset(range(8))) == (frozenset(range(1, 8)), {0})
    assert split_cpus("0-1,9", allowed=frozenset({0, 1, 2})) == ({2}, {0, 1})  # CPUs it may not use are ignored
    assert split_cpus("0-2", allowed=frozenset({0, 1, 2})) is None  # no CPU left for the API
    assert split_cpus("5", allowed=frozenset({0, 1})) is None  # none of them allowed
    assert ServingSettings(helper_cpus="auto").placed_helper_cpus is None
    assert ServingSettings(helper_cpus="1,3").placed_helper_cpus == {1, 3}


@needs_two
def test_the_helpers_run_on_the_cpus_they_are_given(scorer: Scorer, tmp_path: Path) -> None:
    cpu = frozenset({min(ALLOWED)})
    worker = BatchWorker(b"k" * 32, cpus=cpu)
    log = SpooledScoreLog(f"sqlite:///{tmp_path / 'scores.db'}", tmp_path / "spool", flush_seconds=0.05, cpus=cpu)
    log.start()
    try:
        worker.score(
            orjson.dumps({"leads": [EXAMPLE_LEAD]}), 10, LoadedModel(scorer, "m", "1", "static"), "r", None, False
        )
        assert worker.process is not None and affinity(worker.process.pid) == {cpu}
        assert log._writer is not None and affinity(log._writer.pid) == {cpu}
        assert affinity(os.getpid()) == {ALLOWED}  # the process that started them is left where it was
    finally:
        worker.close()
        log.close()
    unplaced = BatchWorker(b"k" * 32)
    try:
        unplaced.score(
            orjson.dumps({"leads": [EXAMPLE_LEAD]}), 10, LoadedModel(scorer, "m", "1", "static"), "r", None, False
        )
        assert unplaced.process is not None and affinity(unplaced.process.pid) == {ALLOWED}
    finally:
        unplaced.close()


@pytest.fixture
def scorer_file(scorer: Scorer, tmp_path: Path) -> Path:
    return scorer.save(tmp_path / "scorer.joblib")


@pytest.mark.integration
@pytest.mark.skipif(
    not 2 <= len(ALLOWED) <= AUTO_MAX_CPUS, reason=f"auto places on machines of 2 to {AUTO_MAX_CPUS} CPUs"
)
def test_a_served_api_on_a_small_machine_keeps_its_last_cpu_and_its_helpers_get_the_others(
    scorer_file: Path, tmp_path: Path
) -> None:
    """The real server as ``leadscore serve`` starts it, default settings: every thread of the API process on the
    last CPU, every thread of its batch worker and score-log writer on the others; said once in the log."""
    last = frozenset({max(ALLOWED)})
    with scenario_server(tmp_path / "home", app_command(scorer_file)) as server:
        batch = orjson.dumps({"leads": [EXAMPLE_LEAD] * 3})
        request = urllib.request.Request(server.base + "/v1/score/batch", batch, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
        helpers = children(server.process.pid)
        assert len(helpers) == 2  # the score-log writer and the batch worker
        assert affinity(server.process.pid) == {last}
        assert all(affinity(pid) == {ALLOWED - last} for pid in helpers)
        assert "API process on CPU" in server.log_text()


@needs_two
def test_a_helper_told_cpus_it_may_not_use_runs_where_it_was_and_says_so(
    scorer: Scorer, capfd: pytest.CaptureFixture[str]
) -> None:
    """A CPU list naming no CPU this machine has (``LEADSCORE_HELPER_CPUS`` given to several workers, or an
    embedding app) does not stop the batch worker: it scores where it was started, and logs why."""
    worker = BatchWorker(b"k" * 32, cpus=frozenset({max(ALLOWED) + 64}))
    try:
        scored = worker.score(
            orjson.dumps({"leads": [EXAMPLE_LEAD]}), 10, LoadedModel(scorer, "m", "1", "static"), "r", None, False
        )
        assert scored.rows == 1
        assert worker.process is not None and affinity(worker.process.pid) == {ALLOWED}
    finally:
        worker.close()
    assert "could not run on CPU" in capfd.readouterr().err  # the worker's log line, on the API's stderr


def test_a_cpu_list_that_leaves_no_cpu_to_either_side_places_nothing(caplog: pytest.LogCaptureFixture) -> None:
    from leadscore.serving.run import place_api

    before = affinity(os.getpid())
    everything = format_cpus(ALLOWED | {max(ALLOWED, default=0) + 64})
    with caplog.at_level("WARNING"):
        placed = place_api(ServingSettings(helper_cpus=everything))
    assert placed.helper_cpus == "all" and placed.placed_helper_cpus is None
    assert affinity(os.getpid()) == before
    assert "leaves no CPU" in caplog.text
