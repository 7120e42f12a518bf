"""Writing only the rows that changed: a stored table updated in place instead of rewritten.

An incremental step that knows which of its rows changed (de-identification by row: a 1% extract
re-derives ~2% of a table's rows) used to hand the IO manager its whole table again, which read
every row into Python, validated every row against the contract and wrote every row. A
`ChangedRows` output carries only the change: the rows to delete (by the table's unique key),
the rows to update where they are (new versions of stored rows: a row keeps its place, so the
table keeps the order a rewrite gives), and the rows to append. Inside the write transaction:

1. The stored table must hold exactly the content that was validated, every row, when it was last
   written (`validated_before`, the write's `contract_content`): its kept rows met the contract then
   and still do (same code: the content fingerprint includes it). Otherwise, or when the columns
   differ, or the new rows would not sort after the stored ones, the table is rewritten from
   `expected` (validated whole, as any SQL output).
2. The updated and appended rows are validated against the contract before anything is written.
3. Delete, update, insert; then the unique key is checked on the whole table and the table's
   content (row count and the sum of its rows' hashes, in DuckDB) must equal `expected`'s. Any
   difference rewrites the table from `expected` in the same transaction, so the stored table is
   always exactly `expected`: the in-place path only saves work.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import polars as pl
from dagster import AssetKey

from datafirst_assets.common.sql import quote_identifier
from datafirst_assets.contracts.registry import contract_for
from datafirst_assets.contracts.wiring import check_before_store
from datafirst_assets.warehouse.content import contract_content, table_columns


@dataclass(frozen=True)
class ChangedRows:
    """An asset output changing some rows of its stored table in place (see the module docstring)."""

    key: tuple[str, ...]       # the table's unique key (no nulls): how a stored row is found
    deletes: pl.DataFrame      # key values of stored rows that are no longer in the table
    updates: pl.DataFrame      # new versions of stored rows (same key), every column
    inserts: pl.DataFrame      # new rows, every column, appended in this order
    expected: str              # SELECT: the whole table as it must be afterwards, in order
    validated_before: str | None  # `contract_content` of the stored table when last validated whole
    appendable: bool = True    # the new rows sort after every stored one (else the table is rewritten)

    @property
    def changed(self) -> int:
        return self.deletes.height + self.updates.height + self.inserts.height


def content_sums(conn: duckdb.DuckDBPyConnection, select: str) -> tuple[int, int]:
    """Row count and the sum of the rows' hashes of a SELECT (order-independent, in DuckDB)."""
    rows, hashes = conn.execute(
        f"select count(*), coalesce(sum(hash(_t)::hugeint), 0) from ({select}) _t").fetchall()[0]
    return int(rows), int(hashes)


def _why_not_in_place(conn: duckdb.DuckDBPyConnection, name: str, schema: str, table: str,
                      changes: ChangedRows, key: AssetKey | None, frame_columns: dict[str, str]) -> str | None:
    """Why the table must be rewritten whole (None: it can be changed in place)."""
    stored = table_columns(conn, schema, table)
    if not stored:
        return "no stored table"
    if list(stored.items()) != list(frame_columns.items()):
        return "the stored columns differ"
    if not changes.appendable:
        return "new rows sort before stored ones"
    contract = contract_for(key) if key is not None else None
    if contract is not None:
        from datafirst_assets.warehouse.io_manager import StoredTable

        database = conn.execute("select current_database()").fetchall()[0][0]
        if changes.validated_before != contract_content(conn, StoredTable(database, schema, table), contract.name):
            return "the stored table is not the content last validated whole"
    return None


def _columns_of(conn: duckdb.DuckDBPyConnection, view: str) -> dict[str, str]:
    relation = conn.table(view)
    return dict(zip(relation.columns, map(str, relation.types)))


def apply_changed_rows(conn: duckdb.DuckDBPyConnection, name: str, schema: str, table: str,
                       changes: ChangedRows, key: AssetKey | None) -> tuple[str | None, dict]:
    """Inside the caller's transaction: `changes` applied to `name` in place. Returns (None, contract
    metadata of the rows written) when done, or (the reason, {}) when the caller must rewrite the
    table from `changes.expected` (nothing was left half-changed that a rewrite does not replace)."""
    written = pl.concat([changes.updates, changes.inserts], how="vertical")
    views = {part: f"__changed_{part}_{secrets.token_hex(4)}" for part in ("deletes", "updates", "inserts")}
    for part, view in views.items():
        conn.register(view, getattr(changes, part).to_arrow())
    try:
        reason = _why_not_in_place(conn, name, schema, table, changes, key, _columns_of(conn, views["updates"]))
        if reason is not None:
            return reason, {}
        contract = check_before_store(key, written)  # raises: the caller's transaction rolls back
        on = " and ".join(f"{name}.{quote_identifier(k)} = _c.{quote_identifier(k)}" for k in changes.key)
        if changes.deletes.height:
            conn.execute(f"delete from {name} using {views['deletes']} _c where {on}")
        if changes.updates.height:
            columns = [c for c in changes.updates.columns if c not in changes.key]
            assignments = ", ".join(f"{quote_identifier(c)} = _c.{quote_identifier(c)}" for c in columns)
            conn.execute(f"update {name} set {assignments} from {views['updates']} _c where {on}")
        if changes.inserts.height:
            conn.execute(f"insert into {name} select * from {views['inserts']}")
        problem = _after_problem(conn, name, changes)
        return (problem, {}) if problem else (None, contract)
    finally:
        for view in views.values():
            conn.unregister(view)


def _after_problem(conn: duckdb.DuckDBPyConnection, name: str, changes: ChangedRows) -> str | None:
    """The changed table is exactly `expected`, and its key unique (else: why not)."""
    if duplicates(conn, name, changes.key):
        return "the changed table has duplicate keys"
    if content_sums(conn, f"select * from {name}") != content_sums(conn, changes.expected):
        return "the changed table differs from the expected one"
    return None


def duplicates(conn: duckdb.DuckDBPyConnection, name: str, key: Sequence[str]) -> int:
    keys = ", ".join(map(quote_identifier, key))
    return conn.execute(f"select count(*) from (select {keys} from {name} group by all having count(*) > 1)"
                        ).fetchall()[0][0]

