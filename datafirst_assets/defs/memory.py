"""Give memory back between steps of a long in-process run.

Every step of a run executes in one process (DuckDB allows one writer). Without this, a run's
resident memory only ever grows: Splink's linkers and their DuckDB databases sit in reference
cycles until Python's rare full collection, and freed heap stays mapped. Measured at 100,000
people (benchmarks/bench_pipeline.py) the process climbed from 1.4 GiB after the ingest to
5.9 GiB at the end although no step needs that much at once; with collection alone, 300,000
people still crept from 4 to 9 GiB, mostly DuckDB's cache of warehouse pages.

A small process is left alone: releasing costs 50-100 ms per step (a full collection, DuckDB's
cache dropped and read again by the next step, the C heap trimmed, a report written to the event
log), which at demo size (about 200 steps, the process under 1 GiB) was 5-10 s of CPU per run and
gave back nothing that mattered.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from functools import cache

# Below this much anonymous resident memory a step's leftovers are not worth releasing.
RELEASE_ABOVE_BYTES = 1 << 30
# ... nor when the process holds less than this much more than it did right after the last release:
# the steps between left little (a kept step, a check that read fingerprints). Releasing after each
# of them cost ~20 ms of CPU (a full collection, the C heap trimmed, a report in the event log) and
# dropped DuckDB's cache of the pages the next step reads again, at every one of the ~150 steps of a
# 300,000-people run (which stays above RELEASE_ABOVE_BYTES throughout), to give back almost nothing.
RELEASE_GROWTH_BYTES = 256 << 20

from datafirst_assets.warehouse.connection import open_databases, trim_buffer_pools


def freeze_long_lived_objects() -> None:
    """Exempt what exists now (imported modules, classes, the definitions) from later collections.

    A full collection walks every tracked object; with Dagster, Splink, pandera and polars loaded
    that is about 250,000 objects and 0.2-0.8 s per collection, paid after every step of a run
    (about 190 steps in `make demo`). These objects live as long as the process anyway; the ones
    the steps create are still collected. Called once, after the code location is loaded.

    No full collection first: loading the code location leaves almost no garbage (3 unreachable
    objects measured) and the collection cost 0.2-0.3 s of every run process's start; the few
    frozen leftovers are never freed, which is nothing against that."""
    gc.freeze()


@cache
def _libc() -> ctypes.CDLL | None:
    """The C library, looked up once (find_library runs ldconfig: twice per step it added up)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


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
    try:
        _libc().malloc_trim(0)
    except AttributeError:  # no C library found, or not glibc: nothing to trim
        pass


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def _glibc_heap() -> str:
    """The C heap (glibc's malloc, all arenas): in use, free but still mapped, and mmapped blocks."""
    try:
        mallinfo2 = _libc().mallinfo2
    except AttributeError:  # no C library found, or not glibc
        return ""
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return (f"malloc in use {info.uordblks / 2**30:.2f} GiB, free {info.fordblks / 2**30:.2f}, "
            f"mmapped {info.hblkhd / 2**30:.2f}")


def _status_kib(*fields: str) -> dict[str, int]:
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in fields:
                    out[name] = int(value.split()[0])
    except OSError:
        pass
    return out


def memory_report() -> str:
    """What the process holds after a step: resident memory (anonymous and file-backed), the C
    heap, Arrow's pool, Python's object count, DuckDB's own accounting, and the Splink scratch
    catalogs still attached (each should be gone once its linker is). Anonymous memory not in
    the C heap, Arrow or DuckDB is polars' allocator or Python's object arenas."""
    status = _status_kib("VmRSS", "RssAnon", "RssFile")
    parts = [f"resident {status.get('VmRSS', 0) / 2**20:.2f} GiB (anonymous {status.get('RssAnon', 0) / 2**20:.2f}, "
             f"files {status.get('RssFile', 0) / 2**20:.2f})"]
    heap = _glibc_heap()
    if heap:
        parts.append(heap)
    try:
        import pyarrow

        parts.append(f"Arrow {pyarrow.total_allocated_bytes() / 2**30:.2f} GiB")
    except ImportError:
        pass
    parts.append(f"{sys.getallocatedblocks():,} Python blocks")
    for connection in open_databases():
        cursor = connection.cursor()
        try:
            used = cursor.execute("select sum(memory_usage_bytes) from duckdb_memory()").fetchone()[0] or 0
            scratch = cursor.execute(
                "select count(*) from duckdb_databases() where database_name like 'splink_%'").fetchone()[0]
            parts.append(f"DuckDB {used / 2**30:.2f} GiB, {scratch} Splink scratch catalog(s) attached")
        finally:
            cursor.close()
    return "; ".join(parts)


def holds_much_memory(threshold: int | None = None) -> bool:
    """Whether this process's anonymous resident memory (heaps: Python, polars, Arrow, DuckDB) is
    above `threshold` (by default: RELEASE_ABOVE_BYTES, and RELEASE_GROWTH_BYTES more than right
    after the last release); True where /proc cannot tell."""
    if threshold is None:
        threshold = max(RELEASE_ABOVE_BYTES, _AFTER_RELEASE[0] + RELEASE_GROWTH_BYTES)
    anonymous_kib = _status_kib("RssAnon").get("RssAnon")
    return anonymous_kib is None or anonymous_kib * 1024 > threshold


_LAST_STEP: list[str] = [""]
# anonymous resident bytes right after this process's last release (0: none yet)
_AFTER_RELEASE: list[int] = [0]


def release_between_steps(step: str, log) -> bool:
    """Release memory once per step, at the first time a step reads or writes a table through the
    IO manager (`step`: the step's name), when the process holds much, and much more than after
    the last release (`holds_much_memory`): what the previous step left
    (its linkers, frames and DuckDB's cache) goes before this step loads its inputs, or before its
    first output is written when it loads none. Called by the IO manager, not by step hooks: every
    hook writes an event per step (HOOK_COMPLETED or HOOK_SKIPPED), two per step for a success and
    a failure hook, about 400 events in `make demo`, each a write to the SQLite event log (see
    defs/event_log.py). After a failed step too, the next step's IO releases (above the threshold).
    Returns whether it released."""
    if step == _LAST_STEP[0]:
        return False
    _LAST_STEP[0] = step
    if not holds_much_memory():
        return False
    release_memory()
    _AFTER_RELEASE[0] = _status_kib("RssAnon").get("RssAnon", 0) * 1024
    log.debug(f"memory before {step}'s tables: {memory_report()}")
    return True
