"""Staged person tables -> person records: the standardised linkage fields of every person.

One row per source record that identifies a person (companies in civil data are left out;
companies recorded as people stay in, as they would in practice). A record re-sent in a later
delivery is linked once, in its latest version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from datafirst_assets.common.partitions import PARTITION_COLUMN, latest_versions
from datafirst_assets.common.sql import quote_identifier, quote_literal
from datafirst_assets.sources.identifiers import company_key, looks_like_company, name_key
from datafirst_assets.sources.spec import SourceSpec, TableSpec
from datafirst_assets.staging.standardise import ORIGINAL_SUFFIX

LINKAGE_FIELDS = ("forename", "middle_names", "surname", "dob", "sex", "postcode", "address", "pnc", "cro")
FIELD_DTYPES = {"dob": pl.Date}
NO_ADDRESS = ["NFA", "NO FIXED ABODE", "NO FIXED ADDRESS", "UNKNOWN", "N/A"]
#: Names compared as a person reads them (``O'BRIEN`` = ``OBRIEN`` = ``O BRIEN``); the spelling
#: as written is kept next to each in ``<field>_original``.
KEYED_NAMES = ("forename", "surname")
ORIGINAL_NAMES = ("forename", "middle_names", "surname")
#: ``party_kind`` of a record (tables with a ``party_type``): COMPANY when the name looks like
#: a company's although the system says INDIVIDUAL, else PERSON. The over-merge guard never
#: puts the two kinds in one cluster.
COMPANY, PERSON = "COMPANY", "PERSON"


def add_person_ids(staged: pl.DataFrame, clusters: pl.DataFrame, id_column: str, person_id: str) -> pl.DataFrame:
    """Staged person-level rows with the per-dataset person id (null for non-person rows, e.g. companies)."""
    ids = clusters.select(pl.col("record_id").alias(id_column), pl.col(person_id))
    return latest_versions(staged, id_column).join(ids, on=id_column, how="left").sort(id_column)


def person_ids_sql(staged_sql: str, clusters_sql: str, id_column: str, person_id: str) -> str:
    """`add_person_ids` as a DuckDB SELECT over stored tables (rows in no order): each record's latest
    version (a record's id is unique within an extract date, so the latest is one row) with its
    per-dataset person id, so that a new extract's linked table can be compared with the stored one
    where both live (`warehouse.io_manager.changes_to`)."""
    record, date = quote_identifier(id_column), quote_identifier(PARTITION_COLUMN)
    return (f"select _l.* exclude (_rn), _c.{quote_identifier(person_id)} from (select *, row_number() over "
            f"(partition by {record} order by {date} desc) as _rn from ({staged_sql}) _s) _l left join "
            f"(select record_id, {quote_identifier(person_id)} from ({clusters_sql}) _k) _c "
            f"on _c.record_id = _l.{record} where _l._rn = 1")


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


def _case_context(staged: pl.DataFrame, table: TableSpec) -> list[pl.Expr]:
    """The party's case and role (``TableSpec.case_fields``) and, where the system records a
    party type, whether the name looks like a company's (``party_kind``)."""
    out = [pl.col(col).cast(pl.String).alias(name) for name, col in table.case_fields.items()]
    company = _is_company(staged)
    if company is not None:
        out.append(pl.when(company).then(pl.lit(COMPANY)).otherwise(pl.lit(PERSON)).alias("party_kind"))
    return out


def _is_company(staged: pl.DataFrame) -> pl.Expr | None:
    """Company detection where the system records a party type (None elsewhere)."""
    if "party_type" in staged.columns and "surname" in staged.columns:
        return looks_like_company(pl.col("surname"))
    return None


def person_records(staged: pl.DataFrame, source: SourceSpec, table: TableSpec) -> pl.DataFrame:
    if "party_type" in staged.columns:
        staged = staged.filter(pl.col("party_type").fill_null("INDIVIDUAL") != "COMPANY")
    fields, originals = [], []
    company = _is_company(staged)
    for field in LINKAGE_FIELDS:
        columns = table.person_fields.get(field, ())
        if not columns:
            continue
        value = _field_value(field, columns)
        if field == "surname" and company is not None:  # a company's name, compared without its legal form
            value = pl.when(company).then(company_key(pl.col(columns[0]))).otherwise(value)
        fields.append(value.cast(FIELD_DTYPES.get(field, pl.String)).alias(field))
        if field in ORIGINAL_NAMES and all(c + ORIGINAL_SUFFIX in staged.columns for c in columns):
            originals.append(_field_value(field, columns, ORIGINAL_SUFFIX).alias(field + ORIGINAL_SUFFIX))
    return (
        latest_versions(staged, table.id_column)
        .select(
            pl.col(table.id_column).alias("record_id"),
            pl.lit(source.key).alias("source_dataset"),
            *fields,
            *originals,
            *_case_context(staged, table),
            pl.col(PARTITION_COLUMN),
        )
        .sort("record_id")
    )


# ------------------------------------------------- a new extract: only the records it can touch

def changed_partitions(before: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """Extract dates whose staged rows differ from those the stored person records were made from
    (per date: ``"rows|sum of row hashes"``, `content.fingerprint_by_partition`): new, changed or gone."""
    return sorted(p for p in {*before, *now} if before.get(p) != now.get(p))


def touched_records_sql(staged_sql: str, records_sql: str, id_column: str, partitions: Sequence[str]) -> str:
    """A DuckDB SELECT of the ids (``record_id``) of every person record that rows of the changed
    `partitions` can touch: a record with a row in one of them now (new, re-sent, or changed), and a
    stored record taken from one (its version may have gone). Any other record's rows are all in
    unchanged dates and its stored row came from one of them, so it is as stored: a record's row is
    computed from that record's rows only (`person_records`)."""
    dates = ", ".join(map(quote_literal, partitions)) or "null"
    date = quote_identifier(PARTITION_COLUMN)
    return (f"select cast({quote_identifier(id_column)} as varchar) as record_id from ({staged_sql}) _s "
            f"where cast({date} as varchar) in ({dates}) union "
            f"select record_id from ({records_sql}) _r where cast({date} as varchar) in ({dates})")


def records_change(recomputed: pl.DataFrame, stored: pl.DataFrame,
                   key: str = "record_id") -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(deletes, updates, inserts) turning `stored` (the stored rows of the touched records) into
    `recomputed` (their rows now, `person_records` of every staged row of those records): a record
    gone is deleted, one whose row differs in any column updated, a new one inserted (in `key` order)."""
    differ = recomputed.join(stored, on=recomputed.columns, how="anti", nulls_equal=True)
    return (stored.join(recomputed, on=key, how="anti").select(key),
            differ.join(stored, on=key, how="semi"),
            differ.join(stored, on=key, how="anti").sort(key))


def linked_touched_sql(staged_sql: str, linked_sql: str, clusters_sql: str, id_column: str, person_id: str,
                       partitions: Sequence[str]) -> str:
    """A DuckDB SELECT of the ids (``record_id``, as text) of every row of a linked table
    (`person_ids_sql`) that can differ from the stored one (`linked_sql`): the records the changed
    `partitions` touch (`touched_records_sql`: a row there now, or the stored row taken from one) and
    those whose person id in `clusters_sql` is not the stored one (one join of two narrow columns).
    Any other record has the same staged rows and the same person id, so the same linked row."""
    record = quote_identifier(id_column)
    stored = f"select cast({record} as varchar) as record_id, {quote_identifier(PARTITION_COLUMN)} from ({linked_sql}) _k"
    person = quote_identifier(person_id)
    moved = (f"select cast(_l.{record} as varchar) as record_id from (select {record}, {person} from ({linked_sql}) _m) _l "
             f"left join (select record_id, {person} from ({clusters_sql}) _c) _c on _c.record_id = _l.{record} "
             f"where _c.{person} is distinct from _l.{person}")
    return f"{touched_records_sql(staged_sql, stored, id_column, partitions)} union {moved}"