"""Staged person tables -> person records: the standardised linkage fields of every person.

One row per source record that identifies a person (companies in civil data are left out;
companies recorded as people stay in, as they would in practice). A record re-sent in a later
delivery is linked once, in its latest version.
"""

from __future__ import annotations

import polars as pl

from datafirst_assets.common.partitions import PARTITION_COLUMN, latest_versions
from datafirst_assets.sources.spec import SourceSpec, TableSpec

LINKAGE_FIELDS = ("forename", "middle_names", "surname", "dob", "sex", "postcode", "address", "pnc", "cro")
FIELD_DTYPES = {"dob": pl.Date}
NO_ADDRESS = ["NFA", "NO FIXED ABODE", "NO FIXED ADDRESS", "UNKNOWN", "N/A"]


def add_person_ids(staged: pl.DataFrame, clusters: pl.DataFrame, id_column: str, person_id: str) -> pl.DataFrame:
    """Staged person-level rows with the per-dataset person id (null for non-person rows, e.g. companies)."""
    ids = clusters.select(pl.col("record_id").alias(id_column), pl.col(person_id))
    return latest_versions(staged, id_column).join(ids, on=id_column, how="left").sort(id_column)


def person_records(staged: pl.DataFrame, source: SourceSpec, table: TableSpec) -> pl.DataFrame:
    if "party_type" in staged.columns:
        staged = staged.filter(pl.col("party_type").fill_null("INDIVIDUAL") != "COMPANY")
    fields = []
    for field in LINKAGE_FIELDS:
        columns = table.person_fields.get(field, ())
        if not columns:
            continue
        if field == "middle_names":
            value = pl.concat_str([pl.col(c) for c in columns], separator=" ", ignore_nulls=True)
            value = pl.when(value == "").then(None).otherwise(value)
        elif field == "address":
            upper = pl.col(columns[0]).str.to_uppercase().str.strip_chars()
            # "no fixed abode" is shared by unrelated people: evidence of nothing.
            value = pl.when(upper.is_in(NO_ADDRESS)).then(None).otherwise(upper)
        else:
            value = pl.col(columns[0])
        fields.append(value.cast(FIELD_DTYPES.get(field, pl.String)).alias(field))
    return (
        latest_versions(staged, table.id_column)
        .select(
            pl.col(table.id_column).alias("record_id"),
            pl.lit(source.key).alias("source_dataset"),
            *fields,
            pl.col(PARTITION_COLUMN),
        )
        .sort("record_id")
    )
