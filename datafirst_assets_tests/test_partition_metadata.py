"""Each extract date's materialisation carries its own figures, even when a range loads as one run."""

import polars as pl
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from datafirst_assets.defs.ingest import rows_per_partition
from datafirst_assets.defs.resources import DataLayout
from datafirst_assets.runner import run_pipeline
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.warehouse.connection import close_warehouse
from datafirst_assets_tests.deliveries import write_delivery

ROWS = {"2024-01-31": 3, "2024-02-29": 5}


def test_rows_per_partition_counts_each_date_and_zero_for_a_missing_one():
    frame = pl.DataFrame({"extract_date": ["a", "a", "b"]})
    assert rows_per_partition(frame, ["a", "b", "c"]) == {"a": 2, "b": 1, "c": 0}
    assert rows_per_partition(frame.clear(), ["a"]) == {"a": 0}


def latest_metadata(instance, key: AssetKey, partition: str) -> dict:
    [record] = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1).records
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


@pytest.fixture
def instance():
    yield DagsterInstance.ephemeral()
    close_warehouse()


def test_each_partition_shows_its_own_row_counts(tmp_path, instance):
    layout = DataLayout(tmp_path / "data")
    for extract_date, rows in ROWS.items():
        write_delivery(layout.landing, "prison", extract_date, rows=rows)
    report = run_pipeline(layout, instance, link=False)
    assert len(report.run_ids) == 1  # both dates in one run: the case that used to show the run's total
    table = SOURCES["prison"].tables[0].name
    for extract_date, rows in ROWS.items():
        raw = latest_metadata(instance, AssetKey(["raw", "prison", table]), extract_date)
        staged = latest_metadata(instance, AssetKey(["staged", "prison", table]), extract_date)
        quarantine = latest_metadata(instance, AssetKey(["quarantine", "prison", table]), extract_date)
        assert raw["dagster/row_count"] == rows
        assert staged["dagster/row_count"] + staged["quarantined"] == rows == staged["raw_rows"]
        assert staged["rows_conserved"] == "passed"
        assert quarantine["dagster/row_count"] == staged["quarantined"]
