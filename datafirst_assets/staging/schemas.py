"""pandera.polars schemas of staged tables, generated from the source registry."""

from __future__ import annotations

from functools import cache

from datafirst_assets.common.pandera_polars import pa
import polars as pl

from datafirst_assets.raw.delivery import PARTITION_COLUMN
from datafirst_assets.sources.identifiers import CRO_PATTERN, PNC_PATTERN, POSTCODE_PATTERN
from datafirst_assets.sources.registry import ETHNIC_GROUP, ETHNICITY_CODES, SOURCES
from datafirst_assets.sources.spec import ColumnSpec
from datafirst_assets.staging.standardise import ORIGINAL_SUFFIX, staged_columns, staged_dtype

_PATTERNS = {"postcode": POSTCODE_PATTERN, "pnc": PNC_PATTERN, "cro": CRO_PATTERN}
DOB_ISSUES = ["unparseable", "placeholder", "out_of_range"]


def _column(spec: ColumnSpec) -> pa.Column:
    checks: list[pa.Check] = []
    if spec.kind == "code" and spec.codes:
        checks.append(pa.Check.isin(list(spec.codes)))
    if spec.kind == "sex":
        checks.append(pa.Check.isin(["M", "F"]))
    if spec.kind == "ethnicity":
        checks.append(pa.Check.isin(list(ETHNICITY_CODES)))
    if spec.kind in _PATTERNS:
        checks.append(pa.Check.str_matches(_PATTERNS[spec.kind]))
    if spec.kind == "name":
        checks.append(pa.Check.str_matches(r"^[A-Z' \-]+$"))
    # The registry's limits, enforced by staging's quarantine: checked again on what is stored.
    if staged_dtype(spec) == pl.String():
        checks.append(pa.Check.str_length(max_value=spec.length_limit))
    if spec.min_value is not None:
        checks.append(pa.Check.ge(spec.min_value))
    if spec.max_value is not None:
        checks.append(pa.Check.le(spec.max_value))
    return pa.Column(
        staged_dtype(spec),
        checks=checks,
        nullable=not (spec.required or spec.kind == "id"),
        description=spec.text,
    )


@cache
def staged_schema(source_key: str, table_name: str) -> pa.DataFrameSchema:
    table = SOURCES[source_key].table(table_name)
    columns: dict[str, pa.Column] = {
        PARTITION_COLUMN: pa.Column(pl.String, pa.Check.str_matches(r"^\d{4}-\d{2}-\d{2}$"),
                                    description="Extract date of the delivery the row came in (the partition)"),
        **{c.name: _column(c) for c in table.columns},
        "_source_file": pa.Column(pl.String, description="Delivered file the row was read from"),
        "_row_number": pa.Column(pl.Int64, pa.Check.ge(2),
                                 description="Line of the row in that file (the header is line 1)"),
    }
    for c in table.columns:
        if c.kind == "name":
            columns[f"{c.name}{ORIGINAL_SUFFIX}"] = pa.Column(
                pl.String, nullable=True, description=f"{c.name} as written (before folding to ASCII)")
    for c in table.columns:
        if c.kind == "dob":
            columns[f"{c.name}_issue"] = pa.Column(
                pl.String, pa.Check.isin(DOB_ISSUES), nullable=True,
                description=f"Why {c.name} is null although a value was delivered: {', '.join(DOB_ISSUES)}")
    if any(c.kind == "ethnicity" for c in table.columns):
        columns["ethnic_group"] = pa.Column(pl.String, pa.Check.isin([*ETHNIC_GROUP.values(), "Unknown"]),
                                            description="Ethnic group (ONS 5+1) from the ethnicity code")
    assert list(columns) == staged_columns(table), "schema and staging disagree on columns"
    return pa.DataFrameSchema(
        columns, strict=True, ordered=True, name=f"staged_{source_key}_{table_name}",
        # Source ids are unique within a delivery; a later delivery may resend an updated row.
        unique=[PARTITION_COLUMN, table.id_column],
        description=f"{SOURCES[source_key].system} {table_name}: one row per {table.grain}",
    )


