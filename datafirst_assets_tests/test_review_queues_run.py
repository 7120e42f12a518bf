"""`datafirst run --review-queues-only` (the demo's first run): the last range of extract dates is
loaded and each dataset linked as far as its review queue in ONE run of `ingest_to_review_queues`
(a launch and a run process fewer than an ingest run and a queue run), with the ingest's failures
still stopping the command before any linking, in the same words as an ingest run of its own."""

from __future__ import annotations

import pytest
from dagster import AssetKey, DagsterInstance

from datafirst_assets import runner
from datafirst_assets.definitions import INGEST_JOB, REVIEW_QUEUES_JOB, build_definitions
from datafirst_assets.defs.resources import DataLayout
from datafirst_assets.runner import PipelineFailed, review_queue_selection, run_pipeline
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.warehouse.connection import close_warehouse
from datafirst_assets_tests.deliveries import write_delivery


def test_the_review_queues_job_holds_the_ingest_and_every_queue_and_runs_any_sources_subset(tmp_path):
    defs = build_definitions(tmp_path / "data")
    job = defs.resolve_job_def(REVIEW_QUEUES_JOB)
    ingest = defs.resolve_job_def(INGEST_JOB)
    queues = review_queue_selection(defs)
    assert job.partitions_def == ingest.partitions_def  # run over a range of extract dates, as the ingest
    assert job.asset_layer.selected_asset_keys == ingest.asset_layer.selected_asset_keys | queues
    # one source's deliveries and every queue: a subset the job can run (raises if not)
    selection = runner._queues_with_ingest(defs, ["prison"])
    assert AssetKey(["staged", "prison", "nomis_flatfile"]) in selection and set(queues) <= set(selection)
    job.get_subset(asset_selection=set(selection))
    assert runner._queues_with_ingest(defs, sorted(SOURCES)) is None  # every source: the whole job


def _deliveries(layout: DataLayout, dates: list[str]) -> None:
    for extract_date in dates:
        for source in SOURCES:
            write_delivery(layout.landing, source, extract_date, rows=4)


def test_the_last_range_is_ingested_in_the_review_queue_run_and_earlier_ranges_on_their_own(tmp_path, monkeypatch):
    """Two ranges (prison delivered a date the others did not, so its range is two dates): the six
    sources' an ingest run, prison's the ingest and the queues together; no other run. Linking
    itself is not what is tested here."""
    layout = DataLayout(tmp_path / "data")
    _deliveries(layout, ["2024-01-31"])
    write_delivery(layout.landing, "prison", "2024-02-29", rows=4)
    launched = []

    def record(instance, defs, layout, job_name, *, sources=None, tags=None, asset_selection=None):
        launched.append((job_name, sorted(sources or []), asset_selection,
                         (tags[runner.PARTITION_RANGE_START_TAG], tags[runner.PARTITION_RANGE_END_TAG])))
        return runner.RunOutcome(f"run-{len(launched)}", True)

    monkeypatch.setattr(runner, "_run_job", record)
    report = run_pipeline(layout, DagsterInstance.ephemeral(), review_queues_only=True)
    assert [(job, sources, dates) for job, sources, _, dates in launched] == [
        (INGEST_JOB, sorted(set(SOURCES) - {"prison"}), ("2024-01-31", "2024-01-31")),
        (REVIEW_QUEUES_JOB, [], ("2024-01-31", "2024-02-29"))]
    selection = launched[1][2]
    assert AssetKey(["staged", "prison", "nomis_flatfile"]) in selection
    assert not any(key.path[1] == "family" and key.path[0] == "staged" for key in selection)
    assert report.run_ids == ["run-1", "run-2"]


def test_a_failed_ingest_check_in_the_review_queue_run_stops_it_before_any_linking(tmp_path, monkeypatch):
    from datafirst_assets.defs import ingest
    from datafirst_assets.staging.standardise import StagedResult

    layout = DataLayout(tmp_path / "data")
    _deliveries(layout, ["2024-01-31"])
    real = ingest.stage_partitions

    def lose_a_row(raw, source, table):  # a staged row dropped without being quarantined: rows_conserved fails
        result = real(raw, source, table)
        return StagedResult(result.staged.slice(1), result.quarantine, result.alterations)

    monkeypatch.setattr(ingest, "stage_partitions", lose_a_row)
    instance = DagsterInstance.ephemeral()
    try:
        with pytest.raises(PipelineFailed, match=r"checks failed for 2024-01-31 \(run .*rows_conserved"):
            run_pipeline(layout, instance, review_queues_only=True)
    finally:
        close_warehouse()
    (run,) = instance.get_runs()
    assert run.job_name == REVIEW_QUEUES_JOB
    materialized = {record.asset_entry.asset_key.path[0] for record in instance.get_asset_records()
                    if record.asset_entry.last_materialization is not None}
    assert "linkage" not in materialized and "raw" in materialized


@pytest.mark.parametrize("failed_step, said", [("load_prison", "ingest of 2024-01-31 failed"),
                                               ("cluster_prison", "linkage failed")])
def test_a_failed_step_of_the_review_queue_run_is_named_as_the_ingest_or_the_linkage(
        tmp_path, monkeypatch, failed_step, said):
    layout = DataLayout(tmp_path / "data")
    _deliveries(layout, ["2024-01-31"])
    monkeypatch.setattr(runner, "_run_job", lambda *_args, **_kwargs: runner.RunOutcome(
        "run-1", False, errors=[f"{failed_step}: it broke"]))
    with pytest.raises(PipelineFailed, match=rf"^{said} \(run run-1\): {failed_step}: it broke"):
        run_pipeline(layout, DagsterInstance.ephemeral(), review_queues_only=True)


def test_whole_job_runs_from_the_code_location_never_build_the_code_location_in_the_commands_process(
        tmp_path, monkeypatch):
    """The demo's two runs launch whole jobs: the command line builds no definitions for them
    (the code server does), unless it must place a failure or select part of a job."""
    layout = DataLayout(tmp_path / "data")
    _deliveries(layout, ["2024-01-31"])
    launched = []
    monkeypatch.setattr(runner, "_run_job", lambda instance, defs, layout, job_name, **kwargs: (
        launched.append((job_name, kwargs.get("asset_selection"))) or runner.RunOutcome("run-1", True)))

    def built(*_args):
        raise AssertionError("the command built the code location's definitions")

    monkeypatch.setattr(runner, "_definitions_for", built)
    run_pipeline(layout, DagsterInstance.ephemeral(), review_queues_only=True)
    run_pipeline(layout, DagsterInstance.ephemeral(), ingest=False)
    assert launched == [(REVIEW_QUEUES_JOB, None), ("link_datasets", None)]


def test_importing_the_runner_does_not_import_the_code_location():
    import subprocess
    import sys

    code = ("import sys, datafirst_assets.runner; "
            "print(sorted(m for m in ('datafirst_assets.definitions', 'datafirst_assets.defs.sensors', "
            "'datafirst_assets.warehouse.io_manager', 'pandera') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"
