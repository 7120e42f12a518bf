"""Headless materialisation of the whole asset graph (what `datafirst run` and `make demo` do)."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from dagster import DagsterInstance, RunsFilter
from dagster._core.storage.dagster_run import ACTIVE_RUN_STATUSES
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from datafirst_assets.defs.ingest import ingest_keys
from datafirst_assets.defs.partitions import EXTRACT_DATES
from datafirst_assets.defs.resources import DataLayout
from datafirst_assets.definitions import INGEST_JOB, LINK_JOB, build_definitions
from datafirst_assets.launch import RunOutcome, launch_job, run_outcome
from datafirst_assets.raw.delivery import list_deliveries
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.warehouse.connection import warehouse_cursor


# Headless runs print a summary, not Dagster's step-by-step DEBUG log (the UI shows that).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class PipelineFailed(Exception):
    pass


@dataclass
class RunReport:
    deliveries: list[tuple[str, str]] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    ingest_seconds: float = 0.0
    seconds: float = 0.0


def ensure_partitions(instance: DagsterInstance, dates: list[str]) -> None:
    known = set(instance.get_dynamic_partitions(EXTRACT_DATES))
    new = [d for d in dates if d not in known]
    if new:
        instance.add_dynamic_partitions(EXTRACT_DATES, new)


def _run_job(instance: DagsterInstance, defs, layout: DataLayout, job_name: str, *,
             sources: list[str] | None = None, tags: dict[str, str] | None = None) -> RunOutcome:
    """One run of a job, ingesting only `sources` when given.

    On a persistent instance (DAGSTER_HOME, as `make` sets it) the run is launched through the code
    location, so the UI's timeline and job pages show it; an ephemeral instance (tests, no
    DAGSTER_HOME) runs it in this process.
    """
    if instance.is_persistent:
        ops = [f"{step}_{source}" for source in sources for step in ("load", "stage")] if sources else None
        return launch_job(instance, job_name, layout.root, ops=ops, tags=tags, run_config=QUIET)
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, raise_on_error=False, run_config=QUIET, tags=tags,
        asset_selection=ingest_keys(sources) if sources else None)
    return run_outcome(instance, result.run_id)


def _errors(outcome: RunOutcome) -> str:
    return " | ".join(outcome.errors) or "see the run's logs"


def delivery_ranges(instance: DagsterInstance, deliveries: list[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    """Group sources by runs of consecutive partitions they delivered: one run per group."""
    order = {key: i for i, key in enumerate(instance.get_dynamic_partitions(EXTRACT_DATES))}
    dates_by_source: dict[str, list[str]] = defaultdict(list)
    for source, extract_date in deliveries:
        dates_by_source[source].append(extract_date)
    ranges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for source, dates in dates_by_source.items():
        dates = sorted(dates, key=order.__getitem__)
        start = previous = dates[0]
        for extract_date in dates[1:]:
            if order[extract_date] != order[previous] + 1:
                ranges[(start, previous)].append(source)
                start = extract_date
            previous = extract_date
        ranges[(start, previous)].append(source)
    return dict(sorted(ranges.items()))


def extract_dates_between(landing: Path, first: str, last: str) -> list[str]:
    """Every extract date in [first, last] that any known source delivered (ISO dates sort as text)."""
    return sorted({d for s, d in list_deliveries(landing) if s in SOURCES and first <= d <= last})


def wait_for_idle(instance: DagsterInstance, say=print, poll_seconds: float = 5.0,
                  timeout: float = 3600.0) -> None:
    """Let runs the daemon launched on this instance finish before writing the warehouse here.

    In-process runs bypass the run queue, but they are recorded in the instance as started, so
    once these runs begin the daemon holds its queue until they end. A run record left "started"
    by a crashed process must not block forever: after `timeout` this goes ahead, and opening the
    warehouse then waits for its lock instead.
    """
    deadline = time.monotonic() + timeout
    announced = False
    while time.monotonic() < deadline:
        active = instance.get_run_records(RunsFilter(statuses=ACTIVE_RUN_STATUSES))
        if not active:
            return
        if not announced:
            runs = ", ".join(f"{r.dagster_run.run_id[:8]} ({r.dagster_run.job_name})" for r in active)
            say(f"Waiting for {len(active)} run(s) in progress to finish first (one warehouse writer): "
                f"{runs}")
            announced = True
        time.sleep(poll_seconds)


def run_pipeline(layout: DataLayout, instance: DagsterInstance, dates: list[str] | None = None,
                 link: bool = True) -> RunReport:
    """Ingest every delivery in the landing zone (one run per range of extract dates), then link."""
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
    for (first, last), sources in delivery_ranges(instance, deliveries).items():
        outcome = _run_job(instance, defs, layout, INGEST_JOB, sources=sources,
                           tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last})
        report.run_ids.append(outcome.run_id)
        extract_date = first if first == last else f"{first}..{last}"
        if not outcome.success:
            raise PipelineFailed(f"ingest of {extract_date} failed (run {outcome.run_id}): " + _errors(outcome))
        if outcome.failed_checks:
            raise PipelineFailed(f"checks failed for {extract_date}: {outcome.failed_checks}")
    report.ingest_seconds = time.perf_counter() - started
    if link:
        outcome = _run_job(instance, defs, layout, LINK_JOB)
        report.run_ids.append(outcome.run_id)
        if not outcome.success:
            raise PipelineFailed(f"linkage failed (run {outcome.run_id}): " + _errors(outcome))
    report.seconds = time.perf_counter() - started
    return report


def warehouse_summary(layout: DataLayout) -> list[tuple[str, str, int, int]]:
    """(source, table, staged rows, quarantined rows) for every staged table in the warehouse."""
    rows = []
    with warehouse_cursor(layout.warehouse) as conn:
        existing = {
            (s, t) for s, t in conn.execute(
                "select schema_name, table_name from duckdb_tables()").fetchall()
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


def linkage_summary(layout: DataLayout) -> list[str]:
    report = layout.reports / "linkage_quality.md"
    if not report.exists():
        return []
    text = report.read_text()
    section = text.split("## Accuracy per dataset", 1)[-1].split("##", 1)[0].strip()
    return ["Linkage accuracy (against the simulator's truth):", section, f"Report: {report.resolve()}", ""]


def release_summary(layout: DataLayout) -> list[str]:
    """Where each published release is (the newest of each kind)."""
    lines = []
    for latest in sorted(layout.releases.glob("LATEST_*")):
        path = layout.releases / latest.read_text().strip()
        lines.append(f"Release ({latest.name.removeprefix('LATEST_')}): {path.resolve()} "
                     "(README.md, manifest.json, catalogue/, tables/)")
    reports = sorted(p.name for p in layout.reports.glob("*.html")) if layout.reports.exists() else []
    if reports:
        lines.append(f"Reports in {layout.reports.resolve()}: {', '.join(reports)}")
    return lines + ([""] if lines else [])


def format_summary(layout: DataLayout, report: RunReport) -> str:
    table_rows = warehouse_summary(layout)
    width = max(len(f"{s}.{t}") for s, t, _, _ in table_rows)
    dates = sorted({d for _, d in report.deliveries})
    lines = [
        f"Loaded {len(report.deliveries)} extract deliveries from {len(SOURCES)} systems "
        f"({', '.join(dates)}) in {report.ingest_seconds:.1f}s; total {report.seconds:.1f}s",
        "",
        f"{'table'.ljust(width)}  {'staged':>9}  {'quarantined':>11}",
        *(f"{f'{s}.{t}'.ljust(width)}  {n:>9,}  {q:>11,}" for s, t, n, q in table_rows),
        f"{'total'.ljust(width)}  {sum(r[2] for r in table_rows):>9,}  {sum(r[3] for r in table_rows):>11,}",
        "",
        *linkage_summary(layout),
        *release_summary(layout),
        f"Warehouse: {layout.warehouse.resolve()} (DuckDB; schemas raw_*, staged_*, quarantine_*, linkage_*)",
        "Open the UI: make ui  (then http://127.0.0.1:3000)",
    ]
    return "\n".join(lines)
