"""Steps fingerprinting the release take each table's fingerprint from this run's contract check when
its write recorded none for this database (`unchanged.known_fingerprints`), instead of hashing every
row again (e.g. a warehouse restored elsewhere: every kept table's recorded fingerprint names the old
file, so the journeys, the summaries and the report each hashed every kept table once more)."""

from types import SimpleNamespace

import pytest
from dagster import DagsterInstance

from datafirst_assets.defs import derived
from datafirst_assets.warehouse import unchanged
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.content import remember_checked_fingerprint, table_fingerprint
from datafirst_assets.warehouse.io_manager import StoredTable


def _release(database: str) -> list[StoredTable]:
    """Every table the journeys read, whole (a few rows each: the fingerprint reads any columns)."""
    tables = [StoredTable(database, f"deidentified_{s}", t) for s, t in derived.COLUMNS_READ]
    with warehouse_cursor(database) as conn:
        for i, table in enumerate(tables):
            conn.execute(f'create schema if not exists "{table.schema}"')
            conn.execute(f'create table "{table.schema}"."{table.table}" as select range + {i} as v from range(5)')
    return tables


def _context(run_id: str):
    return SimpleNamespace(instance=DagsterInstance.ephemeral(), run=SimpleNamespace(run_id=run_id))


@pytest.fixture
def checked(tmp_path):
    """The release tables, each read by run `r1`'s contract check (as `contracts.checks._content` records it)."""
    database = str(tmp_path / "wh.duckdb")
    tables = _release(database)
    with warehouse_cursor(database) as conn:
        for table in tables:
            remember_checked_fingerprint(database, table.schema, table.table, "r1", table_fingerprint(conn, table))
    return database, tables


def test_the_journeys_take_the_fingerprints_their_run_checked_and_hash_nothing(checked, monkeypatch):
    database = checked[0]
    warehouse = SimpleNamespace(database=database)
    expected = derived._release_fingerprint(_context("another-run"), warehouse, "deidentified", "")  # every table hashed

    def no_hashing(*_):
        raise AssertionError("a table was hashed although this run's contract check had just read it")

    monkeypatch.setattr(unchanged, "table_fingerprint", no_hashing)
    assert derived._release_fingerprint(_context("r1"), warehouse, "deidentified", "") == expected


def test_only_this_runs_checks_and_whole_tables_count(checked):
    database, tables = checked
    keys = {unchanged.AssetKey(["t", str(i)]): t for i, t in enumerate(tables)}
    assert unchanged.known_fingerprints(_context("another-run"), keys) == {}  # no write recorded one either
    with warehouse_cursor(database) as conn:
        hashed = {(database, t.select_sql()): table_fingerprint(conn, t) for t in tables}
    assert unchanged.known_fingerprints(_context("r1"), keys) == hashed
    some_columns = {k: StoredTable(database, t.schema, t.table, columns=("v",)) for k, t in keys.items()}
    assert unchanged.known_fingerprints(_context("r1"), some_columns) == {}
