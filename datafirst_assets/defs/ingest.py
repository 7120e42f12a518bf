"""Raw and staged assets for every table of every source, generated from the registry.

Each source is one multi-asset per stage (one asset per table, subsettable), and a range of
extract dates runs as one run (single-run backfill policy), so three deliveries of thirty tables
are fourteen steps rather than one hundred and eighty: step overhead, not data, dominated small
extracts. No `from __future__ import annotations`: Dagster inspects annotations at runtime.
"""

from datafirst_assets.common.pandera_polars import pa
import polars as pl
from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    AssetsDefinition,
    BackfillPolicy,
    MetadataValue,
    Output,
    multi_asset,
)

from datafirst_assets.defs.keys import (  # noqa: F401 (named here too: the ingest's keys)
    STAGES,
    ingest_keys,
    quarantine_key,
    raw_key,
    stage_key,
    staged_key,
)
from datafirst_assets.defs.memory import release_between_steps
from datafirst_assets.defs.partitions import extract_dates
from datafirst_assets.defs.resources import LandingZone, Warehouse
from datafirst_assets.raw.delivery import (
    PARTITION_COLUMN,
    check_manifest,
    delivery_path,
    load_raw_table,
    read_manifest,
)
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.sources.spec import SourceSpec, TableSpec
from datafirst_assets.common.checks import failure_summary
from datafirst_assets.contracts.wiring import passed_before_store
from datafirst_assets.staging.schemas import staged_schema
from datafirst_assets.staging.standardise import StagedResult, stage_partitions

WAREHOUSE_KINDS = {"polars", "duckdb"}


def rows_per_partition(frame: pl.DataFrame, keys: list[str]) -> dict[str, int]:
    """Rows of each extract date in a frame holding several (0 for a date with none)."""
    counts = dict(frame.group_by(PARTITION_COLUMN).len().iter_rows()) if frame.height else {}
    return {key: counts.get(key, 0) for key in keys}


def _out(stage: str, source: SourceSpec, table: TableSpec, description: str) -> AssetOut:
    return AssetOut(
        key=stage_key(stage, source.key, table.name),
        group_name=stage,
        # IO-manager metadata: one DuckDB schema per stage and source, partitioned by extract date.
        metadata={"schema": f"{stage}_{source.key}", "partition_expr": PARTITION_COLUMN},
        kinds=WAREHOUSE_KINDS,
        description=description,
        is_required=False,
    )


def _selected_tables(context: AssetExecutionContext, source: SourceSpec, stage: str) -> list[TableSpec]:
    selected = context.selected_asset_keys
    return [t for t in source.tables if stage_key(stage, source.key, t.name) in selected]


def build_raw_assets(source: SourceSpec) -> AssetsDefinition:
    @multi_asset(
        name=f"load_{source.key}",
        outs={
            t.name: _out("raw", source, t, f"{source.system} `{t.name}` as delivered (all text), one row per "
                         f"{t.grain}, with file, line number and any parse error.")
            for t in source.tables
        },
        partitions_def=extract_dates,
        backfill_policy=BackfillPolicy.single_run(),
        can_subset=True,
    )
    def _load(context: AssetExecutionContext, landing: LandingZone):
        # No inputs, so the IO manager's release (at a step's first read or write) would come only
        # after the deliveries are read: release what the previous step left before reading them.
        release_between_steps(context.op_def.name, context.log)
        # All or nothing: every selected table of every delivery is read and checked before any is
        # written, so a refused table leaves no table of the source changed for these dates.
        loaded = load_deliveries(source, _selected_tables(context, source, "raw"), landing.root,
                                 context.partition_keys)
        for table_name, (frame, files) in loaded.items():
            # each extract date's materialisation shows its own delivery, not the whole run's
            for key, file in files.items():
                context.add_asset_metadata({"dagster/row_count": file["rows"], "delivery": file},
                                           asset_key=raw_key(source.key, table_name), partition_key=key)
            yield Output(frame, output_name=table_name, metadata={"rows": frame.height, "deliveries": files})

    return _load


def load_deliveries(source: SourceSpec, tables: list[TableSpec], landing, extract_dates
                    ) -> dict[str, tuple[pl.DataFrame, dict]]:
    """Each table's rows over these deliveries, with per-date load metadata; raises DeliveryError
    (naming file and problem) before returning anything if any table of any delivery is refused."""
    deliveries = {}
    for key in extract_dates:
        folder = delivery_path(landing, source.key, key)
        manifest = read_manifest(folder)
        check_manifest(manifest, folder, source)
        deliveries[key] = (folder, manifest)
    loaded = {}
    for table in tables:
        frames, files = [], {}
        for key, (folder, manifest) in deliveries.items():
            frame, metadata = load_raw_table(source, table, folder, manifest)
            frames.append(frame)
            files[key] = {**metadata, "manifest_sha256": manifest.checksum}
        loaded[table.name] = (pl.concat(frames), files)
    return loaded


def _check_results(context, source: SourceSpec, table: TableSpec, result: StagedResult, warehouse: Warehouse,
                   keys: list[str]):
    staged = staged_key(source.key, table.name)
    schema = staged_schema(source.key, table.name)
    try:
        # The staged table's contract is this schema: the IO manager has just validated this very
        # frame, every row, before storing it (it refuses a violating one), so it is not validated twice.
        if not passed_before_store(staged, result.staged, schema):
            schema.validate(result.staged, lazy=True)
        yield AssetCheckResult(asset_key=staged, check_name="schema_valid", passed=True)
    except pa.errors.SchemaErrors as error:
        summary = failure_summary(error)
        context.log.error(f"{staged.to_user_string()} failed its schema: " + " | ".join(summary["detail"]))
        yield AssetCheckResult(
            asset_key=staged, check_name="schema_valid", passed=False, severity=AssetCheckSeverity.ERROR,
            metadata={"failures": summary["failures"],
                      "detail": MetadataValue.md("\n".join(f"- {line}" for line in summary["detail"]))},
        )
    # Count what was actually stored, not what was handed to the IO manager.
    with warehouse.cursor() as conn:
        counts = {
            stage: conn.execute(
                f"select count(*) from {stage}_{source.key}.{table.name} where list_contains(?, {PARTITION_COLUMN})",
                [keys],
            ).fetchone()[0]
            for stage in STAGES
        }
    yield AssetCheckResult(
        asset_key=staged, check_name="rows_conserved",
        passed=counts["raw"] == counts["staged"] + counts["quarantine"], metadata=counts,
    )


def _reason_summary(quarantine: pl.DataFrame) -> str:
    reasons = (
        quarantine.select(pl.col("reason").str.split("; ").explode().str.replace(r" '.*", ""))
        .group_by("reason").len().sort("len", descending=True).head(10)
    )
    return "\n".join(f"- {r}: {n}" for r, n in reasons.iter_rows()) or "none"


def _partition_metadata(context: AssetExecutionContext, source: SourceSpec, table: TableSpec,
                        raw: pl.DataFrame, result: StagedResult, keys: list[str]) -> None:
    """Each extract date's own counts on its staged and quarantine materialisations."""
    quarantine_selected = quarantine_key(source.key, table.name) in context.selected_asset_keys
    raw_rows = rows_per_partition(raw, keys)
    staged_rows = rows_per_partition(result.staged, keys)
    quarantined = rows_per_partition(result.quarantine, keys)
    for key in keys:
        conserved = raw_rows[key] == staged_rows[key] + quarantined[key]
        context.add_asset_metadata(
            {"dagster/row_count": staged_rows[key], "raw_rows": raw_rows[key], "quarantined": quarantined[key],
             "rows_conserved": "passed" if conserved else "FAILED"},
            asset_key=staged_key(source.key, table.name), partition_key=key)
        if not quarantine_selected:
            continue
        reasons = _reason_summary(result.quarantine.filter(pl.col(PARTITION_COLUMN) == key))
        context.add_asset_metadata(
            {"dagster/row_count": quarantined[key], "raw_rows": raw_rows[key],
             "top_reasons": MetadataValue.md(reasons)},
            asset_key=quarantine_key(source.key, table.name), partition_key=key)

def _alteration_summary(alterations: dict[str, dict[str, int]]) -> str:
    """Values staging changed (never silently): per column, what happened and how often."""
    lines = [f"- {column}: {what}: {n:,}" for column, counts in alterations.items() for what, n in counts.items()]
    return "\n".join(lines) or "none"


def build_staging_assets(source: SourceSpec) -> AssetsDefinition:
    outs = {}
    for t in source.tables:
        outs[f"staged__{t.name}"] = _out(
            "staged", source, t, f"{source.system} `{t.name}` typed and standardised: one row per {t.grain}.")
        outs[f"quarantine__{t.name}"] = _out(
            "quarantine", source, t, f"Rows of {source.key} `{t.name}` that could not be staged, with the reason.")

    @multi_asset(
        name=f"stage_{source.key}",
        outs=outs,
        ins={f"raw__{t.name}": AssetIn(key=raw_key(source.key, t.name)) for t in source.tables},
        partitions_def=extract_dates,
        backfill_policy=BackfillPolicy.single_run(),
        can_subset=True,
        check_specs=[
            spec
            for t in source.tables
            for spec in (
                AssetCheckSpec("schema_valid", asset=staged_key(source.key, t.name), blocking=True,
                               description="The staged rows satisfy the table's pandera schema."),
                AssetCheckSpec("rows_conserved", asset=staged_key(source.key, t.name), blocking=True,
                               description="Stored raw rows = stored staged rows + stored quarantined rows."),
            )
        ],
    )
    def _stage(context: AssetExecutionContext, warehouse: Warehouse, **raw_tables: pl.DataFrame):
        checks = context.selected_asset_check_keys
        # once per step: each read of context.partition_keys asks the instance for the dynamic partitions
        keys = list(context.partition_keys)
        for table in _selected_tables(context, source, "staged"):
            result = stage_partitions(raw_tables[f"raw__{table.name}"], source, table)
            _partition_metadata(context, source, table, raw_tables[f"raw__{table.name}"], result, keys)
            yield Output(result.staged, output_name=f"staged__{table.name}",
                         metadata={"values_altered": MetadataValue.md(_alteration_summary(result.alterations))})
            yield Output(result.quarantine, output_name=f"quarantine__{table.name}")
            for check in _check_results(context, source, table, result, warehouse, keys):
                if AssetCheckKey(check.asset_key, check.check_name) in checks:
                    yield check

    return _stage


def ingest_assets() -> list[AssetsDefinition]:
    return [factory(source) for source in SOURCES.values() for factory in (build_raw_assets, build_staging_assets)]
