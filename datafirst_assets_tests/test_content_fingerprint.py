"""What a stored table's fingerprint sees (warehouse/content.py): every value, values moved between
columns, the selected columns and partitions only; and the table itself whatever catalog the
connection it is computed on uses by default."""

import polars as pl

from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.content import partition_contents, table_fingerprint
from datafirst_assets.warehouse.io_manager import StoredTable
from datafirst_assets_tests.warehouse_tables import write_table


def _fingerprint(table: StoredTable) -> str:
    with warehouse_cursor(table.database) as conn:
        return table_fingerprint(conn, table)


def test_values_swapped_between_two_columns_of_one_type_change_the_fingerprint(tmp_path):
    database = str(tmp_path / "w.duckdb")
    write_table(database, "s", "t", pl.DataFrame({"a": ["x", "z"], "b": ["y", "w"]}))
    before = _fingerprint(StoredTable(database, "s", "t"))
    write_table(database, "s", "t", pl.DataFrame({"a": ["y", "w"], "b": ["x", "z"]}))  # each row's values swapped
    assert _fingerprint(StoredTable(database, "s", "t")) != before
    write_table(database, "s", "t", pl.DataFrame({"a": ["z", "x"], "b": ["w", "y"]}))  # the same rows, reordered
    assert _fingerprint(StoredTable(database, "s", "t")) == before


def test_the_fingerprint_reads_only_the_selected_columns_and_partitions(tmp_path):
    database = str(tmp_path / "w.duckdb")
    rows = pl.DataFrame({"id": [1, 2, 3], "note": ["a", "b", "c"], "extract_date": ["d1", "d1", "d2"]})
    write_table(database, "s", "t", rows)
    write_table(database, "s", "only", rows.filter(pl.col("extract_date") == "d1").select("id", "extract_date"))
    selected = StoredTable(database, "s", "t", "extract_date", ("d1",), ("id", "extract_date"))
    assert _fingerprint(selected) == _fingerprint(StoredTable(database, "s", "only"))
    write_table(database, "s", "t", rows.with_columns(note=pl.lit("changed"), id=pl.Series([1, 2, 99])))
    assert _fingerprint(selected) == _fingerprint(StoredTable(database, "s", "only"))  # not selected: not seen


def test_a_table_is_fingerprinted_from_a_connection_whose_default_catalog_is_another(tmp_path):
    """A cursor on the warehouse's database instance may use another catalog by default (Splink's
    scratch catalog attached to the same instance): the table is still found and hashed. Looking it up
    in the cursor's current database said "missing" for every table, so two different contents had the
    same fingerprint and a step whose inputs changed would have kept its stored tables."""
    database = str(tmp_path / "w.duckdb")
    write_table(database, "s", "t", pl.DataFrame({"id": [1, 2]}))
    table = StoredTable(database, "s", "t")
    with warehouse_cursor(database) as conn:
        expected = table_fingerprint(conn, table)
        conn.execute("attach ':memory:' as scratch")
        conn.execute("use scratch")
        assert table_fingerprint(conn, table) == expected != "missing"
        assert partition_contents(conn, StoredTable(database, "s", "t", "id"), "c") == partition_contents(
            conn, StoredTable(database, "s", "t", "id"), "c") != {}
        conn.execute("use w")
        conn.execute("detach scratch")


def test_partition_contents_change_only_for_the_partition_that_changed(tmp_path):
    database = str(tmp_path / "w.duckdb")
    rows = pl.DataFrame({"id": [1, 2, 3], "extract_date": ["d1", "d1", "d2"]})
    write_table(database, "s", "t", rows)
    table = StoredTable(database, "s", "t", "extract_date")
    with warehouse_cursor(database) as conn:
        before = partition_contents(conn, table, "contract")
        conn.execute("update s.t set id = 4 where id = 3")
        after = partition_contents(conn, table, "contract")
    assert set(before) == set(after) == {"d1", "d2"}
    assert after["d1"] == before["d1"] and after["d2"] != before["d2"]


def test_the_code_version_may_be_another_package_copys_for_benchmarks(tmp_path, monkeypatch):
    """`DATAFIRST_CODE_VERSION_OF` (benchmarks' A/B of code on one snapshot): fingerprints use the code
    version of the package folder named, that of a copy of the package equals this one's, and an edit
    to any module changes it; unset, the package's own."""
    import shutil

    from datafirst_assets.warehouse import content

    copy = tmp_path / "datafirst_assets"
    shutil.copytree(content.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    content.code_version.cache_clear()
    try:
        own = content.code_version()
        content.code_version.cache_clear()
        monkeypatch.setenv(content.CODE_VERSION_OF, str(copy))
        assert content.code_version() == own
        (copy / "warehouse" / "content.py").write_text((copy / "warehouse" / "content.py").read_text() + "\n# edited\n")
        content.code_version.cache_clear()
        assert content.code_version() != own
        monkeypatch.delenv(content.CODE_VERSION_OF)
        content.code_version.cache_clear()
        assert content.code_version() == own
    finally:
        content.code_version.cache_clear()
