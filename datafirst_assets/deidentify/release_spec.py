"""What researchers receive: the research-ready version of every table, generated from the registry.

Each staged column gets one treatment, chosen from its kind and, for free-text columns, from
what the column holds (system ids are hashed, addresses dropped, codes kept):

    drop      names, addresses, date of birth (after use), free text
    hash      system ids (the table's own id, references to a parent, case numbers, PNC, CRO,
              URN, ASN, prison numbers, CRNs): `<name>_hash`, HMAC-SHA256 namespaced by source
              and column, so a parent's id and its children's reference hash alike and join
    age       date of birth -> whole years at the table's event date (`age_at_<event>`)
    area      postcode -> postcode area (the letters of the outward code, about 120 areas)
    keep      codes, dates of events, numbers, flags, sex and ethnicity

The per-dataset person id (`estimated_defendant_id`, ...) is added to each person table. The
two linking tables are released with per-dataset person ids and hashed case ids only.

Synthetic generation (synthetic/) and the data catalogues read the same specs, so a column's
role (primary key, foreign key, person key, categorical, ...) is stated once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

import polars as pl

from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.sources.spec import ColumnSpec, SourceSpec, TableSpec

Treatment = Literal["keep", "hash", "age", "area", "person_id", "drop"]
# What a released column is, for catalogues, disclosure control and synthetic generation.
Role = Literal[
    "primary_key",   # hashed id of the row, unique in its table
    "foreign_key",   # hashed id of the parent row (see `references`)
    "system_id",     # another hashed system id (case number, PNC, ...): not a join key within the release
    "person_key",    # per-dataset person id from deduplication
    "xjs_key",       # cross-justice person id (linking lookup)
    "categorical", "numeric", "date", "flag", "age", "area", "score",
]

LINKING = "linking"  # pseudo-source of the two linking tables
SYSTEM_ID_TEXT_COLUMNS = frozenset({
    "case_id", "defendant_id", "case_number", "asn", "urn", "prison_number", "booking_number", "crn",
    "offender_pk",
})
FREE_TEXT_COLUMNS = frozenset({"address_line1"})
# Staging by-products that only describe identifiers (e.g. why a DOB was nulled) or the load.
DROPPED_STAGING_COLUMNS = frozenset({"_source_file", "_row_number", "_parse_error", "_raw_line"})
HASH_SUFFIX = "_hash"
DTYPES: dict[str, pl.DataType] = {
    "primary_key": pl.String, "foreign_key": pl.String, "system_id": pl.String, "person_key": pl.Int64,
    "xjs_key": pl.Int64, "date": pl.Date, "flag": pl.Boolean, "age": pl.Int32, "area": pl.String,
    "score": pl.Float64,
}
KIND_ROLE = {"code": "categorical", "sex": "categorical", "ethnicity": "categorical", "text": "categorical",
             "int": "numeric", "float": "numeric", "date": "date", "flag": "flag"}


@dataclass(frozen=True)
class ReleaseColumn:
    name: str
    role: Role
    dtype: pl.DataType
    description: str
    treatment: Treatment = "keep"
    staged: str | None = None  # the staged column it is made from (None: added, e.g. the person id)
    references: tuple[str, str] | None = None  # (table, column) a foreign key points at
    hash_namespace: str | None = None
    # The source's declared values of a code column, released as they are: a value on this list is
    # a code of the data dictionary even when someone's name is spelt the same (risk level HIGH).
    codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReleaseTable:
    source: str
    name: str
    grain: str
    columns: tuple[ReleaseColumn, ...]
    parent: str | None = None
    event_date: str | None = None  # released date column the table's events happen on
    dropped: tuple[str, ...] = ()  # staged columns withheld (for the catalogue's "withheld" note)
    unique_key: tuple[str, ...] = ()  # columns unique together in every release of the table

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def code_lists(self) -> dict[str, tuple[str, ...]]:
        """Released column -> its declared codes, for the columns that have them."""
        return {c.name: c.codes for c in self.columns if c.codes}

    def column(self, name: str) -> ReleaseColumn:
        return next(c for c in self.columns if c.name == name)

    def with_role(self, *roles: str) -> list[ReleaseColumn]:
        return [c for c in self.columns if c.role in roles]

    @property
    def primary_key(self) -> str | None:
        keys = self.with_role("primary_key")
        return keys[0].name if keys else None

    @property
    def person_key(self) -> str | None:
        keys = self.with_role("person_key")
        return keys[0].name if keys else None

    @property
    def foreign_keys(self) -> list[ReleaseColumn]:
        return self.with_role("foreign_key")

    def schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.dtype for c in self.columns}


def hash_namespace(source: str, column: str) -> str:
    """Namespace of a hashed id: equal ids of different systems or columns never hash alike."""
    return f"{source}.{column}"


def humanise(name: str) -> str:
    return name.replace("_", " ").strip().capitalize()


def age_column_name(event_date: str) -> str:
    return f"age_at_{event_date.removesuffix('_date')}"


def _treat(source: SourceSpec, table: TableSpec, column: ColumnSpec, event_date: str | None) -> ReleaseColumn | None:
    described = column.description or humanise(column.name)
    if column.kind == "id":
        # The one-to-one OASys child tables key on the parent's id: the same namespace joins them.
        parent_id = source.table(table.parent).id_column if table.parent else None
        is_parent_key = parent_id == column.name
        return ReleaseColumn(
            column.name + HASH_SUFFIX, "foreign_key" if is_parent_key else "primary_key", pl.String,
            f"{described} (keyed hash; unique per row"
            + (f", joins to `{table.parent}`" if is_parent_key else "") + ")",
            treatment="hash", staged=column.name,
            references=(table.parent, column.name + HASH_SUFFIX) if is_parent_key else None,
            hash_namespace=hash_namespace(source.key, column.name),
        )
    if column.kind == "ref":
        return ReleaseColumn(
            column.name + HASH_SUFFIX, "foreign_key", pl.String,
            f"{described} (keyed hash; joins to `{table.parent}`)", treatment="hash", staged=column.name,
            references=(table.parent, column.name + HASH_SUFFIX), hash_namespace=hash_namespace(source.key, column.name),
        )
    if column.kind in ("pnc", "cro") or (column.kind == "text" and column.name in SYSTEM_ID_TEXT_COLUMNS):
        return ReleaseColumn(
            column.name + HASH_SUFFIX, "system_id", pl.String, f"{described} (keyed hash)",
            treatment="hash", staged=column.name, hash_namespace=hash_namespace(source.key, column.name),
        )
    if column.kind in ("name",) or column.name in FREE_TEXT_COLUMNS:
        return None
    if column.kind == "dob":
        if event_date is None:
            return None
        return ReleaseColumn(
            age_column_name(event_date), "age", pl.Int32,
            f"Age in whole years at {humanise(event_date).lower()} (from date of birth, which is withheld)",
            treatment="age", staged=column.name,
        )
    if column.kind == "postcode":
        return ReleaseColumn(
            "postcode_area", "area", pl.String,
            "Postcode area: the letters of the postcode's outward code (full postcode withheld)",
            treatment="area", staged=column.name,
        )
    role = KIND_ROLE[column.kind]
    dtype = {"int": pl.Int64, "float": pl.Float64}.get(column.kind, DTYPES.get(role, pl.String))
    return ReleaseColumn(column.name, role, dtype, described, staged=column.name, codes=column.codes)


def _age_event_date(source: SourceSpec, table: TableSpec) -> str | None:
    """The date ages are measured at: the table's own event date, else its parent's (parties of a case)."""
    if table.event_date:
        return table.event_date
    if table.parent:
        return source.table(table.parent).event_date
    return None


def build_release_table(source: SourceSpec, table: TableSpec) -> ReleaseTable:
    age_at = _age_event_date(source, table)
    columns, dropped = [], []
    for column in table.columns:
        released = _treat(source, table, column, age_at)
        if released is None:
            dropped.append(column.name)
        else:
            columns.append(released)
    if table.is_person_table:
        columns.insert(1, ReleaseColumn(
            source.person_id_name, "person_key", pl.Int64,
            f"Per-dataset person id from deduplication: the same person in `{source.key}` has the same id "
            "(stable across releases); join to other datasets through the cross-justice lookup",
            treatment="person_id",
        ))
    return ReleaseTable(
        source=source.key, name=table.name, grain=table.grain, columns=tuple(columns), parent=table.parent,
        event_date=table.event_date, dropped=tuple(dropped), unique_key=(table.id_column + HASH_SUFFIX,),
    )


XJS_LOOKUP = ReleaseTable(
    source=LINKING, name="xjs_lookup",
    grain="one row per per-dataset person",
    columns=(
        ReleaseColumn("source_dataset", "categorical", pl.String,
                      "Dataset the per-dataset person id belongs to (magistrates, crown_court, prison, ...)"),
        ReleaseColumn("dataset_person_id", "person_key", pl.Int64,
                      "The dataset's own person id (estimated_defendant_id, estimated_offender_id or "
                      "estimated_party_id in that dataset's tables)"),
        *(ReleaseColumn(f"xjs_person_id_{level}", "xjs_key", pl.Int64,
                        f"Cross-justice person id at the {level} match threshold ({threshold}); "
                        "thresholds nest: high inside medium inside low")
          for level, threshold in (("high", 0.99), ("medium", 0.9), ("low", 0.5))),
    ),
    unique_key=("source_dataset", "dataset_person_id"),
)
CASE_LOOKUP = ReleaseTable(
    source=LINKING, name="case_lookup",
    grain="one row per magistrates' defendant-case linked to a Crown Court defendant-on-case",
    columns=(
        ReleaseColumn("defendant_case_id_hash", "foreign_key", pl.String,
                      "Magistrates' defendant-case (joins to magistrates `hocas_flatfile`)",
                      treatment="hash", staged="defendant_case_id",
                      references=("hocas_flatfile", "defendant_case_id_hash"),
                      hash_namespace=hash_namespace("magistrates", "defendant_case_id")),
        ReleaseColumn("defendant_on_case_id_hash", "foreign_key", pl.String,
                      "Crown Court defendant-on-case (joins to crown_court `xhibit_flatfile`)",
                      treatment="hash", staged="defendant_on_case_id",
                      references=("xhibit_flatfile", "defendant_on_case_id_hash"),
                      hash_namespace=hash_namespace("crown_court", "defendant_on_case_id")),
        ReleaseColumn("case_type", "categorical", pl.String, "Crown Court case type of the linked case",
                      staged="case_type"),
        ReleaseColumn("match_score", "score", pl.Float64,
                      "Probability the two case records are the same case (1 = certain)", staged="match_score"),
        ReleaseColumn("keys_agreed", "categorical", pl.String,
                      "Which natural keys agreed (URN, ASN, PNC, committal date, court)", staged="keys_agreed"),
    ),
    unique_key=("defendant_on_case_id_hash",),
)
LINKING_TABLES = (XJS_LOOKUP, CASE_LOOKUP)


@cache
def release_tables() -> dict[tuple[str, str], ReleaseTable]:
    """(source, table) -> release spec, for every research table and both linking tables."""
    tables = {
        (source.key, table.name): build_release_table(source, table)
        for source in SOURCES.values() for table in source.tables
    }
    tables.update({(LINKING, t.name): t for t in LINKING_TABLES})
    return tables


def release_datasets() -> dict[str, list[ReleaseTable]]:
    """Datasets as researchers see them (one catalogue each): the seven sources and `linking`."""
    datasets: dict[str, list[ReleaseTable]] = {}
    for (source, _), table in release_tables().items():
        datasets.setdefault(source, []).append(table)
    return datasets
