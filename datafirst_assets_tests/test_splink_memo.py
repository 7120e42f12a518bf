"""Splink's SQL parsing memoised per distinct text (linkage/splink_memo.py): same answers, parsed once."""

from __future__ import annotations

from dataclasses import replace

import pytest
import sqlglot

from datafirst_assets.linkage.backend import make_db_api
from datafirst_assets.linkage.settings import model_spec_for_records
from datafirst_assets.linkage.splink_memo import install
from datafirst_assets.linkage.train import make_linker
from datafirst_assets_tests.linkage_fixtures import make_dataset


@pytest.fixture(scope="module")
def linker():
    records, _ = make_dataset(300, seed=5)
    spec = model_spec_for_records(records)
    return make_linker(make_db_api(), records, spec.settings, spec)


def _levels(linker):
    return [lvl for comp in linker._settings_obj.comparisons for lvl in comp.comparison_levels]


def test_making_a_linker_installs_the_memos(linker):
    from splink.internals.comparison_level import ComparisonLevel
    from splink.internals.input_column import SqlglotColumnTreeBuilder

    assert install()
    assert hasattr(ComparisonLevel, "_datafirst_unmemoised")
    assert hasattr(SqlglotColumnTreeBuilder, "_datafirst_unmemoised")


def test_memoised_answers_are_splinks_own_for_every_level(linker):
    from splink.internals.comparison_level import ComparisonLevel

    unmemoised = ComparisonLevel._datafirst_unmemoised
    exact = 0
    for lvl in _levels(linker):
        assert lvl._is_exact_match == unmemoised["_is_exact_match"](lvl)
        if lvl._is_exact_match:
            exact += 1
            assert lvl._exact_match_colnames == unmemoised["_exact_match_colnames"](lvl)
        assert lvl._validate_sql() is True
    assert exact >= 3  # the model has exact levels (names, dob, ids): the check means something


def test_each_level_text_is_parsed_once(linker, monkeypatch):
    for lvl in _levels(linker):  # every text seen once
        lvl._is_exact_match, lvl._validate_sql()
    parses = []
    real = sqlglot.parse_one
    monkeypatch.setattr(sqlglot, "parse_one", lambda *a, **k: parses.append(a) or real(*a, **k))
    for lvl in _levels(linker):
        lvl._is_exact_match, lvl._validate_sql()
        if lvl._is_exact_match:
            lvl._exact_match_colnames
    assert parses == []


def test_column_names_are_built_once_per_text_and_the_same():
    install()
    from splink.internals.input_column import SqlglotColumnTreeBuilder

    unmemoised = SqlglotColumnTreeBuilder._datafirst_unmemoised
    for text in ("surname", "first name", "lat_long['lat']", "names[1]"):
        built = SqlglotColumnTreeBuilder.from_raw_column_name_or_column_reference(text, "duckdb")
        assert built == unmemoised["from_raw_column_name_or_column_reference"](SqlglotColumnTreeBuilder, text, "duckdb")
        assert SqlglotColumnTreeBuilder.from_raw_column_name_or_column_reference(text, "duckdb") is built
        for variant in (built, replace(built, column_name=built.column_name + "_l"), replace(built, table="l")):
            assert variant.sql == unmemoised["sql"](variant)
            assert variant.sql is variant.sql  # written once


def test_a_column_written_again_is_not_generated_again(monkeypatch):
    install()
    from splink.internals.input_column import InputColumn

    column = InputColumn("first name", sqlglot_dialect_str="duckdb")
    first = (column.name, column.name_l, column.name_r, column.l_name_as_l)
    generated = []
    real = sqlglot.expressions.Expression.sql
    monkeypatch.setattr(sqlglot.expressions.Expression, "sql", lambda *a, **k: generated.append(a) or real(*a, **k))
    again = InputColumn("first name", sqlglot_dialect_str="duckdb")
    assert (again.name, again.name_l, again.name_r, again.l_name_as_l) == first
    assert generated == []


def test_sql_that_does_not_parse_still_raises_every_time():
    install()
    from splink.internals.comparison_level import ComparisonLevel
    from splink.internals.dialects import SplinkDialect

    for _ in range(2):
        with pytest.raises(ValueError, match="Error parsing"):
            ComparisonLevel(sql_condition="name_l = = (name_r", sql_dialect=SplinkDialect.from_string("duckdb"))


def test_a_level_whose_condition_changes_is_looked_up_by_its_new_text(linker):
    level = next(lvl for lvl in _levels(linker) if lvl._is_exact_match)
    other = next(lvl for lvl in _levels(linker) if not lvl._is_exact_match and not lvl._is_else_level)
    copy = level.copy()
    copy._sql_condition = other.sql_condition
    assert copy._is_exact_match is False
