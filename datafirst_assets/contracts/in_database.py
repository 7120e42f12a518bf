"""Contracts checked where the table lives: pandera's Ibis backend runs the rules inside DuckDB.

A table computed by DuckDB (a `WarehouseQuery`) or streamed from a lazy frame is never a Python
frame, so reading it back into polars to validate it would undo the point. `validate_in_duckdb`
translates the table's pandera.polars contract into a `pandera.ibis` schema (same columns, dtypes,
nullability, uniqueness and built-in rules: isin, ge / le / in_range, str_matches, str_length)
and validates the staging table through Ibis's DuckDB backend: every rule is a SQL aggregate, and
only failing values leave the database.

Two gaps of pandera.ibis (0.35) are filled here: a column's `unique=True` is not checked by its
column backend, so it becomes a table-level uniqueness rule; and its failure cases are an escaped
pandas frame without counts, so each failing rule's count and a few sample rows are read with
SQL, giving the same `ContractReport` (rule, failing count, sample rows) as the polars path.

Rules written as polars code (the JSON shape of a model, "no listed count under 10") cannot run in
DuckDB: `ibis_contract` returns None for such a contract and the caller validates in polars. Only
one-row documents and catalogues carry such rules, so that read is small.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
import duckdb
# first: pandera itself loaded without pandas (`pandera_polars`), as the code location loads it
from datafirst_assets.common.pandera_polars import pa
import ibis
import pandera.ibis as pi
import polars as pl
from ibis.formats.polars import PolarsType
from pandera.api.function_dispatch import Dispatcher
from pandera.errors import SchemaError, SchemaErrorReason, SchemaErrors

from datafirst_assets.contracts.core import SAMPLE_ROWS, SAMPLE_VALUES, ContractReport, RuleFailure, unique_sets
from datafirst_assets.common.sql import quote_identifier, quote_literal


def _is_builtin(check: pa.Check) -> bool:
    """pandera's built-in checks dispatch on the data's backend; a polars-code check does not."""
    return isinstance(check._check_fn, Dispatcher)


def _ibis_dtype(dtype):
    polars_type = dtype.type
    return PolarsType.to_ibis(polars_type() if isinstance(polars_type, type) else polars_type)


def _ibis_contract(contract: pa.DataFrameSchema) -> pi.DataFrameSchema | None:
    if not all(_is_builtin(c) for c in contract.checks):
        return None
    columns = {}
    for name, column in contract.columns.items():
        if not all(_is_builtin(c) for c in column.checks):
            return None
        checks = [copy.copy(c) for c in column.checks]
        for check in checks:
            check.n_failure_cases = SAMPLE_VALUES  # only a few failing values leave the database
        columns[name] = pi.Column(_ibis_dtype(column.dtype) if column.dtype is not None else None, checks=checks,
                                  nullable=column.nullable, required=column.required, description=column.description)
    # Uniqueness is left out: checked by `_duplicates` (pandera.ibis ignores a column's `unique` and
    # stops at the first failing set of columns).
    return pi.DataFrameSchema(columns, strict=contract.strict, ordered=contract.ordered, name=contract.name)


_TRANSLATED: dict[int, tuple[pa.DataFrameSchema, pi.DataFrameSchema | None]] = {}


def ibis_contract(contract: pa.DataFrameSchema) -> pi.DataFrameSchema | None:
    """The contract as a pandera.ibis schema, or None when a rule is polars code (translated once
    per contract object: schemas are not hashable, contracts are cached objects)."""
    if id(contract) not in _TRANSLATED:
        _TRANSLATED[id(contract)] = (contract, _ibis_contract(contract))
    return _TRANSLATED[id(contract)][1]


def _count(conn: duckdb.DuckDBPyConnection, table: str, where: str) -> int:
    return conn.execute(f"select count(*) from {table} where {where}").fetchall()[0][0]  # type: ignore[index]


def _sql_literal(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return quote_literal(str(value))


def _failing_values(error: SchemaError, column: str) -> list:
    cases = error.failure_cases
    if cases is None or isinstance(cases, str) or not hasattr(cases, "get"):
        return []
    values = []
    for case in list(cases.get("failure_case", [])):
        value = case.get(column) if isinstance(case, dict) else case
        if value is not None and value not in values:
            values.append(value)
    return values[:SAMPLE_VALUES]


def _rule_failure(conn, table: str, rows: int, error: SchemaError) -> tuple[RuleFailure, str | None]:
    """One broken rule: its name, the column, how many rows break it (counted in DuckDB), a few
    values, and the SQL condition selecting sample rows (None for a table-level problem)."""
    reason = error.reason_code
    column = getattr(error.schema, "name", None)
    check = error.check
    rule = str(getattr(check, "error", None) or getattr(check, "name", None) or check or reason)
    if reason == SchemaErrorReason.SERIES_CONTAINS_NULLS:
        where = f"{quote_identifier(column)} is null"
        return RuleFailure("not_nullable", column, _count(conn, table, where), ("null",)), where
    if reason == SchemaErrorReason.DATAFRAME_CHECK and column is not None:
        values = _failing_values(error, column)
        failing = _count_failing_check(error, values, conn, table, column)
        where = f"{quote_identifier(column)} in ({', '.join(map(_sql_literal, values))})" if values else None
        return RuleFailure(rule, column, failing, tuple(map(str, values))), where
    # dtype, missing or unexpected columns, column order: a property of the whole table
    column = column or str(error.failure_cases if isinstance(error.failure_cases, str) else "(table)")
    found = error.failure_cases if isinstance(error.failure_cases, str) else ""
    return RuleFailure(rule if rule != str(reason) else str(reason.name).lower(), column, rows,
                       (found,) if found else ()), None


def _count_failing_check(error: SchemaError, values: list, conn, table: str, column: str) -> int:
    """Rows failing a built-in value check, counted by DuckDB through the check's own Ibis output."""
    output = error.check_output
    try:
        if isinstance(output, ibis.Table):
            output = output[[c for c in output.columns if c.endswith("check_output")][-1]]
        return int((~output.fill_null(True)).cast("int64").sum().execute() or 0)
    except Exception:  # noqa: BLE001  (an unusual output shape: fall back to the sampled values)
        if not values:
            return 0
        return _count(conn, table, f"{quote_identifier(column)} in ({', '.join(map(_sql_literal, values))})")


def _duplicates(conn, table: str, keys: list[str]) -> tuple[RuleFailure, str] | None:
    """Rows sharing their key with another row (every copy counts), by a DuckDB group-by."""
    key_sql = ", ".join(map(quote_identifier, keys))
    groups = f"select {key_sql}, count(*) as n from {table} group by all having count(*) > 1"
    failing = conn.execute(f"select coalesce(sum(n), 0) from ({groups})").fetchall()[0][0]  # type: ignore[index]
    if not failing:
        return None
    examples = [" / ".join(map(str, row[:-1])) for row in
                conn.execute(f"{groups} order by n desc limit {SAMPLE_VALUES}").fetchall()]
    rule = f"unique {keys}" if len(keys) > 1 else "unique"
    where = f"({key_sql}) in (select ({key_sql}) from ({groups}))"
    return RuleFailure(rule, ", ".join(keys), int(failing), tuple(examples)), where


@contextmanager
def _ibis_backend(conn: duckdb.DuckDBPyConnection):
    """Ibis on the caller's connection (the only one that sees its uncommitted staging table).
    Ibis sets the connection's time zone to UTC and turns off replacement scans; both are put back
    so the rest of the step sees the connection as it was."""
    saved = conn.execute("select current_setting('TimeZone'), current_setting('python_enable_replacements')").fetchall()[0]
    try:
        yield ibis.duckdb.from_connection(conn)
    finally:
        conn.execute(f"set TimeZone = {_sql_literal(saved[0])}")
        conn.execute(f"set python_enable_replacements = {_sql_literal(bool(saved[1]))}")


def validate_in_duckdb(conn: duckdb.DuckDBPyConnection, database: str, schema: str, table: str,
                       contract: pa.DataFrameSchema) -> ContractReport | None:
    """Validate the stored table `database.schema.table` against `contract` inside DuckDB, on `conn`
    (inside the caller's transaction, so a staging table is visible). None: the contract has rules
    written in polars and must be checked in polars."""
    translated = ibis_contract(contract)
    if translated is None:
        return None
    name = f"{quote_identifier(database)}.{quote_identifier(schema)}.{quote_identifier(table)}"
    rows = conn.execute(f"select count(*) from {name}").fetchall()[0][0]  # type: ignore[index]
    report = ContractReport(contract=contract.name or "contract", rows=rows)
    with _ibis_backend(conn) as backend:
        relation = backend.table(table, database=(database, schema))
        failures = []
        try:
            translated.validate(relation, lazy=True)
        except SchemaErrors as errors:
            failures = [_rule_failure(conn, name, rows, error) for error in errors.schema_errors]
    present = set(relation.columns)
    failures += [d for keys in unique_sets(contract) if set(keys) <= present and (d := _duplicates(conn, name, keys))]
    if failures:
        report.failures = sorted((f for f, _ in failures), key=lambda f: -f.failing_rows)
        conditions = [where for _, where in failures if where]
        if conditions:
            columns = list(dict.fromkeys(f.column for f, _ in failures if f.column in contract.columns))
            shown = ", ".join(map(quote_identifier, dict.fromkeys([*list(contract.columns)[:1], *columns])))
            report.sample = pl.from_arrow(conn.sql(
                f"select {shown} from {name} where {' or '.join(conditions)} limit {SAMPLE_ROWS}").to_arrow_table())
    return report
