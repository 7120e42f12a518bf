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
from datafirst_assets_tests.deliveries import write_delivery
from datafirst_assets_tests.warehouse_tables import table_names as _tables
from datafirst_assets_tests.warehouse_tables import write_table as _write

# check kind -> the test that makes it fail through Dagster (here or in test_gates / test_guard)
FAILING_TESTS = {
    "contract": "test_gates.py::test_a_contract_violation_stores_nothing_keeps_the_previous_table_and_stops_downstream "
                "(+ _changed_by_hand, _lazy_or_sql_output_)",
    "no_identifiers": "test_gates.py::test_the_pii_gate_fails_before_de_identified_tables_are_stored; "
                      "test_synthetic_gates_refuse_identifiers_and_a_broken_schema; test_derived_gates_refuse_identifiers_and_broken_rows",
    "schema_valid": "test_gates.py::test_a_broken_foreign_key_fails_the_schema_gate_and_stores_nothing; "
                    "test_staged_rows_breaking_their_schema_are_not_stored; test_derived_gates_refuse_identifiers_and_broken_rows",
    "disclosure_control": "test_gates.py::test_re_identification_risk_over_the_threshold_fails_the_disclosure_gate",
    "no_small_cells": "test_gates.py::test_a_small_cell_in_the_synthetic_summaries_stops_them_before_they_are_stored",
    "rows_conserved": "test_a_lost_row_fails_rows_conserved_and_stops_downstream",
    "every_record_clustered": "test_an_unclustered_record_fails_every_record_clustered_and_stops_linked",
    "no_chained_clusters": "test_an_unclustered_record_fails_every_record_clustered_and_stops_linked "
                           "(+ test_guard.py::test_the_clusters_check_fails_on_an_oversized_cluster_through_dagster)",
    "lookup_invariants": "test_a_broken_cross_justice_lookup_fails_lookup_invariants_and_stops_downstream",
    "one_to_one": "test_a_case_linked_twice_fails_one_to_one_and_stops_downstream",
    "accuracy_evidence": "test_wrong_clusters_fail_the_evaluation_checks_and_no_labels_warns_accuracy_evidence",
    "matches_release_schema": "test_synthetic_gates_refuse_identifiers_and_a_broken_schema",
    "referential_integrity": "test_a_broken_synthetic_release_fails_its_report_checks",
    "key_uniqueness": "test_a_broken_synthetic_release_fails_its_report_checks",
    "shape_similarity": "test_a_broken_synthetic_release_fails_its_report_checks",
    "dcr_vs_random": "test_a_broken_synthetic_release_fails_its_report_checks",
    "accuracy_floors": "test_wrong_clusters_fail_the_evaluation_checks_and_no_labels_warns_accuracy_evidence",
    "estimates_match_measured": "test_wrong_clusters_fail_the_evaluation_checks_and_no_labels_warns_accuracy_evidence",
}
PUBLISH_GATES = ("test_gates.py::test_identifiers_planted_into_stored_tables_are_refused_at_publishing",
                 "test_gates.py::test_publishing_with_the_development_or_a_short_key_is_refused")


def test_every_check_kind_has_a_failing_test():
    from datafirst_assets.definitions import defs

    kinds = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert kinds == set(FAILING_TESTS), "a new kind of check needs a test that makes it fail through Dagster"
    from pathlib import Path

    folder = Path(__file__).parent
    for name in [*FAILING_TESTS.values(), *PUBLISH_GATES]:
        for test in (t.strip().split(" ")[0] for t in name.split(";")):
            file, _, function = test.rpartition("::")
            assert f"def {function}(" in (folder / (file or Path(__file__).name)).read_text(encoding="utf-8"), test


def _failed(result) -> dict[tuple[str, str], object]:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()
            if not e.passed}


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


def test_staged_frames_are_validated_once_the_io_manager_vouching_for_schema_valid(tmp_path, monkeypatch):
    """The staged table's contract is its `schema_valid` schema and the IO manager validates every row
    before storing: the step's check passes that very frame without validating it a second time."""
    import pandera.polars as pa

    from datafirst_assets.contracts import core

    # every validation asks the one-query fast path first (contracts.fast_path), pandera only when in doubt
    validated, by_pandera = [], []
    real, real_fast = pa.DataFrameSchema.validate, core.holds_for_certain
    monkeypatch.setattr(pa.DataFrameSchema, "validate",
                        lambda self, frame, *a, **k: by_pandera.append(self.name) or real(self, frame, *a, **k))
    monkeypatch.setattr(core, "holds_for_certain",
                        lambda frame, schema: validated.append(schema.name) or real_fast(frame, schema))
    result, ran, _ = _ingest(tmp_path, monkeypatch, lambda result: result)
    assert result.success and ran == [True] and not _failed(result)
    staged = [n for n in validated if n.startswith(f"staged_{FAMILY.key}_")]
    assert sorted(staged) == sorted(f"staged_{FAMILY.key}_{t.name}" for t in FAMILY.tables)  # once each
    assert not [n for n in by_pandera if n.startswith(f"staged_{FAMILY.key}_")]  # held: no pandera pass
    passed = {e.asset_key.to_user_string() for e in result.get_asset_check_evaluations()
              if e.check_name == "schema_valid" and e.passed}
    assert passed == {f"staged/{FAMILY.key}/{t.name}" for t in FAMILY.tables}


def test_only_the_very_frame_that_held_its_contract_before_storing_is_vouched_for(tmp_path):
    from datafirst_assets.contracts.core import ContractViolation
    from datafirst_assets.contracts.registry import contract_for
    from datafirst_assets.contracts.wiring import check_before_store, passed_before_store
    from datafirst_assets.defs.ingest import load_deliveries, staged_key
    from datafirst_assets.staging.schemas import staged_schema
    from datafirst_assets.staging.standardise import stage_partitions

    table = FAMILY.tables[0]
    layout = DataLayout(tmp_path / "data")
    write_delivery(layout.landing, FAMILY.key, DATE, rows=3)
    raw, _ = load_deliveries(FAMILY, [table], layout.landing, [DATE])[table.name]
    key, schema = staged_key(FAMILY.key, table.name), staged_schema(FAMILY.key, table.name)
    frame = stage_partitions(raw, FAMILY, table).staged
    assert contract_for(key) is schema and not passed_before_store(key, frame, schema)
    check_before_store(key, frame)
    assert passed_before_store(key, frame, schema)
    assert not passed_before_store(key, frame.clone(), schema)  # an equal frame is not the one validated
    assert not passed_before_store(key, frame, staged_schema(FAMILY.key, FAMILY.tables[1].name))
    broken = frame.with_columns(pl.lit("SAME").alias(table.id_column))
    try:
        check_before_store(key, broken)
    except ContractViolation:
        pass
    assert not passed_before_store(key, broken, schema) and passed_before_store(key, frame, schema)


# --- cross-justice lookup and case link ------------------------------------------------------------------

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
    monkeypatch.setattr(xjs_defs, "run_lookup", lambda *a, **k: XjsResult(
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
    from datafirst_assets.defs.linkage import LinkageSettings
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
                         resources={"io_manager": WarehouseIOManager(database=str(database)),
                                    "linkage": LinkageSettings(data_dir=str(tmp_path))})
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


# --- synthetic: matches_release_schema, no_identifiers (gates before storing); the report's checks --------

HOCAS, OFFENCES = ("magistrates", "hocas_flatfile"), ("magistrates", "hocas_all_offence")


def _release_in_warehouse(database, people: int = 200) -> dict:
    from datafirst_assets.synthetic.fabricate import fabricate_release

    real = fabricate_release(people, seed=3)
    for (dataset, name), frame in real.items():
        _write(database, f"deidentified_{dataset}", name, frame)
    return real


def _synthetic_resources(tmp_path) -> dict:
    from datafirst_assets.defs.linkage import LinkageSettings
    from datafirst_assets.defs.resources import Warehouse
    from datafirst_assets.defs.synthetic import SyntheticSettings
    from datafirst_assets.warehouse.io_manager import WarehouseIOManager

    return {"io_manager": WarehouseIOManager(database=str(tmp_path / "wh.duckdb")),
            "warehouse": Warehouse(database=str(tmp_path / "wh.duckdb")),
            "synthetic": SyntheticSettings(data_dir=str(tmp_path)),
            "linkage": LinkageSettings(data_dir=str(tmp_path))}


def test_synthetic_gates_refuse_identifiers_and_a_broken_schema(tmp_path, monkeypatch):
    from datafirst_assets.defs import synthetic as synthetic_defs
    from datafirst_assets.defs.deidentify import deidentified_key
    from datafirst_assets.deidentify.release_spec import release_tables

    _release_in_warehouse(tmp_path / "wh.duckdb")
    real = synthetic_defs.synthesise_source

    def broken(doc, source, **kwargs):
        tables = real(doc, source, **kwargs)
        if source == "magistrates":  # a PNC in one table, a column of the wrong type in the other
            tables[HOCAS] = tables[HOCAS].with_columns(pl.lit("1990/0012345Z").alias("offence_code"))
            tables[OFFENCES] = tables[OFFENCES].with_columns(pl.col("offence_date").cast(pl.String))
        return tables

    monkeypatch.setattr(synthetic_defs, "synthesise_source", broken)
    generate = next(a for a in synthetic_defs.synthetic_assets() if getattr(a, "node_def", None) is not None
                    and a.node_def.name == "synthetic_magistrates")
    downstream, ran = _probe(*generate.keys)
    result = materialize(
        [*_placeholders([deidentified_key(*k) for k in release_tables()]), synthetic_defs.synthetic_summaries,
         generate, downstream], resources=_synthetic_resources(tmp_path), raise_on_error=False)
    failed = _failed(result)
    assert set(failed) == {("synthetic/magistrates/hocas_flatfile", "no_identifiers"),
                           ("synthetic/magistrates/hocas_all_offence", "matches_release_schema")}
    assert "offence_code: pnc in" in failed[("synthetic/magistrates/hocas_flatfile", "no_identifiers")].metadata[
        "findings"].value
    assert not result.success and ran == []
    assert not any(t.startswith("synthetic_magistrates") for t in _tables(tmp_path / "wh.duckdb"))


def test_a_broken_synthetic_release_fails_its_report_checks(tmp_path):
    from datafirst_assets.defs import synthetic as synthetic_defs
    from datafirst_assets.defs.deidentify import deidentified_key
    from datafirst_assets.deidentify.release_spec import release_tables
    from datafirst_assets.defs.synthetic import synthetic_key

    real = _release_in_warehouse(tmp_path / "wh.duckdb")
    synthetic = {}
    for tid, frame in real.items():
        if tid in (HOCAS, ("prison", "nomis_flatfile")):
            synthetic[tid] = frame  # the real records themselves: closer than random records
        else:  # every other value one constant: nothing like the real columns' shapes
            synthetic[tid] = frame.with_columns(
                *[pl.lit("Z").alias(c) for c, t in frame.schema.items() if t == pl.String and not c.endswith("_hash")],
                *[pl.lit(0, t).alias(c) for c, t in frame.schema.items() if t.is_numeric() and not c.startswith("estimated_")])
    synthetic[HOCAS] = synthetic[HOCAS].slice(1)  # a parent row gone: its offences dangle
    synthetic[OFFENCES] = pl.concat([synthetic[OFFENCES], synthetic[OFFENCES].head(1)])  # a duplicated key
    for (dataset, name), frame in synthetic.items():
        _write(tmp_path / "wh.duckdb", f"synthetic_{dataset}", name, frame)
    upstream = [deidentified_key(*k) for k in release_tables()] + [synthetic_key(*k) for k in release_tables()]
    result = materialize([*_placeholders(upstream), synthetic_defs.synthetic_summaries, synthetic_defs.synthetic_report],
                         resources=_synthetic_resources(tmp_path), raise_on_error=False)
    failed = {check for _, check in _failed(result)}
    assert failed == {"referential_integrity", "key_uniqueness", "shape_similarity", "dcr_vs_random"}


# --- derived tables: schema_valid, no_identifiers (gates before storing) ----------------------------------

def test_derived_gates_refuse_identifiers_and_broken_rows(tmp_path, monkeypatch):
    from dagster import AssetOut, Output, multi_asset

    from datafirst_assets.defs import derived as derived_defs
    from datafirst_assets.defs.linkage import LinkageSettings
    from datafirst_assets.warehouse.io_manager import WarehouseIOManager
    from datafirst_assets_tests.derived_fixtures import hand_built_release

    tables = hand_built_release()

    @multi_asset(outs={f"{s}__{t}": AssetOut(key=AssetKey(["deidentified", s, t]),
                                             metadata={"schema": f"deidentified_{s}"}) for s, t in tables})
    def release():
        for (s, t), frame in tables.items():
            yield Output(frame, output_name=f"{s}__{t}")

    real = derived_defs.journeys_from

    def broken(*args, **kwargs):  # a PNC where the ethnicity goes, an age of 500
        frame, state, computed = real(*args, **kwargs)
        return frame.with_columns(pl.lit("1990/0012345Z").alias("ethnicity"), pl.lit(500, pl.Int32).alias(
            "age_at_first_contact")), state, computed

    monkeypatch.setattr(derived_defs, "journeys_from", broken)
    result = materialize([release, *derived_defs.derived_assets(("deidentified",))], raise_on_error=False,
                         resources={"io_manager": WarehouseIOManager(database=str(tmp_path / "wh.duckdb")),
                                    "warehouse": derived_defs.Warehouse(database=str(tmp_path / "wh.duckdb")),
                                    "linkage": LinkageSettings(data_dir=str(tmp_path))})
    key = "derived/deidentified/person_journeys"
    failed = _failed(result)
    assert set(failed) == {(key, "schema_valid"), (key, "no_identifiers")}
    assert "age_at_first_contact" in failed[(key, "schema_valid")].metadata["problems"].value
    assert "ethnicity: pnc in" in failed[(key, "no_identifiers")].metadata["findings"].value
    assert not result.success
    assert not any(t.startswith("derived_") or t.startswith("catalogue_") for t in _tables(tmp_path / "wh.duckdb"))
    ran = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events() if m.asset_key}
    assert not any(k.startswith("derived/") or k.startswith("catalogue/") for k in ran)  # the profile never ran
    state = derived_defs.journeys_state_folder(tmp_path)  # nor was the refused journeys' per-person state kept
    assert not state.exists() or not any(state.iterdir())


# --- accuracy: accuracy_evidence (no truth read), accuracy_floors and estimates_match_measured (truth) -----

def test_wrong_clusters_fail_the_evaluation_checks_and_no_labels_warns_accuracy_evidence(tmp_path):
    """Every dataset: two people of two records each, clustered as four people, no clerical labels.
    All three are warnings by design (a run is never stopped by a measurement); each fails, naming why."""
    import datetime as dt

    from datafirst_assets.defs.evaluation import LINKAGE_EVALUATION, TruthFolder, linkage_evaluation
    from datafirst_assets.defs.linkage import QUALITY, LinkageSettings, linkage_key, linkage_quality
    from datafirst_assets.defs.resources import Warehouse
    from datafirst_assets.warehouse.io_manager import WarehouseIOManager

    database, truth = tmp_path / "wh.duckdb", tmp_path / "truth"
    truth.mkdir()
    records, people = [], []
    for source in SOURCES:
        ids = [f"{source}-{i}" for i in range(4)]
        records += [{"source": source, "record_id": r, "person_id": f"{source}-P{i // 2}"} for i, r in enumerate(ids)]
        people += [{"person_id": f"{source}-P{i}", "sex": "M", "ethnic_group": "White", "dob": dt.date(1980, 1, 1)}
                   for i in range(2)]
        _write(database, f"linkage_{source}", "clusters", pl.DataFrame({
            "record_id": ids, "model_version": ["v1"] * 4, "match_threshold": [0.9] * 4,
            SOURCES[source].person_id_name: [1, 2, 3, 4]}))
        _write(database, f"linkage_{source}", "scored_pairs", pl.DataFrame({
            "record_id_l": [ids[0], ids[2]], "record_id_r": [ids[1], ids[3]], "match_weight": [-3.0, -3.0],
            "match_probability": [0.11, 0.11]}))
    pl.DataFrame(records).write_parquet(truth / "person_records.parquet")
    pl.DataFrame(people).write_parquet(truth / "people.parquet")
    pl.DataFrame({"defendant_case_id": ["x"], "defendant_on_case_id": ["y"]}).write_parquet(truth / "case_links.parquet")
    upstream = [linkage_key(s, t) for s in SOURCES for t in ("clusters", "scored_pairs", "person_records")]
    result = materialize([*_placeholders(upstream), linkage_quality, linkage_evaluation],
                         selection=[QUALITY, LINKAGE_EVALUATION], raise_on_error=False,
                         resources={"io_manager": WarehouseIOManager(database=str(database)),
                                    "warehouse": Warehouse(database=str(database)),
                                    "linkage": LinkageSettings(data_dir=str(tmp_path)),
                                    "truth": TruthFolder(path=str(truth))})
    failed = _failed(result)
    assert set(failed) == {("linkage/quality", "accuracy_evidence"), ("evaluation/linkage", "accuracy_floors"),
                           ("evaluation/linkage", "estimates_match_measured")}
    assert all(e.severity == AssetCheckSeverity.WARN for e in failed.values())
    assert "no clerical labels for magistrates" in failed[("linkage/quality", "accuracy_evidence")].metadata[
        "missing_evidence"].value
    assert "magistrates" in failed[("evaluation/linkage", "accuracy_floors")].metadata["problems"].value
    assert result.success  # warnings: the measurement is stored and nothing downstream is held back
