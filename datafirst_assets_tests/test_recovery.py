"""Recovery from a killed run: `datafirst run` killed with SIGKILL mid-ingest leaves its run STARTED;
the next `datafirst run` marks it failed at once (its process is gone), loads everything again and
ends with exactly the rows an uninterrupted run stores."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from datafirst_assets.defs.recovery import PID_TAG, fail_abandoned_runs
from datafirst_assets.defs.resources import DataLayout
from datafirst_assets.runner import run_pipeline
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.warehouse.connection import close_warehouse, warehouse_cursor
from datafirst_assets_tests.deliveries import write_delivery

CONFIG = Path(__file__).resolve().parents[1] / "data" / "config" / "dagster.yaml"
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None
DATES = ["2024-01-31", "2024-02-29"]
DELIVERING = ["prison", "probation", "oasys"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_whose_process_is_gone_is_marked_failed_and_a_live_one_is_not():
    instance = DagsterInstance.ephemeral()
    dead = DagsterRun(job_name="ingest", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED,
                      tags={PID_TAG: str(_dead_pid())})
    alive = DagsterRun(job_name="ingest", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED,
                       tags={PID_TAG: str(os.getpid())})
    unknown = DagsterRun(job_name="ingest", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED)
    for run in (dead, alive, unknown):
        instance.add_run(run)
    said = []
    assert fail_abandoned_runs(instance, said.append) == [dead.run_id]
    assert instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(alive.run_id).status == DagsterRunStatus.STARTED
    assert instance.get_run_by_id(unknown.run_id).status == DagsterRunStatus.STARTED  # nothing to check: left
    assert "marked failed" in said[0]


def _rows(layout: DataLayout) -> dict[str, list]:
    out = {}
    with warehouse_cursor(layout.warehouse) as conn:
        for source in DELIVERING:
            for table in SOURCES[source].tables:
                for stage in ("raw", "staged", "quarantine"):
                    out[f"{stage}_{source}.{table.name}"] = sorted(map(repr, conn.execute(
                        f"select * exclude (_source_file) from {stage}_{source}.{table.name}").fetchall()))
    close_warehouse()
    return out


def _start_run(layout: DataLayout, home: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "datafirst_assets.cli", "run", "--no-link", "--data-dir", str(layout.root)],
        env={**os.environ, "DAGSTER_HOME": str(home)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _kill_when(process: subprocess.Popen, home: Path, materialised: int, timeout: float = 300) -> str:
    """SIGKILL the run once it is STARTED and has stored `materialised` tables; its run id."""
    deadline = time.monotonic() + timeout
    with DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            assert process.poll() is None, "the run ended before it could be killed: " + process.stderr.read()
            started = instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.STARTED]))
            if started:
                run_id = started[0].dagster_run.run_id
                stored = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
                if len(stored) >= materialised:
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    return run_id
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the run never reached the kill point")


@pytest.fixture
def home(monkeypatch):
    with tempfile.TemporaryDirectory(dir=SCRATCH) as home:
        shutil.copy(CONFIG, Path(home) / "dagster.yaml")
        monkeypatch.setenv("DAGSTER_HOME", home)
        yield Path(home)
    close_warehouse()


def test_killed_runs_are_recovered_by_the_next_run_with_no_rows_lost_or_doubled(home, tmp_path):
    layout = DataLayout(Path(home) / "data")
    for extract_date in DATES:
        for source in DELIVERING:
            write_delivery(layout.landing, source, extract_date, rows=30)

    # killed once before anything is stored, then (the second run having recovered from the first)
    # once with some tables stored and others not
    killed = [_kill_when(_start_run(layout, home), home, materialised=n) for n in (0, 3)]
    with DagsterInstance.from_config(str(home)) as instance:
        assert [instance.get_run_by_id(r).status for r in killed] == [DagsterRunStatus.FAILURE,
                                                                      DagsterRunStatus.STARTED]

    started = time.monotonic()
    finished = _start_run(layout, home)
    out, err = finished.communicate(timeout=600)
    assert finished.returncode == 0, err
    assert "Waiting for" not in out + err  # no wait for the dead runs
    assert (out + err).count("marked failed") == 1
    assert time.monotonic() - started < 300
    with DagsterInstance.from_config(str(home)) as instance:
        assert {instance.get_run_by_id(r).status for r in killed} == {DagsterRunStatus.FAILURE}
    recovered = _rows(layout)

    # the same deliveries loaded by one uninterrupted run
    reference = DataLayout(tmp_path / "data")
    shutil.copytree(layout.landing, reference.landing)
    run_pipeline(reference, DagsterInstance.ephemeral(), link=False)
    expected = _rows(reference)
    assert recovered == expected
    assert all(len(rows) == 60 for name, rows in expected.items() if name.startswith("raw_"))
