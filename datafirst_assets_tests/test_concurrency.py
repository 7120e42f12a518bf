"""One warehouse writer at a time: the committed instance queues runs one at a time, and a process
that finds the warehouse locked anyway waits for it instead of crashing."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, QueuedRunCoordinator

from datafirst_assets.warehouse.connection import (
    LOCK_TIMEOUT_ENV,
    WarehouseLocked,
    close_warehouse,
    warehouse_cursor,
)

CONFIG = Path(__file__).resolve().parents[1] / "data" / "config" / "dagster.yaml"


def _instance(home: str, monkeypatch) -> DagsterInstance:
    shutil.copy(CONFIG, Path(home) / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", home)
    return DagsterInstance.from_config(home)


def test_committed_instance_config_queues_runs_one_at_a_time(monkeypatch):
    # on tmpfs where there is one: creating the instance's SQLite databases is slow on a busy disk
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as home, \
            _instance(home, monkeypatch) as instance:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        # what the queue daemon reads (the coordinator's own config is merged with `concurrency:`)
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 1
        assert not queue.tag_concurrency_limits
        # the daemon fails runs stuck starting or cancelling instead of letting them hold the queue
        assert instance.run_monitoring_enabled and instance.run_monitoring_max_resume_run_attempts == 0


def hold_lock(database: Path, seconds: float) -> subprocess.Popen:
    """Another process with the warehouse open (a run outside the queue), for `seconds`."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
         "time.sleep(float(sys.argv[2]))",
         str(database), str(seconds)],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.fixture
def database(tmp_path):
    yield tmp_path / "warehouse.duckdb"
    close_warehouse()


def test_a_locked_warehouse_is_waited_for(database):
    holder = hold_lock(database, 1.5)
    started = time.monotonic()
    with warehouse_cursor(database) as conn:
        waited = time.monotonic() - started
        assert conn.execute("select 42").fetchone() == (42,)
    holder.wait(timeout=10)
    assert waited >= 0.5  # it really was locked, and the open waited instead of failing


def test_a_lock_held_too_long_fails_with_a_clear_error(database, monkeypatch):
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "1")
    holder = hold_lock(database, 10)
    try:
        started = time.monotonic()
        with pytest.raises(WarehouseLocked, match=f"still locked by another process.*{LOCK_TIMEOUT_ENV}"):
            with warehouse_cursor(database):
                pass
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()


def test_other_open_errors_are_not_retried(database):
    database.write_text("not a DuckDB file")
    started = time.monotonic()
    with pytest.raises(Exception, match="not a valid DuckDB database"):
        with warehouse_cursor(database):
            pass
    assert time.monotonic() - started < 1
