"""Staged rows -> research-ready rows, column by column as the release spec says.

    deidentify_table(rows, spec, parent=parent_rows)   # one research table
    release_xjs_lookup(lookup)                         # per-dataset person -> cross-justice ids
    release_case_lookup(case_lookup)                   # hashed magistrates' <-> Crown Court case pairs

`rows` is the latest version of each record (person tables: with the per-dataset person id),
in the order the PII gate later compares against, so released row i is staged row i.
"""

from __future__ import annotations

import polars as pl

from datafirst_assets.deidentify.keys import keyed_hash
from datafirst_assets.deidentify.release_spec import (
    CASE_LOOKUP,
    XJS_LOOKUP,
    ReleaseColumn,
    ReleaseTable,
)
from datafirst_assets.linkage.xjs import LEVELS, PERSON, SEP

PARENT_EVENT_DATE = "_parent_event_date"


def age_in_years(dob: pl.Expr, at: pl.Expr) -> pl.Expr:
    """Whole years from `dob` to `at` (a birthday not yet reached that year does not count); null if negative."""
    before_birthday = (at.dt.month() < dob.dt.month()) | (
        (at.dt.month() == dob.dt.month()) & (at.dt.day() < dob.dt.day())
    )
    years = at.dt.year().cast(pl.Int32) - dob.dt.year().cast(pl.Int32) - before_birthday.cast(pl.Int32)
    return pl.when(years >= 0).then(years)


def postcode_area(postcode: pl.Expr) -> pl.Expr:
    """`SW1A 1AA` -> `SW`: the postcode area, the letters before the first digit."""
    return postcode.str.to_uppercase().str.extract(r"^\s*([A-Z]{1,2})\d", 1)


def _column_expr(column: ReleaseColumn, spec: ReleaseTable, rows: pl.DataFrame, key: bytes | None,
                 cache=None) -> pl.Expr | pl.Series:
    if column.treatment == "hash":
        return keyed_hash(rows[column.staged], namespace=column.hash_namespace, key=key, cache=cache).alias(column.name)
    if column.treatment == "age":
        at = pl.col(spec.event_date) if spec.event_date and spec.event_date in rows.columns else pl.col(PARENT_EVENT_DATE)
        return age_in_years(pl.col(column.staged), at).cast(column.dtype).alias(column.name)
    if column.treatment == "area":
        return postcode_area(pl.col(column.staged)).alias(column.name)
    if column.treatment == "person_id":
        return pl.col(column.name).cast(column.dtype)
    return pl.col(column.staged).cast(column.dtype).alias(column.name)


def aged_at_parent_event(spec: ReleaseTable, columns) -> bool:
    """Whether ages in `spec` are taken at the parent's event date: the table has an age column and
    its `columns` lack its own event date (parties of a case are aged at the case's date)."""
    return any(c.treatment == "age" for c in spec.columns) and not (spec.event_date and spec.event_date in columns)


def deidentify_table(rows: pl.DataFrame, spec: ReleaseTable, *, parent: pl.DataFrame | None = None,
                     parent_id: str | None = None, parent_event_date: str | None = None,
                     key: bytes | None = None, cache=None) -> pl.DataFrame:
    """Research-ready version of one table: exactly the spec's columns, in its order and types.

    Tables whose people are aged at the parent's event (parties of a case) pass the parent's
    rows with `parent_id` (the id column both share) and `parent_event_date`. `cache`: a
    `KeyedHashCache` (ids hashed by an earlier run are not hashed again).
    """
    if aged_at_parent_event(spec, rows.columns):
        if parent is None or parent_id is None or parent_event_date is None:
            raise ValueError(f"{spec.source}.{spec.name}: ages are taken at the parent's event date; pass the parent")
        dates = parent.select(pl.col(parent_id), pl.col(parent_event_date).alias(PARENT_EVENT_DATE)).unique(
            subset=[parent_id], keep="last")
        rows = rows.join(dates, on=parent_id, how="left", maintain_order="left")
    missing = [c.staged for c in spec.columns if c.staged and c.staged not in rows.columns]
    if spec.person_key and spec.person_key not in rows.columns:
        missing.append(spec.person_key)
    if missing:
        raise ValueError(f"{spec.source}.{spec.name}: input lacks columns {missing}")
    return rows.select([_column_expr(c, spec, rows, key, cache) for c in spec.columns])


def release_xjs_lookup(lookup: pl.DataFrame) -> pl.DataFrame:
    """One row per per-dataset person with its cross-justice ids (no record ids: they are per-record)."""
    persons = lookup.select(
        pl.col("source_dataset"),
        pl.col(PERSON).str.split_exact(SEP, 1).struct.field("field_1").cast(pl.Int64).alias("dataset_person_id"),
        *[pl.col(f"person_id_{level}").cast(pl.Int64).alias(f"xjs_person_id_{level}") for level in LEVELS],
    ).unique(subset=["source_dataset", "dataset_person_id"], keep="first").sort("source_dataset", "dataset_person_id")
    return persons.select(XJS_LOOKUP.column_names).cast(XJS_LOOKUP.schema())


def release_case_lookup(case_lookup: pl.DataFrame, *, key: bytes | None = None, cache=None) -> pl.DataFrame:
    return deidentify_table(case_lookup, CASE_LOOKUP, key=key, cache=cache).sort("defendant_on_case_id_hash")
