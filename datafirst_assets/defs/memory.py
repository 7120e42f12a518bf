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

from datafirst_assets.defs.event_log import keep_event_log_open
from datafirst_assets.warehouse.connection import trim_buffer_pools


def freeze_long_lived_objects() -> None:
    """Exempt what exists now (imported modules, classes, the definitions) from later collections.

    A full collection walks every tracked object; with Dagster, Splink, pandera and polars loaded
    that is about 250,000 objects and 0.2-0.8 s per collection, paid after every step of a run
    (about 190 steps in `make demo`). These objects live as long as the process anyway; the ones
    the steps create are still collected. Called once, after the code location is loaded."""
    gc.collect()
    gc.freeze()


def release_memory() -> None:
    """Collect cycles (freeing linkers, DuckDB scratch catalogs and frames they hold), drop
    DuckDB's cache of stored pages, and ask the C allocator to return free heap to the system."""
    gc.collect()
    trim_buffer_pools()
    libc = ctypes.util.find_library("c")
    if libc:
        try:
            ctypes.CDLL(libc).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc: nothing to trim
            pass


@success_hook(name="release_memory_after_step")
def release_memory_after_success(context: HookContext) -> None:
    # not a hook of its own: every hook writes an event per step (see defs/event_log.py)
    keep_event_log_open(context.instance)
    release_memory()


@failure_hook(name="release_memory_after_failure")
def release_memory_after_failure(context: HookContext) -> None:
    keep_event_log_open(context.instance)
    release_memory()


STEP_HOOKS = {release_memory_after_success, release_memory_after_failure}
