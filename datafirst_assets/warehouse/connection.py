"""One DuckDB database instance per warehouse file per process, shared by everything in it.

Opening a DuckDB file costs tens of milliseconds (and closing the last connection checkpoints
it), which dominated runs of many small steps. The first use opens the database and keeps it;
every caller gets its own cursor on it. DuckDB lets one process write, so the open instance
also holds the file's write lock until `close_warehouse` or process exit. The instance's run
queue (data/config/dagster.yaml) keeps runs from overlapping; as defence in depth against a
process outside the queue, opening a locked file waits for the lock (polling, up to
`DATAFIRST_WAREHOUSE_LOCK_TIMEOUT` seconds, default 600) instead of failing at once.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from datafirst_assets.warehouse.duckdb_settings import DuckDBSettings, duckdb_settings

_LOCK = threading.Lock()
_OPEN: dict[str, duckdb.DuckDBPyConnection] = {}
# warehouse -> when this process opened it, if it found the file as this pipeline's last close left it
_OPENED_SEALED: dict[str, float] = {}
LOCK_TIMEOUT_ENV = "DATAFIRST_WAREHOUSE_LOCK_TIMEOUT"


class WarehouseLocked(RuntimeError):
    pass


def _connect_waiting_for_lock(database: str, settings: DuckDBSettings) -> duckdb.DuckDBPyConnection:
    timeout = float(os.environ.get(LOCK_TIMEOUT_ENV, "600"))
    started = time.monotonic()
    delay = 0.05
    while True:
        try:
            return duckdb.connect(database=database, config={"custom_user_agent": "datafirst", **settings.config()})
        except duckdb.IOException as error:
            # Only the lock is worth waiting for; a missing directory or a full disk is not.
            if "lock" not in str(error).lower():
                raise
            waited = time.monotonic() - started
            if waited + delay > timeout:
                raise WarehouseLocked(
                    f"{database} is still locked by another process after {waited:.0f}s "
                    f"(raise {LOCK_TIMEOUT_ENV} to wait longer): {error}"
                ) from error
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def _key(database: str | Path) -> str:
    return str(Path(database).resolve())


def _open(database: str | Path) -> duckdb.DuckDBPyConnection:
    key = _key(database)
    with _LOCK:
        if key not in _OPEN:
            Path(key).parent.mkdir(parents=True, exist_ok=True)
            seal = _take_seal(key)
            # The spill folder and the other DuckDB settings: one place (duckdb_settings.py).
            _OPEN[key] = _connect_waiting_for_lock(key, duckdb_settings(Path(key).parent))
            # compared once the file is ours: a writer that held it while we waited for the lock changed it
            if seal is not None and seal == _file_state(key):
                _OPENED_SEALED[key] = time.time()
        return _OPEN[key]


# --------------------------------------------------------------------------- the seal
# Closing the warehouse writes a seal beside it: the size, modification time and inode of the database
# file and of its write-ahead log as the close left them. The next process to open it reads the seal
# and removes it first (a process that dies with the file open leaves none). When the file is as the
# seal says, nothing wrote it since this pipeline's last close, so every table holds what that
# pipeline's writes and checks last recorded: a `contract` check then takes the recorded fingerprint
# instead of hashing every row of every stored table on every run (`contracts.checks`). Anything that
# writes the file (another DuckDB client, a restore, a copy over it) changes what the seal compares.


def seal_path(key: str) -> Path:
    return Path(key + ".sealed")


def _file_state(key: str) -> list:
    state = []
    for path in (Path(key), Path(key + ".wal")):
        try:
            found = path.stat()
            state.append([found.st_size, found.st_mtime_ns, found.st_ino])
        except FileNotFoundError:
            state.append(None)
    return state


def _take_seal(key: str) -> list | None:
    """The file state the last close sealed (None: no seal), the seal removed before the file is
    opened for writing, so that no later opener trusts it."""
    seal = seal_path(key)
    try:
        recorded = json.loads(seal.read_text())
    except (FileNotFoundError, ValueError):
        return None
    seal.unlink(missing_ok=True)
    return recorded


def _seal(key: str) -> None:
    seal = seal_path(key)
    partial = seal.with_name(seal.name + ".partial")
    try:
        partial.write_text(json.dumps(_file_state(key)))
        partial.replace(seal)
    except OSError:  # read-only folder, full disk: no seal, the next run hashes the tables
        partial.unlink(missing_ok=True)


def opened_untouched_since(database: str | Path, started: float) -> bool:
    """Whether this process opened the warehouse, at or after `started` (a run's start, as a Unix
    time), finding it as this pipeline's last close sealed it: nothing outside this process has
    written it since, and nothing in it before that run."""
    with _LOCK:
        opened = _OPENED_SEALED.get(_key(database))
        return opened is not None and opened >= started and _key(database) in _OPEN


def run_opened_sealed(instance, run_id: str, database: str | Path) -> bool:
    """`opened_untouched_since` the start of run `run_id` (as the Dagster `instance` records it)."""
    record = instance.get_run_record_by_id(run_id)
    started = record.start_time if record is not None else None
    return started is not None and opened_untouched_since(database, started)


def open_warehouse(database: str | Path) -> duckdb.DuckDBPyConnection:
    """The process's open database instance for ``database`` (opened on first use). Take
    cursors from it; do not close it (``close_warehouse`` does)."""
    return _open(database)


def open_database_or_none(database: str | Path) -> duckdb.DuckDBPyConnection | None:
    with _LOCK:
        return _OPEN.get(_key(database))


@contextmanager
def warehouse_cursor(database: str | Path) -> Iterator[duckdb.DuckDBPyConnection]:
    cursor = _open(database).cursor()
    try:
        yield cursor
    finally:
        cursor.close()


_SCRATCH: list[duckdb.DuckDBPyConnection] = []


@contextmanager
def scratch_cursor() -> Iterator[duckdb.DuckDBPyConnection]:
    """A cursor on this process's one in-memory DuckDB database, for SQL over frames in memory
    (registered on the cursor, or found by their Python name). `duckdb.connect()` starts a new
    database instance each time (~20 ms, a `make demo` step's fixed cost several times over); a
    cursor on one kept open costs ~1 ms. What a caller registers is the cursor's and goes with it."""
    with _LOCK:
        if not _SCRATCH:
            _SCRATCH.append(duckdb.connect(":memory:"))
        database = _SCRATCH[0]
    cursor = database.cursor()
    try:
        yield cursor
    finally:
        cursor.close()


def open_databases() -> list[duckdb.DuckDBPyConnection]:
    """Every warehouse database instance open in this process."""
    with _LOCK:
        return list(_OPEN.values())


# What a trim leaves DuckDB beyond the memory that is not cached stored pages.
TRIM_HEADROOM_BYTES = 64 << 20


def trim_buffer_pools() -> None:
    """Drop what DuckDB keeps cached in memory (pages of stored tables already read) in every
    open warehouse: it keeps them until its memory limit, so a long run grows by the size of
    the warehouse. Lowering the limit evicts unpinned pages; the configured limit is then
    restored. Pages still in use stay (the lower limit is only a request).

    The limit is lowered to what DuckDB holds other than cached stored pages (`_uncached_bytes`),
    not below: in-memory tables (a step's scratch catalog, still in use when the step's first
    output is written, which is when the IO manager releases for a step that reads its tables by
    handle) would otherwise be written to the spill folder and read back. At 1,000,000 people
    that was `xjs_lookup`'s 1.7 GB of working tables: the trim took 1.75-2.16 s of a 1% extract,
    now 0.12 s for its 0.9 GB of cached pages (the step's own time fell by less, ~0.4 s)."""
    with _LOCK:
        open_now = list(_OPEN.items())
    for key, connection in open_now:
        cursor = connection.cursor()
        try:
            floor_mib = (_uncached_bytes(cursor) + TRIM_HEADROOM_BYTES) >> 20
            try:
                cursor.execute(f"SET memory_limit = '{floor_mib}MB'")
            except duckdb.Error:  # more is pinned than that: whatever could be evicted was
                pass
            cursor.execute(f"SET memory_limit = '{duckdb_settings(Path(key).parent).memory_limit}'")
        finally:
            cursor.close()


def _uncached_bytes(cursor) -> int:
    """Bytes DuckDB holds that are not its cache of stored tables' pages (`BASE_TABLE`)."""
    return int(cursor.execute("select coalesce(sum(memory_usage_bytes), 0) from duckdb_memory() "
                              "where tag <> 'BASE_TABLE'").fetchall()[0][0])


def close_warehouse(database: str | Path | None = None) -> None:
    """Close (and checkpoint) one warehouse, or all; releases the file's lock."""
    with _LOCK:
        keys = list(_OPEN) if database is None else [_key(database)]
        for key in keys:
            connection = _OPEN.pop(key, None)
            _OPENED_SEALED.pop(key, None)
            if connection is not None:
                connection.close()
                _seal(key)


atexit.register(close_warehouse)
