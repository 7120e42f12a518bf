"""Backfills by extract date from the command line, and idempotent re-materialisation: a range is
one run, re-loading a date replaces its rows, and a refused delivery changes nothing and re-runs cleanly."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from dagster import DagsterInstance, RunsFilter

from datafirst_assets.cli import main
from datafirst_assets.definitions import INGEST_JOB
from datafirst_assets.defs.resources import DataLayout
from datafirst_assets.runner import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, PipelineFailed, run_pipeline
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.warehouse.connection import close_warehouse, warehouse_cursor
from datafirst_assets_tests.deliveries import to_csv, valid_rows, write_delivery

DATES = ["2024-01-31", "2024-02-29", "2024-03-31"]
DELIVERING = ["prison", "probation"]
CONFIG = Path(__file__).resolve().parents[1] / "data" / "config" / "dagster.yaml"


@pytest.fixture
def home(monkeypatch):
    """A persistent instance from the committed configuration, as `make` sets it up. On tmpfs where
    there is one: SQLite commits every run event, and on a slow disk that is most of a run's time."""
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as home:
        shutil.copy(CONFIG, Path(home) / "dagster.yaml")
        monkeypatch.setenv("DAGSTER_HOME", home)
        yield Path(home)
    close_warehouse()


@pytest.fixture
def layout(tmp_path):
    layout = DataLayout(tmp_path / "data")
    for extract_date in DATES:
        for source in DELIVERING:
            write_delivery(layout.landing, source, extract_date, rows=4)
    return layout


def backfill(layout, first, last) -> int:
    return main(["backfill", "--from", first, "--to", last, "--data-dir", str(layout.root), "--no-link"])


def counts(layout) -> dict[str, dict[str, int]]:
    """Rows per extract date of every raw, staged and quarantine table of the delivering sources."""
    out = {}
    with warehouse_cursor(layout.warehouse) as conn:
        existing = set(conn.execute(
            "select schema_name || '.' || table_name from duckdb_tables()").fetchall())
        for source in DELIVERING:
            for table in SOURCES[source].tables:
                for stage in ("raw", "staged", "quarantine"):
                    name = f"{stage}_{source}.{table.name}"
                    if (name,) in existing:
                        out[name] = dict(conn.execute(
                            f"select extract_date, count(*) from {name} group by 1 order by 1").fetchall())
    return out


def without(counts: dict, part: str) -> dict:
    return {name: rows for name, rows in counts.items() if part not in name}


def ingest_runs(home):
    with DagsterInstance.from_config(str(home)) as instance:
        return [r.dagster_run for r in instance.get_run_records(RunsFilter(job_name=INGEST_JOB))]


def test_backfill_command_loads_a_range_in_one_run(home, layout):
    assert backfill(layout, "2024-02-01", "2024-12-31") == 0
    [run] = ingest_runs(home)
    assert run.tags[PARTITION_RANGE_START_TAG] == DATES[1]
    assert run.tags[PARTITION_RANGE_END_TAG] == DATES[2]
    loaded = counts(layout)
    assert len(loaded) == 3 * sum(len(SOURCES[s].tables) for s in DELIVERING)
    for name, per_date in loaded.items():
        assert set(per_date) <= set(DATES[1:]), name  # nothing outside the range
        if name.startswith("raw_"):
            assert per_date == {d: 4 for d in DATES[1:]}, name

    # the same partition twice more: identical rows, nothing doubled or lost
    for _ in range(2):
        run_pipeline(layout, DagsterInstance.ephemeral(), dates=[DATES[2]], link=False)
        assert counts(layout) == loaded


def test_backfill_with_nothing_delivered_in_range_fails_clearly(home, layout, capsys):
    assert backfill(layout, "2023-01-01", "2023-12-31") == 1
    assert "no deliveries dated 2023-01-01..2023-12-31" in capsys.readouterr().err


@pytest.fixture
def instance():
    yield DagsterInstance.ephemeral()
    close_warehouse()


def test_a_run_that_fails_half_way_reruns_cleanly(instance, layout):
    report = run_pipeline(layout, instance, dates=DATES[:2], link=False)
    assert len(report.run_ids) == 1
    before = counts(layout)

    # prison re-delivers its second extract: the first table grows to 7 rows, a later table arrives
    # corrupt, so the load step refuses the delivery before writing any of its tables
    source = SOURCES["prison"]
    first, second = source.tables[0], source.tables[1]
    grown = {first.name: to_csv(valid_rows(source, first, 7), first.column_names)}
    write_delivery(layout.landing, "prison", DATES[1], rows=4, files=grown)
    path = layout.landing / "prison" / DATES[1] / f"{second.name}.csv"
    path.write_bytes(path.read_bytes().replace(b"0000", b"9999", 1))
    with pytest.raises(PipelineFailed, match=f"{second.name}.csv: sha256"):
        run_pipeline(layout, instance, dates=DATES[:2], link=False)

    # all or nothing: no table of the refused delivery changed, nor anything else
    raw_first = f"raw_prison.{first.name}"
    assert counts(layout) == before

    # the delivery is fixed and the same range re-run: every table matches the deliveries exactly
    write_delivery(layout.landing, "prison", DATES[1], rows=4, files=grown)
    run_pipeline(layout, instance, dates=DATES[:2], link=False)
    after = counts(layout)
    for name, per_date in after.items():
        if name.startswith("raw_"):
            assert per_date == {DATES[0]: 4, DATES[1]: 7 if name == raw_first else 4}, name
    staged = after[f"staged_prison.{first.name}"]
    quarantined = after.get(f"quarantine_prison.{first.name}", {})
    assert staged.get(DATES[1], 0) + quarantined.get(DATES[1], 0) == 7
    assert without(after, "prison") == without(before, "prison")
