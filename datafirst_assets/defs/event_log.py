"""Keep the instance's SQLite event log open for the life of the process.

Dagster's SQLite storages open a new connection for every event they write and close it
afterwards. The database is in WAL mode, and closing the last connection to a WAL database
checkpoints it (copies the log into the database and syncs it to disk) and deletes the log: so
every event of a run paid a checkpoint. One idle connection held open (no transaction, so it
blocks no writer or reader) makes those closes cheap, once it has read once. SQLite still
checkpoints on its own every 1,000 pages. Measured on this machine under load (a copy of the
demo's event log, 200 events each): 12 ms per event with nothing held, 25 ms held but never read,
9 ms held after a read, and 1 ms held after a read with `synchronous=NORMAL` (below).

Each event is also its own transaction, and SQLite's default (`synchronous=FULL`) syncs the log
to disk at every commit: about 2 ms per event on this machine's disk when idle, far more when
other jobs write, for the ~5,000 events of `make demo` (planned materializations and checks,
outputs, inputs, materializations, check results). In WAL mode `synchronous=NORMAL` syncs only
at checkpoints and is what SQLite recommends for WAL: a committed event survives the process
dying, and the database stays consistent; only an operating-system crash or power cut can lose
the last events (run history, not the warehouse: DuckDB's own writes are unaffected).
`relax_event_log_syncs` sets it on every SQLite connection this process's Dagster storages open.

Dagster's consolidated SQLite event log also builds a new SQLAlchemy engine for every connection
it opens (`NullPool`): each event written or read paid the engine's creation, a new connection
with its PRAGMAs, and the compilation of its SQL again (an engine's compiled-SQL cache dies with
it). `PooledSqliteEventLogStorage` (named in data/config/dagster.yaml) keeps one engine with a
small pool per process, as dagster-postgres does, through the two connection hooks every
`SqlEventLogStorage` implements. Storing the demo's 3,849 events again cost 14.0 s of CPU with
an engine per connection and 5.7 s pooled (measured on this machine, both with the held
connection and `synchronous=NORMAL`); reads (the latest materialization behind every check
result, the input versions of every step) gain the same way.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from dagster import AssetKey, DagsterEventType, DagsterInstance
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool

from datafirst_assets.code_location_server import DEFAULT_INSTANCE_CLASSES

_HELD: dict[str, sqlite3.Connection] = {}
# Dagster's one-database SQLite event log. Dagster exports its storages by module path only (the
# path dagster.yaml named it by), the module of its default SQLite event log (test_launch imports it).
ConsolidatedSqliteEventLogStorage = importlib.import_module(
    DEFAULT_INSTANCE_CLASSES["event_log_storage"][0]).ConsolidatedSqliteEventLogStorage


def keep_event_log_open(instance: DagsterInstance) -> None:
    """Hold one connection to ``instance``'s SQLite event log database, if it has one."""
    storage = instance.event_log_storage
    get_db_path = getattr(storage, "get_db_path", None)  # SQLite storages only
    if get_db_path is None:
        return
    path = str(get_db_path())
    if path in _HELD or not Path(path).exists():
        return
    # check_same_thread=False: the hook may run on another thread than the one that opened it
    held = sqlite3.connect(path, check_same_thread=False)
    # One read, so it maps the WAL index and holds its shared lock: closing another connection
    # checkpoints only when no such lock is left, and a connection that never read holds none
    # (held unused, the closes cost as much as with nothing held).
    held.execute("select count(*) from sqlite_master").fetchall()
    _HELD[path] = held


def _sync_at_checkpoints(dbapi_connection, _connection_record) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    try:  # only a WAL database: with a rollback journal, NORMAL can corrupt on power loss
        if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
            cursor.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error:  # busy past the timeout: this connection keeps the default, the write goes on
        pass
    finally:
        cursor.close()


def relax_event_log_syncs() -> None:
    """Commit this process's writes to Dagster's SQLite storages (WAL) without a disk sync each:
    a listener on every SQLAlchemy engine's new connections (Dagster opens one per event)."""
    if not event.contains(Engine, "connect", _sync_at_checkpoints):
        event.listen(Engine, "connect", _sync_at_checkpoints)


# Seconds a connection waits for another process's write lock: Dagster's own SQLite storages' value.
BUSY_TIMEOUT_SECONDS = 30


class PooledSqliteEventLogStorage(ConsolidatedSqliteEventLogStorage):
    """Dagster's consolidated SQLite event log (one database for every run, under `base_dir`) with
    one engine and connection pool per process instead of one engine per connection.

    Pooled connections are idle between events (each event is still its own transaction, committed
    before the connection returns to the pool), so they block no other process's reads or writes.
    A process that forks builds its own engine: SQLite connections must not cross a fork."""

    def __init__(self, base_dir, inst_data=None):
        self._pooled_engine: Engine | None = None  # set first: Dagster's __init__ may connect already
        self._pooled_pid: int | None = None
        self._tables_found: set[str] = set()
        self._asset_key_columns_found: set[str] = set()
        # asset key -> its AssetRecord, read in one query for a step that asks for many keys one at a
        # time (`prefetched_asset_records`); None outside such a step
        self._prefetched: dict[AssetKey, object] | None = None
        super().__init__(base_dir, inst_data=inst_data)

    def _engine(self) -> Engine:
        if self._pooled_engine is None or self._pooled_pid != os.getpid():
            self._pooled_engine = create_engine(
                f"sqlite:///{self.get_db_path()}", poolclass=QueuePool,
                # one connection kept; more at once (another thread, a nested use) open and close as before
                pool_size=1, max_overflow=-1,
                connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False})
            # on this engine itself: a run's process writes its first event before it imports the
            # code location (which installs `relax_event_log_syncs`), and that connection is kept
            event.listen(self._pooled_engine, "connect", _sync_at_checkpoints)
            self._pooled_pid = os.getpid()
        return self._pooled_engine

    @contextlib.contextmanager
    def _pooled_transaction(self):
        with self._engine().connect() as connection, connection.begin():
            yield connection

    def run_connection(self, run_id=None):
        return self._pooled_transaction()

    def index_connection(self):
        return self._pooled_transaction()

    def has_table(self, table_name: str) -> bool:
        """Asked before every check event and asset event's tags are written (Dagster's opened an
        engine each time): a table found stays (storage migrations add tables, never drop them)."""
        if table_name not in self._tables_found:
            with self._engine().connect() as connection:
                if connection.dialect.has_table(connection, table_name):
                    self._tables_found.add(table_name)
        return table_name in self._tables_found

    def has_asset_key_col(self, column_name: str) -> bool:
        """Asked before every read of asset records (whether the status cache and the index columns
        exist); Dagster's reflected the asset table's columns each time, a quarter of the cost of each
        read. A column found stays found (storage migrations add columns, never drop them)."""
        if column_name not in self._asset_key_columns_found and super().has_asset_key_col(column_name):
            self._asset_key_columns_found.add(column_name)
        return column_name in self._asset_key_columns_found

    # ------------------------------------------------ asset records read once for a step's many keys

    def prefetch_asset_records(self, asset_keys: Sequence[AssetKey]) -> None:
        """Read the records of `asset_keys` in one query and serve later reads of any of them from it
        until `end_prefetch`, or until an event of that asset is stored by this process."""
        records = super().get_asset_records(list(asset_keys))
        self._prefetched = {record.asset_entry.asset_key: record for record in records}

    def end_prefetch(self) -> None:
        self._prefetched = None

    def _from_prefetch(self, asset_keys: Iterable[AssetKey] | None) -> list | None:
        if self._prefetched is None or asset_keys is None:
            return None
        keys = list(asset_keys)
        if not keys or any(key not in self._prefetched for key in keys):
            return None  # a key never stored (no record) or changed since: read as Dagster does
        return [self._prefetched[key] for key in keys]

    def get_asset_records(self, asset_keys: Sequence[AssetKey] | None = None):
        records = self._from_prefetch(asset_keys)
        return records if records is not None else super().get_asset_records(asset_keys)

    def get_latest_materialization_events(self, asset_keys: Iterable[AssetKey]):
        asset_keys = list(asset_keys)
        records = self._from_prefetch(asset_keys)
        if records is None:
            return super().get_latest_materialization_events(asset_keys)
        return {record.asset_entry.asset_key: (record.asset_entry.last_materialization_record.event_log_entry
                                               if record.asset_entry.last_materialization_record else None)
                for record in records}

    def store_event(self, event):
        super().store_event(event)
        self._forget_changed(event)

    def _forget_changed(self, event) -> None:
        """An event of an asset (a materialization, a planned or failed one, an observation) changes
        its record: it is read again. A check's result does not (it is stored with the check's runs)."""
        dagster_event = event.dagster_event
        if self._prefetched is None or dagster_event is None or dagster_event.asset_key is None:
            return
        if dagster_event.event_type not in (DagsterEventType.ASSET_CHECK_EVALUATION,
                                            DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED):
            self._prefetched.pop(dagster_event.asset_key, None)

    def dispose(self):
        if self._pooled_engine is not None and self._pooled_pid == os.getpid():
            self._pooled_engine.dispose()
        self._pooled_engine = None
        super().dispose()


@contextlib.contextmanager
def prefetched_asset_records(instance: DagsterInstance, asset_keys: Sequence[AssetKey]) -> Iterator[None]:
    """Inside: the asset records of `asset_keys` read in one query (when the instance's event log is
    `PooledSqliteEventLogStorage`; otherwise nothing changes). For a step of many checks: Dagster
    reads the latest materialization of each check's asset again for every check result it records
    (the result names the materialization it checked), one query per key, as the check's own look-ups
    of write evidence do: two queries per table for the contract checks (~250 tables), each also
    deserializing the table's latest materialization. Dagster's own steps read their input assets'
    records once, at the step's start, as here, and keep them for the step."""
    storage = instance.event_log_storage
    prefetch = getattr(storage, "prefetch_asset_records", None)
    if prefetch is None or not asset_keys:
        yield
        return
    prefetch(asset_keys)
    try:
        yield
    finally:
        storage.end_prefetch()
