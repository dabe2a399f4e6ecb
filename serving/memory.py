"""Memory given back after big batches: few malloc arenas, and free heap returned to the system.

glibc gives each thread that allocates its own arena (up to eight per core), and keeps freed memory in
them; after a burst of big batches scored in worker threads the process would stay at its peak size.
:func:`limit_arenas` caps the arenas at start; :func:`trim` (``malloc_trim``) returns what is free. Both
do nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_ARENA_MAX = -8  # mallopt's parameter number (glibc's malloc.h)
ARENAS = 2


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _libc()


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (threads started later share them); True when set."""
    return bool(_LIBC is not None and _LIBC.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Give free heap memory back to the system (``malloc_trim(0)``; the GIL is released meanwhile); True when
    some was."""
    return bool(_LIBC is not None and _LIBC.malloc_trim(0))
