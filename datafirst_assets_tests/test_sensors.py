"""The landing sensor (complete, partial, corrupt, re-delivered extracts), the downstream refresh
sensor and the full-refresh schedule, evaluated with `build_sensor_context` on hand-built deliveries."""

import json
import os
import time
import uuid

import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    validate_run_config,
)

from datafirst_assets.definitions import INGEST_JOB, LINK_JOB, REFRESH_JOB, build_definitions
from datafirst_assets.defs.ingest import ingest_keys, staged_key
from datafirst_assets.defs.partitions import EXTRACT_DATES
from datafirst_assets.defs.resources import DataLayout, LandingZone
from datafirst_assets.defs.sensors import LANDING_SENSOR, REFRESH_SCHEDULE, REFRESH_SENSOR
from datafirst_assets.common.hashing import sha256_file
from datafirst_assets.raw.delivery import MANIFEST
from datafirst_assets.runner import run_pipeline
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.warehouse.connection import close_warehouse, warehouse_cursor
from datafirst_assets_tests.deliveries import write_delivery

DAY = "2024-01-31"


def age(folder, seconds=600):
    """Pretend the delivery was last touched `seconds` ago (past the sensor's settle window)."""
    then = time.time() - seconds
    for path in folder.iterdir():
        os.utime(path, (then, then))


class Landing:
    def __init__(self, tmp_path):
        self.layout = DataLayout(tmp_path / "data")
        self.defs = build_definitions(self.layout.root)
        self.sensor = self.defs.resolve_sensor_def(LANDING_SENSOR)
        self.instance = DagsterInstance.ephemeral()
        self.cursor = None

    def tick(self, keep_cursor=True):
        context = build_sensor_context(
            instance=self.instance, cursor=self.cursor if keep_cursor else None,
            resources={"landing": LandingZone(path=str(self.layout.landing))},
        )
        result = self.sensor(context)
        if keep_cursor:
            self.cursor = result.cursor
        # What the daemon does with the result: add the partitions before launching the runs.
        for request in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        return result

    def deliver(self, source, extract_date=DAY, **kwargs):
        return write_delivery(self.layout.landing, source, extract_date, **kwargs)


@pytest.fixture
def landing(tmp_path):
    yield Landing(tmp_path)
    close_warehouse()


def skip_message(result) -> str:
    assert not result.run_requests
    return result.skip_reason.skip_message


def test_sensor_and_schedule_defaults(landing):
    assert landing.sensor.default_status == DefaultSensorStatus.RUNNING
    assert landing.defs.resolve_sensor_def(REFRESH_SENSOR).default_status == DefaultSensorStatus.RUNNING
    schedule = landing.defs.resolve_schedule_def(REFRESH_SCHEDULE)
    assert schedule.default_status == DefaultScheduleStatus.STOPPED
    assert schedule.job_name == REFRESH_JOB
    # the scheduled run is a full one (retrain, re-score, re-cluster) and its config is valid
    [request] = schedule.evaluate_tick(build_schedule_context()).run_requests
    assert request.run_config["resources"]["linkage"]["config"]["mode"] == "full"
    assert validate_run_config(landing.defs.resolve_job_def(REFRESH_JOB), request.run_config)
    refresh = set(landing.defs.resolve_job_def(REFRESH_JOB).asset_layer.selected_asset_keys)
    linked = set(landing.defs.resolve_job_def(LINK_JOB).asset_layer.selected_asset_keys)
    # every non-ingest asset, whatever its group: later groups join the refresh by themselves
    assert refresh >= linked and not refresh & set(ingest_keys(list(SOURCES)))
    graph = landing.defs.resolve_asset_graph()
    assert refresh | set(ingest_keys(list(SOURCES))) == set(graph.get_all_asset_keys())


def test_complete_delivery_adds_its_partition_and_requests_a_run_that_loads_it(landing):
    folder = landing.deliver("prison", rows=3)
    result = landing.tick()
    [request] = result.run_requests
    assert request.partition_key == DAY
    assert request.run_key == f"prison:{DAY}:{sha256_file(folder / MANIFEST)[:16]}"
    assert set(request.asset_selection) == set(ingest_keys(["prison"]))
    assert [list(r.partition_keys) for r in result.dynamic_partitions_requests] == [[DAY]]
    assert landing.instance.get_dynamic_partitions(EXTRACT_DATES) == [DAY]

    # the request is a working run: it loads exactly that delivery
    run = landing.defs.resolve_job_def(INGEST_JOB).execute_in_process(
        instance=landing.instance, partition_key=request.partition_key,
        asset_selection=request.asset_selection, tags=request.tags)
    assert run.success
    with warehouse_cursor(landing.layout.warehouse) as conn:
        rows = conn.execute("select extract_date, count(*) from raw_prison.nomis_movements group by 1")
        assert rows.fetchall() == [(DAY, 3)]

    # the next tick has nothing to do: the cursor remembers the manifest, in a line a person can read
    assert skip_message(landing.tick()) == "no new deliveries"
    assert f'"prison/{DAY}": "{sha256_file(folder / MANIFEST)[:12]}"' in landing.cursor.splitlines()[2]


def test_several_deliveries_run_oldest_first_and_known_partitions_are_not_added_again(landing):
    landing.instance.add_dynamic_partitions(EXTRACT_DATES, ["2024-01-01"])
    for source, extract_date in [("prison", "2024-02-01"), ("magistrates", "2024-01-01"),
                                 ("probation", "2024-02-01")]:
        landing.deliver(source, extract_date)
    (landing.layout.landing / "not_a_source" / DAY).mkdir(parents=True)
    result = landing.tick()
    assert [(r.partition_key, r.tags["datafirst/source"]) for r in result.run_requests] == [
        ("2024-01-01", "magistrates"), ("2024-02-01", "prison"), ("2024-02-01", "probation")]
    assert [list(r.partition_keys) for r in result.dynamic_partitions_requests] == [["2024-02-01"]]


def test_partial_delivery_is_skipped_then_run_once_complete(landing):
    table = SOURCES["prison"].tables[0].name
    folder = landing.deliver("prison", rows=40)
    manifest = (folder / MANIFEST).read_bytes()
    full = (folder / f"{table}.csv").read_bytes()

    # 1. data files arriving, manifest not yet written
    (folder / MANIFEST).unlink()
    assert "prison/2024-01-31: no manifest.json yet" in skip_message(landing.tick())
    # 2. manifest there, one file half copied (long ago: still a prefix, so still copying)
    (folder / MANIFEST).write_bytes(manifest)
    (folder / f"{table}.csv").write_bytes(full[: len(full) // 2])
    age(folder)
    message = skip_message(landing.tick())
    assert "incomplete, retried next tick" in message and f"{table}.csv:" in message
    assert "of 40 records so far" in message
    assert "corrupt" not in message
    # 3. a listed file not there yet
    (folder / f"{table}.csv").unlink()
    assert f"{table}.csv not delivered yet" in skip_message(landing.tick())
    # 4. a manifest caught mid-write is still copying, not corrupt
    (folder / f"{table}.csv").write_bytes(full)
    (folder / MANIFEST).write_bytes(manifest[: len(manifest) // 2])
    assert "manifest.json is still being written" in skip_message(landing.tick())
    # 5. the copy finishes: the next tick requests the run (no run key was spent before)
    (folder / MANIFEST).write_bytes(manifest)
    [request] = landing.tick().run_requests
    assert request.run_key.startswith(f"prison:{DAY}:")


def test_corrupt_deliveries_are_reported_and_not_run(landing, capfd):
    table = SOURCES["prison"].tables[0].name
    folder = landing.deliver("prison", rows=6)
    path = folder / f"{table}.csv"
    content = path.read_bytes()
    # every row there, bytes altered: corrupt once it has settled...
    path.write_bytes(content.replace(b"0000", b"9999", 1))
    assert path.read_bytes() != content
    assert "incomplete" in skip_message(landing.tick())  # ...but just written, it may still be changing
    age(folder)
    capfd.readouterr()
    message = skip_message(landing.tick())
    assert "1 corrupt, not loaded" in message and "altered or corrupt, not half-copied" in message
    assert "sha256 does not match" in message
    # logged once; later ticks repeat it in the skip reason without re-hashing or re-logging
    assert skip_message(landing.tick()) == message
    assert capfd.readouterr().err.count(f"ERROR - Delivery prison/{DAY} is corrupt") == 1
    assert "prison/2024-01-31" in json.loads(landing.cursor)["corrupt"]

    # a fixed delivery runs on the next tick
    path.write_bytes(content)
    assert len(landing.tick().run_requests) == 1


@pytest.mark.parametrize("breakage, expected", [
    ("malformed_manifest", "malformed manifest"),
    ("rows_disagree", "checksum matches but it holds 6 records; the manifest says 7"),
    ("wrong_source", "manifest is for magistrates/2024-01-31"),
    ("missing_table", "no entry for table(s)"),
])
def test_corrupt_manifests_are_reported(landing, breakage, expected):
    table = SOURCES["prison"].tables[0].name
    declared = {table: 7} if breakage == "rows_disagree" else None
    folder = landing.deliver("prison", rows=6, manifest_rows=declared)
    manifest = json.loads((folder / MANIFEST).read_text())
    if breakage == "malformed_manifest":
        (folder / MANIFEST).write_text('{"source": "prison", "tables": ')
    elif breakage == "wrong_source":
        (folder / MANIFEST).write_text(json.dumps({**manifest, "source": "magistrates"}))
    elif breakage == "missing_table":
        del manifest["tables"][table]
        (folder / MANIFEST).write_text(json.dumps(manifest))
    age(folder)
    message = skip_message(landing.tick())
    assert "corrupt, not loaded" in message and expected in message


def test_redelivered_extract_runs_again_only_if_changed(landing):
    landing.deliver("prison", rows=5)
    [first] = landing.tick().run_requests

    # the same bytes delivered again: no request while the cursor remembers it, and the same
    # run key (which Dagster never runs twice) if the cursor is lost
    landing.deliver("prison", rows=5)
    assert skip_message(landing.tick()) == "no new deliveries"
    [replayed] = landing.tick(keep_cursor=False).run_requests
    assert replayed.run_key == first.run_key

    # a changed extract for the same date: a new run key, so it runs again
    landing.deliver("prison", rows=6)
    [second] = landing.tick().run_requests
    assert second.partition_key == first.partition_key == DAY
    assert second.run_key != first.run_key and second.run_key.startswith(f"prison:{DAY}:")
    # the partition exists already: nothing to add
    assert not landing.tick(keep_cursor=False).dynamic_partitions_requests


def test_deliveries_the_cli_loaded_are_not_loaded_again(landing):
    landing.deliver("prison", rows=3)
    landing.deliver("probation", rows=3)
    run_pipeline(landing.layout, landing.instance, dates=[DAY], link=False)  # what `make demo` does
    landing.deliver("probation", rows=4)  # changed after the CLI loaded it
    result = landing.tick()
    assert [r.tags["datafirst/source"] for r in result.run_requests] == ["probation"]
    assert skip_message(landing.tick()) == "no new deliveries"
    assert "prison/2024-01-31" in json.loads(landing.cursor)["requested"]


def test_stalled_copy_is_warned_about_once(landing, capfd):
    table = SOURCES["prison"].tables[0].name
    folder = landing.deliver("prison", rows=20)
    path = folder / f"{table}.csv"
    path.write_bytes(path.read_bytes()[:40])
    age(folder, seconds=2 * 3600)
    capfd.readouterr()
    assert "incomplete" in skip_message(landing.tick())
    assert "incomplete" in skip_message(landing.tick())
    assert capfd.readouterr().err.count("stalled copy?") == 1


# ---- downstream refresh -------------------------------------------------------------------------

def refresh_tick(landing):
    sensor = landing.defs.resolve_sensor_def(REFRESH_SENSOR)
    return sensor(build_sensor_context(instance=landing.instance, definitions=landing.defs))


def add_run(instance: DagsterInstance, job_name: str, status: DagsterRunStatus) -> DagsterRun:
    """A run record in the given state, as another process's run would leave it."""
    return instance.add_run(DagsterRun(job_name=job_name, run_id=str(uuid.uuid4()), status=status))


def test_refresh_follows_new_staged_data_once_the_queue_is_empty(landing):
    instance = landing.instance
    graph = landing.defs.resolve_asset_graph()
    inputs = {k for k in graph.get_all_asset_keys() if k.path[0] == "staged"
              and any(c.path[0] != "staged" and c.path[0] not in ("raw", "quarantine")
                      for c in graph.get(k).child_keys)}
    person_tables = {staged_key(s.key, s.person_table.name) for s in SOURCES.values()}
    assert inputs >= person_tables

    result = refresh_tick(landing)
    assert isinstance(result, SkipReason) and "never loaded" in result.skip_message
    for key in sorted(inputs)[:-1]:
        instance.report_runless_asset_event(AssetMaterialization(key))
    assert "1 input(s) of refresh_downstream never loaded" in refresh_tick(landing).skip_message
    instance.report_runless_asset_event(AssetMaterialization(sorted(inputs)[-1]))

    # an ingest still running: wait for it, so seven ingests make one refresh
    ingest = add_run(instance, INGEST_JOB, DagsterRunStatus.STARTED)
    assert "waiting for run" in refresh_tick(landing).skip_message
    instance.report_run_failed(ingest)  # any end state frees the queue

    request = refresh_tick(landing)
    assert isinstance(request, RunRequest) and request.run_key.startswith("staged-at-")

    # a refresh (or the CLI's link run) after the newest staged data: up to date
    add_run(instance, LINK_JOB, DagsterRunStatus.SUCCESS)
    assert "up to date" in refresh_tick(landing).skip_message
    # one table re-delivered later: refresh again
    time.sleep(0.01)
    instance.report_runless_asset_event(AssetMaterialization(sorted(person_tables)[0]))
    again = refresh_tick(landing)
    assert isinstance(again, RunRequest) and again.run_key != request.run_key


def test_what_is_not_a_delivery_is_named_in_the_skip_reason_and_logged_once(landing, capfd):
    landing.deliver("prison", rows=3)
    moved = landing.deliver("prison", "2024-02-29", rows=3)
    moved.rename(moved.parent.parent / "Prison")  # data/landing/Prison, holding a manifest
    (landing.layout.landing / "prison" / "2024-02-30").mkdir()
    landing.deliver("magistrates", "2024-03-31", rows=3).rename(landing.layout.landing / "magistrates" / "31-03-2024")
    (landing.layout.landing / "notes.txt").write_text("hello")
    age(landing.layout.landing / "prison" / DAY)
    capfd.readouterr()
    result = landing.tick()
    assert len(result.run_requests) == 1  # the good delivery still loads
    err = capfd.readouterr().err
    assert "31-03-2024/: '31-03-2024' is not an extract date folder (YYYY-MM-DD); rename it 2024-03-31?" in err
    assert "'2024-02-30' is not a real date" in err, err
    assert "notes.txt" in err, err
    assert "Prison/" in err, err
    landing.tick()
    assert "not a real date" not in capfd.readouterr().err  # logged once
    message = skip_message(landing.tick())
    assert "not a delivery folder, not loaded" in message and "ignored, not a delivery" in message
