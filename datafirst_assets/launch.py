"""Runs of the command line launched through the code location, so the UI shows them.

A run made with `execute_in_process` has no code-location origin: the Runs page lists it, but the
Overview timeline and the job pages leave it out. `datafirst run`, `backfill`, `demo` and `make demo`
therefore launch their runs the way the UI's Materialize button does: the `launchRun` GraphQL
mutation, run by `dagster-graphql`'s own command line (called in this process) against the code
location (`python_module: datafirst_assets.definitions`, as in workspace.yaml), naming the job and,
for a subset such as some sources' ingest or the review queues, its assets. The run is created from
the code location and executed by the instance's run launcher.

All runs of one process go through one code server (`dagster api grpc`, started at the first
launch, or earlier with `start_code_server`, and stopped when the process exits): `dagster-graphql
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

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus

from datafirst_assets.defs.event_log import keep_event_log_open, relax_event_log_syncs

LAUNCH_ENV = "DATAFIRST_LAUNCH"  # "code_location": the command line's runs are launched from it
CODE_LOCATION_MODULE = "datafirst_assets.definitions"  # also the location's name (workspace.yaml)
REPOSITORY = "__repository__"  # the name Dagster gives the one repository of a Definitions
LAUNCH_HOME = "cli_launch"  # under DAGSTER_HOME
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    errors: list[str] = field(default_factory=list)   # "<step>: <message>" of each failed step
    failed_checks: list[str] = field(default_factory=list)  # "<asset>:<check>"


def _with_home(value, home: str):
    """The config with every `{env: DAGSTER_HOME}` replaced by the instance's own folder."""
    if value == {"env": "DAGSTER_HOME"}:
        return home
    if isinstance(value, dict):
        return {k: _with_home(v, home) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_home(v, home) for v in value]
    return value


# Dagster's own classes behind its default instance (run, event-log and schedule storage under
# DAGSTER_HOME, the run coordinator that starts a run at once), named the only way dagster.yaml can
# name them: by module path. Dagster exports no public path for these; test_launch imports each,
# so a release that moves one fails the tests instead of the demo.
DEFAULT_INSTANCE_CLASSES = {
    "run_storage": ("dagster._core.storage.runs", "SqliteRunStorage"),
    "event_log_storage": ("dagster._core.storage.event_log", "SqliteEventLogStorage"),
    "schedule_storage": ("dagster._core.storage.schedules", "SqliteScheduleStorage"),
    "local_artifact_storage": ("dagster._core.storage.root", "LocalArtifactStorage"),
    "compute_logs": ("dagster._core.storage.local_compute_log_manager", "LocalComputeLogManager"),
    "run_coordinator": ("dagster._core.run_coordinator", "DefaultRunCoordinator"),
}


def launch_instance_config(home: Path, instance_config: dict) -> dict:
    """The instance's configuration with its storage pinned to `home` and no run queue."""
    config = _with_home(instance_config, str(home))
    config.pop("concurrency", None)   # run queue settings: this launcher starts the run itself
    config.pop("run_coordinator", None)
    base_dirs = {  # Dagster's default storage locations under DAGSTER_HOME, spelled out
        "run_storage": home / "history", "event_log_storage": home / "history" / "runs",
        "schedule_storage": home / "schedules", "local_artifact_storage": home,
        "compute_logs": home / "storage",
    }
    if "storage" not in config:
        for key, base_dir in base_dirs.items():
            module, cls = DEFAULT_INSTANCE_CLASSES[key]
            config.setdefault(key, {"module": module, "class": cls, "config": {"base_dir": str(base_dir)}})
    module, cls = DEFAULT_INSTANCE_CLASSES["run_coordinator"]
    config["run_coordinator"] = {"module": module, "class": cls}
    return config


def prepare_launch_home(instance: DagsterInstance) -> Path:
    home = Path(instance.root_directory).resolve()
    config_file = home / "dagster.yaml"
    own = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
    launch_home = home / LAUNCH_HOME
    launch_home.mkdir(exist_ok=True)
    (launch_home / "dagster.yaml").write_text(
        "# Written by datafirst (launch.py): this instance's storage with no run queue, for the CLI's runs.\n"
        + yaml.safe_dump(launch_instance_config(home, own or {}), sort_keys=False))
    return launch_home


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


def _prepare_server_process() -> None:
    """In the code server's process before it starts: let SIGINT stop it (a shell's background job
    ignores SIGINT, and its children inherit that), and stop it if the process that started it dies
    (a killed `datafirst run` leaves no server behind; Linux only, elsewhere `atexit` stops it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class CodeServer:
    """The code location served by one `dagster api grpc` process over a Unix socket, under the
    code location's own name (so the runs it starts carry the same origin as the UI's), and a
    workspace file that points `dagster-graphql` at it. The process starts at construction;
    `wait_until_serving` waits for it to load the code location (so other work can overlap that)."""

    def __init__(self, env: dict[str, str], ready_timeout: float = 600.0):
        self.env = env
        self.ready_timeout = ready_timeout
        self.serving = False
        self.folder = Path(tempfile.mkdtemp(prefix="datafirst-code-"))  # short: a socket path has a limit
        self.socket = self.folder / "server.sock"
        self.workspace = self.folder / "workspace.yaml"
        self.workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": {
            "socket": str(self.socket), "location_name": CODE_LOCATION_MODULE}}]}))
        self.log = self.folder / "server.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "dagster"), "api", "grpc", "--module-name", CODE_LOCATION_MODULE,
                 "--socket", str(self.socket), "--location-name", CODE_LOCATION_MODULE, "--log-level", "warning"],
                env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_prepare_server_process)

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while not self.serving and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the code server for {CODE_LOCATION_MODULE} exited with {self.process.returncode} "
                                   f"before serving:\n{self.log.read_text(errors='replace')[-3000:]}")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(str(self.socket))
                    self.serving = True
                    return
                except OSError:  # not bound or not listening yet: still loading the code location
                    pass
            time.sleep(0.05)
        if not self.serving:
            self.stop()
            raise RuntimeError(f"the code server for {CODE_LOCATION_MODULE} did not start serving in "
                               f"{self.ready_timeout:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # the server's own clean shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


_SERVERS: dict[tuple, CodeServer] = {}


def start_code_server(env: dict[str, str]) -> CodeServer:
    """This process's code server for `env` (instance home, data folder, settings), started now if
    it is not running, without waiting for it to load the code location. A changed environment
    gets a new server: the code location reads it at load."""
    key = tuple(sorted(env.items()))
    server = _SERVERS.get(key)
    if server is None or server.process.poll() is not None:
        stop_code_servers()
        server = _SERVERS[key] = CodeServer(env)
    return server


def code_server(env: dict[str, str]) -> CodeServer:
    """This process's code server for `env`, serving (started at the first launch if no one
    started it before)."""
    server = start_code_server(env)
    server.wait_until_serving()
    return server


def launches_from_code_location(instance: DagsterInstance) -> bool:
    """Whether the command line launches its runs through the code location: asked for
    (DATAFIRST_LAUNCH=code_location) and an instance that keeps runs (DAGSTER_HOME). Otherwise
    `datafirst run` runs in process (runner._run_job)."""
    return instance.is_persistent and os.environ.get(LAUNCH_ENV) == "code_location"


def launch_env(instance: DagsterInstance, data_dir: Path) -> dict[str, str]:
    """The environment of the code server (and so of the runs it starts) for `instance` and `data_dir`."""
    return {**os.environ, "DAGSTER_HOME": str(prepare_launch_home(instance)),
            "DATAFIRST_DATA_DIR": str(Path(data_dir).resolve())}


@atexit.register
def stop_code_servers() -> None:
    while _SERVERS:
        _SERVERS.popitem()[1].stop()


@contextlib.contextmanager
def _dagster_home(home: str):
    """DAGSTER_HOME set to `home` while `dagster-graphql` runs: its command line takes the instance
    from there (and has no other way to be given one)."""
    saved = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = home
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = saved


def run_graphql(server: CodeServer, query: str, variables: dict) -> dict:
    """`dagster-graphql -w <server's workspace> -t <query> -v <variables>`, run in this process
    against the server's instance (DAGSTER_HOME of its environment); the response as a dict."""
    from dagster_graphql.cli import ui as dagster_graphql_command  # its click command: ~1 s to import

    with tempfile.TemporaryDirectory() as folder, _dagster_home(server.env["DAGSTER_HOME"]):
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
    run = instance.get_run_by_id(run_id)
    # the run executes in a process of the code server's; a poll costs one SQLite read
    while run is None or run.status not in FINISHED:
        time.sleep(poll_seconds)
        run = instance.get_run_by_id(run_id)
    return run_outcome(instance, run_id)
