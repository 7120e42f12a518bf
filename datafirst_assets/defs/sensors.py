"""Sensors and the schedule: new deliveries load themselves, everything downstream follows.

- `landing_sensor` looks at the landing zone every 30 s. Each complete delivery (see
  raw/arrival.py for complete / incomplete / corrupt) adds its extract date as a partition and
  requests one ingest run for that source and date. Incomplete deliveries are looked at again on
  the next tick; corrupt ones are logged once and named in the tick's skip reason until they
  change. The run key is source + extract date + the manifest's sha256, so a re-delivered,
  changed extract runs again and an unchanged one never does. A delivery already loaded from the
  same manifest outside the sensor (`make demo`, `datafirst backfill`) is recorded, not re-run.
- `refresh_after_ingest` requests one run of the downstream job once staged data is newer than
  the last downstream run and no other run is queued or running. It watches materialisations,
  not the landing sensor's runs, so ingests from a UI backfill or the CLI are followed too, and
  the seven ingest runs of one delivery day are followed by one downstream run, not seven.
- Both look after killed runs: a run recorded as running whose process is gone is marked failed
  (defs/recovery.py) before the refresh sensor decides whether anything is still running.
- `weekly_full_refresh` (stopped until switched on in the UI) runs the downstream job on a
  schedule: retrain, re-cluster and everything later in the flow.

No `from __future__ import annotations`: Dagster inspects the annotations of sensor functions.
"""

import json
import time

from dagster import (
    AssetSelection,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from datafirst_assets.defs.keys import already_loaded, ingest_keys  # noqa: F401 (already_loaded: named here too)
from datafirst_assets.defs.partitions import EXTRACT_DATES, extract_dates
from datafirst_assets.defs.recovery import fail_abandoned_runs
from datafirst_assets.defs.resources import LandingZone
from datafirst_assets.raw.arrival import COMPLETE, CORRUPT, Arrival, folder_signature, inspect_delivery
from datafirst_assets.common.hashing import sha256_file
from datafirst_assets.raw.delivery import MANIFEST, delivery_path, survey_landing
from datafirst_assets.sources.registry import SOURCES

LANDING_SENSOR = "landing_sensor"
REFRESH_SENSOR = "refresh_after_ingest"
REFRESH_SCHEDULE = "weekly_full_refresh"
SOURCE_TAG = "datafirst/source"
EXTRACT_DATE_TAG = "datafirst/extract_date"
MANIFEST_TAG = "datafirst/manifest_sha256"
# Queued or holding the warehouse: a downstream run now would read data still being written.
PENDING_STATUSES = [
    DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING,
]


def run_key(arrival: Arrival) -> str:
    return f"{arrival.source}:{arrival.extract_date}:{arrival.manifest_sha256[:16]}"


def _ingest_request(arrival: Arrival) -> RunRequest:
    return RunRequest(
        run_key=run_key(arrival),
        partition_key=arrival.extract_date,
        asset_selection=ingest_keys([arrival.source]),
        tags={SOURCE_TAG: arrival.source, EXTRACT_DATE_TAG: arrival.extract_date,
              MANIFEST_TAG: arrival.manifest_sha256},
    )


# Enough of the manifest's sha256 to tell a re-delivered manifest from the one already requested.
CURSOR_HASH_CHARS = 12


def _load_cursor(cursor: str | None) -> dict[str, dict]:
    state = json.loads(cursor) if cursor else {}
    # requested: key -> manifest sha256 already requested (not re-hashed while it is unchanged);
    # corrupt: key -> [folder signature, reason] (not re-inspected until something in it changes);
    # stalled: key -> folder signature already warned about;
    # not_deliveries: path -> reason, for what under the landing folder is not a delivery (logged once).
    return {name: dict(state.get(name, {})) for name in ("requested", "corrupt", "stalled", "not_deliveries")}


def _summary(label: str, items: list[str], shown: int = 3) -> str:
    more = f"; and {len(items) - shown} more" if len(items) > shown else ""
    return f"{len(items)} {label}: " + "; ".join(items[:shown]) + more


def _report_not_deliveries(context: SensorEvaluationContext, state: dict, refused: list[str],
                           ignored: list[str]) -> None:
    """Log each folder or file that is not a delivery once (a warning, or an error when it holds a
    manifest that will never load), and keep them in the cursor so the next tick stays quiet."""
    seen = state["not_deliveries"]
    current = {line.split(": ", 1)[0]: line for line in (*refused, *ignored)}
    new_refused = [line for line in refused if seen.get(line.split(": ", 1)[0]) != line]
    new_ignored = [line for line in ignored if seen.get(line.split(": ", 1)[0]) != line]
    if new_refused:
        context.log.error("Not loaded, not a delivery folder the pipeline knows: " + " | ".join(new_refused))
    if new_ignored:
        context.log.warning("Ignored under the landing folder: " + " | ".join(new_ignored))
    state["not_deliveries"] = current


# `ingest_job` / `refresh_job`: what `define_asset_job` returns (its class is not public API).
def build_landing_sensor(ingest_job, settle_seconds: float = 60.0,
                         stall_after_seconds: float = 3600.0, minimum_interval_seconds: int = 30
                         ) -> SensorDefinition:
    @sensor(
        name=LANDING_SENSOR,
        job=ingest_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Loads each complete delivery under the landing folder (manifest present, every "
        "checksum and row count matching): adds its extract date as a partition and requests the "
        "ingest run for that source and date. Half-copied deliveries wait; corrupt ones are reported.",
    )
    def landing_sensor(context: SensorEvaluationContext, landing: LandingZone) -> SensorResult:
        state = _load_cursor(context.cursor)
        now = time.time()
        requests, waiting, corrupt, loaded = [], [], [], []
        present = set()
        survey = survey_landing(landing.root, SOURCES)
        _report_not_deliveries(context, state, survey.refused, survey.ignored)
        for source, extract_date in survey.deliveries:
            key = f"{source}/{extract_date}"
            present.add(key)
            folder = delivery_path(landing.root, source, extract_date)
            manifest = folder / MANIFEST
            requested = state["requested"].get(key)
            if requested and manifest.exists() and sha256_file(manifest).startswith(requested):
                continue
            signature = folder_signature(folder)
            known = state["corrupt"].get(key)
            if known and known[0] == signature:
                corrupt.append(f"{key}: {known[1]}")
                continue
            arrival = inspect_delivery(folder, SOURCES[source], settle_seconds, now)
            if arrival.state == COMPLETE:
                state["requested"][key] = arrival.manifest_sha256[:CURSOR_HASH_CHARS]
                state["corrupt"].pop(key, None)
                state["stalled"].pop(key, None)
                if already_loaded(context.instance, arrival):
                    loaded.append(key)
                else:
                    requests.append(_ingest_request(arrival))
            elif arrival.state == CORRUPT:
                context.log.error(f"Delivery {key} is corrupt and will not be loaded until it is "
                                  f"delivered again: {arrival.reason}")
                state["corrupt"][key] = [signature, arrival.reason]
                corrupt.append(f"{key}: {arrival.reason}")
            else:
                quiet = now - arrival.last_change
                if quiet >= stall_after_seconds and state["stalled"].get(key) != signature:
                    context.log.warning(f"Delivery {key} is still incomplete after {quiet / 60:.0f} min "
                                        f"without a change (stalled copy?): {arrival.reason}")
                    state["stalled"][key] = signature
                waiting.append(f"{key}: {arrival.reason}")
        # Forget folders that were removed, so the cursor stays as small as the landing zone.
        state = {name: {k: v for k, v in entries.items() if k in present or name == "not_deliveries"}
                 for name, entries in state.items()}
        # One line per delivery, short hashes: the cursor reads as a list in the UI's sensor page.
        cursor = json.dumps({name: entries for name, entries in state.items() if entries}, sort_keys=True, indent=1)
        if loaded:
            context.log.info(f"{len(loaded)} complete deliveries were already loaded from the same manifest "
                             f"(by `datafirst run` or a backfill), so not loaded again: {', '.join(loaded)}")
        if not requests:
            parts = [_summary("already loaded from the same manifest", loaded)] if loaded else []
            parts += [_summary("incomplete, retried next tick", waiting)] if waiting else []
            parts += [_summary("corrupt, not loaded", corrupt)] if corrupt else []
            parts += [_summary("not a delivery folder, not loaded", survey.refused)] if survey.refused else []
            parts += [_summary("ignored, not a delivery", survey.ignored)] if survey.ignored else []
            return SensorResult(skip_reason=" | ".join(parts) or "no new deliveries", cursor=cursor)
        requests.sort(key=lambda r: (r.partition_key, r.tags[SOURCE_TAG]))
        known = set(context.instance.get_dynamic_partitions(EXTRACT_DATES))
        new_dates = sorted({r.partition_key for r in requests} - known)
        return SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[extract_dates.build_add_request(new_dates)] if new_dates else [],
            cursor=cursor,
        )

    return landing_sensor


def build_refresh_sensor(refresh_job, refresh_selection: AssetSelection,
                         also_refreshed_by: tuple[str, ...] = (), minimum_interval_seconds: int = 30
                         ) -> SensorDefinition:
    """`also_refreshed_by`: other jobs whose runs bring everything downstream up to date (the CLI's
    link job)."""
    # The assets the downstream job reads but does not write: the staged tables it starts from.
    inputs = refresh_selection.upstream(depth=1) - refresh_selection
    jobs = (refresh_job.name, *also_refreshed_by)

    @sensor(
        name=REFRESH_SENSOR,
        job=refresh_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Runs `{refresh_job.name}` once staged data is newer than the last downstream run "
        "and nothing else is queued or running (one downstream run per batch of ingests).",
    )
    def refresh_after_ingest(context: SensorEvaluationContext):
        instance = context.instance
        keys = inputs.resolve(context.repository_def.asset_graph)
        # Keys never materialised are missing from the answer, not mapped to None.
        latest = instance.get_latest_materialization_events(keys)
        never = sorted(key.to_user_string() for key in keys if latest.get(key) is None)
        if never:
            return SkipReason(f"{len(never)} input(s) of {refresh_job.name} never loaded (e.g. {never[0]}): "
                              "waiting for a first delivery from every source")
        newest = max(event.timestamp for event in latest.values())
        # A run whose process was killed would otherwise be waited for here forever.
        fail_abandoned_runs(instance, say=context.log.warning)
        pending = instance.get_run_records(RunsFilter(statuses=PENDING_STATUSES), limit=1)
        if pending:
            run = pending[0].dagster_run
            return SkipReason(
                f"waiting for run {run.run_id[:8]} ({run.job_name}, {run.status.value}) to finish")
        last_start = max(
            (record.start_time or record.create_timestamp.timestamp()
             for job in jobs for record in instance.get_run_records(RunsFilter(job_name=job), limit=1)),
            default=0.0,
        )
        if last_start >= newest:
            return SkipReason(f"{refresh_job.name} is up to date with the staged data")
        return RunRequest(run_key=f"staged-at-{newest:.6f}", tags={"datafirst/trigger": REFRESH_SENSOR})

    return refresh_after_ingest


def build_full_refresh_schedule(refresh_job, run_config: dict | None = None,
                                cron_schedule: str = "0 3 * * 0") -> ScheduleDefinition:
    """`run_config`: what makes the run a full one (linkage mode "full": retrain, re-score, re-cluster)."""
    return ScheduleDefinition(
        name=REFRESH_SCHEDULE,
        job=refresh_job,
        run_config=run_config,
        cron_schedule=cron_schedule,
        execution_timezone="Europe/London",
        default_status=DefaultScheduleStatus.STOPPED,
        description="Sundays 03:00 (Europe/London): retrain every model, re-cluster and rebuild everything "
        "downstream of the ingest. Stopped until switched on in the UI (Automation).",
    )
