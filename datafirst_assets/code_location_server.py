"""The code server the command line launches its runs through, startable before anything heavy
is imported: this module imports no Dagster (the server does), so `datafirst demo` starts it first
thing and its loading of the code location overlaps the command line's own imports and the
simulation (two cores). launch.py launches the runs through it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

LAUNCH_ENV = "DATAFIRST_LAUNCH"  # "code_location": the command line's runs are launched from it
CODE_LOCATION_MODULE = "datafirst_assets.definitions"  # also the location's name (workspace.yaml)
LAUNCH_HOME = "cli_launch"  # under DAGSTER_HOME


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


def write_launch_home(dagster_home: Path | str) -> Path:
    """The launch instance's folder under `dagster_home`, its dagster.yaml written from the instance's."""
    home = Path(dagster_home).expanduser().resolve()
    config_file = home / "dagster.yaml"
    own = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
    launch_home = home / LAUNCH_HOME
    launch_home.mkdir(exist_ok=True)
    (launch_home / "dagster.yaml").write_text(
        "# Written by datafirst (code_location_server.py): this instance's storage with no run queue, for the CLI's runs.\n"
        + yaml.safe_dump(launch_instance_config(home, own or {}), sort_keys=False))
    return launch_home


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
# Variables libraries write into os.environ when imported: pandera (SPARK_LOCAL_IP,
# PYARROW_IGNORE_TIMEZONE, for pyspark) and polars (_RJEM_MALLOC_CONF, its allocator's settings).
# The server's process sets them itself when it loads the code location, so they tell servers
# apart in no way; counted, a server started before this process imported the pipeline (datafirst
# demo) would be replaced at the first launch, after it.
SET_BY_IMPORTS = frozenset({"SPARK_LOCAL_IP", "PYARROW_IGNORE_TIMEZONE", "_RJEM_MALLOC_CONF"})


def server_key(env: dict[str, str]) -> tuple:
    """What tells this process's code servers apart: their environment but SET_BY_IMPORTS."""
    return tuple(sorted((name, value) for name, value in env.items() if name not in SET_BY_IMPORTS))


def start_code_server(env: dict[str, str]) -> CodeServer:
    """This process's code server for `env` (instance home, data folder, settings), started now if
    it is not running, without waiting for it to load the code location. A changed environment
    gets a new server: the code location reads it at load."""
    key = server_key(env)
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


def server_env(dagster_home: Path | str, data_dir: Path | str) -> dict[str, str]:
    """The environment of the code server (and so of the runs it starts) for the instance in
    `dagster_home` and `data_dir`: this process's, with the launch instance as DAGSTER_HOME."""
    return {**os.environ, "DAGSTER_HOME": str(write_launch_home(dagster_home)),
            "DATAFIRST_DATA_DIR": str(Path(data_dir).resolve())}


@atexit.register
def stop_code_servers() -> None:
    """Stop every server and wait for it: not waiting would spare ~0.7 s at the end of `make demo`,
    but the server and the run processes it started would then not be counted in the CPU time
    `time make demo` reports (a process's time is added to its parent's when the parent waits)."""
    while _SERVERS:
        _SERVERS.popitem()[1].stop()
