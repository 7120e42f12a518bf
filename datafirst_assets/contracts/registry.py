"""Which contract each stored table has, by asset key.

Generated where tables are many (raw and staged from the source registry, de-identified and
synthetic from the release spec, derived from the derived spec); hand-written models
(`contracts.models`) for the rest. `contract_for(key)` is what the warehouse IO manager
calls before every write, and what `column_schema_metadata` turns into the UI's Columns tab.
"""

from __future__ import annotations

import copy
from functools import cache

from datafirst_assets.common.pandera_polars import pa
import polars as pl
from dagster import AssetKey

from datafirst_assets.contracts import models
from datafirst_assets.deidentify.release_spec import ReleaseTable, release_tables
from datafirst_assets.deidentify.schemas import release_schema
from datafirst_assets.raw.delivery import LOAD_COLUMNS, PARTITION_COLUMN
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.staging.schemas import staged_schema

# Stages whose every asset must have a contract (the floor the tests hold us to).
CONTRACT_STAGES = ("raw", "staged", "quarantine", "linkage", "linked", "deidentified", "synthetic", "derived")
LINKAGE_MODELS = {
    "person_records": models.PersonRecords, "model": models.ModelVersion, "clusters": models.Clusters,
    "scored_pairs": models.ScoredPairs, "id_changes": models.IdChanges, "review_queue": models.ReviewQueue,
}
SHARED = {
    ("linkage", "quality"): models.LinkageQuality,
    ("linkage", "xjs", "lookup"): models.XjsLookup,
    ("linkage", "xjs", "edges"): models.XjsEdges,
    ("linkage", "xjs", "id_changes"): models.XjsIdChanges,
    ("linkage", "xjs", "persons"): models.XjsPersons,
    ("linkage", "criminal_courts", "case_lookup"): models.CaseLookup,
    ("synthetic", "summaries"): models.SyntheticSummaries,
    ("synthetic", "report"): models.SyntheticReport,
}


@cache
def raw_schema(source_key: str, table_name: str) -> pa.DataFrameSchema:
    """Raw rows: every delivered column as text, plus where each row came from and any parse error."""
    table = SOURCES[source_key].table(table_name)
    load = {
        PARTITION_COLUMN: pa.Column(pl.String, pa.Check.str_matches(models.ISO_DATE), description="Extract date"),
        "_source_file": pa.Column(pl.String, description="Delivered file the row was read from"),
        "_row_number": pa.Column(pl.Int64, pa.Check.ge(2), unique=False, description="Line number in the file"),
        "_parse_error": pa.Column(pl.String, nullable=True, description="Why the line could not be parsed, if so"),
        "_raw_line": pa.Column(pl.String, nullable=True, description="The line as delivered when it did not parse"),
    }
    columns = {name: load[name] for name in LOAD_COLUMNS[:2]}
    columns |= {c.name: pa.Column(pl.String, nullable=True, description=c.description or None) for c in table.columns}
    columns |= {name: load[name] for name in LOAD_COLUMNS[2:]}
    return pa.DataFrameSchema(
        columns, strict=True, ordered=True, unique=[PARTITION_COLUMN, "_source_file", "_row_number"],
        name=f"raw_{source_key}_{table_name}",
        description=f"{SOURCES[source_key].system} {table_name} as delivered: one row per line of the file",
    )


@cache
def linked_schema(source_key: str, table_name: str) -> pa.DataFrameSchema:
    """Staged person rows (latest version of each record) with the per-dataset person id."""
    source = SOURCES[source_key]
    table = source.table(table_name)
    staged = staged_schema(source_key, table_name)
    person = pa.Column(pl.Int64, pa.Check.ge(1), nullable=True,
                       description="Per-dataset person id from deduplication (null for non-person rows)")
    return pa.DataFrameSchema(
        {**staged.columns, source.person_id_name: person}, strict=True, ordered=True, unique=[table.id_column],
        name=f"linked_{source_key}_{table_name}", description=f"{staged.description}, with the person id",
    )


def _named(model: type[pa.DataFrameModel], name: str, extra: dict[str, pa.Column] | None = None) -> pa.DataFrameSchema:
    # `to_schema()` is cached per model and `set_name` renames in place: copy first, or every
    # table sharing a model would carry the name given last. A shallow copy (its own name, the
    # columns and checks shared, never mutated): deep copies were ~0.15 s of every run process's
    # start, most of building the ~220 contracts when the code location loads.
    schema = copy.copy(model.to_schema())
    if extra:
        schema = schema.add_columns(extra)
    return schema.set_name(name)


def _derived(table_name: str) -> pa.DataFrameSchema | None:
    from datafirst_assets.derived import DERIVED_TABLES  # derived imports defs-free modules only

    spec = next((t for t in DERIVED_TABLES if t.name == table_name), None)
    return spec.pandera_schema() if spec else None


@cache
def _contract(path: tuple[str, ...]) -> pa.DataFrameSchema | None:
    stage = path[0]
    if path[:2] in SHARED or path[:3] in SHARED:
        model = SHARED.get(path[:3]) or SHARED[path[:2]]
        return _named(model, "_".join(path))
    if len(path) == 3 and stage in ("raw", "staged", "quarantine", "linked") and path[1] in SOURCES:
        source, table = path[1], path[2]
        if table not in {t.name for t in SOURCES[source].tables}:
            return None
        if stage == "raw":
            return raw_schema(source, table)
        if stage == "staged":
            return staged_schema(source, table)
        if stage == "linked":
            return linked_schema(source, table)
        return _named(models.Quarantine, f"quarantine_{source}_{table}")
    if stage == "linkage" and len(path) == 3 and path[1] in SOURCES and path[2] in LINKAGE_MODELS:
        source = SOURCES[path[1]]
        extra = None
        if path[2] == "clusters":
            extra = {source.person_id_name: pa.Column(pl.Int64, pa.Check.ge(1), description="Per-dataset person id")}
        return _named(LINKAGE_MODELS[path[2]], f"linkage_{path[1]}_{path[2]}", extra)
    if (spec := _release_spec(path)) is not None:
        return copy.copy(release_schema(spec)).set_name(f"{stage}_{path[1]}_{path[2]}")  # shallow: see _named
    if stage == "derived" and len(path) == 3:
        schema = _derived(path[2])
        return copy.copy(schema).set_name("_".join(path)) if schema is not None else None
    if stage == "catalogue":
        return _named(models.CatalogueColumns, "_".join(path))
    if stage == "release" and len(path) == 2:
        return _named(models.ReleaseSummary, "_".join(path))
    return None


def _release_spec(path: tuple[str, ...]) -> ReleaseTable | None:
    if path[0] in ("deidentified", "synthetic") and len(path) == 3:
        return release_tables().get((path[1], path[2]))
    return None


def release_spec_of(key: AssetKey) -> ReleaseTable | None:
    """The release spec whose `release_schema` (renamed) is the contract of `key`, a de-identified or
    synthetic table (None for any other table): its rules are that spec's release schema's."""
    return _release_spec(tuple(key.path))


def contract_for(key: AssetKey) -> pa.DataFrameSchema | None:
    """The contract of the table stored under `key` (None: the asset stores no table we know)."""
    return _contract(tuple(key.path))
