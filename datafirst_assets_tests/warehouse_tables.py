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


def checked_scored_pairs(database: str):
    """A tiny `linkage/magistrates/scored_pairs` asset, its contract checks, and the warehouse
    resources to materialise them into `database`: for tests of the contract check."""
    from dagster import asset

    from datafirst_assets.contracts.checks import contract_checks
    from datafirst_assets.defs.resources import Warehouse
    from datafirst_assets.warehouse.io_manager import WarehouseIOManager

    @asset(key=["linkage", "magistrates", "scored_pairs"], metadata={"schema": "linkage_magistrates"},
           group_name="linkage")
    def pairs() -> pl.DataFrame:
        return pl.DataFrame({"record_id_l": ["a", "b"], "record_id_r": ["b", "c"], "match_weight": [3.0, 9.0],
                             "match_probability": [0.8, 0.99]})

    resources = {"io_manager": WarehouseIOManager(database=database), "warehouse": Warehouse(database=database)}
    return pairs, contract_checks([pairs]), resources
