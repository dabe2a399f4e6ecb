"""The CPU priority and placement of the API's helper processes (the batch worker, the score-log writer).

Both run beside the API's event loop and should make it wait for a core as little as possible. A nice
value of 19 alone does little for that: under Linux's scheduler a thread that wakes up may wait for the rest
of a running nice thread's time slice (milliseconds). A thread under the ``SCHED_IDLE`` policy is preempted
at once by a normal thread that wakes up on its core, and otherwise uses what CPU time is left over
(``idle``, the default). Two limits remain: Linux's EEVDF scheduler still gives an idle thread its small
share, so it may hold a core until the next scheduler tick while a normal thread waits; and the policy ranks
threads within the process's control group only (``docs/operations.md`` says what both cost). Placement
(:func:`split_cpus`, :func:`place_process`) removes the first: on a machine of a few CPUs the API process
keeps one and its helpers run on the others. On a host whose cores are always busy, what is left over can
be close to nothing; ``nice`` (nice 19 alone) still gives the helpers a small share, ``normal`` an equal
one (``LEADSCORE_HELPER_PRIORITY``).
"""

from __future__ import annotations

import logging
import os
from contextlib import suppress
from pathlib import Path

log = logging.getLogger(__name__)
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


# Where the helpers run. On a machine of a few CPUs (a small virtual machine, or a container given cores of its
# own), the API process keeps one CPU and its helpers get the others: the event loop then never waits behind a
# helper the scheduler has picked (see the module docstring), whatever the load. Past AUTO_MAX_CPUS the CPUs a
# process may use are likely shared with other tenants, where a pinned event loop could not move off a busy
# one: ``auto`` leaves placement to the scheduler there.
AUTO_MAX_CPUS = 4


def parse_cpus(text: str) -> frozenset[int]:
    """``"0,2-3"`` -> {0, 2, 3} (a CPU list as ``taskset -c`` takes it); ValueError for anything else."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"not a CPU list: {text!r} (e.g. 0 or 0,2-3)")
        low, high = int(first), int(last) if dash else int(first)
        if high < low:
            raise ValueError(f"not a CPU list: {text!r} (a range goes up: 2-3)")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


def format_cpus(cpus: frozenset[int] | set[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def split_cpus(setting: str, allowed: frozenset[int] | None = None) -> tuple[frozenset[int], frozenset[int]] | None:
    """(the API process's CPUs, the helpers' CPUs) for ``LEADSCORE_HELPER_CPUS`` and one API process, within
    ``allowed`` (default: the CPUs this process may use); None to leave placement to the scheduler:

    - ``all``: None;
    - ``auto``: with 2 to ``AUTO_MAX_CPUS`` CPUs, the last for the API and the others for the helpers; else
      None;
    - a CPU list: those (that this process may use) for the helpers, the others for the API; None when that
      leaves either side without a CPU.
    """
    if setting == "all":
        return None
    if allowed is None:
        if not hasattr(os, "sched_getaffinity"):
            return None
        allowed = frozenset(os.sched_getaffinity(0))
    if setting == "auto":
        if not 2 <= len(allowed) <= AUTO_MAX_CPUS:
            return None
        api = frozenset({max(allowed)})
        return api, allowed - api
    helpers = parse_cpus(setting) & allowed
    api = allowed - helpers
    return (api, helpers) if api and helpers else None


def place_process(cpus: frozenset[int] | set[int] | list[int] | None) -> bool:
    """Run every thread of this process (and the threads it starts later) on ``cpus``; nothing for None, or
    where the system has no CPU affinity. False, the process left where it was and a warning logged, when the
    system refuses the set (none of its CPUs may be used)."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return False
    try:
        for thread in _threads():
            with suppress(ProcessLookupError):  # a thread that ended meanwhile
                os.sched_setaffinity(thread, set(cpus))
    except OSError:
        log.warning("could not run on CPU %s (LEADSCORE_HELPER_CPUS): left where it was", format_cpus(set(cpus)))
        return False
    return True
