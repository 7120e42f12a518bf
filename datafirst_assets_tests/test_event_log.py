"""How this process writes Dagster's SQLite event log (defs/event_log.py): one connection held
open so that each event's connection closes without checkpointing the log, and commits in WAL
mode without a disk sync each."""

import sqlite3
from types import SimpleNamespace

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from datafirst_assets.defs import event_log
from datafirst_assets.defs.event_log import keep_event_log_open, relax_event_log_syncs


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
