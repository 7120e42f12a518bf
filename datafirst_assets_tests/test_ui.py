"""The UI in a real browser, and the daemon acting on a dropped extract.

A small demo is run first, step for step as `make demo` runs it (every run launched through the
code location), into a temporary DAGSTER_HOME made from the committed data/config/dagster.yaml.
Then `datafirst ui` (what `make ui` runs: `dagster dev` plus the reports' file server) starts on
free loopback ports, with two more prison extracts in the landing folder. Headless Chromium (the
system package, driven by playwright) reads the pages a user reads: the demo's runs on the Runs
page and the Overview timeline, a staged table's per-extract row counts, a Splink chart and the
linkage quality report opened from their asset pages, the lineage's groups; meanwhile the daemon's
landing sensor loads both new extracts, one queued run after the other, and a backfill of both
dates launched the way the UI launches it runs as one run. Screenshots land in the test's
temporary folder (or DATAFIRST_UI_SCREENSHOTS).
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
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from datafirst_assets.definitions import INGEST_JOB, LINK_JOB, REVIEW_QUEUES_JOB, build_definitions
from datafirst_assets.launch import stop_code_servers
from datafirst_assets.defs.ingest import ingest_keys
from datafirst_assets.defs.partitions import EXTRACT_DATES
from datafirst_assets.defs.resources import DataLayout
from datafirst_assets.reporting.links import FILES_URL_ENV
from datafirst_assets.cli import main as cli_main
from datafirst_assets.runner import LAUNCH_ENV, PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, run_pipeline
from datafirst_assets.simulate import simulate
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.defs.sensors import SOURCE_TAG, LANDING_SENSOR, REFRESH_SCHEDULE, REFRESH_SENSOR
from datafirst_assets.warehouse.connection import close_warehouse, warehouse_cursor
from datafirst_assets_tests.deliveries import write_delivery

REPO = Path(__file__).resolve().parents[1]
LOCATION = "datafirst_assets.definitions"
BACKFILL_ID_TAG = "dagster/backfill"  # the tag Dagster puts on a backfill's runs (no public constant)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DATES = ["2025-01-31", "2025-02-28"]  # delivered while the UI runs (the demo's extracts are 2024's)
ROWS = {"2025-01-31": 3, "2025-02-28": 5}
DEMO_PEOPLE = 400
GROUPS = ["raw", "staged", "quarantine", "linkage", "dedup_prison", "linked", "release", "synthetic_release"]

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


def run_demo(home: Path, data: Path, files_url: str) -> list[str]:
    """`make demo` in small, step for step: simulate; link as far as the review queues; the simulated
    reviewer labels them; link with the labels. Every run is launched through the code location.
    The last of three extracts is delivered by prison alone, which makes the ingest runs subsets of
    their jobs (six sources for two dates; prison for three, with the review queues), as `datafirst run` launches them when sources deliver
    on different dates. Returns the ids of the runs the steps made."""
    layout, truth = DataLayout(data), data.parent / "truth"  # truth outside the data folder, as in production
    simulate(people=DEMO_PEOPLE, seed=5, extracts=3, out=layout.landing, truth_out=truth)
    last = max(p.name for p in (layout.landing / "prison").iterdir())
    for source in SOURCES:  # the last extract delivered by prison alone
        if source != "prison":
            shutil.rmtree(layout.landing / source / last)
    saved = {k: os.environ.get(k) for k in ("DAGSTER_HOME", FILES_URL_ENV, LAUNCH_ENV, "DATAFIRST_MAX_MEAN_RISK")}
    # 400 people make most records unique on the risk key: the risk gate is tested in test_gates
    os.environ.update({"DAGSTER_HOME": str(home), FILES_URL_ENV: files_url, LAUNCH_ENV: "code_location",
                       "DATAFIRST_MAX_MEAN_RISK": "1.0"})
    try:
        with DagsterInstance.from_config(str(home)) as instance:
            run_ids = run_pipeline(layout, instance, review_queues_only=True).run_ids
            close_warehouse()
            assert cli_main(["simulate-review", "--data-dir", str(data), "--truth-dir", str(truth)]) == 0
            close_warehouse()  # the link run's process writes the warehouse next
            run_ids += run_pipeline(layout, instance, ingest=False).run_ids
            runs = instance.get_runs()
            # every run in the instance is one the demo made, and carries its code location's origin
            assert sorted(r.run_id for r in runs) == sorted(run_ids)
            assert all(r.remote_job_origin is not None and r.remote_job_origin.location_name == LOCATION
                       for r in runs), [(r.run_id, r.job_name) for r in runs if r.remote_job_origin is None]
            # ... and all were started by one code server, over its socket (not a server per run)
            servers = {r.remote_job_origin.repository_origin.code_location_origin for r in runs}
            assert len(servers) == 1 and getattr(next(iter(servers)), "socket", None), servers
            return run_ids
    finally:
        stop_code_servers()  # it writes under the instance's home, which the fixture removes at the end
        close_warehouse()
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


class Server:
    def __init__(self, root: Path):
        self.home = root / "dagster_home"
        self.data = root / "data"
        self.home.mkdir()
        shutil.copy(REPO / "data" / "config" / "dagster.yaml", self.home / "dagster.yaml")
        self.base = f"http://127.0.0.1:{free_port()}"
        self.files_port = free_port()
        self.demo_run_ids = run_demo(self.home, self.data, f"http://127.0.0.1:{self.files_port}")
        for extract_date, rows in ROWS.items():
            write_delivery(self.data / "landing", "prison", extract_date, rows=rows)
        self.log = root / "dagster_dev.log"
        env = {**os.environ, "DAGSTER_HOME": str(self.home)}
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "datafirst"), "ui", "--data-dir", str(self.data),
             "--port", self.base.rsplit(":", 1)[1], "--files-port", str(self.files_port)],
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

    def stop(self) -> float:
        """SIGTERM, as a service manager sends it; seconds until `datafirst ui` exited."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        stopped = time.monotonic() - started
        try:  # whatever is left of its process group (its own session, so nothing else is touched)
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        # until the group is gone: a process still dying writes under the home the fixture removes next
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        self._kill_strays()
        return stopped

    def _kill_strays(self) -> None:
        """Code servers of this instance that outlived the group: Dagster starts them outside it, and one
        started as the group was killed never hears a heartbeat, so never stops (one was found running
        half an hour after a suite, its instance ref naming this fixture's home)."""
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                pid = int(cmdline.parent.name)
                if pid != os.getpid() and str(self.home).encode() in cmdline.read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass


@pytest.fixture(scope="module")
def server():
    # tmpfs where there is one: the instance's SQLite commits every event, slow on a busy disk
    root = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    server = Server(root)
    try:
        server.wait_until_loaded()
        yield server
    finally:
        seconds = server.stop()
        close_warehouse()
        remove_folder(root)
    assert seconds < 20, f"datafirst ui took {seconds:.0f}s to stop on SIGTERM"


def remove_folder(root: Path, attempts: int = 5) -> None:
    """rmtree, naming what is still being written there (and by which process) if it will not go."""
    for _ in range(attempts):
        try:
            shutil.rmtree(root)
            return
        except OSError:
            time.sleep(1)
    writers = []
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if str(os.readlink(fd)).startswith(str(root)):
                pid = fd.parts[2]
                writers.append((pid, (Path("/proc") / pid / "cmdline").read_bytes().replace(b"\0", b" ")[:200], os.readlink(fd)))
        except OSError:
            pass
    left = [str(p.relative_to(root)) for p in root.rglob("*")][:30]
    pytest.fail(f"{root} would not go: left {left}; open by {writers}")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    # the first visit shows a "Join the Dagster community" dialog over the page: skip it, as a user would
    page.add_locator_handler(page.get_by_role("button", name="Skip"),
                             lambda skip: skip.click(), no_wait_after=True)
    page.goto(url, wait_until="domcontentloaded", timeout=60_000)
    return page


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where screenshots go: DATAFIRST_UI_SCREENSHOTS to keep them, else a temporary folder."""
    folder = Path(os.environ.get("DATAFIRST_UI_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(page, path: Path) -> bytes:
    """A screenshot, asserted not blank: a blank page compresses to a few kilobytes."""
    png = page.screenshot(path=str(path), full_page=False)
    assert len(png) > 20_000, f"{path.name} looks blank ({len(png)} bytes)"
    return png


def demo_runs(server) -> dict[str, str]:
    """run id -> job name of every run the demo made."""
    with DagsterInstance.from_config(str(server.home)) as instance:
        return {run_id: instance.get_run_by_id(run_id).job_name for run_id in server.demo_run_ids}


def instance_run_count(server) -> int:
    with DagsterInstance.from_config(str(server.home)) as instance:
        return len(instance.get_run_records())


def timeline_run_count(page) -> int:
    """Runs the Overview timeline draws for the code location (the counts by status in its header row)."""
    header = page.locator("button", has=page.get_by_text(LOCATION, exact=True)).first
    header.wait_for(timeout=60_000)
    return sum(int(tag) for tag in header.locator(".BaseTag").all_inner_texts() if tag.strip().isdigit())


def test_demo_runs_are_on_the_runs_page_and_the_timeline(server, browser, shots, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(server.home))  # the committed config reads it
    runs = demo_runs(server)
    # an ingest run (six sources), prison's range ingested with the review queues, the link
    assert sorted(runs.values()) == sorted([INGEST_JOB, REVIEW_QUEUES_JOB, LINK_JOB])
    page = open_page(browser, f"{server.base}/runs")
    try:
        for run_id in runs:
            page.get_by_text(run_id[:8], exact=True).first.wait_for(timeout=60_000)
        screenshot(page, shots / "runs.png")
        # The Overview timeline draws only runs that carry their code location's origin: it must draw
        # every run of the instance (the demo's, and any the sensors have launched since).
        page.goto(f"{server.base}/overview/timeline", wait_until="domcontentloaded")
        for job in set(runs.values()):
            page.get_by_text(job, exact=True).first.wait_for(timeout=60_000)
        before = instance_run_count(server)
        deadline = time.monotonic() + 60
        while (drawn := timeline_run_count(page)) < before and time.monotonic() < deadline:
            page.wait_for_timeout(1000)
        screenshot(page, shots / "timeline.png")
        assert before <= drawn <= instance_run_count(server), (before, drawn)
        for job in set(runs.values()):  # and each run on its job's page
            page.goto(f"{server.base}/locations/{LOCATION}/jobs/{job}/runs", wait_until="domcontentloaded")
            for run_id in (r for r, j in runs.items() if j == job):
                page.get_by_text(run_id[:8], exact=True).first.wait_for(timeout=60_000)
            screenshot(page, shots / f"job_runs_{job}.png")
    finally:
        page.close()


def partition_counts(server) -> tuple[str, str, dict[str, int]]:
    """A staged table of the demo with rows in both extract dates, and its rows per date."""
    with warehouse_cursor(server.data / "warehouse.duckdb") as conn:
        for source in SOURCES.values():
            for table in source.tables:
                counts = dict(conn.execute(
                    f"select extract_date, count(*) from staged_{source.key}.{table.name} "
                    "where extract_date < '2025' group by 1 order by 1").fetchall())
                if len(counts) == 2 and len(set(counts.values())) == 2:
                    close_warehouse()
                    return source.key, table.name, counts
    close_warehouse()
    pytest.fail("no staged table of the demo has different row counts in its two extracts")


def test_staged_partitions_show_their_own_row_counts(server, browser, shots):
    source, table, counts = partition_counts(server)  # both extracts were loaded in one run
    page = open_page(browser, f"{server.base}/assets/staged/{source}/{table}?view=partitions")
    try:
        for extract_date, rows in counts.items():
            page.goto(f"{server.base}/assets/staged/{source}/{table}?view=partitions&partition={extract_date}",
                      wait_until="domcontentloaded")
            row = page.locator("tr", has=page.get_by_text("dagster/row_count", exact=True)).first
            row.wait_for(timeout=60_000)
            screenshot(page, shots / f"staged_partition_{extract_date}.png")
            assert row.inner_text().split()[-1].replace(",", "") == str(rows), (extract_date, row.inner_text())
    finally:
        page.close()


def _click_for_new_page(page, link, attempts: int = 2):
    """The page a link opens in a new tab. Under a loaded test run a click can land while the UI
    re-renders the metadata (or while the community dialog is being dismissed) and open nothing:
    click once more before failing."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    for attempt in range(attempts):
        try:
            with page.context.expect_page(timeout=30_000) as opened:
                link.click()
            return opened.value
        except PlaywrightTimeoutError:
            if attempt == attempts - 1:
                raise


def open_linked_page(page, link_text: str, shot: Path, expected_title: str) -> None:
    """Click a metadata link on an asset page; the page it opens renders (offline) what it should."""
    link = page.locator(f"a[href*='{link_text}']").first
    link.wait_for(timeout=60_000)
    report = _click_for_new_page(page, link)
    try:
        report.wait_for_load_state("load")
        # the Vega chart drew (Splink's charts draw on a canvas, ours in SVG)
        report.locator(".vega-embed canvas, .vega-embed svg").first.wait_for(timeout=30_000)
        assert report.title() == expected_title
        screenshot(report, shot)
    finally:
        report.close()


def test_splink_chart_and_quality_report_open_from_their_asset_pages(server, browser, shots):
    page = open_page(browser, f"{server.base}/assets/linkage/prison/model")
    try:
        open_linked_page(page, "match_weights_chart.html", shots / "match_weights_chart.png", "Splink chart")
        page.goto(f"{server.base}/assets/linkage/quality", wait_until="domcontentloaded")
        open_linked_page(page, "linkage_quality.html", shots / "linkage_quality.png", "Linkage quality (estimated)")
    finally:
        page.close()


def test_a_linkage_node_names_its_source(server, browser, shots):
    page = open_page(browser, f"{server.base}/asset-groups")
    try:
        page.get_by_text("Global asset lineage").first.wait_for(timeout=60_000)
        page.locator("svg foreignObject").get_by_text("dedup_prison", exact=True).first.wait_for(timeout=30_000)
        screenshot(page, shots / "lineage.png")
    finally:
        page.close()


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
            "select extract_date, count(*) from raw_prison.nomis_movements where extract_date >= '2025' "
            "group by 1 order by 1").fetchall()
    close_warehouse()  # let the next run have the file
    return counts


def test_daemon_loads_dropped_extracts_one_run_at_a_time(server, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(server.home))  # the committed config reads it
    with DagsterInstance.from_config(str(server.home)) as instance:
        runs = wait_for_runs(server, instance, 2, job_name=INGEST_JOB, tags={SOURCE_TAG: "prison"})
        assert len(runs) == 2
        assert set(DATES) <= set(instance.get_dynamic_partitions(EXTRACT_DATES))
        first, second = sorted(runs, key=lambda r: r.start_time)
        # the queue allows one run at a time: the second started after the first ended
        assert first.end_time <= second.start_time
        assert {r.dagster_run.tags["datafirst/extract_date"] for r in runs} == set(DATES)
    assert raw_counts(server) == list(ROWS.items())


def test_backfill_launched_as_from_the_ui_is_one_run(server, monkeypatch):
    """What the asset graph's Materialize > partition range > Launch backfill sends."""
    monkeypatch.setenv("DAGSTER_HOME", str(server.home))
    with DagsterInstance.from_config(str(server.home)) as instance:
        wait_for_runs(server, instance, 2, job_name=INGEST_JOB, tags={SOURCE_TAG: "prison"})  # the sensor's runs first
        keys = ", ".join(f'{{path: {json.dumps(k.path)}}}' for k in ingest_keys(["prison"]))
        launched = graphql(server.base, f"""mutation {{ launchPartitionBackfill(backfillParams: {{
            assetSelection: [{keys}], partitionNames: {json.dumps(DATES)} }}) {{
            __typename ... on LaunchBackfillSuccess {{ backfillId }}
            ... on PythonError {{ message }} }} }}""")
        result = launched["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result
        [run] = wait_for_runs(server, instance, 1, tags={BACKFILL_ID_TAG: result["backfillId"]})
        assert run.dagster_run.tags[PARTITION_RANGE_START_TAG] == DATES[0]
        assert run.dagster_run.tags[PARTITION_RANGE_END_TAG] == DATES[1]
    assert raw_counts(server) == list(ROWS.items())  # re-loaded, not doubled


# --- Contracts in the UI: a table's Columns tab, and a failing check --------------------------------------

def wait_for_the_refresh_after_the_last_ingest(server, instance, timeout: float = 300) -> None:
    """The refresh sensor launches the link job (which plans `linkage/quality`'s checks) up to a tick
    after the last ingest run ends; a check recorded while that run is in flight is shown as "Not
    evaluated" on the check's page, so wait for that run to end first."""
    wait_for_runs(server, instance, 2, timeout=timeout, job_name=INGEST_JOB, tags={SOURCE_TAG: "prison"})
    ingests = wait_for_runs(server, instance, 1, timeout=timeout, job_name=INGEST_JOB)  # and a backfill's
    last_ingest_end = max(r.end_time for r in ingests)
    deadline = time.monotonic() + timeout
    while True:
        refreshes = [r for r in instance.get_run_records(RunsFilter(tags={"datafirst/trigger": REFRESH_SENSOR}))
                     if (r.start_time or r.create_timestamp.timestamp()) >= last_ingest_end]
        if refreshes and all(r.dagster_run.is_finished for r in refreshes):
            return
        assert time.monotonic() < deadline, (
            f"no finished refresh run after {timeout}s: {[(r.dagster_run.run_id, r.dagster_run.status) for r in refreshes]}\n"
            f"{server.log_tail()}")
        time.sleep(2)


def record_a_failing_check(home: Path, scratch: Path) -> None:
    """A dedicated small run in the UI's instance: the `contract` check of `linkage/quality` finds a
    threshold of 7.5. It reads a scratch warehouse holding that broken table (as if someone typed the
    value into the stored table by hand), so the demo's warehouse, and the runs sharing it, are untouched."""
    import polars as pl
    from dagster import AssetSelection, asset, materialize

    from datafirst_assets.contracts.checks import contract_checks
    from datafirst_assets.defs.resources import Warehouse

    with warehouse_cursor(scratch) as conn:
        broken = pl.DataFrame({"source": ["magistrates", "prison"], "threshold": [0.9, 7.5],  # noqa: F841
                               "threshold_source": ["model_estimate"] * 2, "estimated_bcubed_f1": [0.99, 0.98]})
        conn.execute("create schema if not exists linkage; create or replace table linkage.quality as select * from broken")
    close_warehouse()

    @asset(key=["linkage", "quality"], group_name="linkage", metadata={"schema": "linkage"})
    def quality() -> None: ...

    with DagsterInstance.from_config(str(home)) as instance:
        result = materialize([quality, *contract_checks([quality])], instance=instance, raise_on_error=False,
                             selection=AssetSelection.checks_for_assets(quality),
                             resources={"warehouse": Warehouse(database=str(scratch))})
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    close_warehouse()


def skip_community_dialog(page) -> None:
    """The "Join the Dagster community" dialog opens over the first page a little after it loads; the
    locator handler only acts before a click, so close it before a screenshot."""
    try:
        page.get_by_role("button", name="Skip").click(timeout=5_000)
    except Exception:  # noqa: BLE001  (not shown: nothing to close)
        pass


def test_a_tables_columns_and_a_failing_check_are_shown(server, browser, shots, tmp_path, monkeypatch):
    """The contract as the table's columns (names and descriptions, before and after it is stored), and
    a failing `contract` check with its status and its readable report (rule, failing count, sample)."""
    page = open_page(browser, f"{server.base}/assets/deidentified/magistrates/hocas_flatfile")
    try:
        page.get_by_text("Columns", exact=True).first.wait_for(timeout=60_000)
        page.get_by_text("defendant_case_id_hash", exact=True).first.wait_for(timeout=30_000)
        skip_community_dialog(page)
        screenshot(page, shots / "columns.png")
        text = page.inner_text("body")
        assert "Libra defendant-on-case id (keyed hash" in text and "age_at_first_hearing" in text
        assert "Age in whole years at first hearing date" in text

        monkeypatch.setenv("DAGSTER_HOME", str(server.home))
        with DagsterInstance.from_config(str(server.home)) as instance:
            wait_for_the_refresh_after_the_last_ingest(server, instance)
        record_a_failing_check(server.home, tmp_path / "scratch.duckdb")
        page.goto(f"{server.base}/assets/linkage/quality?view=checks&checkDetail=contract", wait_until="domcontentloaded")
        page.get_by_text("Evaluation result", exact=True).first.wait_for(timeout=60_000)
        page.get_by_text("Failed", exact=True).first.wait_for(timeout=30_000)
        screenshot(page, shots / "failing_check.png")
        text = page.inner_text("body")
        assert "This is a blocking asset check" in text and "contract_failing_rules" in text
        page.get_by_text("[Show Markdown]", exact=True).first.click()
        page.get_by_text("Sample of failing rows:").first.wait_for(timeout=30_000)
        page.wait_for_timeout(500)  # the dialog fades in
        screenshot(page, shots / "failing_check_report.png")
        assert "threshold: in_range(0, 1) failed for 1 row(s), e.g. 7.5" in page.inner_text("body")
    finally:
        page.close()
