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


def test_pooled_event_log_reflects_the_asset_tables_columns_once(tmp_path, monkeypatch):
    """Every read of asset records asks whether the asset table has its status-cache and index columns;
    Dagster's storage reflected the table's columns each time: once found, a column is not looked up again."""
    from dagster import AssetKey, AssetMaterialization, DagsterInstance

    from datafirst_assets.defs.event_log import ConsolidatedSqliteEventLogStorage

    shutil.copy(CONFIG, tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        instance.report_runless_asset_event(AssetMaterialization("a"))
        looked_up = []
        real = ConsolidatedSqliteEventLogStorage.has_asset_key_col
        monkeypatch.setattr(ConsolidatedSqliteEventLogStorage, "has_asset_key_col",
                            lambda self, column: looked_up.append(column) or real(self, column))
        for _ in range(3):
            assert [r.asset_entry.asset_key for r in instance.get_asset_records([AssetKey("a")])] == [AssetKey("a")]
        assert instance.event_log_storage.has_asset_key_col("last_materialization_timestamp")
        assert not instance.event_log_storage.has_asset_key_col("no_such_column")
        assert len(looked_up) == len(set(looked_up)) + looked_up.count("no_such_column") - 1


def test_prefetched_asset_records_serve_each_keys_reads_until_that_asset_changes(tmp_path, monkeypatch):
    """A step of many checks reads its assets' records in one query (`prefetched_asset_records`): the
    reads of single keys inside are served from it, the same records; a materialization stored in
    between is seen (that key is read again); outside, every read goes to the database."""
    from dagster import AssetKey, AssetMaterialization, DagsterInstance

    from datafirst_assets.defs.event_log import prefetched_asset_records

    shutil.copy(CONFIG, tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        keys = [AssetKey(name) for name in "abc"]
        for key in keys:
            instance.report_runless_asset_event(AssetMaterialization(key))
        before = {key: instance.get_latest_materialization_event(key).timestamp for key in keys}
        queries = _record_reads(monkeypatch)
        with prefetched_asset_records(instance, keys + [AssetKey("never_stored")]):
            for key in keys:
                assert instance.get_latest_materialization_event(key).timestamp == before[key]
                (record,) = instance.get_asset_records([key])
                assert record.asset_entry.last_materialization_record.event_log_entry.timestamp == before[key]
            assert len(queries) == 1  # the prefetch: one query for every key
            instance.report_runless_asset_event(AssetMaterialization(keys[1]))
            assert instance.get_latest_materialization_event(keys[1]).timestamp > before[keys[1]]
            assert instance.get_latest_materialization_event(AssetKey("never_stored")) is None
            assert len(queries) == 3  # the changed key and the never-stored one were read again
        instance.get_asset_records([keys[0]])
        assert len(queries) == 4


def test_a_contract_check_step_reads_its_assets_records_once(tmp_path, monkeypatch):
    """Dagster records with each check result the materialization it checked, reading the asset's
    records again per result: in a contract check step of the committed instance that is one query for
    all its tables, and each result still names its table's latest materialization."""
    from dagster import AssetSelection, DagsterInstance, asset, materialize

    from datafirst_assets.contracts.checks import contract_checks
    from datafirst_assets.defs.resources import Warehouse
    from datafirst_assets.warehouse.io_manager import WarehouseIOManager

    import polars as pl

    def pairs_of(dataset: str):
        @asset(key=["linkage", dataset, "scored_pairs"], metadata={"schema": f"linkage_{dataset}"}, group_name="linkage")
        def pairs() -> pl.DataFrame:
            return pl.DataFrame({"record_id_l": ["a"], "record_id_r": ["b"], "match_weight": [3.0],
                                 "match_probability": [0.8]})
        return pairs

    tables = [pairs_of(dataset) for dataset in ("magistrates", "probation", "prison")]
    database = str(tmp_path / "wh.duckdb")
    resources = {"io_manager": WarehouseIOManager(database=database), "warehouse": Warehouse(database=database)}
    shutil.copy(CONFIG, tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert materialize(tables, resources=resources, instance=instance).success
        asked = _record_reads(monkeypatch)
        result = materialize([*tables, *contract_checks(tables)], resources=resources, instance=instance,
                             selection=AssetSelection.checks_for_assets(*tables))  # the checks alone
        evaluations = result.get_asset_check_evaluations()
        assert len(evaluations) == 3 and all(e.passed for e in evaluations)
        assert [len(keys) for keys in asked] == [3]
        for evaluation in evaluations:
            latest = instance.get_latest_materialization_event(evaluation.asset_key)
            assert evaluation.target_materialization_data.run_id == latest.run_id


def _record_reads(monkeypatch) -> list[list]:
    """The asset keys of each read of asset records from the event log (by Dagster or our code)."""
    from datafirst_assets.defs.event_log import ConsolidatedSqliteEventLogStorage

    reads: list[list] = []
    records, events = ConsolidatedSqliteEventLogStorage.get_asset_records, \
        ConsolidatedSqliteEventLogStorage.get_latest_materialization_events
    monkeypatch.setattr(ConsolidatedSqliteEventLogStorage, "get_asset_records",
                        lambda self, asset_keys=None: reads.append(list(asset_keys or [])) or records(self, asset_keys))
    monkeypatch.setattr(ConsolidatedSqliteEventLogStorage, "get_latest_materialization_events",
                        lambda self, asset_keys: reads.append(list(asset_keys)) or events(self, asset_keys))
    return reads
