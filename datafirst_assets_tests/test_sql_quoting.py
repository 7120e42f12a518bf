"""Names and values with quotes in them survive hand-written DuckDB SQL."""

import duckdb

from datafirst_assets.common.sql import quote_identifier, quote_literal


def test_a_name_and_a_value_with_quotes_round_trip_through_duckdb():
    conn = duckdb.connect()
    table, column, value = quote_identifier('odd "table" name'), quote_identifier('col "x"'), "O'Brien's \"alias\""
    conn.execute(f"create table {table} ({column} varchar)")
    conn.execute(f"insert into {table} values ({quote_literal(value)})")
    assert conn.execute(f"select {column} from {table}").fetchall() == [(value,)]
    assert quote_identifier('a"b') == '"a""b"' and quote_literal("a'b") == "'a''b'"
