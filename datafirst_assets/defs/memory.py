"""Give memory back between steps of a long in-process run.

Every step of a run executes in one process (DuckDB allows one writer). Without this, a run's
resident memory only ever grows: Splink's linkers and their DuckDB databases sit in reference
cycles until Python's rare full collection, and freed heap stays mapped. Measured at 100,000
people (benchmarks/bench_pipeline.py) the process climbed from 1.4 GiB after the ingest to
5.9 GiB at the end although no step needs that much at once; with collection alone, 300,000
people still crept from 4 to 9 GiB, mostly DuckDB's cache of warehouse pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

from dagster import HookContext, failure_hook, success_hook

from datafirst_assets.warehouse.connection import trim_buffer_pools


def release_memory() -> None:
    """Collect cycles (freeing linkers, DuckDB scratch catalogs and frames they hold), drop
    DuckDB's cache of stored pages, and ask Arrow's and the C allocator to return free memory."""
    gc.collect()
    trim_buffer_pools()
    try:  # Arrow's own allocator (jemalloc or mimalloc) keeps freed buffers for reuse
        import pyarrow

        pyarrow.default_memory_pool().release_unused()
    except (ImportError, AttributeError):
        pass
    libc = ctypes.util.find_library("c")
    if libc:
        try:
            ctypes.CDLL(libc).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc: nothing to trim
            pass


@success_hook(name="release_memory_after_step")
def release_memory_after_success(_context: HookContext) -> None:
    release_memory()


@failure_hook(name="release_memory_after_failure")
def release_memory_after_failure(_context: HookContext) -> None:
    release_memory()


STEP_HOOKS = {release_memory_after_success, release_memory_after_failure}
