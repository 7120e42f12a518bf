"""Text for SQL built by hand (DuckDB): names and string values quoted once, the same way everywhere."""

from __future__ import annotations

from collections.abc import Iterable


def quote_identifier(name: str) -> str:
    """A schema, table or column name as a quoted identifier (inner double quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """A string as a SQL string literal (inner single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def row_text_sql(columns: Iterable[str]) -> str:
    """A row's ``columns`` as one string: each as text (a null as chr(0)), joined by chr(31). What
    the stable hashes are taken of (records' `record_hash`, persons' `variants_hash`, the review
    queue's draw), so the same values hash the same in every process and version."""
    parts = ", ".join(f"coalesce(cast({quote_identifier(c)} as varchar), chr(0))" for c in columns) or "''"
    return f"concat_ws(chr(31), {parts})"
