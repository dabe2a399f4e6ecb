"""Named stages of a long job: timed always, shown on stderr while they run when stderr is a terminal.

The timings (seconds per stage, in run order) go into the job's result, so ``--json`` carries them; the
display never goes to stdout, so a command's machine-readable output stays clean.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Stages:
    """Times each ``with stages.stage(name):`` block; shows a spinner and a done line when ``console`` is set."""

    def __init__(self, console: Any = None) -> None:
        self.console = console
        self.timings: dict[str, float] = {}
        self._status: Any = None  # one live display at a time: a stage inside a stage updates its text
        self._names: list[str] = []

    @classmethod
    def for_terminal(cls, quiet: bool = False) -> Stages:
        """Shown on stderr when it is a terminal and not ``quiet``; timed either way."""
        if quiet or not sys.stderr.isatty():
            return cls()
        from rich.console import Console

        return cls(Console(stderr=True))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        outer = self._status
        self._names.append(name)
        if self.console is not None:
            if outer is None:
                self._status = self.console.status(f"{name} ...")
                self._status.start()
            else:
                outer.update(f"{name} ...")
        try:
            yield
        finally:
            elapsed = time.perf_counter() - began
            self.timings[name] = round(elapsed, 3)
            self._names.pop()
            if self.console is not None:
                if outer is None:
                    self._status.stop()
                    self._status = None
                else:
                    outer.update(f"{self._names[-1]} ...")
                self.console.print(f"[green]done[/green] {name} ({elapsed:.1f}s)", highlight=False)
