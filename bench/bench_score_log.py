"""What the score log costs the API's event loop, measured side by side in one run.

    .venv/bin/python bench/bench_score_log.py [--seconds 6] [--rows-per-second 2500] [--repeats 3]

A busy uvloop loop (short slices of Python, one turn each, as requests keep the API's loop busy)
counts the slices it gets through while scores are logged at a request rate, in four set-ups:

- ``none``: the loop alone (rows are made, not logged);
- ``spool``: the score log as the API runs it (each request's rows appended to the local spool before its
  answer; the spool's writer process writes them to SQLite);
- ``thread, SQLite``: a writer thread in the loop's process inserting the same rows, one transaction
  a flush;
- ``thread, sleeping``: a thread that only wakes 50 times a second and sleeps again.

It prints the median slices a second over ``--repeats`` interleaved runs and each set-up's share of
``none``. docs/benchmarks.md has the current figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leadscore.serving.deps import uuid7_hex
from leadscore.serving.score_log import open_engine, write_batch
from leadscore.serving.spool import SpooledScoreLog

HASH = hashlib.sha256(b"L-2026-000123").hexdigest()


def row() -> dict[str, Any]:
    return {
        "request_id": uuid7_hex(),
        "lead_hash": HASH,
        "model_name": "lead-scoring",
        "model_version": "3",
        "probability": random.random(),
        "score": 50,
        "tier": "B",
        "scored_at": datetime.now(UTC),
    }


class WriterThread:
    """A score-log writer thread: every half second, the queued rows in one transaction."""

    def __init__(self, url: str) -> None:
        self.queue: deque[dict[str, Any]] = deque()
        self.engine = open_engine(url)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            batch = [self.queue.popleft() for _ in range(len(self.queue))]
            if batch:
                write_batch(self.engine, batch)

    def append(self, rows: list[dict[str, Any]]) -> None:
        self.queue.extend(rows)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.engine.dispose()


class SleepingThread:
    """A thread that wakes 50 times a second and sleeps again (rows are not kept)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            pass

    def append(self, rows: list[dict[str, Any]]) -> None:
        pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


class Nothing:
    def append(self, rows: list[dict[str, Any]]) -> None:
        pass

    def close(self) -> None:
        pass


def busy_loop(sink: Any, seconds: float, rows_per_second: float) -> float:
    """Slices a second the loop gets through while ``sink`` takes a row every 1/rows_per_second."""

    async def main() -> int:
        done, every = 0, 1.0 / rows_per_second
        end = time.perf_counter() + seconds
        due = time.perf_counter()
        while time.perf_counter() < end:
            sum(range(3000))  # a slice of Python work
            done += 1
            if time.perf_counter() >= due:
                due += every
                appended = sink.append([row()])
                if appended is not None:  # the spool: appended once awaited
                    await appended
            await asyncio.sleep(0)
        return done

    return uvloop.run(main()) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rows-per-second", type=float, default=2500.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="leadscore-bench-log-"))

    class Spooled:
        """The spooled score log, taking rows as the API gives them (``await commit(rows)``)."""

        def __init__(self, n: int) -> None:
            self.log = SpooledScoreLog(f"sqlite:///{folder / f'process{n}.db'}", folder / f"spool{n}")
            self.log.start()

        def append(self, rows: list[dict[str, Any]]) -> Any:
            return self.log.commit(rows)

        def close(self) -> None:
            self.log.close()

    setups: dict[str, Callable[[int], Any]] = {
        "none": lambda n: Nothing(),
        "spool (writer process)": Spooled,
        "thread, SQLite": lambda n: WriterThread(f"sqlite:///{folder / f'thread{n}.db'}"),
        "thread, sleeping": lambda n: SleepingThread(),
    }
    rates: dict[str, list[float]] = {label: [] for label in setups}
    for n in range(args.repeats):
        for label, make in setups.items():
            sink = make(n)
            rates[label].append(busy_loop(sink, args.seconds, args.rows_per_second))
            sink.close()
            print(f"run {n + 1} {label:<28}{rates[label][-1]:>9.0f} slices/s", flush=True)
    written = sum(
        sqlite3.connect(db).execute("SELECT count(*) FROM score_log").fetchone()[0] for db in folder.glob("process*.db")
    )
    base = statistics.median(rates["none"])
    print(
        f"\n{'set-up':<30}{'slices/s':>10}{'of none':>9}   ({args.rows_per_second:.0f} rows/s; the writer process wrote {written} rows)"
    )
    for label, values in rates.items():
        median = statistics.median(values)
        print(f"{label:<30}{median:>10.0f}{100 * median / base:>8.0f}%")


if __name__ == "__main__":
    main()
