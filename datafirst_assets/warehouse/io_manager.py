"""DuckDB warehouse IO manager for polars frames.

dagster-duckdb deletes a partition's rows and then inserts the new ones on the same connection
but outside any transaction, and dagster-duckdb-polars reads with `.arrow()` (removed in
duckdb 2.0) and skips writing empty frames. This module keeps dagster-duckdb's slicing and
connection handling and fixes those three things:

- delete + insert run in one transaction: a failure half-way rolls back, so a partition is
  never left empty or duplicated;
- empty frames are written (the table is created with the frame's schema), so "no rows" is
  recorded rather than silently skipped;
- a changed column set is handled: unpartitioned tables are replaced, partitioned tables gain
  new columns and rows are inserted by name; a type conflict fails with a readable error.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import duckdb
import polars as pl
from dagster import InputContext, MetadataValue, OutputContext, TableColumn, TableSchema
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb.io_manager import DuckDbClient, DuckDBIOManager, _get_cleanup_statement

from datafirst_assets.contracts.wiring import check_before_store
from datafirst_assets.warehouse.connection import warehouse_cursor


class TransactionalDuckDbClient(DuckDbClient):
    """DuckDbClient whose connection wraps everything done with it in one transaction."""

    @staticmethod
    @contextmanager
    def connect(context, _table_slice) -> Iterator[duckdb.DuckDBPyConnection]:
        with warehouse_cursor(context.resource_config["database"]) as conn:
            conn.begin()
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    @staticmethod
    def delete_table_slice(context: OutputContext, table_slice: TableSlice, connection) -> None:
        # The parent tries the delete and swallows "no such table"; inside a transaction that
        # error would abort the transaction, so look first.
        if table_columns(connection, table_slice.schema, table_slice.table):
            connection.execute(_get_cleanup_statement(table_slice))


def table_columns(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, str]:
    rows = connection.execute(
        "select column_name, data_type from duckdb_columns() "
        "where schema_name = ? and table_name = ? order by column_index",
        [schema, table],
    ).fetchall()
    return {name: dtype for name, dtype in rows}


class PolarsDuckDBTypeHandler(DbTypeHandler[pl.DataFrame]):
    def handle_output(self, context: OutputContext, table_slice: TableSlice, obj: pl.DataFrame, connection):
        if isinstance(obj, pl.LazyFrame):
            obj = obj.collect()
        # The table's contract holds or nothing is written (the transaction is rolled back).
        contract = check_before_store(context.asset_key if context.has_asset_key else None, obj)
        target = f"{table_slice.schema}.{table_slice.table}"
        frame_arrow = obj.to_arrow()  # noqa: F841  (referenced by name in the SQL below)
        existing = table_columns(connection, table_slice.schema, table_slice.table)
        if existing and set(existing) != set(obj.columns):
            if table_slice.partition_dimensions:
                # Keep other partitions; new columns are added, dropped ones stay null from now on.
                probe = connection.execute("select * from frame_arrow limit 0")
                new_types = {d[0]: str(d[1]) for d in probe.description}
                for column in obj.columns:
                    if column not in existing:
                        connection.execute(f'alter table {target} add column "{column}" {new_types[column]}')
                context.log.warning(
                    f"{target}: column set changed (added {sorted(set(obj.columns) - set(existing))}, "
                    f"no longer written {sorted(set(existing) - set(obj.columns))})"
                )
            else:
                connection.execute(f"drop table {target}")
                existing = {}
        try:
            if not existing:
                connection.execute(f"create table {target} as select * from frame_arrow")
            else:
                connection.execute(f"insert into {target} by name select * from frame_arrow")
        except duckdb.Error as error:
            raise RuntimeError(
                f"Writing {target} failed and was rolled back (the stored partition is unchanged): {error}"
            ) from error
        return {
            **contract,
            "dagster/row_count": obj.height,
            "dataframe_columns": MetadataValue.table_schema(
                TableSchema(columns=[TableColumn(name=n, type=str(t)) for n, t in obj.schema.items()])
            ),
        }

    def load_input(self, context: InputContext, table_slice: TableSlice, connection) -> pl.DataFrame:
        if table_slice.partition_dimensions and len(context.asset_partition_keys) == 0:
            return pl.DataFrame()
        if not table_columns(connection, table_slice.schema, table_slice.table):
            raise RuntimeError(
                f"{table_slice.schema}.{table_slice.table} does not exist in the warehouse yet: "
                "materialise its upstream asset first"
            )
        return pl.from_arrow(connection.sql(DuckDbClient.get_select_statement(table_slice)).to_arrow_table())

    @property
    def supported_types(self):
        return [pl.DataFrame, pl.LazyFrame]


class WarehouseIOManager(DuckDBIOManager):
    """The project's IO manager: polars frames in a DuckDB file, written transactionally."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [PolarsDuckDBTypeHandler()]

    @staticmethod
    def default_load_type() -> type | None:
        return pl.DataFrame

    def create_io_manager(self, context) -> DbIOManager:
        return DbIOManager(
            db_client=TransactionalDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="WarehouseIOManager",
        )
