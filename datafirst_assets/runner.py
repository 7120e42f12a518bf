"""Headless materialisation of the whole asset graph (what `datafirst run` and `make demo` do)."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from dagster import AssetKey, DagsterInstance

from datafirst_assets.defs.ingest import quarantine_key, raw_key, staged_key
from datafirst_assets.defs.partitions import EXTRACT_DATES
from datafirst_assets.defs.resources import DataLayout
from datafirst_assets.definitions import INGEST_JOB, build_definitions
from datafirst_assets.raw.delivery import list_deliveries
from datafirst_assets.sources.registry import SOURCES


class PipelineFailed(Exception):
    pass


@dataclass
class RunReport:
    deliveries: list[tuple[str, str]] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0


def ensure_partitions(instance: DagsterInstance, dates: list[str]) -> None:
    known = set(instance.get_dynamic_partitions(EXTRACT_DATES))
    new = [d for d in dates if d not in known]
    if new:
        instance.add_dynamic_partitions(EXTRACT_DATES, new)


def ingest_keys(sources: list[str]) -> list[AssetKey]:
    return [
        key(source, table.name)
        for source in sources
        for table in SOURCES[source].tables
        for key in (raw_key, staged_key, quarantine_key)
    ]


def run_pipeline(layout: DataLayout, instance: DagsterInstance, dates: list[str] | None = None) -> RunReport:
    """Ingest every delivery in the landing zone (one run per extract date)."""
    started = time.perf_counter()
    defs = build_definitions(layout.root)
    deliveries = [d for d in list_deliveries(layout.landing) if d[0] in SOURCES]
    if dates:
        deliveries = [d for d in deliveries if d[1] in dates]
    if not deliveries:
        raise PipelineFailed(f"no deliveries under {layout.landing}: run `datafirst simulate` first")
    by_date: dict[str, list[str]] = defaultdict(list)
    for source, extract_date in deliveries:
        by_date[extract_date].append(source)
    ensure_partitions(instance, sorted(by_date))

    report = RunReport(deliveries=deliveries)
    job = defs.resolve_job_def(INGEST_JOB)
    for extract_date, sources in sorted(by_date.items()):
        result = job.execute_in_process(
            partition_key=extract_date, instance=instance, asset_selection=ingest_keys(sources),
            raise_on_error=False,
        )
        report.run_ids.append(result.run_id)
        if not result.success:
            failures = [e.message for e in result.all_events if e.is_failure]
            raise PipelineFailed(f"ingest of {extract_date} failed (run {result.run_id}): " + " | ".join(failures[:3]))
        failed_checks = [
            f"{e.asset_check_evaluation_data.asset_key.to_user_string()}:{e.asset_check_evaluation_data.check_name}"
            for e in result.get_asset_check_evaluations() if not e.passed
        ]
        if failed_checks:
            raise PipelineFailed(f"checks failed for {extract_date}: {failed_checks}")
    report.seconds = time.perf_counter() - started
    return report


def warehouse_summary(layout: DataLayout) -> list[tuple[str, str, int, int]]:
    """(source, table, staged rows, quarantined rows) for every staged table in the warehouse."""
    rows = []
    with duckdb.connect(str(layout.warehouse), read_only=True) as conn:
        existing = {
            (s, t) for s, t in conn.execute(
                "select table_schema, table_name from information_schema.tables").fetchall()
        }
        for source in SOURCES.values():
            for table in source.tables:
                if (f"staged_{source.key}", table.name) not in existing:
                    continue
                staged = conn.execute(f"select count(*) from staged_{source.key}.{table.name}").fetchone()[0]
                quarantined = conn.execute(
                    f"select count(*) from quarantine_{source.key}.{table.name}").fetchone()[0]
                rows.append((source.key, table.name, staged, quarantined))
    return rows


def format_summary(layout: DataLayout, report: RunReport) -> str:
    table_rows = warehouse_summary(layout)
    width = max(len(f"{s}.{t}") for s, t, _, _ in table_rows)
    dates = sorted({d for _, d in report.deliveries})
    lines = [
        f"Loaded {len(report.deliveries)} extract deliveries from {len(SOURCES)} systems "
        f"({', '.join(dates)}) in {report.seconds:.1f}s",
        "",
        f"{'table'.ljust(width)}  {'staged':>9}  {'quarantined':>11}",
        *(f"{f'{s}.{t}'.ljust(width)}  {n:>9,}  {q:>11,}" for s, t, n, q in table_rows),
        f"{'total'.ljust(width)}  {sum(r[2] for r in table_rows):>9,}  {sum(r[3] for r in table_rows):>11,}",
        "",
        f"Warehouse: {layout.warehouse.resolve()} (DuckDB; schemas raw_*, staged_*, quarantine_*)",
        "Open the UI: make ui  (then http://127.0.0.1:3000)",
    ]
    return "\n".join(lines)
