"""Headless materialisation of the whole asset graph (what `datafirst run` and `make demo` do)."""

from __future__ import annotations

import functools
import importlib
import os
import re
import socket
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from dagster import DagsterInstance, Definitions, JobDefinition, RunsFilter, build_reconstructable_job, execute_job

# Not the code location (definitions.py) nor what only it needs (pandera, the IO manager, the sensors):
# runs launched through the code location are built and run by the code server's processes, so this
# process builds the definitions only to run in process, or to select part of a job (`_resolve`).
from datafirst_assets.defs.event_log import keep_event_log_open
from datafirst_assets.defs.keys import INGEST_JOB, LINK_JOB, REVIEW_QUEUES_JOB, already_loaded, ingest_keys
from datafirst_assets.defs.partitions import EXTRACT_DATES
from datafirst_assets.defs.recovery import HOST_TAG, PID_TAG, RUNNING_STATUSES, fail_abandoned_runs
from datafirst_assets.layout import DATA_DIR_ENV, DataLayout
# LAUNCH_ENV: named here too, where the tests and the UI's launcher import it from
from datafirst_assets.launch import (CODE_LOCATION_MODULE, LAUNCH_ENV, RunOutcome, environment_variable,  # noqa: F401
                                     launch_job, launches_from_code_location)
from datafirst_assets.common.hashing import sha256_file
from datafirst_assets.raw.arrival import COMPLETE, Arrival
from datafirst_assets.raw.delivery import MANIFEST, delivery_path, survey_landing
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.warehouse.connection import close_warehouse, warehouse_cursor


# Headless runs print a summary, not Dagster's step-by-step log (the UI shows that). Failures are
# reported by the runner in the product's words, with tracebacks written to data/logs/.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# Dagster's tags for a single run over a range of partitions (a documented tag, not a public constant).
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


class PipelineFailed(Exception):
    pass


@dataclass
class RunReport:
    deliveries: list[tuple[str, str]] = field(default_factory=list)
    # loaded by an earlier run from the same manifest, so not loaded again
    already_loaded: list[tuple[str, str]] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    ingest_seconds: float = 0.0
    seconds: float = 0.0


def ensure_partitions(instance: DagsterInstance, dates: list[str]) -> None:
    known = set(instance.get_dynamic_partitions(EXTRACT_DATES))
    new = [d for d in dates if d not in known]
    if new:
        instance.add_dynamic_partitions(EXTRACT_DATES, new)


# The definitions `run_pipeline` built, by data directory, for `job_of` to hand back (see _run_job).
_DEFINITIONS: dict[str, Definitions] = {}


def job_of(job_name: str, data_dir: str) -> JobDefinition:
    """A job of the definitions for `data_dir`: the ones this process built when it has them (the
    run then executes what `run_pipeline` resolved), else built afresh. `execute_job` rebuilds its
    job through this module-level function (`build_reconstructable_job`)."""
    from datafirst_assets.definitions import build_definitions

    defs = _DEFINITIONS.get(data_dir) or build_definitions(data_dir)
    return defs.resolve_job_def(job_name)


def _definitions_for(layout: DataLayout, instance: DagsterInstance) -> Definitions:
    """The definitions `run_pipeline` selects assets from (and, in process, runs).

    Launched through the code location, a run executes the code server's definitions: this process
    needs only the asset graph, which the code location's module already built on import (building
    it again costs ~0.6 s). In process, the run executes these, so they are built for `layout`
    with the settings in the environment now."""
    if launches_from_code_location(instance):
        from datafirst_assets import definitions

        return definitions.defs
    if CODE_LOCATION_MODULE not in sys.modules:
        # Importing the code location builds its definitions for the data directory of the environment:
        # imported now, for `layout`'s, that build is the one needed, rather than a second (~1.2 s of CPU
        # at every in-process run; and only the first is exempt from the collections between steps)
        with environment_variable(DATA_DIR_ENV, str(layout.root)):
            definitions = importlib.import_module(CODE_LOCATION_MODULE)
        if Path(definitions.defs_data_dir) == Path(layout.root):
            return definitions.defs
    from datafirst_assets.definitions import build_definitions

    return build_definitions(layout.root)


def _lazy_definitions(layout: DataLayout, instance: DagsterInstance):
    """`_definitions_for`, built at the first `_resolve` only: a run of a whole job launched
    through the code location (both of the demo's) needs none here (importing the code location
    costs ~1.5 s of CPU and pandera's, the IO manager's and every stage's imports)."""
    return functools.cache(lambda: _definitions_for(layout, instance))


def _resolve(defs) -> Definitions:
    """The definitions themselves, from `_lazy_definitions` or as given (tests pass them built)."""
    return defs() if callable(defs) else defs


def _run_job(instance: DagsterInstance, defs, layout: DataLayout, job_name: str, *,
             sources: list[str] | None = None, tags: dict[str, str] | None = None,
             asset_selection: list | None = None) -> RunOutcome:
    """One run of a job (or of `asset_selection` of it), ingesting only `sources` when given.

    With DATAFIRST_LAUNCH=code_location (as `make demo` and `make backfill` set it) and a persistent
    instance, the run is launched through the code location, so the UI's timeline and job pages show
    it; otherwise it runs in this process (killed-run recovery assumes that: the run dies with it).

    In this process it runs through `execute_job`, not `execute_in_process`: the latter keeps every
    step's output (each asset's returned frame) in memory until the run ends, for its result's
    `output_for_node`, which nothing here reads. At 300,000 people that held 3.3 GiB after the
    ingest and 6.7 GiB by the synthetic stage. Steps still run one at a time in this process (the
    definitions' in-process executor).
    """
    if sources and set(sources) != set(SOURCES):
        asset_selection = ingest_keys(sources)
    if launches_from_code_location(instance):
        return launch_job(instance, job_name, layout.root, asset_selection=asset_selection, tags=tags,
                          run_config=QUIET)
    keep_event_log_open(instance)
    data_dir = str(layout.root)
    _DEFINITIONS[data_dir] = _resolve(defs)
    job = build_reconstructable_job(__name__, job_of.__name__, reconstructable_args=(job_name, data_dir))
    try:
        result = execute_job(job, instance, run_config=QUIET, tags=tags, raise_on_error=False,
                             asset_selection=asset_selection)
    finally:
        # closed (checkpointed and sealed) after each run: the next run opens the file as this one left
        # it, and its contract checks take the tables it does not write as recorded (`connection`)
        close_warehouse(layout.warehouse)
    return RunOutcome(result.run_id, result.success,
                      errors=[] if result.success else [step_errors(result, layout.logs)],
                      failed_checks=[check_failure(e)
                                     for e in result.get_asset_check_evaluations() if not e.passed])


def _errors(outcome: RunOutcome) -> str:
    return " | ".join(outcome.errors) or "see the run's logs"

def check_failure(evaluation) -> str:
    """A failed check by name, with what its metadata says went wrong (the console log is quiet)."""
    name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
    details = [str(getattr(value, "value", value)).replace("\n", " ")
               for key, value in evaluation.metadata.items() if key in ("detail", "problems")]
    return name + (f" ({'; '.join(details)[:400]})" if details else "")


def _user_error(error):
    """The product's own error inside Dagster's wrapper (not the library error it was raised from)."""
    while error.cause is not None and error.cls_name and error.cls_name.startswith("Dagster"):
        error = error.cause
    return error


def step_errors(result, log_dir: Path | None = None) -> str:
    """The user-facing error of each failed step; full tracebacks go to `<log_dir>/<run id>.log`."""
    messages, tracebacks = [], []
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        error = _user_error(event.step_failure_data.error)
        # The message starts "package.module.Class: "; the product's own error needs no class name.
        message = re.sub(r"^[\w.]+\.(\w+): ", r"\1: ", error.message.strip())
        messages.append(f"{event.step_key}: {message.removeprefix('DeliveryError: ')}")
        tracebacks.append(f"== {event.step_key}\n{event.step_failure_data.error.to_string()}")
    text = " | ".join(messages) or "see the run's logs"
    if log_dir is not None and tracebacks:
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / f"{result.run_id}.log"
        log.write_text("\n".join(tracebacks))
        text += f" (traceback: {log})"
    return text


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
    return sorted({d for s, d in survey_landing(landing, SOURCES).deliveries if first <= d <= last})


def wait_for_idle(instance: DagsterInstance, say=print, poll_seconds: float = 5.0,
                  timeout: float = 3600.0) -> None:
    """Let runs the daemon launched on this instance finish before writing the warehouse here.

    In-process runs bypass the run queue, but they are recorded in the instance as started, so
    once these runs begin the daemon holds its queue until they end. A run record left "started"
    by a killed process is marked failed first (`fail_abandoned_runs`), so it does not block; a run
    whose process cannot be checked blocks at most `timeout`, and opening the warehouse then waits
    for its lock instead. Queued runs are not waited for: they queue behind this one.
    """
    fail_abandoned_runs(instance, say)
    deadline = time.monotonic() + timeout
    announced = False
    while time.monotonic() < deadline:
        active = instance.get_run_records(RunsFilter(statuses=RUNNING_STATUSES))
        if not active:
            return
        if not announced:
            runs = ", ".join(f"{r.dagster_run.run_id[:8]} ({r.dagster_run.job_name})" for r in active)
            say(f"Waiting for {len(active)} run(s) in progress to finish first (one warehouse writer): "
                f"{runs}")
            announced = True
        time.sleep(poll_seconds)
        fail_abandoned_runs(instance, say)


def loaded_before(instance: DagsterInstance, landing: Path,
                  deliveries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The deliveries every table of which was loaded and staged from this very manifest already
    (the landing sensor's test), so a run after a new extract loads only the new one."""
    loaded = []
    for source, extract_date in deliveries:
        try:
            digest = sha256_file(delivery_path(landing, source, extract_date) / MANIFEST)
        except OSError:  # no readable manifest: the ingest refuses it with the reason
            continue
        if already_loaded(instance, Arrival(source, extract_date, COMPLETE, manifest_sha256=digest)):
            loaded.append((source, extract_date))
    return loaded


def surveyed_deliveries(landing: Path, warn=print) -> list[tuple[str, str]]:
    """Deliveries of registered sources; warns about what is not one, refuses folders holding a
    manifest that would never be loaded (an unknown source, a date that is not YYYY-MM-DD)."""
    survey = survey_landing(landing, SOURCES)
    for line in survey.ignored:
        warn(f"ignored, not a delivery: {line}")
    if survey.refused:
        raise PipelineFailed(
            f"{len(survey.refused)} folder(s) under {landing} hold a delivery that cannot be loaded: "
            + " | ".join(survey.refused) + ". Rename or remove them, then run again")
    return survey.deliveries


def run_pipeline(layout: DataLayout, instance: DagsterInstance, dates: list[str] | None = None,
                 link: bool = True, warn=print, ingest: bool = True, review_queues_only: bool = False) -> RunReport:
    """Ingest every delivery in the landing zone (one run per range of extract dates), then link.

    ``ingest=False`` links what is already staged (e.g. after clerical labels arrive);
    ``review_queues_only`` links each dataset only as far as its review queue, in the last range's
    run (`ingest_to_review_queues`: one launch and run process fewer). Without ``dates``,
    a delivery already loaded from the same manifest is not loaded again (``dates`` re-loads)."""
    started = time.perf_counter()
    defs = _lazy_definitions(layout, instance)
    deliveries = surveyed_deliveries(layout.landing, warn)
    if dates:
        deliveries = [d for d in deliveries if d[1] in dates]
    if not deliveries:
        raise PipelineFailed(f"no deliveries under {layout.landing}: run `datafirst simulate` first")
    by_date: dict[str, list[str]] = defaultdict(list)
    for source, extract_date in deliveries:
        by_date[extract_date].append(source)
    ensure_partitions(instance, sorted(by_date))

    report = RunReport(deliveries=deliveries)
    if ingest and not dates:
        report.already_loaded = loaded_before(instance, layout.landing, deliveries)
        deliveries = [d for d in deliveries if d not in set(report.already_loaded)]
    process = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    ranges = list(delivery_ranges(instance, deliveries).items()) if ingest and deliveries else []
    for number, ((first, last), sources) in enumerate(ranges, 1):
        tags = {PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last, **process}
        extract_date = first if first == last else f"{first}..{last}"
        if link and review_queues_only and number == len(ranges):
            # the last range's ingest and the review queues in one run: one launch and run process fewer
            outcome = _run_job(instance, defs, layout, REVIEW_QUEUES_JOB, tags=tags,
                               asset_selection=_queues_with_ingest(defs, sources))
            report.run_ids.append(outcome.run_id)
            _raise_if_ingest_failed(outcome, defs, extract_date)
            if not outcome.success:
                raise PipelineFailed(f"linkage failed (run {outcome.run_id}): " + _errors(outcome))
            report.ingest_seconds = report.seconds = time.perf_counter() - started
            return report
        outcome = _run_job(instance, defs, layout, INGEST_JOB, sources=sources, tags=tags)
        report.run_ids.append(outcome.run_id)
        if not outcome.success:
            raise PipelineFailed(f"ingest of {extract_date} failed (run {outcome.run_id}): " + _errors(outcome))
        if outcome.failed_checks:
            raise PipelineFailed(f"checks failed for {extract_date} (run {outcome.run_id}): "
                                 + " | ".join(outcome.failed_checks))
    report.ingest_seconds = time.perf_counter() - started
    if link:
        outcome = _run_job(instance, defs, layout, LINK_JOB, tags=process,
                           asset_selection=list(review_queue_selection(defs)) if review_queues_only else None)
        report.run_ids.append(outcome.run_id)
        if not outcome.success:
            raise PipelineFailed(f"linkage failed (run {outcome.run_id}): " + _errors(outcome))
    report.seconds = time.perf_counter() - started
    return report


def review_queue_selection(defs) -> set:
    """Each dataset's review queue and what it needs, short of the ingest."""
    graph = _resolve(defs).resolve_asset_graph()  # first: in process, the import below then reuses its build
    from datafirst_assets.definitions import review_queues_selection

    return review_queues_selection().resolve(graph)


def _queues_with_ingest(defs, sources: list[str]) -> list | None:
    """The review-queue run's assets: `sources`' ingest and every queue (None: the whole job)."""
    if set(sources) == set(SOURCES):
        return None
    return [*ingest_keys(sources), *sorted(review_queue_selection(defs))]


def _raise_if_ingest_failed(outcome: RunOutcome, defs, extract_date: str) -> None:
    """In a run that ingests and links, what `run_pipeline` says of a failed ingest run: its failed
    checks (every ingest check blocks, so the linking after them did not run), else its failed steps.
    A failed check of a linkage asset does not stop the command, as in a link run of its own."""
    if not outcome.failed_checks and not outcome.errors:
        return  # nothing to place: the code location is not built for it
    from datafirst_assets.definitions import INGEST_SELECTION

    graph = _resolve(defs).resolve_asset_graph()
    keys = INGEST_SELECTION.resolve(graph)
    failed = [check for check in outcome.failed_checks
              if check.split(":", 1)[0] in {key.to_user_string() for key in keys}]
    if failed:
        raise PipelineFailed(f"checks failed for {extract_date} (run {outcome.run_id}): " + " | ".join(failed))
    steps = {graph.get(key).assets_def.node_def.name for key in keys}  # an asset's step is its op
    if any(error.split(":", 1)[0] in steps for error in outcome.errors):
        raise PipelineFailed(f"ingest of {extract_date} failed (run {outcome.run_id}): " + _errors(outcome))


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


def quarantine_reasons(layout: DataLayout, top: int = 8) -> list[tuple[str, int, int, str]]:
    """(reason with its values blanked, rows, tables, an example table) for the commonest reasons."""
    parts = []
    with warehouse_cursor(layout.warehouse) as conn:
        existing = set(conn.execute("select schema_name, table_name from duckdb_tables()").fetchall())
        for source in SOURCES.values():
            for table in source.tables:
                if (f"quarantine_{source.key}", table.name) in existing:
                    parts.append(f"select '{source.key}.{table.name}' as tbl, reason "
                                 f"from quarantine_{source.key}.{table.name}")
        if not parts:
            return []
        # One line per kind of reason: quoted values and numbers blanked out.
        return conn.execute(
            "select kind, count(*) as n, count(distinct tbl), min(tbl) from (select tbl, "
            "regexp_replace(regexp_replace(why, '''[^'']*''', '…', 'g'), '\\b[0-9]+\\b', 'N', 'g') as kind "
            "from (select tbl, unnest(string_split(reason, '; ')) as why from ("
            + " union all ".join(parts) + "))) group by kind order by n desc, kind limit ?",
            [top],
        ).fetchall()


def quarantine_summary(layout: DataLayout) -> list[str]:
    reasons = quarantine_reasons(layout)
    if not reasons:
        return []
    return ["Commonest quarantine reasons (every row is in quarantine_<source>.<table> with file, line and "
            "reason):",
            *(f"  {n:>7,}  {why[:100]} ({tables} table{'s' if tables > 1 else ''}, e.g. {example})"
              for why, n, tables, example in reasons), ""]


def linkage_summary(layout: DataLayout) -> list[str]:
    """Thresholds and estimated accuracy (always), and accuracy measured against truth when this
    run's evaluation stage had truth to measure against."""
    import polars as pl

    from datafirst_assets.evaluation.report import accuracy_table
    from datafirst_assets.linkage.quality import evidence_problems, markdown_table, quality_summary

    quality = layout.reports / "linkage_quality.parquet"
    if not quality.exists():
        return []
    table = pl.read_parquet(quality)
    lines = ["Linkage thresholds and ESTIMATED accuracy (from the model and any clerical labels; no truth read):",
             markdown_table(quality_summary(table)),
             *[f"  missing evidence: {p}" for p in evidence_problems(table)],
             f"Report: {(layout.reports / 'linkage_quality.md').resolve()}", ""]
    measured = layout.reports / "linkage_evaluation.parquet"
    if measured.exists() and measured.stat().st_mtime >= quality.stat().st_mtime:
        lines += ["Linkage accuracy MEASURED against the simulator's truth (evaluation stage, records the labels "
                  "did not see):", markdown_table(accuracy_table(pl.read_parquet(measured))),
                  f"Report: {(layout.reports / 'linkage_evaluation.md').resolve()}", ""]
    else:
        lines += ["No truth available to the evaluation stage (DATAFIRST_TRUTH_DIR): accuracy not measured.", ""]
    return lines


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
    loaded = [d for d in report.deliveries if d not in set(report.already_loaded)]
    dates = sorted({d for _, d in loaded})
    lines = [
        f"Loaded {len(loaded)} extract deliveries from {len(SOURCES)} systems "
        f"({', '.join(dates) or 'none new'}) in {report.ingest_seconds:.1f}s; total {report.seconds:.1f}s",
        *([f"Not loaded again ({len(report.already_loaded)} deliveries loaded before from the same manifests; "
           "`datafirst run --date` or `datafirst backfill` re-loads): "
           + ", ".join(sorted({d for _, d in report.already_loaded}))] if report.already_loaded else []),
        "",
        f"{'table'.ljust(width)}  {'staged':>9}  {'quarantined':>11}",
        *(f"{f'{s}.{t}'.ljust(width)}  {n:>9,}  {q:>11,}" for s, t, n, q in table_rows),
        f"{'total'.ljust(width)}  {sum(r[2] for r in table_rows):>9,}  {sum(r[3] for r in table_rows):>11,}",
        "",
        *quarantine_summary(layout),
        *linkage_summary(layout),
        *release_summary(layout),
        f"Warehouse: {layout.warehouse.resolve()} (DuckDB; schemas raw_*, staged_*, quarantine_*, linkage_*)",
        "Open the UI: make ui  (then http://127.0.0.1:3000)",
    ]
    return "\n".join(lines)
