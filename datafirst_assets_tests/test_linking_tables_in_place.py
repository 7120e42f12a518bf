"""The de-identified linking tables of a new extract are written as their change to the stored ones."""

import polars as pl

from datafirst_assets.defs.deidentify import _as_change_to_stored
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.io_manager import ChangedRows, apply_changed_rows

SCHEMA = {"source_dataset": pl.String, "dataset_person_id": pl.Int64, "xjs_person_id_high": pl.Int64,
          "xjs_person_id_medium": pl.Int64, "xjs_person_id_low": pl.Int64}


def _lookup(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA, orient="row").sort("source_dataset", "dataset_person_id")


STORED = _lookup([("magistrates", 1, 1, 1, 1), ("magistrates", 2, 2, 2, 1), ("prison", 7, 3, 3, 3),
                  ("prison", 9, 4, 4, 4)])
# magistrates 2 moved to another person, prison 9 gone, magistrates 3 (sorts before prison) and prison 10 new
NOW = _lookup([("magistrates", 1, 1, 1, 1), ("magistrates", 2, 5, 5, 5), ("magistrates", 3, 6, 6, 6),
               ("prison", 7, 3, 3, 3), ("prison", 10, 7, 7, 7)])


def _stored(database) -> None:
    with warehouse_cursor(database) as conn:
        conn.execute("create schema if not exists deidentified_linking")
        arrow = STORED.to_arrow()  # noqa: F841 (read by name in the SQL)
        conn.execute("create or replace table deidentified_linking.xjs_lookup as select * from arrow")


def test_a_linking_table_is_written_as_the_rows_that_differ_and_the_change_makes_the_new_table(tmp_path):
    database = str(tmp_path / "w.duckdb")
    _stored(database)
    change = _as_change_to_stored(Warehouse(database=database), "xjs_lookup", NOW, validated="v")
    assert isinstance(change, ChangedRows)
    assert change.deletes.rows() == [("prison", 9)]
    assert change.updates.rows() == [("magistrates", 2, 5, 5, 5)]
    assert change.inserts.rows() == [("magistrates", 3, 6, 6, 6), ("prison", 10, 7, 7, 7)]
    # a new person sorts before stored ones: applied in place all the same (the table's key is its order)
    assert change.order == ("source_dataset", "dataset_person_id")
    with warehouse_cursor(database) as conn:
        conn.execute("begin")
        reason, _, _ = apply_changed_rows(conn, "deidentified_linking.xjs_lookup", "deidentified_linking",
                                          "xjs_lookup", change, key=None)
        conn.execute("commit")
        after = pl.from_arrow(conn.sql("select * from deidentified_linking.xjs_lookup").to_arrow_table())
    assert reason is None and after.sort("source_dataset", "dataset_person_id").equals(NOW)


def test_a_linking_table_is_written_whole_without_a_validated_stored_one_of_its_columns(tmp_path):
    database = str(tmp_path / "w.duckdb")
    warehouse = Warehouse(database=database)
    assert _as_change_to_stored(warehouse, "xjs_lookup", NOW, validated="v") is NOW  # nothing stored
    _stored(database)
    assert _as_change_to_stored(warehouse, "xjs_lookup", NOW, validated=None) is NOW  # never validated whole
    wider = NOW.with_columns(pl.lit(0).alias("extra"))
    assert _as_change_to_stored(warehouse, "xjs_lookup", wider, validated="v") is wider
    other_types = NOW.with_columns(pl.col("dataset_person_id").cast(pl.String))
    assert _as_change_to_stored(warehouse, "xjs_lookup", other_types, validated="v") is other_types
