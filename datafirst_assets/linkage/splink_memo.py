"""Splink's SQL parsing, done once per distinct text in a process instead of on every use.

Splink parses the same SQL strings with sqlglot again and again: every comparison level's
condition when a Linker is made (validation), every level's condition parsed, normalised and
simplified at the start of each EM session (which levels are exact matches, to undo the
blocking rule's effect on the prior) and when term-frequency adjustments are computed, and every
column name each time an input column is built. The answers depend on the text and the SQL
dialect alone, yet in `make demo`'s first run these parses were about a tenth of the steps' time
(7 datasets, two EM sessions and two Linkers each, ~50 levels per model).

:func:`install` memoises those four functions on their text and dialect, and the SQL of a column
(written by sqlglot from its parts every time a column is named: ~9,000 times in that run). What they return is
unchanged (the tests compare every level of a model with Splink's own functions); a level's
properties still read its current condition, so a level whose SQL changes is looked up under
its new text. Only answers are kept, never errors: an unparseable condition raises as before.
Installed at the first use of Splink through :mod:`datafirst_assets.linkage.settings` and when
a Linker is made (:func:`datafirst_assets.linkage.train.make_linker`); does nothing when the
installed Splink lacks one of the functions (another version: parsing as Splink does it).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

#: Distinct texts kept per memo (a model has ~50 levels and ~30 columns; seven datasets, a few models each).
MEMO_SIZE = 4096

_installed = False


def install() -> bool:
    """Memoise Splink's parsing of comparison levels and column names (once per process).
    Returns whether the memos are in place."""
    global _installed
    if _installed:
        return True
    try:
        from splink.internals.comparison_level import ComparisonLevel
        from splink.internals.input_column import SqlglotColumnTreeBuilder
    except ImportError:
        return False
    originals = (ComparisonLevel.__dict__.get("_is_exact_match"), ComparisonLevel.__dict__.get("_exact_match_colnames"),
                 ComparisonLevel.__dict__.get("_validate_sql"),
                 SqlglotColumnTreeBuilder.__dict__.get("from_raw_column_name_or_column_reference"),
                 SqlglotColumnTreeBuilder.__dict__.get("sql"))
    is_exact, exact_colnames, validate_sql, from_raw, column_sql = originals
    if not (isinstance(is_exact, property) and isinstance(exact_colnames, property) and callable(validate_sql)
            and isinstance(from_raw, classmethod) and isinstance(column_sql, property)
            and SqlglotColumnTreeBuilder.__dataclass_params__.frozen):
        return False
    ComparisonLevel._is_exact_match = property(_memo_is_exact_match(is_exact.fget))
    ComparisonLevel._exact_match_colnames = property(_memo_exact_match_colnames(exact_colnames.fget))
    ComparisonLevel._validate_sql = _memo_validate_sql(validate_sql)
    SqlglotColumnTreeBuilder.from_raw_column_name_or_column_reference = classmethod(
        _memo_column_builder(from_raw.__func__))
    # a frozen dataclass: equal builders (every field equal) write the same SQL
    SqlglotColumnTreeBuilder.sql = property(lru_cache(maxsize=MEMO_SIZE)(column_sql.fget))
    ComparisonLevel._datafirst_unmemoised = dict(zip(
        ("_is_exact_match", "_exact_match_colnames", "_validate_sql"), (is_exact.fget, exact_colnames.fget, validate_sql)))
    SqlglotColumnTreeBuilder._datafirst_unmemoised = {"from_raw_column_name_or_column_reference": from_raw.__func__,
                                                      "sql": column_sql.fget}
    _installed = True
    return True


def _level_key(level: Any) -> tuple[bool, str, str]:
    """What a level's parse depends on: whether it is the ELSE level, its condition, its dialect."""
    return level._is_else_level, level.sql_condition, level.sqlglot_dialect


def _by_level_text(original):
    """``original(level)`` computed once per distinct level text (answers only: an error is raised again each time)."""
    answers: dict[tuple[bool, str, str], Any] = {}

    def memoised(level: Any) -> Any:
        key = _level_key(level)
        if key not in answers:
            answer = original(level)
            if len(answers) >= MEMO_SIZE:
                return answer
            answers[key] = answer
        return answers[key]

    return memoised


def _memo_is_exact_match(original):
    by_text = _by_level_text(original)

    def _is_exact_match(self) -> bool:
        return by_text(self)

    return _is_exact_match


def _memo_exact_match_colnames(original):
    by_text = _by_level_text(lambda level: tuple(original(level)))

    def _exact_match_colnames(self) -> list[str]:
        return list(by_text(self))  # a fresh list: callers may change it

    return _exact_match_colnames


def _memo_validate_sql(original):
    by_text = _by_level_text(original)  # raises on SQL that does not parse; only what parsed is remembered

    def _validate_sql(self) -> bool:
        return by_text(self)

    return _validate_sql


def _memo_column_builder(original):
    # the builder is a frozen dataclass: one instance per text can be shared
    @lru_cache(maxsize=MEMO_SIZE)
    def by_text(cls: type, input_str: str, sqlglot_dialect: str | None):
        return original(cls, input_str, sqlglot_dialect)

    def from_raw_column_name_or_column_reference(cls, input_str, sqlglot_dialect):
        if not isinstance(input_str, str) or not (sqlglot_dialect is None or isinstance(sqlglot_dialect, str)):
            return original(cls, input_str, sqlglot_dialect)
        return by_text(cls, input_str, sqlglot_dialect)

    return from_raw_column_name_or_column_reference
