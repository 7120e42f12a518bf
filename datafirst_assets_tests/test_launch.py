"""The command line's launch instance (launch.py): the committed instance's storage with no run queue.

Its configuration names Dagster classes by module path (dagster.yaml has no other way), so these
tests are what notices a Dagster release that moves one."""

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, QueuedRunCoordinator

from dagster import AssetKey

from datafirst_assets import code_location_server, launch
from datafirst_assets.launch import (
    CODE_LOCATION_MODULE,
    DEFAULT_INSTANCE_CLASSES,
    REPOSITORY,
    _launched_run_id,
    launch_params,
    prepare_launch_home,
)

CONFIG = Path(__file__).resolve().parents[1] / "data" / "config" / "dagster.yaml"


@pytest.mark.parametrize("key", sorted(DEFAULT_INSTANCE_CLASSES))
def test_every_named_dagster_class_exists(key):
    module, name = DEFAULT_INSTANCE_CLASSES[key]
    assert isinstance(getattr(importlib.import_module(module), name), type)


def test_the_launch_instance_shares_the_run_history_and_starts_runs_at_once(monkeypatch):
    # on tmpfs where there is one: creating the instance's SQLite databases is slow on a busy disk
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as home:
        shutil.copy(CONFIG, Path(home) / "dagster.yaml")
        monkeypatch.setenv("DAGSTER_HOME", home)
        with DagsterInstance.from_config(home) as instance:
            run = instance.add_run(DagsterRun(job_name="ingest", run_id=str(uuid.uuid4()),
                                              status=DagsterRunStatus.SUCCESS))
            launch_home = prepare_launch_home(instance)
        with DagsterInstance.from_config(str(launch_home)) as launcher:
            assert not isinstance(launcher.run_coordinator, QueuedRunCoordinator)
            assert launcher.get_run_by_id(run.run_id) is not None
            assert Path(launcher.root_directory) == Path(home)  # artifacts and compute logs too



def test_a_subset_is_launched_by_its_asset_keys_with_tags_and_config():
    params = launch_params("link_datasets", asset_selection=[AssetKey(["linkage", "prison", "review_queue"])],
                           tags={"datafirst/pid": "1"}, run_config={"loggers": {}})
    assert params["selector"] == {"repositoryLocationName": CODE_LOCATION_MODULE, "repositoryName": REPOSITORY,
                                  "jobName": "link_datasets",
                                  "assetSelection": [{"path": ["linkage", "prison", "review_queue"]}]}
    assert params["executionMetadata"]["tags"] == [{"key": "datafirst/pid", "value": "1"}]
    assert params["runConfigData"] == {"loggers": {}}
    assert "assetSelection" not in launch_params("ingest_extract")["selector"]  # the whole job


def test_a_refused_launch_says_why():
    assert _launched_run_id({"data": {"launchRun": {"__typename": "LaunchRunSuccess", "run": {"runId": "r1"}}}},
                            "link_datasets", "") == "r1"
    refused = {"data": {"launchRun": {"__typename": "InvalidSubsetError", "message": "no such asset"}}}
    with pytest.raises(RuntimeError, match="InvalidSubsetError.*no such asset"):
        _launched_run_id(refused, "link_datasets", "")


def test_runs_of_one_process_share_a_code_server_until_its_environment_changes(monkeypatch):
    started, stopped = [], []

    class FakeServer:
        def __init__(self, env):
            self.env, self.process = env, type("Running", (), {"poll": staticmethod(lambda: None)})()
            started.append(self)

        def stop(self):
            stopped.append(self)

        def wait_until_serving(self):
            pass

    monkeypatch.setattr(code_location_server, "CodeServer", FakeServer)
    monkeypatch.setattr(code_location_server, "_SERVERS", {})
    first = launch.start_code_server({"DAGSTER_HOME": "/a"})  # started early (datafirst demo) ...
    assert launch.code_server({"DAGSTER_HOME": "/a"}) is first and len(started) == 1  # ... serves the launch
    second = launch.code_server({"DAGSTER_HOME": "/a", "DATAFIRST_MAX_MEAN_RISK": "1.0"})
    assert second is not first and stopped == [first]  # the location reads its settings at load
    launch.stop_code_servers()
    assert stopped == [first, second] and not code_location_server._SERVERS


def test_the_early_server_and_the_launch_agree_on_the_environment(tmp_path, monkeypatch):
    """`datafirst demo` starts the server from DAGSTER_HOME before it has an instance; the launch
    asks for it by the instance's folder: the same environment, so the same server."""
    shutil.copy(CONFIG, tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    early = code_location_server.server_env(str(tmp_path), "data")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert launch.launch_env(instance, Path("data")) == early


def test_importing_the_pipeline_does_not_tell_the_early_server_apart(tmp_path):
    """`datafirst demo` starts the server before it imports the pipeline, whose libraries write
    variables into os.environ as they load: the launches after that must still find that server.
    In a fresh interpreter: this test's process imported everything already."""
    shutil.copy(CONFIG, tmp_path / "dagster.yaml")
    program = ("from datafirst_assets.code_location_server import server_env, server_key\n"
               f"before = server_key(server_env({str(tmp_path)!r}, 'data'))\n"
               "import datafirst_assets.runner, dagster_graphql.cli\n"
               f"assert server_key(server_env({str(tmp_path)!r}, 'data')) == before\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def test_waiting_for_a_launched_run_reads_its_status_only_when_the_run_storage_changed(tmp_path, monkeypatch):
    """The command line waits for a run executing in the code server's process: it reads the run's
    status when the run storage's files changed, or after QUIET_POLL_SECONDS, not at every poll."""
    from types import SimpleNamespace

    from datafirst_assets import launch

    runs_db = tmp_path / "history" / "runs.db"
    runs_db.parent.mkdir()
    runs_db.write_text("started")
    reads, polls = [], []

    def get_run_ids(_filter, limit):
        reads.append(len(polls))
        return ["run"] if runs_db.read_text() == "finished" else []

    def sleep(_seconds):
        polls.append(1)
        if len(polls) == 20:  # the run ends: its status is written
            runs_db.write_text("finished")

    monkeypatch.setattr(launch.time, "sleep", sleep)
    monkeypatch.setattr(launch.time, "monotonic", lambda: 0.0)  # no quiet read falls due
    launch.wait_until_finished(SimpleNamespace(root_directory=str(tmp_path), get_run_ids=get_run_ids), "run")
    assert reads == [0, 20]  # once at the start, once when the storage changed; not at 19 other polls
    clock = iter(range(1000))
    monkeypatch.setattr(launch.time, "monotonic", lambda: float(next(clock)))  # a second per poll
    runs_db.write_text("started")
    reads.clear(); polls.clear()
    launch.wait_until_finished(SimpleNamespace(root_directory=str(tmp_path / "elsewhere"), get_run_ids=get_run_ids), "run")
    assert reads[:3] == [0, 2, 4]  # nothing to watch: read every QUIET_POLL_SECONDS
