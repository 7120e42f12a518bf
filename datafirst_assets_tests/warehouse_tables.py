"""Planting and listing tables in a test warehouse, for tests that break a stored table on purpose."""

from __future__ import annotations

import polars as pl

from datafirst_assets.warehouse.connection import warehouse_cursor


def write_table(database, schema: str, table: str, frame: pl.DataFrame) -> None:
    with warehouse_cursor(database) as conn:
        conn.execute(f"create schema if not exists {schema}")
        arrow = frame.to_arrow()  # noqa: F841  (read by name in the SQL)
        conn.execute(f"create or replace table {schema}.{table} as select * from arrow")


def table_names(database) -> set[str]:
    """`schema.table` of every stored table."""
    with warehouse_cursor(database) as conn:
        return {f"{s}.{t}" for s, t in conn.execute("select schema_name, table_name from duckdb_tables()").fetchall()}
