"""The UI in a real browser, and the daemon acting on a dropped extract.

Starts `dagster dev` (webserver + daemon, as `make ui` does) on a free loopback port with a
temporary DAGSTER_HOME made from the committed data/config/dagster.yaml, and two prison extracts
already in the landing folder. Headless Chromium (the system package, driven by playwright) loads
the asset graph and the automation page; meanwhile the daemon's landing sensor loads both extracts,
one queued run after the other, and a backfill of both dates launched the way the UI launches it
runs as one run.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from dagster import DagsterInstance, RunsFilter
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
)

from datafirst_assets.definitions import INGEST_JOB, build_definitions
from datafirst_assets.defs.ingest import ingest_keys
from datafirst_assets.defs.partitions import EXTRACT_DATES
from datafirst_assets.defs.sensors import LANDING_SENSOR, REFRESH_SCHEDULE, REFRESH_SENSOR
from datafirst_assets.warehouse.connection import close_warehouse, warehouse_cursor
from datafirst_assets_tests.deliveries import write_delivery

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DATES = ["2024-01-31", "2024-02-29"]
GROUPS = ["raw", "staged", "quarantine", "linkage", "linked"]

pytestmark = [
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="Chromium is not installed (`apt-get install chromium`, which .ci/run does): "
        "browser test skipped",
    ),
    # one server for the module: under `pytest -n 2 --dist loadgroup` these tests share a worker
    pytest.mark.xdist_group("ui"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(base: str, query: str) -> dict:
    request = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


class Server:
    def __init__(self, root: Path):
        self.home = root / "dagster_home"
        self.data = root / "data"
        self.home.mkdir()
        shutil.copy(REPO / "data" / "config" / "dagster.yaml", self.home / "dagster.yaml")
        for extract_date in DATES:
            write_delivery(self.data / "landing", "prison", extract_date, rows=3)
        self.base = f"http://127.0.0.1:{free_port()}"
        self.log = root / "dagster_dev.log"
        env = {**os.environ, "DAGSTER_HOME": str(self.home), "DATAFIRST_DATA_DIR": str(self.data)}
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml",
             "-h", "127.0.0.1", "-p", self.base.rsplit(":", 1)[1]],
            cwd=REPO, env=env, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one, nothing else touched
        )

    def wait_until_loaded(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                entries = graphql(self.base, "{ workspaceOrError { ... on Workspace { locationEntries "
                                             "{ loadStatus locationOrLoadError { __typename } } } } }")
                [entry] = entries["workspaceOrError"]["locationEntries"]
                if entry["loadStatus"] == "LOADED":
                    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", self.log_tail()
                    return
            except OSError:
                pass
            time.sleep(1)
        pytest.fail(f"dagster dev did not load the code location in {timeout}s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        # dagster dev does not reliably stop its code server and daemon on a signal: after a short
        # grace, end its whole process group (its own session, so nothing else is touched)
        for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 15)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture(scope="module")
def server():
    # tmpfs where there is one: the instance's SQLite commits every event, slow on a busy disk
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as root:
        server = Server(Path(root))
        try:
            server.wait_until_loaded()
            yield server
        finally:
            server.stop()
            close_warehouse()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(url, wait_until="domcontentloaded", timeout=60_000)
    return page


def test_asset_graph_shows_every_group(server, browser, tmp_path):
    graph = build_definitions(tmp_path).resolve_asset_graph()
    groups = {graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert set(GROUPS) <= groups  # and any group added later is checked too
    page = open_page(browser, f"{server.base}/asset-groups")
    try:
        page.get_by_text("Global asset lineage").first.wait_for(timeout=60_000)
        graph_nodes = page.locator("svg foreignObject")  # the asset graph draws its nodes in SVG
        for group in sorted(groups):
            # one collapsed node per group in the graph, and the group in the sidebar's list
            graph_nodes.get_by_text(group, exact=True).first.wait_for(timeout=30_000)
            listed = page.locator("button", has=page.get_by_text(group, exact=True))
            assert listed.count() >= 1, f"group {group!r} is not in the sidebar"
    except Exception:
        page.screenshot(path=str(tmp_path / "asset_graph.png"))
        raise
    finally:
        page.close()


def test_automation_page_lists_sensors_and_schedule(server, browser):
    page = open_page(browser, f"{server.base}/automation")
    try:
        for name in (LANDING_SENSOR, REFRESH_SENSOR, REFRESH_SCHEDULE):
            page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
    finally:
        page.close()
    selector = '{repositoryLocationName: "datafirst_assets.definitions", repositoryName: "__repository__"}'
    sensors = graphql(server.base, f"{{ sensorsOrError(repositorySelector: {selector}) "
                                   "{ ... on Sensors { results { name sensorState { status } } } } }")
    schedules = graphql(server.base, f"{{ schedulesOrError(repositorySelector: {selector}) "
                                     "{ ... on Schedules { results { name scheduleState { status } } } } }")
    status = {s["name"]: s["sensorState"]["status"] for s in sensors["sensorsOrError"]["results"]}
    status |= {s["name"]: s["scheduleState"]["status"] for s in schedules["schedulesOrError"]["results"]}
    assert status == {LANDING_SENSOR: "RUNNING", REFRESH_SENSOR: "RUNNING", REFRESH_SCHEDULE: "STOPPED"}


def wait_for_runs(server, instance, count: int, timeout: float = 240, **filters):
    deadline = time.monotonic() + timeout
    while True:
        runs = instance.get_run_records(RunsFilter(**filters))
        failed = [r.dagster_run.run_id for r in runs if r.dagster_run.status == DagsterRunStatus.FAILURE]
        assert not failed, f"run(s) {failed} failed:\n{server.log_tail()}"
        if len(runs) >= count and all(r.dagster_run.status == DagsterRunStatus.SUCCESS for r in runs):
            return runs
        assert time.monotonic() < deadline, (
            f"after {timeout}s: {[(r.dagster_run.run_id, r.dagster_run.status) for r in runs]}\n"
            f"{server.log_tail()}")
        time.sleep(2)


def raw_counts(server):
    with warehouse_cursor(server.data / "warehouse.duckdb") as conn:
        counts = conn.execute(
            "select extract_date, count(*) from raw_prison.nomis_movements group by 1 order by 1").fetchall()
    close_warehouse()  # let the next run have the file
    return counts


def test_daemon_loads_dropped_extracts_one_run_at_a_time(server, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(server.home))  # the committed config reads it
    with DagsterInstance.from_config(str(server.home)) as instance:
        runs = wait_for_runs(server, instance, 2, job_name=INGEST_JOB)
        assert len(runs) == 2
        assert sorted(instance.get_dynamic_partitions(EXTRACT_DATES)) == DATES
        first, second = sorted(runs, key=lambda r: r.start_time)
        # the queue allows one run at a time: the second started after the first ended
        assert first.end_time <= second.start_time
        assert {r.dagster_run.tags["datafirst/extract_date"] for r in runs} == set(DATES)
    assert raw_counts(server) == [(d, 3) for d in DATES]


def test_backfill_launched_as_from_the_ui_is_one_run(server, monkeypatch):
    """What the asset graph's Materialize > partition range > Launch backfill sends."""
    monkeypatch.setenv("DAGSTER_HOME", str(server.home))
    with DagsterInstance.from_config(str(server.home)) as instance:
        wait_for_runs(server, instance, 2, job_name=INGEST_JOB)  # the sensor's runs first
        keys = ", ".join(f'{{path: {json.dumps(k.path)}}}' for k in ingest_keys(["prison"]))
        launched = graphql(server.base, f"""mutation {{ launchPartitionBackfill(backfillParams: {{
            assetSelection: [{keys}], partitionNames: {json.dumps(DATES)} }}) {{
            __typename ... on LaunchBackfillSuccess {{ backfillId }}
            ... on PythonError {{ message }} }} }}""")
        result = launched["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result
        [run] = wait_for_runs(server, instance, 1, tags={BACKFILL_ID_TAG: result["backfillId"]})
        assert run.dagster_run.tags[ASSET_PARTITION_RANGE_START_TAG] == DATES[0]
        assert run.dagster_run.tags[ASSET_PARTITION_RANGE_END_TAG] == DATES[1]
    assert raw_counts(server) == [(d, 3) for d in DATES]  # re-loaded, not doubled
