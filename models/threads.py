"""Threads: large inputs worked on in row blocks, one thread per core, and LightGBM's thread count."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

T = TypeVar("T")
PARALLEL_ROWS = 100_000  # rows from which LightGBM runs on every core by default


def lightgbm_threads(rows: int, n_jobs: int | None = None) -> int:
    """LightGBM's ``num_threads`` for work on ``rows`` rows: ``n_jobs`` when given, else one thread below
    :data:`PARALLEL_ROWS` rows (OpenMP threads cost more than they save on small data) and all cores above."""
    return n_jobs if n_jobs is not None else (0 if rows >= PARALLEL_ROWS else 1)


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def in_row_blocks(work: Callable[[int, int], T], rows: int, blocks: int) -> list[T]:
    """``work(start, stop)`` for ``blocks`` consecutive, near-equal row ranges covering ``range(rows)``, each on a
    thread of its own; the results in row order."""
    bounds = np.linspace(0, rows, blocks + 1).astype(int)
    with ThreadPoolExecutor(blocks) as pool:
        return list(pool.map(work, bounds[:-1].tolist(), bounds[1:].tolist()))
