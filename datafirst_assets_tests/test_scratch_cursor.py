"""SQL over frames in memory on one in-memory DuckDB per process (warehouse/connection.scratch_cursor)."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from datafirst_assets.linkage.incremental import record_hashes
from datafirst_assets.linkage.threshold import blocking_lists
from datafirst_assets.warehouse.connection import scratch_cursor


def test_no_database_is_opened_after_the_first(monkeypatch):
    with scratch_cursor() as con:
        assert con.sql("select 1").fetchall() == [(1,)]
    opened = []
    real = duckdb.connect
    monkeypatch.setattr(duckdb, "connect", lambda *a, **k: opened.append(a) or real(*a, **k))
    records = pl.DataFrame({"record_id": ["1", "2"], "forename": ["ann", None], "surname": ["lee", "lee"],
                            "dob": ["1990-01-01", "1990-01-01"]})
    hashes = record_hashes(records)
    pairs = pl.DataFrame({"record_id_l": ["1"], "record_id_r": ["2"]})
    lists = blocking_lists(pairs, records, ['l."surname" = r."surname"', 'l."dob" = r."dob"'])
    assert opened == []
    assert hashes.height == 2 and hashes["record_hash"].str.len_chars().to_list() == [16, 16]
    assert lists is not None and lists.rows() == [("1", "2", True, True)]  # by names, by dob


def test_what_a_cursor_registers_goes_with_it():
    with scratch_cursor() as con:
        con.register("mine", pl.DataFrame({"a": [1]}).to_arrow())
        assert con.sql("select a from mine").fetchall() == [(1,)]
    with scratch_cursor() as con, pytest.raises(duckdb.Error):
        con.sql("select a from mine").fetchall()


def test_record_hashes_are_the_md5_of_the_fields_as_before():
    records = pl.DataFrame({"record_id": [7], "forename": ["ann"], "dob": [None]}, schema_overrides={"dob": pl.Date})
    expected = duckdb.sql("select substr(md5(concat_ws(chr(31), 'ann', chr(0))), 1, 16)").fetchall()[0][0]
    assert record_hashes(records).to_dicts() == [{"record_id": "7", "record_hash": expected}]
