"""A table that holds its contract, found so in one polars query instead of pandera's many.

pandera's polars backend collects a query per rule (each column's nullability, uniqueness, dtype
and every check, then the frame's unique sets): for `make demo`'s ~260 writes of a few thousand
rows that was ~2 s of query overhead, with almost nothing to compute. `holds_for_certain` answers
only the question a write asks first, "does every rule hold?", and only for the rules it can put
into one `select` with pandera's own meaning:

- column presence, `strict` and `ordered`: the frame has exactly the contract's columns, or (not
  strict, not ordered) at least them;
- dtypes: pandera's own `DataType.check`, as its column backend calls it;
- `nullable=False` (a float's NaN counts as null, as in pandera), `unique=True`, the frame's
  `unique` column sets (`is_duplicated`, as pandera computes them);
- built-in element-wise checks (`in_range`, `ge`, `str_matches`, ...): the expression pandera's
  own check function builds, with its `ignore_na` rule.

Anything else (a custom or frame-wide check, coercion, regex column names, a missing optional
column, columns out of place) returns False, as does any rule that fails: pandera then validates
as before and writes the report. So the answer True is always pandera's answer; False only means
"ask pandera". `test_end_to_end.test_the_contract_fast_path_never_passes_what_pandera_fails` compares
the two on every table the pipeline stores and on broken copies; `test_contract_fast_path.py`, rule by rule.
"""

from __future__ import annotations

import polars as pl

from datafirst_assets.common.pandera_polars import pa
from pandera.api.polars.types import PolarsData  # after `pa`: it loads pandera without pandas first

# pandera's built-in checks whose polars implementation is `lazyframe.select(<one expression>)`
ELEMENT_WISE_BUILTINS = frozenset({
    "equal_to", "not_equal_to", "greater_than", "greater_than_or_equal_to", "less_than",
    "less_than_or_equal_to", "in_range", "isin", "notin", "str_matches", "str_contains",
    "str_startswith", "str_endswith", "str_length",
})


class _ExpressionOnly:
    """Stands in for the lazy frame a built-in check selects from: keeps the expression it selects."""

    def select(self, expression):
        return expression


def _check_expression(check, column: str) -> pl.Expr | None:
    """The boolean expression (true = row passes) pandera evaluates for `check`, or None if unknown."""
    function, arguments = getattr(check, "_check_fn", None), getattr(check, "_check_kwargs", None)
    if (check.name not in ELEMENT_WISE_BUILTINS or function is None or arguments is None
            or check.element_wise or check.groupby is not None):
        return None
    try:
        expression = function(PolarsData(_ExpressionOnly(), column), **arguments)
    except Exception:  # noqa: BLE001 - a signature this module does not know: pandera decides
        return None
    if not isinstance(expression, pl.Expr):
        return None
    return (expression | expression.is_null()) if check.ignore_na else expression.fill_null(False)


def _columns_in_place(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> bool:
    """The frame's columns pass pandera's presence, `strict` and `ordered` rules for certain."""
    if schema.strict not in (True, False):  # "filter" drops columns: pandera's business
        return False
    expected, found = list(schema.columns), frame.columns
    if schema.ordered:
        return found == expected if schema.strict else [c for c in found if c in expected] == expected
    return set(found) == set(expected) if schema.strict else set(expected) <= set(found)


def _column_rules(frame: pl.DataFrame, name: str, column) -> list[pl.Expr] | None:
    """Every rule of one column as an expression that is true when it holds; None if one is unknown."""
    if column.regex or column.coerce or getattr(column, "default", None) is not None:
        return None
    if column.dtype is not None:
        if not column.dtype.check(frame.schema[name], PolarsData(frame.lazy().select(name), name)):
            return None
    rules = []
    if not column.nullable:
        present = pl.col(name).is_not_null()
        if frame.schema[name].is_float():
            present = present & pl.col(name).is_not_nan()
        rules.append(present.all())
    if column.unique:
        rules.append(pl.col(name).is_duplicated().any().not_())
    for check in column.checks:
        expression = _check_expression(check, name)
        if expression is None:
            return None
        rules.append(expression.all())
    return rules


def holds_for_certain(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> bool:
    """True when every rule of `schema` is one this module evaluates as pandera does, and all hold."""
    if (schema.checks or schema.coerce or getattr(schema, "add_missing_columns", False)
            or getattr(schema, "drop_invalid_rows", False) or not _columns_in_place(frame, schema)):
        return False
    rules: list[pl.Expr] = []
    for name, column in schema.columns.items():
        column_rules = _column_rules(frame, name, column)
        if column_rules is None:
            return False
        rules += column_rules
    if schema.unique:
        sets = [list(schema.unique)] if all(isinstance(c, str) for c in schema.unique) else schema.unique
        for subset in sets:
            present = [c for c in subset if c in frame.columns]
            if present and frame.select(present).is_duplicated().any():
                return False
    if not rules:
        return True
    try:
        answers = frame.select([rule.alias(f"rule_{i}") for i, rule in enumerate(rules)]).row(0)
    except pl.exceptions.PolarsError:  # a rule polars cannot evaluate on this frame: pandera reports it
        return False
    return all(answer is True for answer in answers)
