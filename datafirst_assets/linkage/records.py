"""Staged person tables -> person records: the standardised linkage fields of every person.

One row per source record that identifies a person (companies in civil data are left out;
companies recorded as people stay in, as they would in practice). A record re-sent in a later
delivery is linked once, in its latest version.
"""

from __future__ import annotations

import polars as pl

from datafirst_assets.common.partitions import PARTITION_COLUMN, latest_versions
from datafirst_assets.sources.identifiers import name_key
from datafirst_assets.sources.spec import SourceSpec, TableSpec
from datafirst_assets.staging.standardise import ORIGINAL_SUFFIX

LINKAGE_FIELDS = ("forename", "middle_names", "surname", "dob", "sex", "postcode", "address", "pnc", "cro")
FIELD_DTYPES = {"dob": pl.Date}
NO_ADDRESS = ["NFA", "NO FIXED ABODE", "NO FIXED ADDRESS", "UNKNOWN", "N/A"]
#: Names compared as a person reads them (``O'BRIEN`` = ``OBRIEN`` = ``O BRIEN``); the spelling
#: as written is kept next to each in ``<field>_original``.
KEYED_NAMES = ("forename", "surname")
ORIGINAL_NAMES = ("forename", "middle_names", "surname")


def add_person_ids(staged: pl.DataFrame, clusters: pl.DataFrame, id_column: str, person_id: str) -> pl.DataFrame:
    """Staged person-level rows with the per-dataset person id (null for non-person rows, e.g. companies)."""
    ids = clusters.select(pl.col("record_id").alias(id_column), pl.col(person_id))
    return latest_versions(staged, id_column).join(ids, on=id_column, how="left").sort(id_column)


def clustering_gaps(records: pl.DataFrame, clusters: pl.DataFrame) -> dict[str, int]:
    """Person records with no person id, and records given more than one (both 0 when clustering is whole)."""
    return {"records_without_id": records.join(clusters, on="record_id", how="anti").height,
            "records_with_several_ids": clusters.height - clusters["record_id"].n_unique()}


def _field_value(field: str, columns: tuple[str, ...], suffix: str = "") -> pl.Expr:
    if field == "middle_names":
        value = pl.concat_str([pl.col(c + suffix) for c in columns], separator=" ", ignore_nulls=True)
        return pl.when(value == "").then(None).otherwise(value)
    if field == "address":
        upper = pl.col(columns[0]).str.to_uppercase().str.strip_chars()
        # "no fixed abode" is shared by unrelated people: evidence of nothing.
        return pl.when(upper.is_in(NO_ADDRESS)).then(None).otherwise(upper)
    value = pl.col(columns[0] + suffix)
    return name_key(value) if field in KEYED_NAMES and not suffix else value


def person_records(staged: pl.DataFrame, source: SourceSpec, table: TableSpec) -> pl.DataFrame:
    if "party_type" in staged.columns:
        staged = staged.filter(pl.col("party_type").fill_null("INDIVIDUAL") != "COMPANY")
    fields, originals = [], []
    for field in LINKAGE_FIELDS:
        columns = table.person_fields.get(field, ())
        if not columns:
            continue
        fields.append(_field_value(field, columns).cast(FIELD_DTYPES.get(field, pl.String)).alias(field))
        if field in ORIGINAL_NAMES and all(c + ORIGINAL_SUFFIX in staged.columns for c in columns):
            originals.append(_field_value(field, columns, ORIGINAL_SUFFIX).alias(field + ORIGINAL_SUFFIX))
    return (
        latest_versions(staged, table.id_column)
        .select(
            pl.col(table.id_column).alias("record_id"),
            pl.lit(source.key).alias("source_dataset"),
            *fields,
            *originals,
            pl.col(PARTITION_COLUMN),
        )
        .sort("record_id")
    )
