"""Runs of the command line launched through the code location, so the UI shows them.

A run made with `execute_in_process` has no code-location origin: the Runs page lists it, but the
Overview timeline and the job pages leave it out. `datafirst run`, `backfill`, `demo` and `make demo`
therefore launch their runs the way the UI's Materialize button does: the `launchRun` GraphQL
mutation, run by `dagster-graphql`'s own command line (called in this process) against the code
location (`python_module: datafirst_assets.definitions`, as in workspace.yaml), naming the job and,
for a subset such as some sources' ingest or the review queues, its assets. The run is created from
the code location and executed by the instance's run launcher.

All runs of one process go through one code server (`dagster api grpc`, code_location_server.py;
started at the first launch, or earlier with `start_code_server`, and stopped when the process exits): `dagster-graphql
-m` would start a code server of its own for every run, loading the code location again each time
(~4.6 s of CPU per run on this machine). The mutation runs in this process, not in a
`dagster-graphql` subprocess: a subprocess paid a Python start and the import of dagster_graphql
(~2 s) again for every run, ~5 s a launch in all; in process a launch costs the workspace fetch
from the code server (~1 s) and the run's planned events.

The committed instance queues runs for the daemon (one at a time: DuckDB has one writer), and with
no `make ui` there is no daemon. So the launch uses an instance directory next to DAGSTER_HOME whose
configuration is the instance's own storage with the default run coordinator: the run starts at
once, is recorded in the same run history, and this process waits for it to end before the next.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from datafirst_assets.code_location_server import (  # noqa: F401 (named here too, for the command line and tests)
    CODE_LOCATION_MODULE,
    DEFAULT_INSTANCE_CLASSES,
    LAUNCH_ENV,
    CodeServer,
    code_server,
    launch_instance_config,
    server_env,
    start_code_server,
    stop_code_servers,
    write_launch_home,
)
from datafirst_assets.defs.event_log import keep_event_log_open, relax_event_log_syncs

REPOSITORY = "__repository__"  # the name Dagster gives the one repository of a Definitions
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    errors: list[str] = field(default_factory=list)   # "<step>: <message>" of each failed step
    failed_checks: list[str] = field(default_factory=list)  # "<asset>:<check>"


def run_outcome(instance: DagsterInstance, run_id: str) -> RunOutcome:
    """Success, failed steps (innermost error) and failed checks of a finished run, from its events."""
    run = instance.get_run_by_id(run_id)
    outcome = RunOutcome(run_id, success=run is not None and run.status == DagsterRunStatus.SUCCESS)
    for record in instance.all_logs(run_id, of_type={DagsterEventType.STEP_FAILURE,
                                                     DagsterEventType.ASSET_CHECK_EVALUATION}):
        event = record.dagster_event
        if event.event_type == DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            # the product's own error inside Dagster's wrapper, without its module path
            while error.cause is not None and error.cls_name and error.cls_name.startswith("Dagster"):
                error = error.cause
            message = re.sub(r"^[\w.]+\.(\w+): ", r"\1: ", error.message.strip())
            outcome.errors.append(f"{event.step_key}: {message.removeprefix('DeliveryError: ')}")
        elif not event.asset_check_evaluation_data.passed:
            check = event.asset_check_evaluation_data
            details = [str(getattr(v, "value", v)).replace("\n", " ")
                       for k, v in check.metadata.items() if k in ("detail", "problems")]
            outcome.failed_checks.append(f"{check.asset_key.to_user_string()}:{check.check_name}"
                                         + (f" ({'; '.join(details)[:400]})" if details else ""))
    return outcome


LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""


def launch_params(job_name: str, *, asset_selection: list[AssetKey] | None = None,
                  tags: dict[str, str] | None = None, run_config: dict | None = None) -> dict:
    """The `ExecutionParams` the UI sends to launch a job, or a subset of its assets, from the code location."""
    selector = {"repositoryLocationName": CODE_LOCATION_MODULE, "repositoryName": REPOSITORY, "jobName": job_name}
    if asset_selection is not None:
        selector["assetSelection"] = [{"path": key.path} for key in asset_selection]
    return {"selector": selector, "runConfigData": run_config or {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}}


def _launched_run_id(response: dict, job_name: str, output: str) -> str:
    result = (response.get("data") or {}).get("launchRun") or {}
    if result.get("__typename") == "LaunchRunSuccess":
        return result["run"]["runId"]
    problems = [e["message"] for e in result.get("errors", [])] or [result.get("message") or str(response)]
    raise RuntimeError(f"launching {job_name} from the code location failed ({result.get('__typename')}): "
                       f"{'; '.join(problems)[:2000]}\n{output[-2000:]}")


def prepare_launch_home(instance: DagsterInstance) -> Path:
    return write_launch_home(instance.root_directory)


def launches_from_code_location(instance: DagsterInstance) -> bool:
    """Whether the command line launches its runs through the code location: asked for
    (DATAFIRST_LAUNCH=code_location) and an instance that keeps runs (DAGSTER_HOME). Otherwise
    `datafirst run` runs in process (runner._run_job)."""
    return instance.is_persistent and os.environ.get(LAUNCH_ENV) == "code_location"


def launch_env(instance: DagsterInstance, data_dir: Path) -> dict[str, str]:
    """The environment of the code server (and so of the runs it starts) for `instance` and `data_dir`."""
    return server_env(instance.root_directory, data_dir)


@contextlib.contextmanager
def environment_variable(name: str, value: str):
    """`name` set to `value` in this process's environment while inside, then as it was. For commands
    and imports that read their settings only from there: `dagster-graphql` takes the instance from
    DAGSTER_HOME, the code location its data directory from DATAFIRST_DATA_DIR."""
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def run_graphql(server: CodeServer, query: str, variables: dict) -> dict:
    """`dagster-graphql -w <server's workspace> -t <query> -v <variables>`, run in this process
    against the server's instance (DAGSTER_HOME of its environment); the response as a dict."""
    from dagster_graphql.cli import ui as dagster_graphql_command  # its click command: ~1 s to import

    with tempfile.TemporaryDirectory() as folder, environment_variable("DAGSTER_HOME", server.env["DAGSTER_HOME"]):
        response_file = Path(folder) / "response.json"
        dagster_graphql_command.main(["-w", str(server.workspace), "-t", query, "-v", json.dumps(variables),
                                      "-o", str(response_file)], prog_name="dagster-graphql", standalone_mode=False)
        return json.loads(response_file.read_text())


def launch_job(instance: DagsterInstance, job_name: str, data_dir: Path, *,
               asset_selection: list[AssetKey] | None = None, tags: dict[str, str] | None = None,
               run_config: dict | None = None, poll_seconds: float = 0.2) -> RunOutcome:
    """Launch `job_name` (or only `asset_selection` of it, with their checks) from the code location on
    this instance, as the UI's Materialize button does, and wait for the run to end."""
    params = launch_params(job_name, asset_selection=asset_selection, tags=tags, run_config=run_config)
    server = code_server(launch_env(instance, data_dir))
    # the launch writes the run's planned events (one per asset and check it will materialize) from
    # this process: the way the run's own process writes its events (defs/event_log.py)
    relax_event_log_syncs()
    keep_event_log_open(instance)  # the launch instance's event log is this instance's
    try:
        response = run_graphql(server, LAUNCH_RUN, {"params": params})
    except Exception as error:  # noqa: BLE001 - said in the product's words, with the cause chained
        raise RuntimeError(f"dagster-graphql could not launch {job_name}: {type(error).__name__}: {error}\n"
                           f"code server log: {server.log.read_text(errors='replace')[-2000:]}") from error
    run_id = _launched_run_id(response, job_name, "")
    wait_until_finished(instance, run_id, poll_seconds)
    return run_outcome(instance, run_id)


# Longest wait between two reads of the run's status when its storage's files did not change (or
# cannot be watched: a run storage not in SQLite files under DAGSTER_HOME)
QUIET_POLL_SECONDS = 2.0


def _run_storage_stamp(instance: DagsterInstance) -> tuple:
    """Modification time and size of the files of the instance's SQLite run storage (Dagster's default,
    `<DAGSTER_HOME>/history/runs.db`): a run's status changes only by a write to them."""
    stamps = []
    for name in ("runs.db", "runs.db-wal"):
        try:
            found = os.stat(Path(instance.root_directory) / "history" / name)
            stamps.append((found.st_mtime_ns, found.st_size))
        except (OSError, TypeError):  # no such file (no WAL), or an instance without a root directory
            stamps.append(None)
    return tuple(stamps)


def wait_until_finished(instance: DagsterInstance, run_id: str, poll_seconds: float = 0.2) -> None:
    """Wait for run `run_id` (executing in a process of the code server's) to end. Every `poll_seconds`
    the run storage's files are looked at; the run's status is read only when they changed, or
    QUIET_POLL_SECONDS after the last read. Reading it five times a second (~5 ms each: an engine and
    a connection per read) cost the command line ~2 s of CPU in `make demo`, taken from the run's
    process on two cores; the files change only when a run's status does."""
    finished = RunsFilter(run_ids=[run_id], statuses=list(FINISHED))
    seen, last_read = None, 0.0
    while True:
        stamp, now = _run_storage_stamp(instance), time.monotonic()  # before the read: a later write is seen
        if stamp != seen or now - last_read >= QUIET_POLL_SECONDS:
            if instance.get_run_ids(finished, limit=1):
                return
            seen, last_read = stamp, now
        time.sleep(poll_seconds)
