"""How the training job uses the machine's threads and memory while it runs.

The job runs its own threads, one per core: cross-validation folds, the logistic baseline beside them,
LightGBM's OpenMP threads. Inside :func:`training_resources`:

- BLAS (OpenBLAS, through numpy and scipy) runs on one thread. The job's dense products are small (the
  Newton steps of the linear fits), and BLAS's worker threads would spin beside the job's own threads
  for cores that are already busy.
- numpy does not ask the kernel for transparent huge pages (numpy's ``NUMPY_MADVISE_HUGEPAGE``
  setting, off). The job allocates and frees many large, short-lived arrays; the kernel zeroes fresh
  huge pages for each of them at first touch, which costs more than the arrays gain from them.
- pyarrow allocates from the system allocator (``pyarrow.system_memory_pool``), as numpy does. Its default
  pool (mimalloc) reserves its arenas with transparent huge pages, the same zeroing cost at first touch
  while the data is read and converted.

The settings are the process's; the previous ones come back when the block ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits


def _set_huge_pages(enabled: bool) -> bool | None:
    """Set numpy's use of transparent huge pages for new arrays; return the previous setting (None where
    this numpy has no such setting, which then stays as it is)."""
    setter = getattr(np._core.multiarray, "_set_madvise_hugepage", None)
    return None if setter is None else bool(setter(enabled))


@contextmanager
def training_resources() -> Iterator[None]:
    """BLAS on one thread, numpy without transparent huge pages and pyarrow on the system allocator for the
    duration of the block."""
    huge_pages = _set_huge_pages(False)
    pool = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        pa.set_memory_pool(pool)
        if huge_pages is not None:
            _set_huge_pages(huge_pages)
