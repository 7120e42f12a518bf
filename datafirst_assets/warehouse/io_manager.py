"""The warehouse IO manager: tables in one DuckDB file, written in one transaction each.

A small IO manager on Dagster's public ``ConfigurableIOManager``. Every write (delete the
partitions being replaced, then insert; or replace the whole table) runs in one transaction
and rolls back on any error, so a table or partition is never left empty, half-written or
duplicated. Empty frames are written (the table gets the frame's schema), so "no rows" is
recorded rather than skipped. A changed column set replaces an unpartitioned table; a
partitioned table gains the new columns and rows are inserted by name.

What an asset may return:
  pl.DataFrame        written through arrow;
  pl.LazyFrame        streamed to a Parquet file in the spill folder, then inserted from it by
                      DuckDB, so the whole table is never a Python frame;
  WarehouseQuery      a SELECT run by DuckDB inside the write transaction (the data never
                      leaves the database; it may read the table it replaces);
  ChangedRows         only the rows that changed, applied to the stored table in place (deleted,
                      updated where they are, appended), see `ChangedRows`;
  AppendedRows        rows added to a stored log (a change history): never read or written whole
                      again, see `append_rows`;
  KeepStored          nothing to write: the stored table already is the output (inputs unchanged).

What an asset may ask for (its parameter's annotation):
  pl.DataFrame (or nothing)  the stored rows of the partitions it depends on;
  pl.LazyFrame               the same rows exported by DuckDB to Parquet and scanned lazily;
  StoredTable                a handle: the table's name and partition filter, for SQL in
                             DuckDB (``table.relation(conn)``, ``table.select_sql()``).

Tables live in schema ``metadata["schema"]`` (else the asset key's prefix) under the key's last
part; partitioned assets need ``metadata["partition_expr"]``, the column holding the key.
"""

from __future__ import annotations

import atexit
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from pydantic import PrivateAttr
from dagster import (
    AssetKey,
    ConfigurableIOManager,
    InitResourceContext,
    InputContext,
    MetadataValue,
    OutputContext,
    TableColumn,
    TableSchema,
)

from datafirst_assets.contracts.wiring import check_before_store, check_in_database_before_store
from datafirst_assets.defs.event_log import keep_event_log_open
from datafirst_assets.defs.memory import release_between_steps
from datafirst_assets.warehouse.connection import run_opened_sealed, warehouse_cursor
from datafirst_assets.contracts.core import unique_sets
from datafirst_assets.contracts.registry import contract_for
from datafirst_assets.warehouse.content import (
    TABLE_FINGERPRINT,
    ROWS_CHANGED,
    VALIDATED_CONTENT,
    VALIDATED_IN_RUN,
    VALIDATED_PARTITIONS,
    content_of,
    content_sums,
    fingerprint_of,
    fingerprint_recorded_for,
    fingerprint_sums,
    partition_contents,
    recorded_fingerprint,
    relation_columns,
    remember_validated_write,
    table_columns,
    table_fingerprint,
    written_fingerprint,
)
from datafirst_assets.warehouse.duckdb_settings import duckdb_settings
from datafirst_assets.common.sql import quote_identifier, quote_literal


def catalog_name(database: str | Path) -> str:
    """DuckDB's catalog name for a database file: its file name without the extension."""
    return Path(database).stem


@dataclass(frozen=True)
class StoredTable:
    """A warehouse table (or some of its partitions), for SQL in DuckDB instead of Python."""

    database: str
    schema: str
    table: str
    partition_expr: str | None = None
    partitions: tuple[str, ...] | None = None  # None: every row
    columns: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        """Fully qualified, so it also resolves from a connection whose default catalog is
        another one (Splink's scratch catalog in the same database instance)."""
        return f"{quote_identifier(catalog_name(self.database))}.{quote_identifier(self.schema)}.{quote_identifier(self.table)}"

    def where_sql(self) -> str:
        if self.partition_expr is None or self.partitions is None:
            return ""
        keys = ", ".join(quote_literal(k) for k in self.partitions) or "null"
        return f" where {self.partition_expr} in ({keys})"

    def select_sql(self, columns: Sequence[str] | None = None) -> str:
        cols = columns or self.columns
        return f"select {', '.join(map(quote_identifier, cols)) if cols else '*'} from {self.name}{self.where_sql()}"

    def exists(self) -> bool:
        with warehouse_cursor(self.database) as conn:
            return bool(table_columns(conn, self.schema, self.table))

    def relation(self, connection: duckdb.DuckDBPyConnection, columns: Sequence[str] | None = None):
        return connection.sql(self.select_sql(columns))

    def to_polars(self, columns: Sequence[str] | None = None) -> pl.DataFrame:
        with warehouse_cursor(self.database) as conn:
            return pl.from_arrow(self.relation(conn, columns).to_arrow_table())  # type: ignore[return-value]

    def count(self) -> int:
        with warehouse_cursor(self.database) as conn:
            return conn.execute(f"select count(*) from {self.name}{self.where_sql()}").fetchone()[0]  # type: ignore[index]


@dataclass(frozen=True)
class KeepStored:
    """An asset output meaning "the stored table already is this output" (its inputs did not
    change, see `warehouse.unchanged`): nothing is written; the stored table must exist."""

    fingerprint: str


@dataclass(frozen=True)
class AppendedRows:
    """An asset output adding rows to its stored table, a log (see `append_rows`): `rows` are appended
    after the stored table's rows whose `replacing` column has the given value are deleted (a step
    run again replaces its own rows: a change log's run id). `rewrite` gives the whole table, written
    instead when the stored one cannot be appended to."""

    rows: pl.DataFrame
    replacing: tuple[str, str] | None
    rewrite: Callable[[], pl.DataFrame]
    validated_before: str | None  # `contract_content` of the stored table when last validated whole


@dataclass(frozen=True)
class WarehouseQuery:
    """An asset output computed by DuckDB: ``sql`` is a SELECT over warehouse tables (or over
    any catalog attached to the warehouse's database instance, e.g. Splink's scratch tables).
    ``cleanup`` runs after the write commits or fails (e.g. dropping scratch tables)."""

    sql: str
    cleanup: Any = None


class WarehouseIOManager(ConfigurableIOManager):
    """The project's IO manager: tables in a DuckDB file, each write one transaction."""

    database: str
    _instance: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # Once per run, in the run's process, before its steps write events (defs/event_log.py).
        if context.instance is not None:
            keep_event_log_open(context.instance)
        self._instance = context.instance

    def _stored_fingerprint(self, context: OutputContext, key: AssetKey | None, target: StoredTable) -> str | None:
        """The stored table's fingerprint without reading it, for a write in place: this run's own
        write of it in this process, or, in a warehouse this run opened sealed (nothing outside the
        pipeline wrote the file since its last close), what the table's latest write recorded."""
        if key is None or target.partitions is not None:
            return None
        written = written_fingerprint(self.database, target.schema, target.table, context.run_id)
        if written is not None or self._instance is None:
            return written
        if not run_opened_sealed(self._instance, context.run_id, self.database):
            return None
        event = self._instance.get_latest_materialization_event(key)
        metadata = event.asset_materialization.metadata if event is not None and event.asset_materialization else {}
        return fingerprint_recorded_for(metadata, target.database, target.schema, target.table)

    # ------------------------------------------------------------------ where tables live

    def _target(self, context: OutputContext | InputContext, output: OutputContext) -> StoredTable:
        metadata = output.definition_metadata or {}
        path = context.asset_key.path
        schema = metadata.get("schema") or ("_".join(path[:-1]) if len(path) > 1 else "public")
        partition_expr, partitions = None, None
        if context.has_asset_partitions:
            partition_expr = metadata.get("partition_expr")
            if partition_expr is None:
                raise ValueError(f"{context.asset_key.to_user_string()} is partitioned but has no "
                                 "'partition_expr' metadata naming its partition column")
            partitions = tuple(context.asset_partition_keys)
        columns = (context.definition_metadata or {}).get("columns") if isinstance(context, InputContext) else None
        return StoredTable(self.database, str(schema), path[-1], partition_expr, partitions,
                           tuple(columns) if columns else None)

    # ------------------------------------------------------------------------ writing

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        if obj is None:
            raise TypeError(f"{context.asset_key.to_user_string()} returned None: return a table "
                            "(pl.DataFrame, pl.LazyFrame or WarehouseQuery) or annotate the output as None")
        release_between_steps(context.op_def.name, context.log)
        target = self._target(context, context)
        if isinstance(obj, KeepStored):
            self._keep_stored(context, target)
            return
        key = context.asset_key if context.has_asset_key else None
        contract: dict = {}
        spill = None
        try:
            if isinstance(obj, pl.LazyFrame):
                spill = _spill_path(self.database)
                obj.sink_parquet(spill)
                source = f"select * from read_parquet({quote_literal(str(spill))})"
            elif isinstance(obj, pl.DataFrame):
                # The table's contract holds or nothing is written.
                contract = check_before_store(key, obj)
                source = obj.to_arrow()
            elif isinstance(obj, WarehouseQuery):
                source = obj.sql
            elif isinstance(obj, (ChangedRows, AppendedRows)):
                source = None  # `obj.rewrite`, only when the changes cannot be applied in place
            else:
                raise TypeError(f"{context.asset_key.to_user_string()}: the warehouse stores polars frames "
                                f"or WarehouseQuery, not {type(obj).__name__}")
            def validate(conn: duckdb.DuckDBPyConnection, staging: str) -> None:
                # Rows computed by DuckDB meet the contract too: the staging table is validated where
                # it lives (pandera.ibis), inside the write transaction, before it is swapped in; a
                # violation rolls the transaction back and the previous table stays.
                nonlocal contract
                if not isinstance(obj, pl.DataFrame):
                    contract = check_in_database_before_store(
                        key, conn, catalog_name(self.database), target.schema, "__new_" + target.table)

            with _transaction(self.database) as conn:
                written, sums, changed = None, None, None
                if isinstance(obj, ChangedRows):
                    written, contract, sums = _write_changed_rows(conn, target, obj, key, context.log,
                                                                  self._stored_fingerprint(context, key, target))
                    changed = obj.changed
                elif isinstance(obj, AppendedRows):
                    written, contract, sums, changed = _write_appended_rows(
                        conn, target, obj, key, context.log, self._stored_fingerprint(context, key, target))
                if written is None:
                    if isinstance(obj, (ChangedRows, AppendedRows)):
                        source = _rewrite_source(obj)
                    schema = write_table(conn, target, source, context.log, validate=validate)
                    rows = conn.execute(f"select count(*) from {target.name}{target.where_sql()}").fetchone()[0]
                else:
                    schema, rows = table_columns(conn, target.schema, target.table), sums[0]
                validated = _validated_content(conn, key, target, contract, context.run_id, schema, sums)
            content = validated.get(VALIDATED_CONTENT) or getattr(validated.get(VALIDATED_PARTITIONS), "value", None)
            if content is not None:  # committed: the run's contract check needs no event-log read
                recorded = getattr(validated.get(TABLE_FINGERPRINT), "value", None) or {}
                remember_validated_write(self.database, target.schema, target.table, context.run_id, content,
                                         recorded.get("fingerprint"))
        finally:
            if spill is not None:
                spill.unlink(missing_ok=True)
            if isinstance(obj, WarehouseQuery) and obj.cleanup is not None:
                obj.cleanup()
        context.add_output_metadata({
            "dagster/row_count": rows,
            "dataframe_columns": MetadataValue.table_schema(
                TableSchema(columns=[TableColumn(name=n, type=t) for n, t in schema.items()])),
            "dagster/table_name": f"{target.schema}.{target.table}",
            **contract,
            **validated,
            **({"write": written or "rewritten whole"} if isinstance(obj, (ChangedRows, AppendedRows)) else {}),
            ROWS_CHANGED: changed if written else rows,
        })

    def _keep_stored(self, context: OutputContext, target: StoredTable) -> None:
        with warehouse_cursor(self.database) as conn:
            if not table_columns(conn, target.schema, target.table):
                raise RuntimeError(f"{context.asset_key.to_user_string()}: asked to keep the stored table "
                                   f"{target.schema}.{target.table}, but there is none")
            rows = conn.execute(f"select count(*) from {target.name}{target.where_sql()}").fetchone()[0]
        context.add_output_metadata({"dagster/row_count": rows, "dagster/table_name": f"{target.schema}.{target.table}"})

    # ------------------------------------------------------------------------ reading

    def load_input(self, context: InputContext) -> Any:
        release_between_steps(context.op_def.name, context.log)
        target = self._target(context, context.upstream_output)  # type: ignore[arg-type]
        wanted = context.dagster_type.typing_type
        if isinstance(wanted, type) and issubclass(wanted, StoredTable):
            return target
        if target.partitions is not None and not target.partitions:
            return pl.DataFrame().lazy() if wanted is pl.LazyFrame else pl.DataFrame()
        with warehouse_cursor(self.database) as conn:
            if not table_columns(conn, target.schema, target.table):
                raise RuntimeError(f"{target.schema}.{target.table} does not exist in the warehouse yet: "
                                   "materialise its upstream asset first")
            if wanted is pl.LazyFrame:
                spill = _spill_path(self.database)
                conn.execute(f"copy ({target.select_sql()}) to {quote_literal(str(spill))} (format parquet)")
                _SCANNED_FILES.append(spill)
                return pl.scan_parquet(spill)
            return pl.from_arrow(target.relation(conn).to_arrow_table())


_SCANNED_FILES: list[Path] = []


def _spill_path(database: str) -> Path:
    """A Parquet file beside DuckDB's spill folder (the data dir's tmp/), never in the repository.
    Files handed out as lazy inputs are removed when the process ends (the frame scans them)."""
    folder = Path(duckdb_settings(Path(database).resolve().parent).temp_directory).parent / "frames"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{secrets.token_hex(8)}.parquet"


@atexit.register
def _remove_scanned_files() -> None:
    for path in _SCANNED_FILES:
        path.unlink(missing_ok=True)


def _validated_content(conn: duckdb.DuckDBPyConnection, key: AssetKey | None, target: StoredTable,
                       contract: dict, run_id: str, columns: dict[str, str] | None = None,
                       sums: tuple[int, int] | None = None) -> dict:
    """When the contract was just validated on every row written, the content stored (the whole
    table's, or each written partition's), so that the asset's `contract` check passes that very
    content without reading and validating it a second time (`contracts.checks`)."""
    if not contract or key is None or contract_for(key) is None:
        return {}
    if target.partitions is not None:  # each written partition's content, every row of which was validated
        return {VALIDATED_PARTITIONS: MetadataValue.json(partition_contents(conn, target, contract_for(key).name)),
                VALIDATED_IN_RUN: run_id}
    if sums is not None and columns is not None:  # counted and hashed already (a write in place)
        fingerprint = fingerprint_of(columns, *sums)
    else:
        fingerprint = table_fingerprint(conn, target)
    # the fingerprint too: steps reading this table take it from here instead of hashing the table again
    return {VALIDATED_CONTENT: content_of(fingerprint, contract_for(key).name), VALIDATED_IN_RUN: run_id,
            TABLE_FINGERPRINT: MetadataValue.json(
                recorded_fingerprint(target.database, target.schema, target.table, fingerprint))}


def _write_changed_rows(conn: duckdb.DuckDBPyConnection, target: StoredTable, changes: ChangedRows,
                        key: AssetKey | None, log,
                        recorded: str | None = None) -> tuple[str | None, dict, tuple[int, int] | None]:
    """`changes` applied in place (a description of the write, the contract metadata of the rows
    written, the table's `content_sums`), or None... when the table must be rewritten from
    `changes.rewrite` (logged why). `recorded`: as `apply_changed_rows`'."""
    if target.partitions is not None:
        reason, contract, sums = "a partitioned table", {}, None
    else:
        reason, contract, sums = apply_changed_rows(conn, target.name, target.schema, target.table, changes, key,
                                                    recorded)
    if reason is not None:
        log.info(f"{target.schema}.{target.table}: rewritten whole, not changed in place: {reason}")
        return None, {}, None
    return (f"in place: {changes.deletes.height} row(s) deleted, {changes.updates.height} updated, "
            f"{changes.inserts.height} inserted"), contract, sums


def _write_appended_rows(conn: duckdb.DuckDBPyConnection, target: StoredTable, appended: AppendedRows,
                         key: AssetKey | None, log,
                         recorded: str | None = None) -> tuple[str | None, dict, tuple[int, int] | None, int]:
    """`append_rows`, described, with the rows it changed (replaced and appended), or None... when
    the table must be rewritten (logged why)."""
    reason, contract, sums, replaced = ("a partitioned table", {}, None, 0) if target.partitions is not None else \
        append_rows(conn, target.name, target.schema, target.table, appended, key, recorded)
    if reason is not None:
        log.info(f"{target.schema}.{target.table}: rewritten whole, not appended to: {reason}")
        return None, {}, None, 0
    return (f"appended: {replaced} row(s) replaced, {appended.rows.height} appended", contract, sums,
            replaced + appended.rows.height)


@contextmanager
def _transaction(database: str) -> Iterator[duckdb.DuckDBPyConnection]:
    with warehouse_cursor(database) as conn:
        conn.begin()
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def write_table(conn: duckdb.DuckDBPyConnection, target: StoredTable, source: Any, log,
                validate: Any = None) -> dict[str, str]:
    """Replace ``target`` (its partitions, or the whole table) with the rows of ``source`` (a
    SELECT, or an arrow table) on ``conn``, inside the caller's transaction. Returns the stored
    column types."""
    conn.execute(f"create schema if not exists {quote_identifier(catalog_name(target.database))}.{quote_identifier(target.schema)}")
    staging = f"{quote_identifier(catalog_name(target.database))}.{quote_identifier(target.schema)}.{quote_identifier('__new_' + target.table)}"
    if not isinstance(source, str):
        view = f"__frame_{secrets.token_hex(4)}"
        conn.register(view, source)
        source = f"select * from {view}"
    try:
        # Materialised first, so a query may read the table it replaces.
        conn.execute(f"create or replace table {staging} as {source}")
    except duckdb.Error as error:
        raise RuntimeError(f"Computing {target.schema}.{target.table} failed and was rolled back "
                           f"(the stored table is unchanged): {error}") from error
    if validate is not None:
        validate(conn, staging)
    # by the catalog-qualified names (the write's catalog is the warehouse file's): `table_columns`
    # asked the connection for its current database first, ~1 ms a query, three times per write
    new = relation_columns(conn, staging)
    existing = relation_columns(conn, target.name)
    try:
        if existing and target.partitions is not None:
            _add_new_columns(conn, target, new, existing, log)
            conn.execute(f"delete from {target.name}{target.where_sql()}")
            conn.execute(f"insert into {target.name} by name select * from {staging}")
            conn.execute(f"drop table {staging}")
        else:
            if existing:
                conn.execute(f"drop table {target.name}")
            conn.execute(f"alter table {staging} rename to {quote_identifier(target.table)}")
            return new  # the table now is the staging table, renamed
    except duckdb.Error as error:
        raise RuntimeError(f"Writing {target.schema}.{target.table} failed and was rolled back "
                           f"(the stored partition is unchanged): {error}") from error
    return relation_columns(conn, target.name)


def _add_new_columns(conn, target: StoredTable, new: dict[str, str], existing: dict[str, str], log) -> None:
    for column, dtype in new.items():
        if column not in existing:
            conn.execute(f"alter table {target.name} add column {quote_identifier(column)} {dtype}")
    # Added columns land at the end; the table is rebuilt in the order now written (columns no
    # longer written last), so a stored table keeps its contract's column order across versions.
    order = [*new, *[c for c in existing if c not in new]]
    if list(table_columns(conn, target.schema, target.table)) != order:
        conn.execute(f"create or replace table {target.name} as select {', '.join(map(quote_identifier, order))} "
                     f"from {target.name}")
    if set(new) != set(existing):
        # Other partitions are kept; columns no longer written stay null from now on.
        log.warning(f"{target.schema}.{target.table}: column set changed (added {sorted(set(new) - set(existing))}, "
                    f"no longer written {sorted(set(existing) - set(new))})")

# ------------------------------------------------- writing only the rows that changed

# Writing only the rows that changed: a stored table updated in place instead of rewritten.
#
# An incremental step that knows which of its rows changed (de-identification by row: a 1% extract
# re-derives ~2% of a table's rows) used to hand the IO manager its whole table again, which read
# every row into Python, validated every row against the contract and wrote every row. A
# `ChangedRows` output carries only the change: the rows to delete (by the table's unique key),
# the rows to update where they are (new versions of stored rows: a row keeps its place, so the
# table keeps the order a rewrite gives), and the rows to append. Inside the write transaction:
#
# 1. The stored table must hold exactly the content that was validated, every row, when it was last
#    written (`validated_before`, the write's `contract_content`): its kept rows met the contract then
#    and still do (same code: the content fingerprint includes it). Otherwise, or when the columns
#    differ, or the new rows would not sort after the stored ones (unless the change names the
#    table's `order`: then it is sorted again after step 3), the table is rewritten from
#    `expected` (validated whole, as any SQL output).
# 2. The updated and appended rows are validated against the contract before anything is written.
# 3. Delete, update, insert; then the changed table's content (row count and the sum of its rows'
#    hashes, in DuckDB) must equal `expected`'s, its key unique. The changed table is not hashed
#    again: the sums are additive, so they are the stored table's (the pass of step 1) less the
#    removed rows' (summed in that same pass, joined by key to the change) plus the written rows'.
#    That is exact because each statement is checked to change exactly the rows counted (keys named
#    once, the stored key unique, every updated key stored, no inserted key kept, row counts). Any
#    difference rewrites the table from `expected` in the same transaction, so the stored table is
#    always exactly `expected`: the in-place path only saves work.


@dataclass(frozen=True)
class ChangedRows:
    """An asset output changing some rows of its stored table in place (see the module docstring)."""

    key: tuple[str, ...]       # the table's unique key (no nulls): how a stored row is found
    deletes: pl.DataFrame      # key values of stored rows that are no longer in the table
    updates: pl.DataFrame      # new versions of stored rows (same key), every column
    inserts: pl.DataFrame      # new rows, every column, appended in this order
    # SELECT: the whole table as it must be afterwards (in any order); or that table as a frame; or
    # None when `expected_sums` is given
    expected: str | pl.DataFrame | None
    # SELECT: the same rows in the table's order (written when not in place); or them as a frame; or
    # a function computing that frame from tables the write does not change (called only when needed)
    rewrite: str | pl.DataFrame | Callable[[], pl.DataFrame]
    validated_before: str | None  # `contract_content` of the stored table when last validated whole
    appendable: bool = True    # the new rows sort after every stored one (else see `order`)
    expected_sums: tuple[int, int] | None = None  # `content_sums(expected)`, when already computed
    # The columns a rewrite orders the table by (its key, say), when it does. New rows that do not
    # sort after the stored ones are then applied in place all the same, and a changed table of one
    # row group sorted again from itself (`_sort_in_place`); without `order` the table is rewritten
    # from `rewrite`.
    order: tuple[str, ...] = ()

    @property
    def changed(self) -> int:
        return self.deletes.height + self.updates.height + self.inserts.height


def _rewrite_source(changes: ChangedRows | AppendedRows) -> Any:
    """What `write_table` writes when `changes` are not applied in place: a SELECT, or rows as arrow."""
    rewrite = changes.rewrite
    if isinstance(rewrite, str):
        return rewrite
    return (rewrite if isinstance(rewrite, pl.DataFrame) else rewrite()).to_arrow()


def _columns_of(conn: duckdb.DuckDBPyConnection, view: str) -> dict[str, str]:
    relation = conn.table(view)
    return dict(zip(relation.columns, map(str, relation.types)))


def _why_not_in_place(conn: duckdb.DuckDBPyConnection, schema: str, table: str, changes: ChangedRows,
                      frame_columns: dict[str, str], views: dict[str, str]) -> str | None:
    """Why the table must be rewritten whole, seen before reading it (None: go on)."""
    stored = table_columns(conn, schema, table)
    if not stored:
        return "no stored table"
    if list(stored.items()) != list(frame_columns.items()) or (
            changes.inserts.height and list(_columns_of(conn, views["inserts"]).items()) != list(stored.items())):
        return "the stored columns differ"
    if not changes.appendable and not changes.order:
        return "new rows sort before stored ones"
    # each key once among the rows deleted or updated, and once among those inserted: then every
    # statement below changes exactly the rows `_stored_sums` counts (a key may be deleted and inserted)
    for parts in (("deletes", "updates"), ("inserts",)):
        keys = _key_union(changes, views, parts)
        if keys and conn.execute(f"select count(*) from (select * from ({keys}) group by all having count(*) > 1)"
                                 ).fetchall()[0][0]:
            return "the change names a key twice"
    return None


def _key_union(changes: ChangedRows, views: dict[str, str], parts: Sequence[str], kind: bool = False) -> str:
    """SELECT of the key columns of the non-empty `parts` of the change (with the part's name)."""
    keys = ", ".join(map(quote_identifier, changes.key))
    return " union all ".join(f"select {keys}{f', {quote_literal(part)} as _kind' if kind else ''} from {views[part]}"
                              for part in parts if getattr(changes, part).height)


@dataclass(frozen=True)
class _Before:
    """The stored table before the change, from one pass over it (`_stored_sums`)."""

    rows: int
    hashes: int
    removed_rows: int     # rows whose key is deleted or updated (their old versions leave the table)
    removed_hashes: int
    deleted: int          # rows whose key is deleted
    updated: int          # rows whose key is updated
    collisions: int       # rows, not deleted, whose key an inserted row has too


def _stored_sums(conn: duckdb.DuckDBPyConnection, name: str, changes: ChangedRows, views: dict[str, str]) -> _Before:
    """`content_sums` of the stored table, and of the rows the change removes, with the counts that
    say whether it applies exactly: one pass over the table (joined by key to the small change)."""
    joins, removed, inserted = "", _key_union(changes, views, ("deletes", "updates"), kind=True), \
        _key_union(changes, views, ("inserts",))
    kind, hit = "null::varchar", "false"
    if removed:
        on = " and ".join(f"_t.{quote_identifier(k)} = _k.{quote_identifier(k)}" for k in changes.key)
        joins += f" left join ({removed}) _k on {on}"
        kind = "_k._kind"
    if inserted:
        on = " and ".join(f"_t.{quote_identifier(k)} = _i.{quote_identifier(k)}" for k in changes.key)
        joins += f" left join (select *, true as _hit from ({inserted})) _i on {on}"
        hit = "_i._hit is not null"
    # `hash(_t)`: the row of the stored table, the same struct `content_sums` hashes
    row = f"select {kind} as _kind, {hit} as _hit, hash(_t)::hugeint as _h from {name} _t{joins}"
    found = conn.execute(
        f"select count(*), coalesce(sum(_h), 0), count(_kind), coalesce(sum(_h) filter (where _kind is not null), 0), "
        "count(*) filter (where _kind = 'deletes'), count(*) filter (where _kind = 'updates'), "
        f"count(*) filter (where _hit and _kind is distinct from 'deletes') from ({row}) _r").fetchall()[0]
    return _Before(*map(int, found))


def _recorded_before(conn: duckdb.DuckDBPyConnection, name: str, changes: ChangedRows, views: dict[str, str],
                     columns: dict[str, str], recorded: str | None) -> _Before | None:
    """`_stored_sums` without hashing every stored row, when the stored table's fingerprint is known
    (`recorded`: what its latest write recorded, trusted by the caller only in a warehouse this run
    opened sealed) and is of these columns: the totals are the recorded ones, and only the rows the
    change names are read (inner joins to the small change: DuckDB prunes the row groups outside
    the change's key range, so an append reads almost nothing). None: not known, hash the table.
    A stale record (a write committed whose materialization was never stored) gives totals the
    result then fails to match `expected` with: the table is rewritten, never left wrong."""
    totals = fingerprint_sums(recorded, columns)
    if totals is None:
        return None
    removed_rows = removed_hashes = deleted = updated = collisions = 0
    removed = _key_union(changes, views, ("deletes", "updates"), kind=True)
    if removed:
        on = " and ".join(f"_t.{quote_identifier(k)} = _k.{quote_identifier(k)}" for k in changes.key)
        for kind, count, hashes in conn.execute(
                f"select _k._kind, count(*), coalesce(sum(hash(_t)::hugeint), 0) from {name} _t "
                f"join ({removed}) _k on {on} group by _k._kind").fetchall():
            removed_rows, removed_hashes = removed_rows + int(count), removed_hashes + int(hashes)
            deleted, updated = (deleted + int(count), updated) if kind == "deletes" else (deleted, updated + int(count))
    inserted = _key_union(changes, views, ("inserts",))
    if inserted:
        on = " and ".join(f"_t.{quote_identifier(k)} = _i.{quote_identifier(k)}" for k in changes.key)
        kept = ""
        if changes.deletes.height:
            on_deleted = " and ".join(f"_t.{quote_identifier(k)} = _d.{quote_identifier(k)}" for k in changes.key)
            kept = f" anti join {views['deletes']} _d on {on_deleted}"
        collisions = int(conn.execute(f"select count(*) from (select _t.* from {name} _t join ({inserted}) _i on {on}) _t"
                                      f"{kept}").fetchall()[0][0])
    return _Before(*totals, removed_rows, removed_hashes, deleted, updated, collisions)


def _stored_problem(conn: duckdb.DuckDBPyConnection, name: str, changes: ChangedRows, key: AssetKey | None,
                    columns: dict[str, str], before: _Before) -> str | None:
    """Why the stored table cannot be changed in place (None: it can): it must hold the content last
    validated whole, have a unique key, and each updated key must find its row, no inserted one."""
    contract = contract_for(key) if key is not None else None
    if contract is not None and changes.validated_before != content_of(
            fingerprint_of(columns, before.rows, before.hashes), contract.name):
        return "the stored table is not the content last validated whole"
    # a unique key is part of what was validated when the contract says so (every write of the content
    # validated_before checked it on the whole table); otherwise it is counted
    if not (contract is not None and any(set(u) <= set(changes.key) for u in unique_sets(contract))) \
            and duplicates(conn, name, changes.key):
        return "the stored table has duplicate keys"
    if before.updated != changes.updates.height:
        return "an updated row is not stored"
    if before.collisions:
        return "the changed table has duplicate keys"  # an inserted key is stored and kept
    return None


def apply_changed_rows(conn: duckdb.DuckDBPyConnection, name: str, schema: str, table: str,
                       changes: ChangedRows, key: AssetKey | None,
                       recorded: str | None = None) -> tuple[str | None, dict, tuple[int, int]]:
    """Inside the caller's transaction: `changes` applied to `name` in place. Returns (None, contract
    metadata of the rows written, `content_sums` of the changed table) when done, or (the reason, {},
    ...) when the caller must rewrite the table from `changes.rewrite` (nothing was left half-changed
    that a rewrite does not replace).

    The changed table is not hashed again: sums are additive over rows, so its `content_sums` are the
    stored table's (one pass, which also checks it holds what was last validated) less those of the
    rows the change removes (summed in that same pass) plus those of the rows written (the small
    frames, of the stored column types). That is exact when each statement changed the rows counted
    (checked: keys named once, stored keys unique, each statement's row count); the result must then
    equal `expected`'s sums, hashed apart from the change, or the table is rewritten. `recorded`: the
    stored table's fingerprint as its latest write recorded it, given only when nothing outside the
    pipeline can have written it since (`_recorded_before`): then its rows are not hashed at all."""
    written = pl.concat([changes.updates, changes.inserts], how="vertical")
    views = {part: f"__changed_{part}_{secrets.token_hex(4)}" for part in ("deletes", "updates", "inserts")}
    for part, view in views.items():
        conn.register(view, getattr(changes, part).to_arrow())
    try:
        columns = _columns_of(conn, views["updates"])
        reason = _why_not_in_place(conn, schema, table, changes, columns, views)
        before = None if reason is not None else (_recorded_before(conn, name, changes, views, columns, recorded)
                                                  or _stored_sums(conn, name, changes, views))
        reason = reason or _stored_problem(conn, name, changes, key, columns, before)  # type: ignore[arg-type]
        if reason is not None:
            return reason, {}, (0, 0)
        contract = check_before_store(key, written)  # raises: the caller's transaction rolls back
        counts = _apply(conn, name, changes, views, before.rows)  # type: ignore[union-attr]
        if counts != (before.deleted, before.updated, changes.inserts.height):  # type: ignore[union-attr]
            return "a statement changed other rows than counted", {}, (0, 0)
        parts = [f"select * from {views[p]}" for p in ("updates", "inserts") if getattr(changes, p).height]
        added = content_sums(conn, " union all ".join(parts)) if parts else (0, 0)
        sums = (before.rows - before.removed_rows + added[0], before.hashes - before.removed_hashes + added[1])  # type: ignore[union-attr]
        if sums != (changes.expected_sums or _expected_sums(conn, changes.expected)):
            return "the changed table differs from the expected one", {}, sums
        if not changes.appendable and sums[0] <= ONE_ROW_GROUP:
            _sort_in_place(conn, name, changes.order)
        return None, contract, sums
    finally:
        for view in views.values():
            conn.unregister(view)


def append_rows(conn: duckdb.DuckDBPyConnection, name: str, schema: str, table: str, appended: AppendedRows,
                key: AssetKey | None, recorded: str | None = None) -> tuple[str | None, dict, tuple[int, int], int]:
    """Inside the caller's transaction: `appended.rows` added to `name` (a log, read whole by no one
    who writes it: a change history rewritten whole grew with every run, read into Python, validated
    and written again). Returns (None, contract metadata of the rows written, `content_sums` of the
    table after, rows replaced), or (the reason, ...) when the caller must rewrite the table: no
    stored table, other columns, or not the content last validated whole. The stored table's sums
    are its latest write's record (`recorded`, trusted as `apply_changed_rows`' when its row count is
    the table's) or hashed; the table after is those less the replaced rows' plus the appended."""
    stored = table_columns(conn, schema, table)
    view = f"__appended_{secrets.token_hex(4)}"
    conn.register(view, appended.rows.to_arrow())
    try:
        if not stored:
            return "no stored table", {}, (0, 0), 0
        if list(stored.items()) != list(_columns_of(conn, view).items()):
            return "the stored columns differ", {}, (0, 0), 0
        rows = int(conn.execute(f"select count(*) from {name}").fetchall()[0][0])
        before = fingerprint_sums(recorded, stored)
        before = before if before is not None and before[0] == rows else content_sums(conn, f"select * from {name}")
        contract = contract_for(key) if key is not None else None
        if contract is not None and appended.validated_before != content_of(fingerprint_of(stored, *before),
                                                                            contract.name):
            return "the stored table is not the content last validated whole", {}, (0, 0), 0
        written = check_before_store(key, appended.rows)  # raises: the caller's transaction rolls back
        removed, replaced = (0, 0), 0
        if appended.replacing is not None:
            column, value = appended.replacing
            where = f"{quote_identifier(column)} = {quote_literal(value)}"
            removed = content_sums(conn, f"select * from {name} where {where}")
            replaced = int(conn.execute(f"delete from {name} where {where}").fetchall()[0][0])
        conn.execute(f"insert into {name} select * from {view}")
        added = content_sums(conn, f"select * from {view}")
        return None, written, (before[0] - removed[0] + added[0], before[1] - removed[1] + added[1]), replaced
    finally:
        conn.unregister(view)


def _apply(conn: duckdb.DuckDBPyConnection, name: str, changes: ChangedRows, views: dict[str, str],
           stored_rows: int) -> tuple[int, int, int]:
    """Delete, update, append; the rows each statement changed.

    In a table of more than one row group an updated row is deleted and its new version appended
    (`_moves_updated_rows`), not updated where it is: DuckDB's UPDATE of rows spread over a table
    rewrites, at the next checkpoint, every updated column of every row group it touched. 418 rows
    of a 1.25M-row, 20-column table cost 0.99 s to update and 0.11 s to checkpoint, against 0.02 s
    for the delete and append (`benchmarks/bench_update_in_place.py`); at 1M people an extract
    updated rows of six such tables. The table's content, which is all the write promises, is the
    same either way."""
    on = " and ".join(f"{name}.{quote_identifier(k)} = _c.{quote_identifier(k)}" for k in changes.key)
    counts = [0, 0, 0]
    if changes.deletes.height:
        counts[0] = conn.execute(f"delete from {name} using {views['deletes']} _c where {on}").fetchall()[0][0]
    if changes.updates.height and _moves_updated_rows(changes, stored_rows):
        counts[1] = conn.execute(f"delete from {name} using {views['updates']} _c where {on}").fetchall()[0][0]
        appended = conn.execute(f"insert into {name} select * from {views['updates']}").fetchall()[0][0]
        if appended != counts[1]:
            counts[1] = -1  # never equals a count: the caller rewrites the table
    elif changes.updates.height:
        columns = [c for c in changes.updates.columns if c not in changes.key]
        assignments = ", ".join(f"{quote_identifier(c)} = _c.{quote_identifier(c)}" for c in columns)
        counts[1] = conn.execute(f"update {name} set {assignments} from {views['updates']} _c where {on}").fetchall()[0][0]
    if changes.inserts.height:
        counts[2] = conn.execute(f"insert into {name} select * from {views['inserts']}").fetchall()[0][0]
    return int(counts[0]), int(counts[1]), int(counts[2])


def _moves_updated_rows(changes: ChangedRows, stored_rows: int) -> bool:
    """Whether `_apply` deletes and appends updated rows rather than updating them where they are:
    when the table is larger than one row group, whose rows a write stores in no set order anyway
    (`ONE_ROW_GROUP`). A table of one row group keeps its rows where they are, so that one written
    in key order stays so (an append of rows sorting after it keeps that order too)."""
    return stored_rows > ONE_ROW_GROUP


#: Rows of one DuckDB row group. A table up to this size is written by one thread, in the order of the
#: rows written; a larger one in parallel (`preserve_insertion_order=false`), its row groups in no set
#: order: the full run's magistrates person records at 300,000 people (375,000 rows, written sorted)
#: are stored from id 222881 on, then from 100001. Rows appended out of key order to a table that size
#: lose no order a rewrite would give; sorting it again would cost what the rewrite cost.
ONE_ROW_GROUP = 122_880


def _sort_in_place(conn: duckdb.DuckDBPyConnection, name: str, order: Sequence[str]) -> None:
    """The changed table stored again in `order` (the order a rewrite writes), inside the caller's
    transaction: new rows that sort before stored ones (record ids passing 999999 -> 1000000 as text)
    were appended at the end. Its rows, hence its content sums and what was validated, are unchanged,
    so nothing is computed or validated again (at 1,000,000 people the magistrates' person records and
    linked table were rewritten from every staged row on every new extract, dearer than in a full run)."""
    columns = ", ".join(map(quote_identifier, order))
    conn.execute(f"create or replace table {name} as select * from {name} order by {columns}")


def _expected_sums(conn: duckdb.DuckDBPyConnection, expected: str | pl.DataFrame | None) -> tuple[int, int]:
    if expected is None:
        raise ValueError("ChangedRows needs `expected` or `expected_sums`")
    if isinstance(expected, str):
        return content_sums(conn, expected)
    return frame_sums(conn, expected)


def frame_sums(conn: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> tuple[int, int]:
    """`content_sums` of a frame's rows, as they would be stored."""
    view = f"__expected_{secrets.token_hex(4)}"
    conn.register(view, frame.to_arrow())
    try:
        return content_sums(conn, f"select * from {view}")
    finally:
        conn.unregister(view)


def duplicates(conn: duckdb.DuckDBPyConnection, name: str, key: Sequence[str]) -> int:
    keys = ", ".join(map(quote_identifier, key))
    return conn.execute(f"select count(*) from (select {keys} from {name} group by all having count(*) > 1)"
                        ).fetchall()[0][0]


def changes_to(conn: duckdb.DuckDBPyConnection, stored: str, select: str, key: Sequence[str],
               validated_before: str | None) -> ChangedRows:
    """The `ChangedRows` that turn the stored table `stored` into the rows of `select` (same columns,
    ordered by `key`), found in DuckDB in one pass (a full join by key): rows whose key is new are
    inserted, rows whose key is gone deleted, rows that differ in any column (null-safe) updated.
    Only those rows are read into Python."""
    on = " and ".join(f"_n.{quote_identifier(k)} = _o.{quote_identifier(k)}" for k in key)
    first = quote_identifier(key[0])
    columns = list(conn.sql(f"select * from ({select}) limit 0").columns)
    differs = " or ".join(f"_n.{quote_identifier(c)} is distinct from _o.{quote_identifier(c)}" for c in columns)
    old = ", ".join(f"_o.{quote_identifier(k)} as {quote_identifier('_old_' + k)}" for k in key)
    diff, new = f"__diff_{secrets.token_hex(4)}", f"__new_{secrets.token_hex(4)}"
    conn.execute(f"create temp table {new} as {select}")  # computed once: for the change and its check
    conn.execute(f"create temp table {diff} as select _n.*, {old}, case when _n.{first} is null then 'delete' "
                 f"when _o.{first} is null then 'insert' else 'update' end as _change from {new} _n "
                 f"full join {stored} _o on {on} where _n.{first} is null or _o.{first} is null or {differs}")
    try:
        sums = content_sums(conn, f"select * from {new}")
        order = ", ".join(map(quote_identifier, key))
        picked = ", ".join(map(quote_identifier, columns))

        def frame(sql: str) -> pl.DataFrame:
            return pl.from_arrow(conn.sql(sql).to_arrow_table())  # type: ignore[return-value]

        updates = frame(f"select {picked} from {diff} where _change = 'update' order by {order}")
        inserts = frame(f"select {picked} from {diff} where _change = 'insert' order by {order}")
        deletes = frame(f"select {', '.join(quote_identifier('_old_' + k) + ' as ' + quote_identifier(k) for k in key)} "
                        f"from {diff} where _change = 'delete'")
        # new rows are appended: in key order only when they sort after every stored row
        appendable = not inserts.height or (len(key) == 1 and bool(conn.execute(
            f"select coalesce((select min({first}) from {diff} where _change = 'insert') > "
            f"(select max({first}) from {stored}), true)").fetchall()[0][0]))
    finally:
        conn.execute(f"drop table if exists {diff}")
        conn.execute(f"drop table if exists {new}")
    return ChangedRows(key=tuple(key), deletes=deletes, updates=updates, inserts=inserts, expected=select,
                       rewrite=f"select * from ({select}) _e order by {order}",
                       validated_before=validated_before, appendable=appendable, expected_sums=sums)
