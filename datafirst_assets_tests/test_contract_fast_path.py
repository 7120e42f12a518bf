"""`contracts.fast_path`: one polars query answers "does every rule hold?" as pandera would, or
declines. (test_end_to_end's `test_the_contract_fast_path_never_passes_what_pandera_fails` compares
it with pandera on every table the pipeline stores.)"""

import polars as pl
import pytest

from datafirst_assets.common.pandera_polars import pa
from datafirst_assets.contracts.core import validate_table
from datafirst_assets.contracts.fast_path import holds_for_certain

SCHEMA = pa.DataFrameSchema(
    {
        "id": pa.Column(pl.String, pa.Check.str_matches(r"^[a-f0-9]{4}$"), unique=True),
        "score": pa.Column(pl.Float64, pa.Check.in_range(0, 1)),
        "age": pa.Column(pl.Int64, pa.Check.ge(0), nullable=True),
        "note": pa.Column(pl.String, pa.Check.str_length(min_value=1), nullable=True),
        "weight": pa.Column(pl.Float64),
    },
    strict=True, ordered=True, unique=["score", "age"], name="example",
)
GOOD = pl.DataFrame({"id": ["ab12", "cd34", "ef56"], "score": [0.0, 0.5, 1.0], "age": [3, None, 70],
                     "note": ["x", None, "yz"], "weight": [1.5, -2.0, 0.0]})


def test_a_frame_that_holds_its_contract_is_passed_in_one_query():
    assert holds_for_certain(GOOD, SCHEMA)
    assert holds_for_certain(GOOD.head(0), SCHEMA)  # no rows: every rule holds, as in pandera
    assert validate_table(GOOD, SCHEMA).passed


BROKEN = {
    "a null where none is allowed": GOOD.with_columns(pl.Series("score", [0.1, None, 0.3])),
    "NaN counts as null": GOOD.with_columns(pl.Series("weight", [0.1, float("nan"), 0.3])),
    "a duplicate in a unique column": GOOD.with_columns(pl.Series("id", ["ab12", "ab12", "ef56"])),
    "out of range": GOOD.with_columns(pl.Series("score", [0.1, 1.5, 0.3])),
    "below a minimum": GOOD.with_columns(pl.Series("age", [3, -1, 70])),
    "not matching the pattern": GOOD.with_columns(pl.Series("id", ["ab12", "XYZ!", "ef56"])),
    "too short": GOOD.with_columns(pl.Series("note", ["x", "", "yz"])),
    "a duplicated column set": GOOD.with_columns(pl.Series("score", [0.5, 0.5, 0.5]), pl.Series("age", [3, 3, 4])),
    "another dtype": GOOD.with_columns(pl.col("age").cast(pl.Int32)),
    "a column missing": GOOD.drop("note"),
    "a column too many": GOOD.with_columns(pl.lit(1).alias("extra")),
    "columns out of order": GOOD.select("score", "id", "age", "note", "weight"),
}


@pytest.mark.parametrize("problem", sorted(BROKEN))
def test_a_broken_rule_is_left_to_pandera_which_reports_it(problem):
    frame = BROKEN[problem]
    assert not holds_for_certain(frame, SCHEMA)
    assert not validate_table(frame, SCHEMA).passed


def test_a_null_in_a_nullable_column_is_not_checked_against_its_rule():
    frame = GOOD.with_columns(pl.Series("note", [None, None, None], dtype=pl.String))
    assert holds_for_certain(frame, SCHEMA)


def test_rules_it_cannot_read_are_left_to_pandera():
    custom = SCHEMA.add_columns({"n": pa.Column(pl.Int64, pa.Check(lambda data: data.lazyframe.select(pl.col(data.key) > 0), name="positive"))})
    frame = GOOD.with_columns(pl.Series("n", [1, 2, 3]))
    assert not holds_for_certain(frame, custom)  # declined, not failed:
    assert validate_table(frame, custom).passed
    with_frame_check = pa.DataFrameSchema(SCHEMA.columns, checks=[pa.Check(lambda df: True)], strict=True)
    assert not holds_for_certain(GOOD, with_frame_check)
    coerced = pa.DataFrameSchema(SCHEMA.columns, coerce=True)
    assert not holds_for_certain(GOOD, coerced)
