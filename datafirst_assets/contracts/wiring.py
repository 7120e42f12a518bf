"""Where contracts meet Dagster: before every warehouse write, and on every asset's definition."""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import duckdb
import polars as pl
from dagster import AssetKey, AssetsDefinition, AssetSpec

from datafirst_assets.contracts.core import (
    IN_DATABASE_ROWS,
    ContractViolation,
    column_schema,
    enforce_contract,
    validate_table,
)
from datafirst_assets.contracts.registry import contract_for
from datafirst_assets.common.sql import quote_identifier

COLUMN_SCHEMA = "dagster/column_schema"


# asset key -> (the frame last found to hold the contract before it was stored, held weakly so no
# table outlives its step; the contract it held)
_PASSED_BEFORE_STORE: dict[AssetKey, tuple[weakref.ref, object]] = {}


def check_before_store(key: AssetKey | None, frame: pl.DataFrame) -> dict:
    """Validate `frame` against the contract of `key` before it is written.

    Raises `ContractViolation` (the write never happens); returns output metadata saying which
    contract held (empty for assets without one).
    """
    schema = contract_for(key) if key is not None else None
    if schema is None:
        return {}
    metadata = enforce_contract(key.to_user_string(), frame, schema).metadata()
    _PASSED_BEFORE_STORE[key] = (weakref.ref(frame), schema)
    return metadata


def passed_before_store(key: AssetKey, frame: pl.DataFrame, schema) -> bool:
    """Whether this very frame (the same object, not an equal one) held `schema`, every rule on every
    row, when the IO manager validated it before storing it for `key` in this process: a step's own
    check of a frame it has just output (staging's `schema_valid`, whose schema is the staged table's
    contract) then need not validate it a second time. False for any other frame or schema."""
    ref, schema_held = _PASSED_BEFORE_STORE.get(key, (None, None))
    return ref is not None and ref() is frame and schema_held is schema


def check_in_database_before_store(key: AssetKey | None, conn: duckdb.DuckDBPyConnection, database: str,
                                   schema: str, table: str) -> dict:
    """Validate a table that only exists in DuckDB (a staging table written from a lazy frame or a
    SQL query, inside the write transaction) against the contract of `key`, without reading it
    into Python: pandera's Ibis backend runs the rules in DuckDB. Raises `ContractViolation` (the
    caller's transaction rolls back, the previous table stays); returns output metadata."""
    contract = contract_for(key) if key is not None else None
    if contract is None:
        return {}
    name = ".".join(quote_identifier(part) for part in (database, schema, table))
    report = None
    rows = conn.execute(f"select count(*) from {name}").fetchall()[0][0]  # type: ignore[index]
    if rows > IN_DATABASE_ROWS:
        # imported here: pandera's Ibis backend (ibis, sqlglot) costs ~0.4 s at import (and its
        # first backend ~0.15 s more), and loading the code location (every run's process) and
        # runs storing only small tables must not pay for what only big tables use
        from datafirst_assets.contracts.in_database import validate_in_duckdb

        report = validate_in_duckdb(conn, database, schema, table, contract)
        checked_in = "duckdb (pandera.ibis)"
    if report is None:  # a small table (read into polars, faster for it), or a rule written in polars
        report = validate_table(pl.from_arrow(conn.sql(f"select * from {name}").to_arrow_table()), contract)
        checked_in = "polars"
    if not report.passed:
        raise ContractViolation(key.to_user_string(), report)
    return {**report.metadata(), "contract_checked_in": checked_in}


def _with_columns(spec: AssetSpec) -> AssetSpec:
    schema = contract_for(spec.key)
    if schema is None or COLUMN_SCHEMA in (spec.metadata or {}):
        return spec
    return spec.merge_attributes(metadata={COLUMN_SCHEMA: column_schema(schema), "contract": schema.name})


def with_column_schemas(assets: Iterable) -> list:
    """Every asset with a contract carries it as `dagster/column_schema`, so the UI's Columns tab
    describes the table before it is first materialised."""
    out = []
    for item in assets:
        if isinstance(item, AssetsDefinition):
            out.append(item.map_asset_specs(_with_columns))
        elif isinstance(item, AssetSpec):
            out.append(_with_columns(item))
        else:
            out.append(item)
    return out
