"""The CPU priority of the API's helper processes (the batch worker, the score-log writer).

Both run beside the API's event loop and should make it wait for a core as little as possible. A nice
value of 19 alone does little for that: under Linux's scheduler a thread that wakes up may wait for the rest
of a running nice thread's time slice (milliseconds). A thread under the ``SCHED_IDLE`` policy is preempted
at once by a normal thread that wakes up on its core, and otherwise uses what CPU time is left over
(``idle``, the default). Two limits remain: Linux's EEVDF scheduler still gives an idle thread its small
share, so it may hold a core until the next scheduler tick while a normal thread waits; and the policy ranks
threads within the process's control group only (``docs/operations.md`` says what both cost). On a host
whose cores are always busy, what is left over can be close to nothing; ``nice`` (nice 19 alone) still
gives the helpers a small share, ``normal`` an equal one (``LEADSCORE_HELPER_PRIORITY``).
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

NICE = 19
PRIORITIES = ("idle", "nice", "normal")


def helper_priority(priority: str = "idle") -> str:
    """Put every thread of this process at ``priority`` (threads started later inherit it): ``idle``, nice
    ``NICE`` and, on Linux, the ``SCHED_IDLE`` policy; ``nice``, nice ``NICE`` alone; ``normal``, unchanged.
    Returns what was set: ``"idle"``, ``"nice"`` (also when the policy is missing or refused) or ``"normal"``."""
    if priority not in PRIORITIES:
        raise ValueError(f"helper priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
    if priority == "normal":
        return "normal"
    threads = _threads()
    for thread in threads:  # on Linux a nice value is a thread's own
        with suppress(ProcessLookupError, PermissionError):
            os.setpriority(os.PRIO_PROCESS, thread, NICE)
    idle = getattr(os, "SCHED_IDLE", None)
    if priority == "nice" or idle is None or not hasattr(os, "sched_setscheduler"):
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
