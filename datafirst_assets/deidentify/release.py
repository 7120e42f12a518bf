"""One dataset's research-ready tables: de-identify, apply disclosure control, run the PII gate.

    release = deidentify_source(SOURCES["magistrates"], staged_tables, rules)
    release.tables["hocas_flatfile"]        # research-ready rows
    release.findings["hocas_flatfile"]      # PII gate findings ([] to publish)
    release.disclosure["hocas_flatfile"]    # k-anonymity / l-diversity result

`staged_tables` holds every table of the source as staged (all extract dates; the person
table with its per-dataset person id); each record is released once, in its latest version.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field

import polars as pl

from datafirst_assets.deidentify.disclosure import DisclosureResult, DisclosureRule, apply_policy
from datafirst_assets.deidentify.pii_gate import Finding, RawIdentifiers, raw_identifiers, scan_table
from datafirst_assets.deidentify.release_spec import CASE_LOOKUP, release_tables
from datafirst_assets.deidentify.schemas import orphan_counts
from datafirst_assets.deidentify.transform import deidentify_table, release_case_lookup, release_xjs_lookup
from datafirst_assets.linkage.xjs import LEVELS, PERSON
from datafirst_assets.common.partitions import latest_versions
from datafirst_assets.raw.delivery import PARTITION_COLUMN
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.sources.spec import SourceSpec


@dataclass
class DatasetRelease:
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    findings: dict[str, list[Finding]] = field(default_factory=dict)
    disclosure: dict[str, DisclosureResult] = field(default_factory=dict)
    orphans: dict[str, int] = field(default_factory=dict)
    extract_dates: list[str] = field(default_factory=list)


def _dob_column(source: SourceSpec, table_name: str) -> str | None:
    return next((c.name for c in source.table(table_name).columns if c.kind == "dob"), None)


def deidentify_source(source: SourceSpec, staged: Mapping[str, pl.DataFrame],
                      rules: Mapping[str, DisclosureRule] | None = None, *, key: bytes | None = None,
                      identifiers: RawIdentifiers | None = None, cache=None) -> DatasetRelease:
    """`cache`: a `KeyedHashCache` (ids hashed by an earlier run are not hashed again)."""
    rules = rules or {}
    specs = release_tables()
    latest = {t.name: latest_versions(staged[t.name], t.id_column) if PARTITION_COLUMN in staged[t.name].columns
              else staged[t.name] for t in source.tables}
    latest = {name: frame.sort(source.table(name).id_column) for name, frame in latest.items()}
    known = identifiers or raw_identifiers(source, latest)
    release = DatasetRelease(extract_dates=sorted({
        str(d) for frame in staged.values() if PARTITION_COLUMN in frame.columns
        for d in frame[PARTITION_COLUMN].unique().to_list()
    }))
    # the hashes are written to the cache once, after every table (see KeyedHashCache.batched)
    with cache.batched() if cache is not None else nullcontext():
        _release_tables(source, latest, specs, rules, known, release, key, cache)
    release.orphans = orphan_counts(release.tables, {t.name: specs[(source.key, t.name)] for t in source.tables})
    return release


def _release_tables(source: SourceSpec, latest: Mapping[str, pl.DataFrame], specs, rules, known: RawIdentifiers,
                    release: DatasetRelease, key: bytes | None, cache) -> None:
    """Each table of ``source`` de-identified, disclosure-controlled and scanned, into ``release``."""
    for table in source.tables:
        spec = specs[(source.key, table.name)]
        parent = source.table(table.parent) if table.parent else None
        released = deidentify_table(
            latest[table.name], spec, key=key, cache=cache,
            parent=latest[parent.name] if parent else None,
            parent_id=parent.id_column if parent else None,
            parent_event_date=parent.event_date if parent else None,
        )
        released, release.disclosure[table.name] = apply_policy(released, spec, rules.get(table.name, DisclosureRule()))
        dob = _dob_column(source, table.name)
        release.findings[table.name] = scan_table(
            f"{source.key}.{table.name}", released, known,
            dates_of_birth=latest[table.name][dob] if dob else None, codes=spec.code_lists,
        )
        release.tables[table.name] = released


LINKING_ID_COLUMNS = ("record_id", "case_id", "defendant_case_id", "defendant_on_case_id", "case_number")


def linking_raw_ids(*frames: pl.DataFrame) -> RawIdentifiers:
    """The raw ids of the lookups (every value of 5 characters or more of their id columns) as the PII
    gate compares released values with them: one polars Series (`RawIdentifiers.series_only`), not a
    Python set of every record id (a million values at 300,000 people, a second of the step)."""
    values = [frame[column].cast(pl.String).drop_nulls() for column in LINKING_ID_COLUMNS for frame in frames
              if column in frame.columns]
    ids = pl.concat(values).unique() if values else pl.Series("system_id", [], dtype=pl.String)
    ids = ids.filter(ids.str.len_chars() >= 5).alias("system_id")
    return RawIdentifiers(column_names=set(LINKING_ID_COLUMNS), _series={"system_id": (ids.len(), ids)},
                          series_only=True)


def deidentify_linking(xjs_lookup: pl.DataFrame, case_lookup: pl.DataFrame,
                       released_persons: Mapping[str, pl.DataFrame] | None = None, *,
                       key: bytes | None = None, cache=None) -> DatasetRelease:
    """The two linking tables; `released_persons` (dataset -> released person table) checks they join.
    `cache`: a `KeyedHashCache` (the case ids were hashed, in the same namespaces, by their datasets)."""
    release = DatasetRelease()
    release.tables = {"xjs_lookup": release_xjs_lookup(xjs_lookup),
                      "case_lookup": release_case_lookup(case_lookup, key=key, cache=cache)}
    known = linking_raw_ids(xjs_lookup, case_lookup)
    release.findings = {name: scan_table(f"linking.{name}", frame, known) for name, frame in release.tables.items()}
    if released_persons:
        release.orphans = linking_orphans(release.tables, released_persons)
    return release


def lookup_columns() -> tuple[str, ...]:
    """The columns of the cross-justice lookup `deidentify_linking` reads: those `release_xjs_lookup`
    releases from and the record id the PII gate compares with (not the record's keyed hash, the
    widest column, which nothing here reads)."""
    return ("source_dataset", "record_id", PERSON, *(f"person_id_{level}" for level in LEVELS))


def linking_join_columns(dataset: str) -> tuple[str, ...]:
    """The columns of `dataset`'s released person table that `linking_orphans` reads: its person id,
    and the case key a `case_lookup` foreign key references in it."""
    table = SOURCES[dataset].person_table.name
    referenced = tuple(dict.fromkeys(fk.references[1] for fk in CASE_LOOKUP.foreign_keys if fk.references[0] == table))
    return (SOURCES[dataset].person_id_name, *referenced)


def linking_orphans(linking: Mapping[str, pl.DataFrame], persons: Mapping[str, pl.DataFrame]) -> dict[str, int]:
    """Lookup rows whose person or case finds no row in the released dataset tables."""
    orphans = {}
    lookup = linking["xjs_lookup"]
    for dataset, frame in persons.items():
        person_key = SOURCES[dataset].person_id_name
        ids = frame.select(pl.col(person_key).alias("dataset_person_id")).drop_nulls().unique()
        rows = lookup.filter(pl.col("source_dataset") == dataset)
        orphans[f"xjs_lookup[{dataset}] -> {dataset}.{person_key}"] = rows.join(ids, on="dataset_person_id",
                                                                                 how="anti").height
    tables = {"hocas_flatfile": persons.get("magistrates"), "xhibit_flatfile": persons.get("crown_court"),
              "case_lookup": linking["case_lookup"]}
    orphans.update(orphan_counts({k: v for k, v in tables.items() if v is not None}, {"case_lookup": CASE_LOOKUP}))
    return orphans
