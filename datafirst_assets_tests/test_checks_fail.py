"""Every kind of check, made to fail through a Dagster materialisation.

Each test gives the asset under test data that violates its check (a tiny delivery, a few rows typed
into the warehouse, or the asset's own computation handed a broken result), then asserts that the
check fails, that nothing is stored past a blocking check (or a gate that runs before storing), and
that the assets downstream of it do not run. Warning checks (accuracy evidence, chained clusters,
synthetic fidelity, evaluation against truth) never stop a run by design: their tests assert the
failing result, its severity and what it names. `test_gates.py` holds the contract, PII, schema,
disclosure, publish and key gates; `test_every_check_kind_has_a_failing_test` keeps the list whole.
"""

from __future__ import annotations

import polars as pl
import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    AssetSpec,
    DagsterInstance,
    asset,
    materialize,
)

from datafirst_assets.defs.partitions import extract_dates
from datafirst_assets.defs.resources import DataLayout, build_resources
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets_tests.deliveries import write_delivery

# check kind -> the test that makes it fail through Dagster (here or in test_gates / test_guard)
FAILING_TESTS = {
    "contract": "test_gates.py::test_a_contract_violation_stores_nothing_keeps_the_previous_table_and_stops_downstream "
                "(+ _changed_by_hand, _lazy_or_sql_output_)",
    "no_identifiers": "test_gates.py::test_the_pii_gate_fails_before_de_identified_tables_are_stored; "
                      "test_synthetic_gates_refuse_identifiers_and_a_broken_schema; test_derived_gates_refuse",
    "schema_valid": "test_gates.py::test_a_broken_foreign_key_fails_the_schema_gate_and_stores_nothing; "
                    "test_staged_rows_breaking_their_schema_are_not_stored; test_derived_gates_refuse",
    "disclosure_control": "test_gates.py::test_re_identification_risk_over_the_threshold_fails_the_disclosure_gate",
    "no_small_cells": "test_gates.py::test_a_small_cell_in_the_synthetic_summaries_stops_them_before_they_are_stored",
    "rows_conserved": "test_a_lost_row_fails_rows_conserved_and_stops_downstream",
    "every_record_clustered": "test_an_unclustered_record_fails_every_record_clustered_and_stops_linked",
    "no_chained_clusters": "test_an_unclustered_record_fails_every_record_clustered_and_stops_linked "
                           "(+ test_guard.py::test_the_clusters_check_fails_on_an_oversized_cluster_through_dagster)",
    "lookup_invariants": "test_a_broken_cross_justice_lookup_fails_lookup_invariants_and_stops_downstream",
    "one_to_one": "test_a_case_linked_twice_fails_one_to_one_and_stops_downstream",
    "accuracy_evidence": "test_no_clerical_labels_warns_accuracy_evidence",
    "matches_release_schema": "test_synthetic_gates_refuse_identifiers_and_a_broken_schema",
    "referential_integrity": "test_a_broken_synthetic_release_fails_its_report_checks",
    "key_uniqueness": "test_a_broken_synthetic_release_fails_its_report_checks",
    "shape_similarity": "test_a_broken_synthetic_release_fails_its_report_checks",
    "dcr_vs_random": "test_a_broken_synthetic_release_fails_its_report_checks",
    "accuracy_floors": "test_wrong_clusters_fail_the_evaluation_checks",
    "estimates_match_measured": "test_wrong_clusters_fail_the_evaluation_checks",
}
PUBLISH_GATES = ("test_gates.py::test_identifiers_planted_into_stored_tables_are_refused_at_publishing",
                 "test_gates.py::test_publishing_with_the_development_or_a_short_key_is_refused")


def test_every_check_kind_has_a_failing_test():
    from datafirst_assets.definitions import defs

    kinds = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert kinds == set(FAILING_TESTS), "a new kind of check needs a test that makes it fail through Dagster"
    here = open(__file__, encoding="utf-8").read()
    for name in FAILING_TESTS.values():
        for test in (t.strip().split(" ")[0] for t in name.split(";")):
            if "::" not in test:
                assert f"def {test}(" in here, test


def _failed(result) -> dict[tuple[str, str], object]:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()
            if not e.passed}


def _tables(database) -> set[str]:
    with warehouse_cursor(database) as conn:
        return {f"{s}.{t}" for s, t in conn.execute("select schema_name, table_name from duckdb_tables()").fetchall()}


# --- staged: rows_conserved, schema_valid ---------------------------------------------------------------

FAMILY = SOURCES["family"]
DATE = "2024-01-31"


def _ingest(tmp_path, monkeypatch, break_result):
    """Raw and staged assets of one tiny family delivery, `break_result` applied to what staging
    computed, and a probe downstream of the staged tables."""
    from datafirst_assets.defs import ingest
    from datafirst_assets.defs.ingest import build_raw_assets, build_staging_assets, staged_key

    layout = DataLayout(tmp_path / "data")
    write_delivery(layout.landing, FAMILY.key, DATE, rows=4)
    real = ingest.stage_partitions
    monkeypatch.setattr(ingest, "stage_partitions", lambda raw, source, table: break_result(real(raw, source, table)))
    ran = []

    @asset(partitions_def=extract_dates, deps=[staged_key(FAMILY.key, t.name) for t in FAMILY.tables])
    def downstream() -> None:
        ran.append(True)

    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(extract_dates.name, [DATE])
    result = materialize([build_raw_assets(FAMILY), build_staging_assets(FAMILY), downstream], partition_key=DATE,
                         instance=instance, resources=build_resources(layout), raise_on_error=False)
    return result, ran, layout


def test_a_lost_row_fails_rows_conserved_and_stops_downstream(tmp_path, monkeypatch):
    from datafirst_assets.staging.standardise import StagedResult

    def lose_a_row(result: StagedResult) -> StagedResult:  # a staged row dropped without being quarantined
        return StagedResult(result.staged.slice(1), result.quarantine, result.alterations)

    result, ran, _ = _ingest(tmp_path, monkeypatch, lose_a_row)
    failed = _failed(result)
    assert {check for _, check in failed} == {"rows_conserved"} and not result.success and ran == []
    evaluation = failed[(f"staged/{FAMILY.key}/{FAMILY.tables[0].name}", "rows_conserved")]
    assert evaluation.metadata["raw"].value == 4 and evaluation.metadata["staged"].value == 3


def test_staged_rows_breaking_their_schema_are_not_stored(tmp_path, monkeypatch):
    from datafirst_assets.staging.standardise import StagedResult

    id_column = FAMILY.tables[0].id_column

    def duplicate_ids(result: StagedResult) -> StagedResult:  # every row given the same id
        if id_column not in result.staged.columns:
            return result
        return StagedResult(result.staged.with_columns(pl.lit("SAME").alias(id_column)), result.quarantine,
                            result.alterations)

    result, ran, layout = _ingest(tmp_path, monkeypatch, duplicate_ids)
    assert not result.success and ran == []
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message
    assert "was NOT stored" in message and "multiple_fields_uniqueness failed for 4 row(s)" in message
    assert not any(t.startswith("staged_") for t in _tables(layout.warehouse))  # nothing of the source staged


# --- cross-justice lookup and case link ------------------------------------------------------------------

def _write(database, schema: str, table: str, frame: pl.DataFrame) -> None:
    with warehouse_cursor(database) as conn:
        conn.execute(f"create schema if not exists {schema}")
        arrow = frame.to_arrow()  # noqa: F841  (read by name in the SQL)
        conn.execute(f"create or replace table {schema}.{table} as select * from arrow")


def _placeholders(keys) -> list[AssetSpec]:
    return [AssetSpec(key=key, metadata={"schema": "_".join(key.path[:-1])}).with_io_manager_key("io_manager")
            for key in keys]


def _probe(*keys: AssetKey):
    ran = []

    @asset(deps=list(keys))
    def downstream() -> None:
        ran.append(True)

    return downstream, ran


def test_a_broken_cross_justice_lookup_fails_lookup_invariants_and_stops_downstream(tmp_path, monkeypatch):
    from datafirst_assets.defs import xjs as xjs_defs
    from datafirst_assets.defs.linkage import LinkageSettings, linkage_key
    from datafirst_assets.linkage.xjs import XjsResult
    from datafirst_assets.warehouse.io_manager import WarehouseIOManager

    database = tmp_path / "wh.duckdb"
    records = {"magistrates": ["1", "2", "3"], "prison": ["9"]}
    for source in SOURCES:
        ids = records.get(source, [])
        _write(database, f"linkage_{source}", "person_records", pl.DataFrame({"record_id": ids}, schema={"record_id": pl.String}))
        _write(database, f"linkage_{source}", "clusters", pl.DataFrame({"record_id": ids}, schema={"record_id": pl.String}))
    lookup = pl.DataFrame({  # record 99 is in no person_records table
        "source_dataset": ["magistrates", "magistrates", "magistrates", "prison"],
        "record_id": ["1", "2", "3", "99"],
        "person_id_dataset": ["magistrates:1", "magistrates:1", "magistrates:2", "prison:1"],
        "person_id_high": [1, 1, 2, 3], "person_id_medium": [1, 1, 2, 1], "person_id_low": [1, 1, 2, 1],
    })
    edges = pl.DataFrame(schema={"source_dataset_l": pl.String, "person_id_dataset_l": pl.String,
                                 "source_dataset_r": pl.String, "person_id_dataset_r": pl.String,
                                 "match_probability": pl.Float64})
    monkeypatch.setattr(xjs_defs, "build_xjs_lookup", lambda *a, **k: XjsResult(
        lookup=lookup, persons=pl.DataFrame(), edges=edges, thresholds=(0.99, 0.9, 0.5), model=None))
    downstream, ran = _probe(xjs_defs.LOOKUP)
    upstream = [linkage_key(s, t) for s in SOURCES for t in ("person_records", "clusters")]
    result = materialize([*_placeholders(upstream), xjs_defs.xjs_lookup, downstream],
                         selection=[*xjs_defs.xjs_lookup.keys, downstream.key], raise_on_error=False,
                         resources={"io_manager": WarehouseIOManager(database=str(database)),
                                    "warehouse": xjs_defs.Warehouse(database=str(database)),
                             "linkage": LinkageSettings(data_dir=str(tmp_path))})
    failed = _failed(result)
    assert set(failed) == {("linkage/xjs/lookup", "lookup_invariants")} and not result.success and ran == []
    assert "reference no existing person record" in failed[("linkage/xjs/lookup", "lookup_invariants")].metadata[
        "problems"].value


def test_a_case_linked_twice_fails_one_to_one_and_stops_downstream(tmp_path, monkeypatch):
    from datafirst_assets.defs import xjs as xjs_defs
    from datafirst_assets.warehouse.io_manager import WarehouseIOManager

    database = tmp_path / "wh.duckdb"
    for schema, table in (("linked_magistrates", "hocas_flatfile"), ("linked_crown_court", "xhibit_flatfile"),
                          ("linkage_xjs", "lookup")):
        _write(database, schema, table, pl.DataFrame({"x": [1]}))
    links = pl.DataFrame({"defendant_case_id": ["DC1", "DC1"], "defendant_on_case_id": ["DOC1", "DOC2"],
                          "match_score": [0.99, 0.98]})  # one magistrates' case linked to two Crown Court cases
    monkeypatch.setattr(xjs_defs, "build_case_link", lambda *a, **k: links)
    downstream, ran = _probe(xjs_defs.CASE_LOOKUP)
    upstream = [AssetKey(["linked", "magistrates", "hocas_flatfile"]), AssetKey(["linked", "crown_court", "xhibit_flatfile"]),
                xjs_defs.LOOKUP]
    result = materialize([*_placeholders(upstream), xjs_defs.case_lookup, downstream],
                         selection=[xjs_defs.CASE_LOOKUP, downstream.key], raise_on_error=False,
                         resources={"io_manager": WarehouseIOManager(database=str(database))})
    assert not result.success and ran == []
    assert not any(e.passed for e in result.get_asset_check_evaluations())
    # the contract holds the same rule and refuses the table before it is stored
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "NOT stored" in failure.step_failure_data.error.message
    assert "defendant_case_id: " in failure.step_failure_data.error.message
    assert "linkage_criminal_courts.case_lookup" not in _tables(database)


# --- clusters: every_record_clustered (blocking), no_chained_clusters (warning) -----------------------------

def test_an_unclustered_record_fails_every_record_clustered_and_stops_linked(tmp_path, monkeypatch):
    from dagster import SourceAsset

    from datafirst_assets.defs import linkage as linkage_defs
    from datafirst_assets.defs.linkage import LinkageSettings, build_dedupe_assets
    from datafirst_assets.linkage import guard
    from datafirst_assets_tests.linkage_fixtures import make_dataset

    source = "prison"
    records, _ = make_dataset(120, seed=5, source_dataset=source)
    layout = DataLayout(tmp_path / "data")
    _write(layout.warehouse, f"linkage_{source}", "person_records",
           records.with_columns(pl.lit("2024-01-31").alias("extract_date")))
    real = linkage_defs.link_dataset

    def one_record_left_out(*args, **kwargs):  # the clustering "forgets" the first record
        result, previous = real(*args, **kwargs)
        result.ids = result.ids.slice(1)
        return result, previous

    monkeypatch.setattr(linkage_defs, "link_dataset", one_record_left_out)
    monkeypatch.setattr(guard, "MAX_CLUSTER_RECORDS", 1)  # every person of two or more records is "too big"
    person_records, model, cluster, _ = build_dedupe_assets(SOURCES[source])
    downstream, ran = _probe(linkage_defs.linkage_key(source, "clusters"))
    linkage = LinkageSettings(data_dir=str(layout.root), thresholds={source: 0.9}, u_max_pairs=2e5, mode="full")
    result = materialize([SourceAsset(key=person_records.key, metadata={"schema": f"linkage_{source}"}), model,
                          cluster, downstream], selection=[*model.keys, *cluster.keys, downstream.key],
                         instance=DagsterInstance.ephemeral(), raise_on_error=False,
                         resources={**build_resources(layout), "linkage": linkage})
    failed = _failed(result)
    key = f"linkage/{source}/clusters"
    assert set(failed) == {(key, "every_record_clustered"), (key, "no_chained_clusters")}
    assert failed[(key, "every_record_clustered")].metadata["records_without_id"].value == 1
    assert failed[(key, "no_chained_clusters")].severity == AssetCheckSeverity.WARN  # a warning, never blocks
    assert failed[(key, "no_chained_clusters")].metadata["chained_clusters"].value >= 1
    assert not result.success and ran == []  # the blocking check stopped what reads the clusters
