"""The command line's launch instance (launch.py): the committed instance's storage with no run queue.

Its configuration names Dagster classes by module path (dagster.yaml has no other way), so these
tests are what notices a Dagster release that moves one."""

import importlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, QueuedRunCoordinator

from datafirst_assets.launch import DEFAULT_INSTANCE_CLASSES, prepare_launch_home

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
