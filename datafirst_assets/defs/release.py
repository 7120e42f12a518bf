"""Catalogues and the release on disk, for the de-identified and (when built) the synthetic tables.

<kind>/<dataset>/<table> (all datasets) -> catalogue/<dataset>            (kind "deidentified")
                                           catalogue/synthetic/<dataset>  (kind "synthetic")
                                        -> release/<kind>   data/releases/<release id>/ + manifest

No `from __future__ import annotations`: Dagster inspects annotations at runtime.
"""

import os
import shutil
import uuid
from collections.abc import Container, Mapping
from pathlib import Path

import duckdb

import polars as pl
from dagster import (
    AssetCheckKey,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    ConfigurableResource,
    MetadataValue,
    Output,
    asset,
)

from datafirst_assets.common.sql import quote_identifier
from datafirst_assets.reporting import file_url
from datafirst_assets.catalogue.build import Catalogue, StoredColumns, build_catalogue
from datafirst_assets.catalogue.stored import load_catalogue, save_catalogue
from datafirst_assets.defs.linkage import LinkageSettings
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.deidentify.disclosure import DisclosureRule, RiskRule
from datafirst_assets.deidentify.hash_cache import NAME as HASH_CACHE, KeyedHashCache
from datafirst_assets.deidentify.keys import key_fingerprint, key_is_development, keyed_hash
from datafirst_assets.warehouse.io_manager import StoredTable
from datafirst_assets.warehouse.lazy_tables import ComputedOnUse, LoadedOnUse
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.content import (
    VALIDATED_CONTENT,
    checked_fingerprints,
    fingerprint_of,
    relation_columns,
    validated_in_run,
)
from datafirst_assets.warehouse.unchanged import FINGERPRINT, inputs_fingerprint, kept_if_unchanged, latest_metadata
from datafirst_assets.contracts.registry import contract_for, release_spec_of
from datafirst_assets.deidentify.pii_gate import RawIdentifiers, staged_sums, stored_identifiers
from datafirst_assets.deidentify.release_spec import ReleaseTable, release_datasets
from datafirst_assets.release.gates import validated_against_release_schema
from datafirst_assets.release.publish import (
    ReleaseInfo,
    carried_gates,
    latest_manifest,
    release_summary,
    write_release,
)
from datafirst_assets.sources.registry import SOURCES

RELEASE_GROUP = "release"
# The checks each kind of release table carries, recorded per table in the manifest.
TABLE_CHECKS = {"deidentified": ("no_identifiers", "schema_valid", "disclosure_control", "contract"),
                "synthetic": ("matches_release_schema", "no_identifiers", "contract")}
SYNTHETIC_NOTE = "HOW_THIS_DIFFERS_FROM_THE_REAL_DATA.md"


class ReleaseSettings(ConfigurableResource):
    """Disclosure control of the release.

    Row-level tables (for accredited researchers in a secure setting) are gated on
    re-identification risk: `max_mean_risk` is the largest mean per-record risk allowed, ages
    banded by `risk_age_band` years; `risk_key` overrides the key per "<source>.<table>".
    `k`, `l` and the rest drive the optional `coarsen` policy (k-anonymity by generalising).
    """

    max_mean_risk: float = RiskRule.max_mean_risk
    risk_age_band: int = RiskRule.age_band
    risk_key: dict[str, list[str]] = {}
    k: int = 10
    l: int = 2
    # "warn": report small cells; "coarsen": generalise quasi-identifiers, then suppress, until k holds.
    disclosure_policy: str = "warn"
    max_suppressed_share: float = 0.05
    # "<source>.<table>" -> quasi-identifier columns / sensitive column; unset tables use the defaults.
    quasi_identifiers: dict[str, list[str]] = {}
    sensitive: dict[str, str] = {}

    def rule_for(self, source: str, table: str) -> DisclosureRule:
        name = f"{source}.{table}"
        if self.disclosure_policy not in ("warn", "coarsen"):
            raise ValueError(f"disclosure_policy must be 'warn' or 'coarsen', not {self.disclosure_policy!r}")
        qis = self.quasi_identifiers.get(name)
        return DisclosureRule(
            k=self.k, l=self.l, policy=self.disclosure_policy, max_suppressed_share=self.max_suppressed_share,
            quasi_identifiers=tuple(qis) if qis is not None else None, sensitive=self.sensitive.get(name),
        )


    def risk_rule_for(self, source: str, table: str) -> RiskRule:
        key = self.risk_key.get(f"{source}.{table}")
        return RiskRule(age_band=self.risk_age_band, max_mean_risk=self.max_mean_risk,
                        key=tuple(key) if key is not None else None)


MAX_MEAN_RISK_ENV = "DATAFIRST_MAX_MEAN_RISK"


def release_settings_from_env() -> "ReleaseSettings":
    """Release settings, with the re-identification risk gate's threshold from DATAFIRST_MAX_MEAN_RISK
    when set (an operator's decision for a population; tiny test populations make everyone unique)."""
    value = os.environ.get(MAX_MEAN_RISK_ENV)
    return ReleaseSettings(max_mean_risk=float(value)) if value else ReleaseSettings()


def release_group(kind: str) -> str:
    """Real and synthetic outputs in separate groups, so the lineage reads real release, then synthetic."""
    return RELEASE_GROUP if kind == "deidentified" else f"{kind}_{RELEASE_GROUP}"


def table_key(kind: str, dataset: str, table: str) -> AssetKey:
    """Key of a release table: <kind>/<dataset>/<table>, kind "deidentified" or "synthetic"."""
    return AssetKey([kind, dataset, table])


def stored_release_table(database: str, kind: str, dataset: str, table: str) -> StoredTable:
    """Where the IO manager stores the release table `table_key(kind, dataset, table)` (schema
    `<kind>_<dataset>`, as the de-identified and synthetic table assets declare it). For an asset that
    reads many release tables by handle: it depends on them (`deps`, the same lineage) and builds the
    handles itself, instead of one input per table, which writes two run events each (STEP_INPUT,
    LOADED_INPUT) for a handle that is never a loaded value."""
    return StoredTable(database, f"{kind}_{dataset}", table)


def catalogue_key(kind: str, dataset: str) -> AssetKey:
    return AssetKey(["catalogue", dataset] if kind == "deidentified" else ["catalogue", kind, dataset])


def catalogue_folder(root: Path, kind: str) -> Path:
    return root / "catalogues" / kind


def input_name(dataset: str, table: str) -> str:
    """Asset input name of a release table (Dagster input names cannot hold slashes)."""
    return f"{dataset}__{table}"


def catalogue_fingerprint(kind: str, dataset: str, stored: Mapping[str, StoredTable], memo: dict | None = None) -> str:
    """What a dataset's catalogue is made from: its release tables (by name), the kind and the code."""
    return inputs_fingerprint(stored, settings=(kind, dataset), memo=memo)


def build_catalogue_asset(kind: str, dataset: str) -> AssetsDefinition:
    specs = {spec.name: spec for spec in release_datasets()[dataset]}
    synthetic = kind == "synthetic"

    @asset(
        key=catalogue_key(kind, dataset),
        deps=[table_key(kind, dataset, name) for name in specs],  # read by handle (`stored_release_table`)
        group_name=release_group(kind),
        metadata={"schema": f"catalogue_{kind}"},
        kinds={"polars", "html"},
        description=f"Data catalogue of the {'SYNTHETIC ' if synthetic else ''}`{dataset}` release tables: every "
        "variable with type, description, % missing, distinct count and values (counts under 10 suppressed); "
        f"Markdown and HTML under data/catalogues/{kind}/.",
    )
    def _catalogue(context: AssetExecutionContext, linkage: LinkageSettings, warehouse: Warehouse) -> Output:
        stored = {name: stored_release_table(warehouse.database, kind, dataset, name) for name in specs}
        # the tables as this run's contract checks just read them (else hashed here)
        fingerprint = catalogue_fingerprint(kind, dataset, stored, checked_fingerprints(stored.values(), context.run.run_id))
        folder = catalogue_folder(linkage.root, kind)
        if (folder / f"{dataset}.html").exists() and (
                kept := kept_if_unchanged(context, fingerprint, linkage.mode)) is not None:
            return kept[-1]
        with warehouse.cursor() as conn:  # counted where the tables are stored: no table read into Python
            tables = {name: StoredColumns(conn, table.select_sql()) for name, table in stored.items()}
            catalogue = build_catalogue(dataset, tables, specs, synthetic=synthetic)
        paths = catalogue.write(folder)
        save_catalogue(folder, catalogue, fingerprint)  # the release takes it while the tables are these
        return Output(catalogue.frame, metadata={
            FINGERPRINT: fingerprint,
            "catalogue_html": MetadataValue.url(file_url(paths["html"], linkage.root)),
            "catalogue_markdown": MetadataValue.path(str(paths["markdown"].resolve())),
            "tables": catalogue.tables.height,
            "variables": catalogue.frame.height,
            "preview": MetadataValue.md(catalogue.markdown[:8000]),
        })

    return _catalogue


def _extract_dates(warehouse: Warehouse) -> list[str]:
    with warehouse.cursor() as conn:
        rows = conn.execute(" union ".join(
            f"select distinct cast(extract_date as varchar) from staged_{s.key}.{s.person_table.name}"
            for s in SOURCES.values())).fetchall()
    return sorted({r[0] for r in rows})


def _model_versions(warehouse: Warehouse) -> dict[str, str]:
    versions = {}
    with warehouse.cursor() as conn:
        for source in SOURCES:
            try:
                versions[source] = conn.execute(f"select version from linkage_{source}.model").fetchone()[0]
            except Exception:  # a release of tables whose model was never stored (tests, partial graphs)
                continue
    return versions


def _raw_identifiers(warehouse: Warehouse, read: dict | None = None,
                     run_id: str | None = None) -> Mapping[str, RawIdentifiers]:
    """Each dataset's raw names, addresses and system ids, as the gate compares them, when the gate
    reaches that dataset (one dataset's held at a time, not all seven): the values stored by the last
    release with those of the partitions staged since (`pii_gate.stored_identifiers`), not every staged row
    normalised again. `read`: filled with how many staged partitions each dataset's were read from.
    `run_id`: the step's run, whose staged partitions both releases then hash once (the second takes
    what the first hashed: `pii_gate.stored_identifiers`)."""
    verified = (str(Path(warehouse.database).resolve()), run_id) if run_id is not None else None

    def load(key: str) -> RawIdentifiers:
        with warehouse.cursor() as conn:
            found, parts = stored_identifiers(conn, SOURCES[key], verified=verified)
        if read is not None:
            read[key] = parts
        return found

    return ComputedOnUse(list(SOURCES), load, keep=1)


def _dob_column(spec: ReleaseTable) -> str | None:
    """The staged date-of-birth column of a released table that has one and a primary key to join it by."""
    table = SOURCES[spec.source].table(spec.name) if spec.source in SOURCES else None
    dob = next((c.name for c in table.columns if c.kind == "dob"), None) if table else None
    return dob if spec.primary_key is not None else None


def _date_columns(frame: pl.DataFrame) -> list[str]:
    """The columns the PII scan compares with each row's date of birth (`pii_gate.scan_table`)."""
    return [name for name, dtype in frame.schema.items() if dtype in (pl.Date, pl.Datetime)]


def _staged_dates_of_birth_sql(spec: ReleaseTable, dob: str) -> str:
    """Per staged id, the date of birth of its last staged row (in the table's order), with the id's
    pseudonym as de-identification stored it (`deidentify.hash_cache`; null: never hashed)."""
    key = spec.column(spec.primary_key)
    return (f"select c.digest as {key.name}, s.id, s.dob from (select cast({key.staged} as varchar) as id, "
            f"arg_max_null({dob}, rowid) as dob from staged_{spec.source}.{spec.name} "
            f"where {key.staged} is not null group by 1) s left join {HASH_CACHE} c on c.value = s.id "
            "and c.key_fingerprint = ? and c.namespace = ?")


def _no_date_is_its_rows_birth_date(conn: duckdb.DuckDBPyConnection, spec: ReleaseTable, frame: pl.DataFrame,
                                    dob: str, dates: list[str], cache: KeyedHashCache) -> bool:
    """Whether no date of the released `frame` equals its row's date of birth, counted in DuckDB on the
    frame's own key and dates (the scan's comparison: each date as a date against the date of birth of
    the staged id whose pseudonym is the row's key, none for a key without one), without bringing
    every staged id's date of birth into polars and joining it there (most of this step's date-of-birth
    work). False, and the scan compares them itself, when any date equals one (its finding names a row)
    or any staged id was never hashed (it is hashed in Python)."""
    key = spec.column(spec.primary_key)
    counts = ", ".join(f"count(*) filter (where cast(r.{quote_identifier(c)} as date) = k.dob)" for c in dates)
    name = f"_released_{uuid.uuid4().hex[:8]}"
    conn.register(name, frame.select(key.name, *dates).to_arrow())
    try:
        found = conn.execute(
            # `k` is read twice (its unhashed ids, and the join): materialized, it is computed once
            # (left to DuckDB it was grouped and joined with the hash cache twice, ~0.1 CPU s at 300,000 people)
            f"with k as materialized ({_staged_dates_of_birth_sql(spec, dob)}) select (select count(*) from k where "
            f"{key.name} is null), {counts} from {name} r join k on k.{key.name} = r.{quote_identifier(key.name)}",
            [cache.fingerprint, key.hash_namespace]).fetchall()[0]
    finally:
        conn.unregister(name)
    return not any(found)


def _dates_of_birth(warehouse: Warehouse, spec: ReleaseTable, frame: pl.DataFrame) -> pl.Series | None:
    """What the PII scan compares `frame`'s dates with: each row's date of birth
    (`_rows_dates_of_birth`); None, and the scan compares no date, when the table has no date column or
    DuckDB counted no date equal to its row's date of birth (`_no_date_is_its_rows_birth_date`): the
    scan's findings are then those it gives comparing them."""
    dob, dates = _dob_column(spec), _date_columns(frame)
    if dob is None or not dates:
        return None
    # dates only (a timestamp's date depends on its time zone, which polars and DuckDB may read apart)
    if all(frame.schema[c] == pl.Date for c in dates):
        with warehouse.cursor() as conn:
            try:
                if _no_date_is_its_rows_birth_date(conn, spec, frame, dob, dates, KeyedHashCache(warehouse.database)):
                    return None
            except duckdb.CatalogException:  # never staged (partial graphs in tests): shapes and names still scanned
                return None
    return _rows_dates_of_birth(warehouse, spec, frame)


def _rows_dates_of_birth(warehouse: Warehouse, spec: ReleaseTable, frame: pl.DataFrame) -> pl.Series | None:
    """Each released row's own date of birth (joined back through its keyed primary-key hash): per
    staged id, the date of birth of its last staged row (in the table's order), with the id's
    pseudonym as de-identification stored it (`deidentify.hash_cache`), both found in DuckDB; only
    ids it never saw are hashed here. Reading every staged row and hashing every id in polars was
    most of this (2.8 of 3.3 s at 300,000 people), run by every release whose table changed."""
    dob = _dob_column(spec)
    if dob is None:
        return None
    key = spec.column(spec.primary_key)
    cache = KeyedHashCache(warehouse.database)
    with warehouse.cursor() as conn:
        try:
            staged = pl.from_arrow(conn.sql(_staged_dates_of_birth_sql(spec, dob),
                                            params=[cache.fingerprint, key.hash_namespace]).to_arrow_table())
        except duckdb.CatalogException:  # never staged (partial graphs in tests): shapes and names still scanned
            return None
    unseen = staged.filter(pl.col(key.name).is_null())
    if unseen.height:
        hashed = keyed_hash(unseen["id"], namespace=key.hash_namespace, cache=cache)
        staged = pl.concat([staged.filter(pl.col(key.name).is_not_null()), unseen.with_columns(hashed.alias(key.name))])
    return frame.select(key.name).join(staged.select(key.name, "dob"), on=key.name, how="left",
                                       maintain_order="left")["dob"]


def _release_dates_of_birth(warehouse: Warehouse, specs: dict[tuple[str, str], ReleaseTable],
                            tables: Mapping[tuple[str, str], pl.DataFrame],
                            skip: Container = ()) -> Mapping[tuple[str, str], pl.Series | None]:
    """Each released table's own dates of birth, for the tables that have one (the risk gate's input),
    but those in `skip` (whose gates are carried over): computed when the gate looks them up, while
    the gate holds the table (it was read for the gate), not on a read of its own."""
    keys = [key for key in tables if key not in skip and _dob_column(specs[key]) is not None]
    return ComputedOnUse(keys, lambda key: _dates_of_birth(warehouse, specs[key], tables[key]), keep=1)


def _staged_tables(database: str, dataset: str) -> dict[str, StoredTable]:
    return {f"staged.{t.name}": StoredTable(database, f"staged_{dataset}", t.name) for t in SOURCES[dataset].tables}


def _staged_fingerprints(database: str, datasets, memo: dict, verified: tuple[str, str] | None) -> None:
    """Put in `memo` (see `inputs_fingerprint`) the `table_fingerprint` of each of `datasets`' staged
    tables, from the pass that also hashes their partitions' identifying columns for the raw identifiers
    the gates load (`pii_gate.staged_sums`), instead of a pass of its own over the same rows."""
    with warehouse_cursor(database) as conn:
        for dataset in datasets:
            tables = _staged_tables(database, dataset).values()
            if all((database, table.select_sql()) in memo for table in tables):
                continue  # fingerprinted already: the raw identifiers hash their partitions if they need them
            sums = staged_sums(conn, SOURCES[dataset], verified=verified)
            for table in tables:
                columns = relation_columns(conn, table.name)
                if table.table in sums and columns and (database, table.select_sql()) not in memo:
                    memo[(database, table.select_sql())] = fingerprint_of(columns, *sums[table.table])


def _gate_fingerprints(kind: str, inputs: Mapping[tuple[str, str], StoredTable],
                       release_settings: ReleaseSettings, memo: dict | None = None,
                       verified: tuple[str, str] | None = None) -> dict[tuple[str, str], str]:
    """What each table's publish gates see: its content and, for de-identified tables, its dataset's
    staged tables (raw identifiers, dates of birth) and its risk rule; with the key and the code.
    `memo` (see `inputs_fingerprint`): a dataset's staged tables are hashed once, not once per table.
    `verified` (database file, run id): the staged tables' pass is kept for the raw identifiers of that
    run (`_staged_fingerprints`)."""
    memo = {} if memo is None else memo
    if kind == "deidentified":
        for database in {table.database for table in inputs.values()}:
            _staged_fingerprints(database, sorted({d for d, _ in inputs if d in SOURCES}), memo, verified)
    fingerprints = {}
    for (dataset, name), table in inputs.items():
        staged = _staged_tables(table.database, dataset) if kind == "deidentified" and dataset in SOURCES else {}
        rule = release_settings.risk_rule_for(dataset, name) if kind == "deidentified" else None
        fingerprints[(dataset, name)] = inputs_fingerprint({"table": table, **staged},
                                                           settings=(kind, rule, key_fingerprint()), memo=memo)
    return fingerprints


def _contract_held(context: AssetExecutionContext, kind: str, stored: Mapping[tuple[str, str], StoredTable],
                   specs: Mapping[tuple[str, str], ReleaseTable], memo: Mapping) -> set[tuple[str, str]]:
    """The tables whose content, as fingerprinted for their gates (in `memo`), the warehouse validated
    every row of against their release schema's very rules when it wrote them: this run's write (in this
    process) or the one its latest materialization records (`VALIDATED_CONTENT`; a kept table's carries
    its write's). Their gates need not validate them again (`release.gates.scan_release`): at 50,000
    people validating the changed tables a second time was a seventh of an incremental release."""
    keys = {table_key(kind, *key): key for key in stored}
    recorded = latest_metadata(context.instance, keys)  # every table's in one look-up
    held = set()
    for asset_key, key in keys.items():
        table = stored[key]
        in_run = validated_in_run(table.database, table.schema, table.table, context.run.run_id)
        contract, fingerprint = contract_for(asset_key), memo.get((table.database, table.select_sql()))
        if validated_against_release_schema(contract.name if contract is not None else None, release_spec_of(asset_key),
                                            specs[key], fingerprint, [in_run, recorded[asset_key].get(VALIDATED_CONTENT)]):
            held.add(key)
    return held


def release_catalogues(kind: str, root: Path, inputs: Mapping[tuple[str, str], StoredTable],
                       tables: Mapping[tuple[str, str], pl.DataFrame], specs: Mapping[tuple[str, str], ReleaseTable],
                       memo: dict | None = None) -> tuple[dict[str, Catalogue], list[str]]:
    """Each dataset's catalogue, and the datasets whose catalogue was taken as its catalogue asset
    stored it (built from tables with the same fingerprint: `catalogue.stored`); the others are
    built here from `tables`, so only those datasets' tables are read for their catalogues."""
    synthetic = kind == "synthetic"
    by_dataset: dict[str, dict[str, ReleaseTable]] = {}
    for (dataset, name), spec in specs.items():
        by_dataset.setdefault(dataset, {})[name] = spec
    catalogues, reused = {}, []
    for dataset, dataset_specs in by_dataset.items():
        fingerprint = catalogue_fingerprint(kind, dataset, {name: inputs[(dataset, name)] for name in dataset_specs},
                                            memo)
        catalogue = load_catalogue(catalogue_folder(root, kind), dataset, fingerprint, synthetic=synthetic)
        if catalogue is not None:
            reused.append(dataset)
        else:
            catalogue = build_catalogue(dataset, {name: tables[(dataset, name)] for name in dataset_specs},
                                        dataset_specs, synthetic=synthetic)
        catalogues[dataset] = catalogue
    return catalogues, reused


def _release_metadata(info: ReleaseInfo, root: Path, synthetic: bool) -> dict:
    manifest = info.manifest
    return {
        "release_id": info.release_id,
        "path": MetadataValue.path(str(info.path.resolve())),
        "readme": MetadataValue.url(file_url(info.path / "README.md", root)),
        "tables": len(manifest["tables"]),
        "rows": sum(t["rows"] for t in manifest["tables"]),
        "extract_dates": ", ".join(manifest["extract_dates"]),
        "pseudonymisation_key": manifest["pseudonymisation_key"],
        "key_fingerprint": key_fingerprint(),
        "gates_passed": manifest["gates"]["passed"],
        "catalogue_values_scanned": manifest["gates"]["catalogue_values_scanned"],
        "synthetic": synthetic,
    }


def _check_results(context: AssetExecutionContext, kind: str, tables) -> dict:
    """Each table's latest result of each of its checks, read in one query of the event log's index: a
    lookup per table and check (some 200 a release) took 0.4 s of each release step at any size."""
    keys = {AssetCheckKey(table_key(kind, dataset, name), check): (dataset, name)
            for dataset, name in tables for check in TABLE_CHECKS.get(kind, ())}
    records = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(list(keys))
    results = {}
    for key, table in keys.items():  # in table and check order, as the manifest lists them
        record = records.get(key)
        evaluation = record.event.asset_check_evaluation if record and record.event else None
        if evaluation is not None:
            results.setdefault(table, {})[key.name] = evaluation.passed
    return results


def build_release_asset(kind: str, *, extra_ins: dict[str, AssetIn] | None = None,
                        extra_metadata=None) -> AssetsDefinition:
    datasets = release_datasets()
    specs = {(dataset, spec.name): spec for dataset, in_dataset in datasets.items() for spec in in_dataset}
    synthetic = kind == "synthetic"
    # The tables are read by handle (`stored_release_table`); depending on the catalogues puts the
    # release after them in the graph (the UI shows the lineage).
    deps = [*(table_key(kind, *key) for key in specs), *(catalogue_key(kind, dataset) for dataset in datasets)]
    if synthetic:  # the report writes the note on how synthetic data differs, which the release carries
        deps.append(AssetKey(["synthetic", "report"]))

    @asset(
        key=AssetKey(["release", kind]),
        ins=extra_ins or {},
        deps=deps,
        group_name=release_group(kind),
        kinds={"parquet"},
        description=f"The {'SYNTHETIC ' if synthetic else ''}research release on disk: `data/releases/<release id>/` "
        "with Parquet per table, the catalogues, a README of the documented joins and a manifest (tables, rows, "
        "checksums, extract dates, model versions).",
        io_manager_key="io_manager",
        metadata={"schema": "release"},
    )
    def _release(context: AssetExecutionContext, linkage: LinkageSettings, warehouse: Warehouse,
                 release_settings: ReleaseSettings, **inputs: StoredTable) -> Output:
        # Read table by table as the catalogues, gates, checksums and writes reach them (a few
        # held at once), in primary-key order so that every read of a table agrees row by row.
        stored = {key: stored_release_table(warehouse.database, kind, *key) for key in specs}
        tables = LoadedOnUse(stored, keep=2,
                             order_by=lambda key: [specs[key].primary_key] if specs[key].primary_key else None)
        # each table hashed once for its gates and its dataset's catalogue, or not at all when this
        # run's contract check just read it (`content.checked_fingerprints`)
        memo: dict = checked_fingerprints(stored.values(), context.run.run_id)
        fingerprints = _gate_fingerprints(kind, stored, release_settings, memo,
                                          verified=(str(Path(warehouse.database).resolve()), context.run.run_id))
        catalogues, reused = release_catalogues(kind, linkage.root, stored, tables, specs, memo)
        previous = None if linkage.mode == "full" else latest_manifest(linkage.root / "releases", kind)
        carried = carried_gates(previous, fingerprints) if previous is not None else {}
        context.log.info(f"publish gates carried over for {len(carried)} unchanged table(s) of {len(specs)}")
        held = _contract_held(context, kind, {k: v for k, v in stored.items() if k not in carried}, specs, memo)
        identifier_parts_read: dict[str, int] = {}
        info = write_release(
            linkage.root / "releases", kind, tables, catalogues,
            extract_dates=_extract_dates(warehouse), model_versions=_model_versions(warehouse),
            key_is_development=key_is_development(), extra=extra_metadata(inputs) if extra_metadata else {},
            # The publish gate compares every table and catalogue value with the raw data again.
            identifiers=_raw_identifiers(warehouse, identifier_parts_read, context.run.run_id),
            dates_of_birth={} if synthetic else _release_dates_of_birth(warehouse, specs, tables, skip=carried),
            risk_rules=None if synthetic else {key: release_settings.risk_rule_for(*key) for key in tables},
            check_results=_check_results(context, kind, tables), gate_fingerprints=fingerprints, carried=carried,
            previous=previous,  # the files of carried tables are linked from it, not written again
            contract_held=held,  # validated as written: their contracts hold without validating them again
        )
        note = linkage.root / "synthetic" / "README.md"
        if synthetic and note.exists():
            shutil.copyfile(note, info.path / SYNTHETIC_NOTE)
        context.log.info(f"published {info.release_id} at {info.path}")
        return Output(release_summary(info), metadata={
            **_release_metadata(info, linkage.root, synthetic),
            # an unchanged table keeps its gates and file, and its dataset's stored catalogue: it is not read
            "tables_read": tables.loads, "catalogues_reused": len(reused), "contracts_held_as_written": len(held),
            # staged partitions whose raw identifiers were read (the others' were stored by an earlier release)
            "identifier_partitions_read": sum(identifier_parts_read.values())})

    return _release


def release_assets(kind: str = "deidentified") -> list[AssetsDefinition]:
    return [build_catalogue_asset(kind, dataset) for dataset in release_datasets()] + [build_release_asset(kind)]
