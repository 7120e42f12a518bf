"""One DuckDB database instance per warehouse file per process, shared by everything in it.

Opening a DuckDB file costs tens of milliseconds (and closing the last connection checkpoints
it), which dominated runs of many small steps. The first use opens the database and keeps it;
every caller gets its own cursor on it. DuckDB lets one process write, so the open instance
also holds the file's write lock until `close_warehouse` or process exit: another process
(a second run) waits for it through `backoff` rather than failing.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster._utils.backoff import backoff

_LOCK = threading.Lock()
_OPEN: dict[str, duckdb.DuckDBPyConnection] = {}


def _key(database: str | Path) -> str:
    return str(Path(database).resolve())


def _open(database: str | Path) -> duckdb.DuckDBPyConnection:
    key = _key(database)
    with _LOCK:
        if key not in _OPEN:
            Path(key).parent.mkdir(parents=True, exist_ok=True)
            _OPEN[key] = backoff(
                fn=duckdb.connect,
                retry_on=(duckdb.IOException,),
                kwargs={"database": key, "config": {"custom_user_agent": "datafirst"}},
                max_retries=12,
            )
        return _OPEN[key]


@contextmanager
def warehouse_cursor(database: str | Path) -> Iterator[duckdb.DuckDBPyConnection]:
    cursor = _open(database).cursor()
    try:
        yield cursor
    finally:
        cursor.close()


def close_warehouse(database: str | Path | None = None) -> None:
    """Close (and checkpoint) one warehouse, or all; releases the file's lock."""
    with _LOCK:
        keys = list(_OPEN) if database is None else [_key(database)]
        for key in keys:
            connection = _OPEN.pop(key, None)
            if connection is not None:
                connection.close()


atexit.register(close_warehouse)
