"""The warehouse IO manager: transactional partition writes, empty frames, schema changes."""

import polars as pl
import pytest
from dagster import (
    AssetExecutionContext,
    DagsterInstance,
    DynamicPartitionsDefinition,
    asset,
    materialize,
)

from datafirst_assets.warehouse.connection import close_warehouse, warehouse_cursor
from datafirst_assets.warehouse.io_manager import WarehouseIOManager

parts = DynamicPartitionsDefinition(name="d")
STATE = {"frame": None}


@asset(partitions_def=parts, metadata={"schema": "t", "partition_expr": "d"})
def table(context: AssetExecutionContext) -> pl.DataFrame:
    frame = STATE["frame"]
    if callable(frame):
        return frame(context)
    return frame.with_columns(pl.lit(context.partition_key).alias("d"))


@asset(metadata={"schema": "t"})
def summary(table: pl.DataFrame) -> pl.DataFrame:
    return table.group_by("d").len().sort("d")


def _run(tmp_path, partition, frame, instance, selection=None):
    STATE["frame"] = frame
    return materialize(
        [table, summary], partition_key=partition, instance=instance, selection=selection or [table],
        resources={"io_manager": WarehouseIOManager(database=str(tmp_path / "w.duckdb"))},
        raise_on_error=False,
    )


def _rows(tmp_path):
    with warehouse_cursor(tmp_path / "w.duckdb") as conn:
        return conn.execute("select d, count(*) from t.table group by d order by d").fetchall()


@pytest.fixture
def instance():
    inst = DagsterInstance.ephemeral()
    inst.add_dynamic_partitions("d", ["a", "b"])
    return inst


def test_rematerialising_a_partition_replaces_it(tmp_path, instance):
    assert _run(tmp_path, "a", pl.DataFrame({"x": [1, 2, 3]}), instance).success
    assert _run(tmp_path, "b", pl.DataFrame({"x": [1]}), instance).success
    assert _run(tmp_path, "a", pl.DataFrame({"x": [1, 2]}), instance).success
    assert _rows(tmp_path) == [("a", 2), ("b", 1)]


def test_failed_write_leaves_partition_unchanged(tmp_path, instance):
    assert _run(tmp_path, "a", pl.DataFrame({"x": [1, 2, 3]}), instance).success
    # x cannot be stored in the existing BIGINT column: the insert fails after the delete.
    result = _run(tmp_path, "a", pl.DataFrame({"x": ["not a number"]}), instance)
    assert not result.success
    assert _rows(tmp_path) == [("a", 3)]


def test_empty_frame_is_written_not_skipped(tmp_path, instance):
    assert _run(tmp_path, "a", pl.DataFrame({"x": [1, 2]}), instance).success
    assert _run(tmp_path, "a", pl.DataFrame({"x": []}, schema={"x": pl.Int64}), instance).success
    assert _rows(tmp_path) == []
    with warehouse_cursor(tmp_path / "w.duckdb") as conn:
        assert conn.execute("select count(*) from t.table").fetchone() == (0,)


def test_new_column_is_added_for_partitioned_tables(tmp_path, instance):
    assert _run(tmp_path, "a", pl.DataFrame({"x": [1]}), instance).success
    assert _run(tmp_path, "b", pl.DataFrame({"x": [2], "y": ["new"]}), instance).success
    with warehouse_cursor(tmp_path / "w.duckdb") as conn:
        assert conn.execute("select d, x, y from t.table order by d").fetchall() == [("a", 1, None), ("b", 2, "new")]


def test_a_column_added_in_the_middle_keeps_the_written_order(tmp_path, instance):
    # a later version writes a new column between two old ones: the stored table follows the new order
    # (a contract with ordered columns still holds), other partitions' rows kept
    assert _run(tmp_path, "a", pl.DataFrame({"x": [1], "z": ["old"]}), instance).success
    assert _run(tmp_path, "b", pl.DataFrame({"x": [2], "y": ["new"], "z": ["z"]}), instance).success
    with warehouse_cursor(tmp_path / "w.duckdb") as conn:
        assert [c[0] for c in conn.execute("describe t.table").fetchall()] == ["x", "y", "z", "d"]
        assert conn.execute("select d, x, y, z from t.table order by d").fetchall() == [
            ("a", 1, None, "old"), ("b", 2, "new", "z")]


def test_reads_work_on_duckdb_2(tmp_path, instance):
    _run(tmp_path, "a", pl.DataFrame({"x": [1, 2]}), instance)
    _run(tmp_path, "b", pl.DataFrame({"x": [3]}), instance)
    STATE["frame"] = pl.DataFrame({"x": [1]})
    result = materialize(
        [table.to_source_asset(), summary], instance=instance,
        resources={"io_manager": WarehouseIOManager(database=str(tmp_path / "w.duckdb"))},
    )
    out = result.output_for_node("summary")
    assert out.rows() == [("a", 2), ("b", 1)]


# ------------------------------------------------------- out-of-core outputs and inputs

from datafirst_assets.warehouse.io_manager import StoredTable, WarehouseQuery  # noqa: E402

WHOLE = {"out": None}


@asset(metadata={"schema": "wide"})
def whole():
    return WHOLE["out"]


@asset(metadata={"schema": "wide"})
def doubled(whole: StoredTable) -> WarehouseQuery:
    # Computed by DuckDB from the stored table: no rows pass through Python.
    return WarehouseQuery(f"select x * 2 as x from {whole.name}")


@asset(metadata={"schema": "wide"})
def lazily(whole: pl.LazyFrame) -> pl.LazyFrame:
    return whole.with_columns((pl.col("x") + 1).alias("x"))


def _whole(tmp_path, out, selection):
    WHOLE["out"] = out
    return materialize([whole, doubled, lazily], selection=selection, raise_on_error=False,
                       resources={"io_manager": WarehouseIOManager(database=str(tmp_path / "w.duckdb"))})


def _values(tmp_path, table):
    with warehouse_cursor(tmp_path / "w.duckdb") as conn:
        return [r[0] for r in conn.execute(f"select x from wide.{table} order by x").fetchall()]


def test_query_and_lazy_frames_are_stored_without_a_python_frame(tmp_path):
    assert _whole(tmp_path, pl.DataFrame({"x": [1, 2, 3]}), None).success
    assert _values(tmp_path, "doubled") == [2, 4, 6]
    assert _values(tmp_path, "lazily") == [2, 3, 4]


def test_a_query_may_read_the_table_it_replaces(tmp_path):
    assert _whole(tmp_path, pl.DataFrame({"x": [1, 2]}), None).success
    WHOLE["out"] = WarehouseQuery("select x + 10 as x from wide.whole")
    assert materialize([whole], resources={"io_manager": WarehouseIOManager(database=str(tmp_path / "w.duckdb"))}
                       ).success
    assert _values(tmp_path, "whole") == [11, 12]


def test_a_failing_write_leaves_the_previous_table_intact(tmp_path):
    assert _whole(tmp_path, pl.DataFrame({"x": [1, 2, 3]}), None).success
    # The query fails half-way through the replace (a cast error on the third row).
    WHOLE["out"] = WarehouseQuery("select cast(case when x < 3 then '1' else 'x' end as integer) as x from wide.whole")
    result = materialize([whole], raise_on_error=False,
                         resources={"io_manager": WarehouseIOManager(database=str(tmp_path / "w.duckdb"))})
    assert not result.success
    assert _values(tmp_path, "whole") == [1, 2, 3]
    with warehouse_cursor(tmp_path / "w.duckdb") as conn:
        tables = {t for (t,) in conn.execute("select table_name from duckdb_tables() where schema_name = 'wide'").fetchall()}
    assert tables == {"whole", "doubled", "lazily"}  # no staging table left behind


def _changes(expected: str) -> "ChangedRows":
    from datafirst_assets.warehouse.io_manager import ChangedRows

    return ChangedRows(key=("k",), deletes=pl.DataFrame({"k": [2]}), updates=pl.DataFrame({"k": [3], "x": [33]}),
                       inserts=pl.DataFrame({"k": [4], "x": [40]}), expected=expected,
                       rewrite=f"select * from ({expected}) order by k", validated_before=None)


def _stored_rows(tmp_path) -> list[tuple]:
    with warehouse_cursor(tmp_path / "w.duckdb") as conn:
        conn.execute("set preserve_insertion_order = true")  # the stored order (small tables: one thread)
        try:
            return conn.execute("select k, x from wide.whole").fetchall()
        finally:
            conn.execute("set preserve_insertion_order = false")


def test_changed_rows_are_written_in_place_and_the_rest_of_the_table_is_not(tmp_path):
    assert _whole(tmp_path, pl.DataFrame({"k": [1, 2, 3], "x": [10, 20, 30]}), ["whole"]).success
    expected = "select * from (values (1, 10), (3, 33), (4, 40)) t(k, x)"
    result = _whole(tmp_path, _changes(f"select k::bigint as k, x::bigint as x from ({expected})"), ["whole"])
    assert result.success
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["write"].value == "in place: 1 row(s) deleted, 1 updated, 1 inserted"
    assert _stored_rows(tmp_path) == [(1, 10), (3, 33), (4, 40)]  # updated where it was, appended after


def test_changed_rows_that_do_not_give_the_expected_table_rewrite_it_whole(tmp_path):
    assert _whole(tmp_path, pl.DataFrame({"k": [1, 2, 3], "x": [10, 20, 30]}), ["whole"]).success
    # the expected table also holds a row the changes do not make: the changes are not trusted
    expected = "select k::bigint as k, x::bigint as x from (values (1, 10), (3, 33), (4, 40), (5, 50)) t(k, x)"
    result = _whole(tmp_path, _changes(expected), ["whole"])
    assert result.success
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["write"].value == "rewritten whole"
    assert sorted(_stored_rows(tmp_path)) == [(1, 10), (3, 33), (4, 40), (5, 50)]


def test_stored_table_handle_reads_only_the_requested_partitions(tmp_path, instance):
    _run(tmp_path, "a", pl.DataFrame({"x": [1, 2]}), instance)
    _run(tmp_path, "b", pl.DataFrame({"x": [3]}), instance)
    handle = StoredTable(str(tmp_path / "w.duckdb"), "t", "table", "d", ("b",))
    assert handle.count() == 1
    assert handle.to_polars(["x"]).get_column("x").to_list() == [3]


# ------------------------------------------------------------------ DuckDB's resources

from datafirst_assets.warehouse.duckdb_settings import (  # noqa: E402
    CHECKPOINT_THRESHOLD_ENV,
    THREADS_ENV,
    duckdb_settings,
)


def test_duckdb_settings_come_from_the_environment_with_defaults(tmp_path):
    chosen = duckdb_settings(tmp_path, env={"DATAFIRST_DUCKDB_MEMORY_LIMIT": "3GB", THREADS_ENV: "1",
                                            "DATAFIRST_DUCKDB_TEMP_DIR": str(tmp_path / "spill")})
    assert (chosen.memory_limit, chosen.threads, chosen.temp_directory) == ("3GB", 1, str(tmp_path / "spill"))
    assert duckdb_settings(tmp_path, env={CHECKPOINT_THRESHOLD_ENV: "64MB"}).checkpoint_threshold == "64MB"
    default = duckdb_settings(tmp_path, env={})
    assert default.memory_limit.endswith("GB") and default.threads is None
    assert default.checkpoint_threshold == "1GB"
    assert default.temp_directory == str((tmp_path / "tmp" / "duckdb").resolve())
    with pytest.raises(ValueError, match=THREADS_ENV):
        duckdb_settings(tmp_path, env={THREADS_ENV: "two"})


def test_the_warehouse_opens_with_the_configured_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAFIRST_DUCKDB_MEMORY_LIMIT", "1GB")
    with warehouse_cursor(tmp_path / "limited.duckdb") as conn:
        limit = conn.execute("select current_setting('memory_limit')").fetchone()[0]
        spill = conn.execute("select current_setting('temp_directory')").fetchone()[0]
        checkpoint_at = conn.execute("select current_setting('checkpoint_threshold')").fetchone()[0]
    assert limit == "953.6 MiB"  # 1GB in DuckDB's units
    assert checkpoint_at == "953.6 MiB"  # not DuckDB's 16MB: a commit does not checkpoint the file
    assert spill == str((tmp_path / "tmp" / "duckdb").resolve())


def test_a_committed_write_survives_a_process_that_dies_before_its_checkpoint(tmp_path):
    """With the raised checkpoint threshold a commit leaves the table in the write-ahead log only;
    a process killed then (no close, so no checkpoint) must not lose it: the next open replays the log."""
    import subprocess
    import sys

    database = tmp_path / "killed.duckdb"
    script = (
        "import os\n"
        "from datafirst_assets.warehouse.connection import warehouse_cursor\n"
        f"with warehouse_cursor({str(database)!r}) as conn:\n"
        "    conn.begin()\n"
        "    conn.execute('create table kept as select range as x from range(100000)')\n"
        "    conn.commit()\n"
        "wal = " + repr(str(database) + ".wal") + "\n"
        "print(os.path.getsize(wal) if os.path.exists(wal) else 0, flush=True)\n"
        "os._exit(0)  # no close, no checkpoint\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert int(done.stdout) > 0, "the commit was checkpointed: this test no longer tests the log's replay"
    with warehouse_cursor(database) as conn:
        assert conn.execute("select count(*), sum(x) from kept").fetchone() == (100000, 4999950000)
    close_warehouse()


def test_trimming_the_buffer_pool_keeps_the_configured_limit_and_the_data(tmp_path, monkeypatch):
    from datafirst_assets.warehouse.connection import trim_buffer_pools

    monkeypatch.setenv("DATAFIRST_DUCKDB_MEMORY_LIMIT", "1GB")
    database = tmp_path / "trim.duckdb"
    with warehouse_cursor(database) as conn:
        conn.execute("create table t as select range as x from range(100000)")
        conn.execute("select sum(x) from t").fetchone()
    trim_buffer_pools()
    with warehouse_cursor(database) as conn:
        assert conn.execute("select current_setting('memory_limit')").fetchone()[0] == "953.6 MiB"
        assert conn.execute("select count(*) from t").fetchone()[0] == 100000


def test_trimming_drops_cached_pages_but_does_not_spill_tables_held_in_memory(tmp_path, monkeypatch):
    """A step's in-memory working tables (a scratch catalog) are in use when the IO manager trims
    at the step's first output: a trim evicts the warehouse's cached pages and leaves them in
    memory, not written to the spill folder (lowering the limit to 64 MB spilled them: 2.2 s of
    a 1,000,000-people extract, and read back after)."""
    from datafirst_assets.warehouse.connection import trim_buffer_pools

    monkeypatch.setenv("DATAFIRST_DUCKDB_MEMORY_LIMIT", "2GB")
    database = tmp_path / "trim.duckdb"

    def held(conn) -> dict[str, tuple[int, int]]:
        return {tag: (used, spilled) for tag, used, spilled in conn.execute(
            "select tag, memory_usage_bytes, temporary_storage_bytes from duckdb_memory()").fetchall()}

    with warehouse_cursor(database) as conn:
        # hashed values: stored pages that do not compress to nothing
        conn.execute("create table stored as select range as x, hash(range) as y from range(20000000)")
    close_warehouse()
    with warehouse_cursor(database) as conn:
        conn.execute("attach ':memory:' as scratch")
        conn.execute("create table scratch.working as select range as x, hash(range * 3) as y from range(20000000)")
        assert conn.execute("select sum(x), sum(y) from stored").fetchone()[0] == 199999990000000
        before = held(conn)
        assert before["BASE_TABLE"][0] > 128 << 20 and before["IN_MEMORY_TABLE"][0] > 250 << 20
        trim_buffer_pools()
        after = held(conn)
        assert after["BASE_TABLE"][0] <= 64 << 20  # the cache is given back (all but the headroom)
        assert after["IN_MEMORY_TABLE"] == (before["IN_MEMORY_TABLE"][0], 0)  # nothing spilled
        assert conn.execute("select current_setting('memory_limit')").fetchone()[0] == "1.8 GiB"
        assert conn.execute("select count(*), sum(x) from scratch.working").fetchone() == (20000000, 199999990000000)
        conn.execute("detach scratch")
    close_warehouse()


def test_table_columns_names_the_types_as_duckdb_columns_does(tmp_path):
    """`table_columns` reads a relation, not `duckdb_columns()`: the same names and type names (they go
    into fingerprints and the output's column schema), {} for a missing table or schema."""
    from datafirst_assets.warehouse.content import table_columns

    with warehouse_cursor(tmp_path / "wh.duckdb") as conn:
        conn.execute('create schema "s q"')
        conn.execute('create table "s q"."t ""x""" (a decimal(12, 3), b varchar[], c struct(x int, y date), '
                     'd timestamp with time zone, e hugeint, "F g" double)')
        conn.execute('create view "s q".v as select a, e from "s q"."t ""x"""')
        for table in ('t "x"', "v"):
            expected = dict(conn.execute(
                "select column_name, data_type from duckdb_columns() where database_name = current_database() "
                "and schema_name = ? and table_name = ? order by column_index", ["s q", table]).fetchall())
            assert table_columns(conn, "s q", table) == expected and expected
        assert table_columns(conn, "s q", "missing") == {} and table_columns(conn, "missing", "t") == {}
        missing = pl.DataFrame({"x": [1]})  # noqa: F841 (DuckDB's replacement scan must not find it)
        assert table_columns(conn, "s q", "missing") == {} and table_columns(conn, "s q", "table") == {}
