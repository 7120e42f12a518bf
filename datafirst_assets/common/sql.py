"""Text for SQL built by hand (DuckDB): names and string values quoted once, the same way everywhere."""

from __future__ import annotations


def quote_identifier(name: str) -> str:
    """A schema, table or column name as a quoted identifier (inner double quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """A string as a SQL string literal (inner single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"
