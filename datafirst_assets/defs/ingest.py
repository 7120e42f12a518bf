"""Raw and staged assets for every table of every source, generated from the registry.

No `from __future__ import annotations` here: Dagster inspects the context annotation at runtime.
"""


import pandera.polars as pa
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    AssetsDefinition,
    MetadataValue,
    Output,
    asset,
    multi_asset,
)
from dagster_duckdb import DuckDBResource

from datafirst_assets.defs.partitions import extract_dates
from datafirst_assets.defs.resources import LandingZone
from datafirst_assets.raw.delivery import PARTITION_COLUMN, delivery_path, load_raw_table
from datafirst_assets.sources.registry import all_tables
from datafirst_assets.sources.spec import SourceSpec, TableSpec
from datafirst_assets.staging.schemas import failure_summary, staged_schema
from datafirst_assets.staging.standardise import stage_table

WAREHOUSE_KINDS = {"polars", "duckdb"}


def raw_key(source: str, table: str) -> AssetKey:
    return AssetKey(["raw", source, table])


def staged_key(source: str, table: str) -> AssetKey:
    return AssetKey(["staged", source, table])


def quarantine_key(source: str, table: str) -> AssetKey:
    return AssetKey(["quarantine", source, table])


def _stored(stage: str, source: str) -> dict:
    """IO-manager metadata: DuckDB schema per stage and source, partition column."""
    return {"schema": f"{stage}_{source}", "partition_expr": PARTITION_COLUMN}


def build_raw_asset(source: SourceSpec, table: TableSpec) -> AssetsDefinition:
    @asset(
        key=raw_key(source.key, table.name),
        group_name="raw",
        partitions_def=extract_dates,
        metadata=_stored("raw", source.key),
        kinds=WAREHOUSE_KINDS,
        description=f"{source.system} `{table.name}` as delivered (all text), one row per {table.grain}, "
        "with file, line number and any parse error.",
    )
    def _raw(context: AssetExecutionContext, landing: LandingZone) -> pl.DataFrame:
        delivery = delivery_path(landing.root, source.key, context.partition_key)
        frame, metadata = load_raw_table(source, table, delivery)
        context.add_output_metadata(metadata)
        return frame

    return _raw


def _count_partition(conn, schema: str, table: str, partition: str) -> int:
    return conn.execute(
        f"select count(*) from {schema}.{table} where {PARTITION_COLUMN} = ?", [partition]
    ).fetchone()[0]


def build_staging_asset(source: SourceSpec, table: TableSpec) -> AssetsDefinition:
    staged = staged_key(source.key, table.name)

    @multi_asset(
        name=f"stage_{source.key}_{table.name}",
        outs={
            "staged": AssetOut(
                key=staged, group_name="staged", metadata=_stored("staged", source.key), kinds=WAREHOUSE_KINDS,
                description=f"{source.system} `{table.name}` typed and standardised: one row per {table.grain}.",
            ),
            "quarantine": AssetOut(
                key=quarantine_key(source.key, table.name), group_name="quarantine",
                metadata=_stored("quarantine", source.key), kinds=WAREHOUSE_KINDS,
                description=f"Rows of {source.key} `{table.name}` that could not be staged, with the reason.",
            ),
        },
        ins={"raw": AssetIn(key=raw_key(source.key, table.name))},
        partitions_def=extract_dates,
        check_specs=[
            AssetCheckSpec("schema_valid", asset=staged, blocking=True,
                           description="The staged rows satisfy the table's pandera schema."),
            AssetCheckSpec("rows_conserved", asset=staged, blocking=True,
                           description="Stored raw rows = stored staged rows + stored quarantined rows."),
        ],
    )
    def _stage(context: AssetExecutionContext, raw: pl.DataFrame, warehouse: DuckDBResource):
        result = stage_table(raw, source, table)
        reasons = (
            result.quarantine.select(pl.col("reason").str.split("; ").explode().str.replace(r" '.*", ""))
            .group_by("reason").len().sort("len", descending=True).head(10)
        )
        yield Output(result.staged, output_name="staged", metadata={"quarantined": result.quarantine.height})
        yield Output(
            result.quarantine, output_name="quarantine",
            metadata={"top_reasons": MetadataValue.md(
                "\n".join(f"- {r}: {n}" for r, n in reasons.iter_rows()) or "none")},
        )
        try:
            staged_schema(source.key, table.name).validate(result.staged, lazy=True)
            yield AssetCheckResult(check_name="schema_valid", passed=True)
        except pa.errors.SchemaErrors as error:
            summary = failure_summary(error)
            context.log.error(f"{staged.to_user_string()} failed its schema: " + " | ".join(summary["detail"]))
            yield AssetCheckResult(
                check_name="schema_valid", passed=False, severity=AssetCheckSeverity.ERROR,
                metadata={"failures": summary["failures"], "detail": MetadataValue.md(
                    "\n".join(f"- {line}" for line in summary["detail"]))},
            )
        # Count what was actually stored, not what was handed to the IO manager.
        with warehouse.get_connection() as conn:
            counts = {
                stage: _count_partition(conn, f"{stage}_{source.key}", table.name, context.partition_key)
                for stage in ("raw", "staged", "quarantine")
            }
        yield AssetCheckResult(
            check_name="rows_conserved",
            passed=counts["raw"] == counts["staged"] + counts["quarantine"],
            metadata=counts,
        )

    return _stage


def ingest_assets() -> list[AssetsDefinition]:
    return [
        factory(source, table)
        for source, table in all_tables()
        for factory in (build_raw_asset, build_staging_asset)
    ]
