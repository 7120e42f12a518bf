"""A whole table's write records its fingerprint; steps fingerprinting their inputs take it from the
event log instead of hashing every row again (`unchanged.recorded_fingerprints`)."""

import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from datafirst_assets.defs.release import table_key
from datafirst_assets.warehouse import unchanged
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.content import TABLE_FINGERPRINT, table_fingerprint
from datafirst_assets.warehouse.io_manager import (
    StoredTable,
    WarehouseIOManager,
    apply_changed_rows,
    changes_to,
)
from datafirst_assets.warehouse.unchanged import inputs_fingerprint, recorded_fingerprints
from datafirst_assets_tests.derived_fixtures import random_release
from datafirst_assets_tests.test_derived import _stub_release

TABLES = [("linking", "xjs_lookup"), ("linking", "case_lookup"), ("civil", "cases"), ("civil", "parties")]


@pytest.fixture
def written(tmp_path):
    """Four release tables written through the IO manager (each has a contract), and their handles."""
    release = random_release(people=40, seed=1)
    instance = DagsterInstance.ephemeral()
    database = str(tmp_path / "wh.duckdb")
    assert materialize([_stub_release("deidentified", {k: release[k] for k in TABLES})], instance=instance,
                       resources={"io_manager": WarehouseIOManager(database=database)}).success
    handles = {table_key("deidentified", s, t): StoredTable(database, f"deidentified_{s}", t) for s, t in TABLES}
    return instance, database, handles


def test_the_recorded_fingerprints_are_the_hashed_ones_and_nothing_is_hashed(written, monkeypatch):
    instance, database, handles = written
    with warehouse_cursor(database) as conn:
        hashed = {(database, t.select_sql()): table_fingerprint(conn, t) for t in handles.values()}
    memo = recorded_fingerprints(instance, handles)
    assert memo == hashed
    named = {k.to_user_string(): t for k, t in handles.items()}
    expected = inputs_fingerprint(named, settings="s")

    def no_hashing(*_):
        raise AssertionError("a table was hashed although its write recorded its fingerprint")

    monkeypatch.setattr(unchanged, "table_fingerprint", no_hashing)
    assert inputs_fingerprint(named, settings="s", memo=dict(memo)) == expected


def test_a_fingerprint_is_taken_only_for_the_same_whole_table_in_the_same_database(written, tmp_path):
    instance, database, handles = written
    elsewhere = {k: StoredTable(str(tmp_path / "other.duckdb"), t.schema, t.table) for k, t in handles.items()}
    some_columns = {k: StoredTable(database, t.schema, t.table, columns=("case_id_hash",)) for k, t in handles.items()}
    swapped = dict(zip(handles, reversed(handles.values())))  # each key naming another table
    for tables in (elsewhere, some_columns, swapped):
        assert recorded_fingerprints(instance, tables) == {}
    never_written = {table_key("deidentified", "civil", "nothing"): StoredTable(database, "deidentified_civil", "x")}
    assert recorded_fingerprints(instance, never_written) == {}


def test_a_write_in_place_records_the_fingerprint_of_the_changed_table(tmp_path):
    """The in-place write's content sums, as recorded, are those of hashing the table it left."""
    from datafirst_assets.warehouse.content import fingerprint_of, table_columns

    frame = pl.DataFrame({"id": [1, 2, 3, 4], "v": ["a", "b", "c", "d"]})
    with warehouse_cursor(tmp_path / "w.duckdb") as conn:
        conn.register("_old", frame.to_arrow())
        conn.execute("create table t as select * from _old")
        new = frame.filter(pl.col("id") != 2).with_columns(v=pl.when(pl.col("id") == 3).then(pl.lit("z"))
                                                           .otherwise(pl.col("v")))
        new = pl.concat([new, pl.DataFrame({"id": [9], "v": ["n"]})])
        conn.register("_new", new.to_arrow())
        changes = changes_to(conn, "t", "select * from _new", ["id"], validated_before=None)
        conn.execute("begin")
        reason, _, sums = apply_changed_rows(conn, "t", "main", "t", changes, key=None)
        conn.execute("commit")
        assert reason is None
        stored = StoredTable(str(tmp_path / "w.duckdb"), "main", "t")
        assert fingerprint_of(table_columns(conn, "main", "t"), *sums) == table_fingerprint(conn, stored)


def test_the_metadata_names_the_table_and_database(written):
    instance, database, handles = written
    key = next(iter(handles))
    event = instance.get_latest_materialization_event(key)
    recorded = event.asset_materialization.metadata[TABLE_FINGERPRINT].value
    assert recorded["table"] == f"{handles[key].schema}.{handles[key].table}"
    assert recorded["database"].endswith("wh.duckdb")
