"""The lowest CPU priority, for the API's helper processes (the batch worker, the score-log writer).

Both run beside the API's event loop and must never make it wait for a core. A nice value of 19 alone
does not promise that: under Linux's scheduler a thread that wakes up may wait for the rest of a running
nice thread's time slice (milliseconds). A thread under the ``SCHED_IDLE`` policy is preempted at once by
any normal thread that wakes up, so the event loop runs as soon as it has something to do, and the helpers
use what CPU time is left over.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

NICE = 19


def lowest_priority() -> str:
    """Put every thread of this process at the lowest CPU priority: nice ``NICE`` and, on Linux, the
    ``SCHED_IDLE`` policy (threads started later inherit both). Returns ``"idle"`` when the policy was set,
    ``"nice"`` when only the nice value was (another system, or the policy refused)."""
    threads = _threads()
    for thread in threads:  # on Linux a nice value is a thread's own
        with suppress(ProcessLookupError, PermissionError):
            os.setpriority(os.PRIO_PROCESS, thread, NICE)
    idle = getattr(os, "SCHED_IDLE", None)
    if idle is None or not hasattr(os, "sched_setscheduler"):
        return "nice"
    try:
        for thread in threads:
            with suppress(ProcessLookupError):  # a thread that ended meanwhile
                os.sched_setscheduler(thread, idle, os.sched_param(0))
    except OSError:
        return "nice"
    return "idle"


def _threads() -> list[int]:
    """This process's threads (Linux: from /proc; elsewhere the calling thread, as 0)."""
    tasks = Path("/proc/self/task")
    return [int(task.name) for task in tasks.iterdir()] if tasks.is_dir() else [0]
