"""`datafirst run` after a new extract loads only that extract; a changed delivery loads again."""

from dagster import AssetRecordsFilter, DagsterInstance

from datafirst_assets.defs.ingest import raw_key
from datafirst_assets.defs.resources import DataLayout
from datafirst_assets.runner import format_summary, run_pipeline
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets_tests.deliveries import write_delivery

FIRST, NEW = "2024-01-31", "2024-03-01"
SOURCE = "prison"


def _loads(instance: DagsterInstance, extract_date: str) -> int:
    """How many times the source's first raw table was materialised for this date."""
    key = raw_key(SOURCE, SOURCES[SOURCE].tables[0].name)
    return len(instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[extract_date]), limit=100).records)


def test_a_new_extract_loads_only_itself_and_a_changed_one_loads_again(tmp_path):
    layout, instance = DataLayout(tmp_path / "data"), DagsterInstance.ephemeral()
    write_delivery(layout.landing, SOURCE, FIRST, rows=4)
    run_pipeline(layout, instance, link=False)
    assert _loads(instance, FIRST) == 1

    write_delivery(layout.landing, SOURCE, NEW, rows=3)
    report = run_pipeline(layout, instance, link=False)
    assert report.already_loaded == [(SOURCE, FIRST)]
    assert (_loads(instance, FIRST), _loads(instance, NEW)) == (1, 1)
    assert f"({NEW})" in format_summary(layout, report) and "Not loaded again" in format_summary(layout, report)

    # nothing new: nothing loaded
    assert len(run_pipeline(layout, instance, link=False).already_loaded) == 2
    assert (_loads(instance, FIRST), _loads(instance, NEW)) == (1, 1)

    # a re-delivered, changed extract is loaded again; asking for a date re-loads it as it is
    write_delivery(layout.landing, SOURCE, FIRST, rows=5)
    assert run_pipeline(layout, instance, link=False).already_loaded == [(SOURCE, NEW)]
    run_pipeline(layout, instance, dates=[NEW], link=False)
    assert (_loads(instance, FIRST), _loads(instance, NEW)) == (2, 2)
