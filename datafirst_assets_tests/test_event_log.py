"""How this process writes Dagster's SQLite event log (defs/event_log.py): one connection held
open so that each event's connection closes without checkpointing the log, and commits in WAL
mode without a disk sync each."""

import shutil
import sqlite3
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from datafirst_assets.defs import event_log
from datafirst_assets.defs.event_log import keep_event_log_open, relax_event_log_syncs


CONFIG = Path(__file__).resolve().parents[1] / "data" / "config" / "dagster.yaml"


def _wal_database(path):
    setup = sqlite3.connect(path)
    setup.execute("pragma journal_mode=wal")
    setup.execute("create table events (body text)")
    setup.close()


def test_closing_an_events_connection_leaves_the_log_to_the_held_one(tmp_path):
    database = tmp_path / "event_log.db"
    _wal_database(database)
    instance = SimpleNamespace(event_log_storage=SimpleNamespace(get_db_path=lambda: str(database)))
    keep_event_log_open(instance)
    try:
        for body in ("a", "b"):  # as Dagster writes an event: connect, insert, commit, close
            connection = sqlite3.connect(database)
            connection.execute("insert into events values (?)", (body,))
            connection.commit()
            connection.close()
        # the last connection to close checkpoints the log into the database and deletes it
        assert (tmp_path / "event_log.db-wal").exists()
    finally:
        event_log._HELD.pop(str(database)).close()


def test_new_storage_connections_sync_only_at_checkpoints_in_wal_mode(tmp_path):
    relax_event_log_syncs()
    relax_event_log_syncs()  # installing twice adds no second listener
    _wal_database(tmp_path / "wal.db")
    sqlite3.connect(tmp_path / "journal.db").execute("create table t (x)").connection.close()

    def synchronous(name: str) -> int:
        engine = create_engine(f"sqlite:///{tmp_path / name}", poolclass=NullPool)  # as Dagster's storages
        with engine.connect() as connection:
            return connection.execute(text("pragma synchronous")).scalar()

    assert synchronous("wal.db") == 1  # NORMAL
    assert synchronous("journal.db") == 2  # FULL: a rollback journal keeps SQLite's default


def test_committed_instance_writes_events_through_one_pooled_connection_per_process(tmp_path, monkeypatch):
    """The committed dagster.yaml's event log keeps one engine and connection for this process's
    events (Dagster's own built an engine and a connection per event), and each event is committed:
    another process's instance (a second storage here) reads it at once."""
    import shutil
    from pathlib import Path

    from dagster import AssetKey, AssetMaterialization, DagsterInstance

    from datafirst_assets.defs.event_log import ConsolidatedSqliteEventLogStorage, PooledSqliteEventLogStorage

    shutil.copy(Path(__file__).resolve().parents[1] / "data" / "config" / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)
        assert isinstance(storage, ConsolidatedSqliteEventLogStorage)  # the class dagster.yaml named before
        opened = []

        def count(*_args):
            opened.append(1)

        instance.report_runless_asset_event(AssetMaterialization("first"))
        assert storage.supports_asset_checks  # asked before each check event is written
        engine = storage._engine()
        event.listen(Engine, "connect", count)  # a new database connection of any engine
        try:
            for name in ("a", "b", "c"):
                instance.report_runless_asset_event(AssetMaterialization(name))
            assert storage.supports_asset_checks
        finally:
            event.remove(Engine, "connect", count)
        assert opened == []  # the pooled connection, not a new one per event, read or table lookup
        assert storage._engine() is engine
        other = PooledSqliteEventLogStorage(str(tmp_path))  # another process's engine sees each event committed
        try:
            assert [r.asset_entry.asset_key for r in other.get_asset_records([AssetKey("c")])] == [AssetKey("c")]
        finally:
            other.dispose()


def test_pooled_event_log_builds_a_new_engine_after_a_fork(tmp_path, monkeypatch):
    """SQLite connections must not cross a fork: a child process gets an engine of its own."""
    from datafirst_assets.defs.event_log import PooledSqliteEventLogStorage

    storage = PooledSqliteEventLogStorage(str(tmp_path))
    try:
        parent = storage._engine()
        monkeypatch.setattr("os.getpid", lambda: -1)  # as in a forked child
        assert storage._engine() is not parent
    finally:
        monkeypatch.undo()
        storage.dispose()


def test_pooled_event_log_connections_sync_only_at_checkpoints_without_the_process_wide_hook(tmp_path, monkeypatch):
    """A run's process writes its first event before importing the code location (which installs
    `relax_event_log_syncs`); the pooled connection it opens then is kept for every later event,
    so the storage sets `synchronous=NORMAL` on its own connections."""
    from dagster import AssetMaterialization, DagsterInstance

    from datafirst_assets.defs.event_log import PooledSqliteEventLogStorage

    if event.contains(Engine, "connect", event_log._sync_at_checkpoints):
        event.remove(Engine, "connect", event_log._sync_at_checkpoints)
    shutil.copy(CONFIG, tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    try:
        with DagsterInstance.from_config(str(tmp_path)) as instance:
            instance.report_runless_asset_event(AssetMaterialization("a"))
            storage = instance.event_log_storage
            assert isinstance(storage, PooledSqliteEventLogStorage)
            with storage.index_connection() as connection:
                assert connection.execute(text("pragma synchronous")).scalar() == 1  # NORMAL, not FULL (2)
    finally:
        relax_event_log_syncs()
