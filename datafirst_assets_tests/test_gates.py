"""Every kind of check made to fail through Dagster: the check fails, nothing is stored or published
past it, and the assets downstream of it do not run.

The warehouse is built by hand (a few rows per table, written with SQL so no contract is involved),
so each materialisation runs only the assets under test and the module stays fast.
"""

import json
import os

import polars as pl
import pytest
from dagster import AssetCheckKey, AssetKey, AssetSpec, DagsterInstance, asset, materialize

from datafirst_assets.contracts import CONTRACT_STAGES, contract_for
from datafirst_assets.contracts.wiring import COLUMN_SCHEMA
from datafirst_assets.defs.deidentify import build_deidentify_assets, deidentified_key
from datafirst_assets.defs.ingest import staged_key
from datafirst_assets.defs.linkage import LinkageSettings
from datafirst_assets.defs.release import ReleaseSettings, build_catalogue_asset, build_release_asset, catalogue_key
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.deidentify.keys import (
    ALLOW_DEVELOPMENT_KEY_ENV,
    DEVELOPMENT_KEY,
    KEY_ENV,
    KeyRefused,
    key_fingerprint,
    require_publishable_key,
)
from datafirst_assets.deidentify.release import deidentify_source
from datafirst_assets.deidentify.release_spec import release_tables
from datafirst_assets.release.publish import latest_file
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.io_manager import WarehouseIOManager
from datafirst_assets_tests.release_fixtures import release_frames
from datafirst_assets_tests.test_deidentify import magistrates_extract, staged_frame
from datafirst_assets_tests.warehouse_tables import checked_scored_pairs
from datafirst_assets_tests.warehouse_tables import table_names as _tables
from datafirst_assets_tests.warehouse_tables import write_table as _write

MAGISTRATES = SOURCES["magistrates"]
LENIENT = ReleaseSettings(max_mean_risk=1.0)  # three people are always unique: isolate the other gates


def _staged_sources(database, magistrates: dict[str, pl.DataFrame]) -> None:
    """Staged tables of every source (empty but magistrates), the person table linked too."""
    for source in SOURCES.values():
        for table in source.tables:
            frame = magistrates[table.name] if source.key == "magistrates" else staged_frame(source.key, table.name, [])
            frame = frame.with_columns(pl.col("extract_date").cast(pl.String))
            if table.is_person_table:
                _write(database, f"linked_{source.key}", table.name, frame)
                frame = frame.drop(source.person_id_name)
            _write(database, f"staged_{source.key}", table.name, frame)


def _placeholders(keys) -> list[AssetSpec]:
    """Upstream tables as external assets read from the warehouse (their schema named like the real ones)."""
    return [AssetSpec(key=key, metadata={"schema": f"{key.path[0]}_{key.path[1]}"}).with_io_manager_key("io_manager")
            for key in keys]


def _resources(tmp_path, release_settings: ReleaseSettings = LENIENT) -> dict:
    database = str(tmp_path / "warehouse.duckdb")
    return {"io_manager": WarehouseIOManager(database=database), "warehouse": Warehouse(database=database),
            "linkage": LinkageSettings(data_dir=str(tmp_path)), "release_settings": release_settings}


def _deidentify_run(tmp_path, extract: dict[str, pl.DataFrame], settings: ReleaseSettings = LENIENT,
                    instance: DagsterInstance | None = None):
    """Materialise deidentify_magistrates and its downstream catalogue on `extract`; return the result."""
    _staged_sources(tmp_path / "warehouse.duckdb", extract)
    upstream = [AssetKey(["linked", "magistrates", "hocas_flatfile"]), staged_key("magistrates", "hocas_all_offence")]
    return materialize(
        [*_placeholders(upstream), build_deidentify_assets("magistrates"),
         build_catalogue_asset("deidentified", "magistrates")],
        selection=[*(deidentified_key("magistrates", t.name) for t in MAGISTRATES.tables),
                   catalogue_key("deidentified", "magistrates")],
        resources=_resources(tmp_path, settings), raise_on_error=False, instance=instance,
    )


def _failed_checks(result) -> dict[tuple[str, str], dict]:
    return {(c.asset_key.path[-1], c.check_name): c.metadata for c in result.get_asset_check_evaluations()
            if not c.passed}


def _assert_nothing_stored_downstream_skipped(result, tmp_path):
    assert not result.success
    assert not any(t.startswith("deidentified_") or t.startswith("catalogue_") for t in _tables(tmp_path / "warehouse.duckdb"))
    materialised = {m.asset_key for m in result.get_asset_materialization_events() if hasattr(m, "asset_key")}
    assert catalogue_key("deidentified", "magistrates") not in materialised
    assert not (tmp_path / "catalogues").exists()


def test_every_asset_of_every_stage_has_a_contract_shown_as_its_column_schema():
    from datafirst_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.get_all_asset_keys() if k.path[0] in CONTRACT_STAGES]
    assert len(keys) > 150
    without = [k.to_user_string() for k in keys if contract_for(k) is None]
    assert without == []
    for key in keys:
        schema = graph.get(key).metadata[COLUMN_SCHEMA]
        assert schema.columns and all(c.description for c in schema.columns[:1]), key
        assert AssetCheckKey(key, "contract") in graph.asset_check_keys, key


def test_each_assets_contract_carries_its_own_name():
    # pandera renames a cached schema in place: assets sharing a model once all showed the last name
    from datafirst_assets.definitions import defs

    keys = [k for k in defs.resolve_asset_graph().get_all_asset_keys() if k.path[0] in CONTRACT_STAGES]
    names = {k: contract_for(k).name for k in keys if contract_for(k) is not None}
    assert len(set(names.values())) == len(names)
    assert names[AssetKey(["linkage", "prison", "model"])] == "linkage_prison_model"


def test_a_contract_violation_stores_nothing_keeps_the_previous_table_and_stops_downstream(tmp_path):
    model = json.dumps({"version": "v1", "spec": {}, "splink_model": {
        "comparisons": [], "probability_two_random_records_match": 0.01, "blocking_rules_to_generate_predictions": []}})
    state = {"model_json": model}
    ran = []

    @asset(key=["linkage", "magistrates", "model"], metadata={"schema": "linkage_magistrates"})
    def model_asset() -> pl.DataFrame:
        return pl.DataFrame({"version": ["v1"], "trained_at": ["2024-01-01T00:00:00"], "records": [10],
                             "model_json": [state["model_json"]]})

    @asset(deps=[model_asset])
    def downstream() -> None:
        ran.append(True)

    resources = {"io_manager": WarehouseIOManager(database=str(tmp_path / "wh.duckdb"))}
    assert materialize([model_asset, downstream], resources=resources).success
    state["model_json"] = '{"version": "v2"}'  # not a Splink model
    ran.clear()
    result = materialize([model_asset, downstream], resources=resources, raise_on_error=False)
    assert not result.success and ran == []
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data)
    assert "NOT stored" in message and "Splink model JSON shape failed for 1 row(s)" in message
    assert "\\\"" not in message  # readable, not pandera's escaped JSON
    with warehouse_cursor(tmp_path / "wh.duckdb") as conn:
        assert conn.execute("select model_json from linkage_magistrates.model").fetchone()[0] == model


@pytest.mark.parametrize("checked_in", ["polars", "duckdb (pandera.ibis)"])
def test_the_contract_check_reads_the_stored_table_back_and_fails_when_it_was_changed_by_hand(
        tmp_path, monkeypatch, checked_in):
    from dagster import AssetSelection

    from datafirst_assets.contracts import checks as contract_check_module
    if checked_in != "polars":  # as a table over the in-database threshold is
        monkeypatch.setattr(contract_check_module, "IN_DATABASE_ROWS", 0)

    database = str(tmp_path / "wh.duckdb")
    pairs, checks, resources = checked_scored_pairs(database)
    first = materialize([pairs, *checks], resources=resources)
    assert [c.passed for c in first.get_asset_check_evaluations()] == [True]
    with warehouse_cursor(database) as conn:
        conn.execute("update linkage_magistrates.scored_pairs set match_probability = 7 where record_id_l = 'b'")
    again = materialize([pairs, *checks], resources=resources, raise_on_error=False,
                        selection=AssetSelection.checks_for_assets(pairs))
    (evaluation,) = again.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.metadata["contract_checked_in"].value == checked_in
    report = evaluation.metadata["contract_report"].value
    assert "match_probability: in_range(0, 1) failed for 1 row(s), e.g. 7.0" in report and "| b | 7.0 |" in report


def test_the_contract_check_of_a_table_written_in_its_run_takes_the_writes_fingerprint_reading_neither_table_nor_event_log(
        tmp_path, monkeypatch):
    """The run's own write validated the table and took its fingerprint from the stored table inside
    its transaction: the check takes both from the process, with no hash of the table and no
    event-log query per table. What it guards against is a change between runs: a table changed
    after the write inside the run (here by an IO manager that writes it again by hand) passes
    that run's check, and the next run that did not write it hashes it and fails it."""
    from datafirst_assets.contracts import checks as check_module

    database = str(tmp_path / "wh.duckdb")
    pairs, checks, resources = checked_scored_pairs(database)
    asked, hashed = [], []
    real = DagsterInstance.get_latest_materialization_event
    monkeypatch.setattr(DagsterInstance, "get_latest_materialization_event",
                        lambda self, key: asked.append(key) or real(self, key))
    real_hash = check_module.table_fingerprint
    monkeypatch.setattr(check_module, "table_fingerprint", lambda conn, table: hashed.append(table) or real_hash(conn, table))
    result = materialize([pairs, *checks], resources=resources)
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed and asked == [] and hashed == []
    assert evaluation.metadata["verified_in_run"].value == result.run_id
    assert evaluation.metadata["checked"].value.startswith("every row, validated before it was written")
    assert evaluation.metadata["content_read"].value.startswith("as this run's write took it")

    class ChangedAfterTheWrite(WarehouseIOManager):
        def handle_output(self, context, obj) -> None:
            super().handle_output(context, obj)
            with warehouse_cursor(self.database) as conn:
                conn.execute("update linkage_magistrates.scored_pairs set match_probability = 7 "
                             "where record_id_l = 'b'")

    result = materialize([pairs, *checks], resources={**resources, "io_manager": ChangedAfterTheWrite(
        database=database)}, raise_on_error=False)
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed and hashed == []
    from dagster import AssetSelection
    again = materialize([pairs, *checks], resources=resources, raise_on_error=False,
                        selection=AssetSelection.checks_for_assets(pairs))
    (evaluation,) = again.get_asset_check_evaluations()
    assert len(hashed) == 1
    assert not evaluation.passed and "in_range(0, 1) failed for 1 row(s)" in evaluation.metadata["contract_report"].value


def test_the_pii_gate_fails_before_de_identified_tables_are_stored(tmp_path):
    extract = magistrates_extract()
    # a raw PNC from the landing files typed into a column that is kept
    flat = extract["hocas_flatfile"]
    extract["hocas_flatfile"] = flat.with_columns(pl.lit("1990/0012345Z").alias("court_code"))
    result = _deidentify_run(tmp_path, extract)
    failed = _failed_checks(result)
    assert set(failed) == {("hocas_flatfile", "no_identifiers")}
    assert "court_code: pnc in 1 row(s)" in failed[("hocas_flatfile", "no_identifiers")]["findings"].value
    _assert_nothing_stored_downstream_skipped(result, tmp_path)


def test_a_broken_foreign_key_fails_the_schema_gate_and_stores_nothing(tmp_path):
    extract = magistrates_extract()
    offences = extract["hocas_all_offence"]
    extract["hocas_all_offence"] = offences.with_columns(
        pl.when(pl.col("offence_id") == "OFF00004").then(pl.lit("DC9999")).otherwise(pl.col("defendant_case_id"))
        .alias("defendant_case_id"))
    result = _deidentify_run(tmp_path, extract)
    failed = _failed_checks(result)
    assert set(failed) == {("hocas_all_offence", "schema_valid")}
    assert "1 orphan row(s)" in failed[("hocas_all_offence", "schema_valid")]["problems"].value
    _assert_nothing_stored_downstream_skipped(result, tmp_path)


def test_re_identification_risk_over_the_threshold_fails_the_disclosure_gate(tmp_path):
    # Three people, each alone in their age band / sex / ethnic group / region: risk 1 > the default 0.6.
    result = _deidentify_run(tmp_path, magistrates_extract(), ReleaseSettings())
    failed = _failed_checks(result)
    assert set(failed) == {("hocas_flatfile", "disclosure_control")}
    metadata = failed[("hocas_flatfile", "disclosure_control")]
    assert metadata["mean_risk"].value == 1.0 and metadata["sample_uniques"].value == 3
    _assert_nothing_stored_downstream_skipped(result, tmp_path)


def test_a_clean_extract_passes_every_gate_and_is_stored(tmp_path):
    result = _deidentify_run(tmp_path, magistrates_extract())
    assert result.success and _failed_checks(result) == {}
    assert {"deidentified_magistrates.hocas_flatfile", "catalogue_deidentified.magistrates"} <= _tables(
        tmp_path / "warehouse.duckdb")


# --- Publishing: the release re-scans what is stored ------------------------------------------------------

def _release_warehouse(tmp_path) -> None:
    """Every release table stored (magistrates de-identified from a staged extract), staged tables for the scan."""
    database = tmp_path / "warehouse.duckdb"
    extract = magistrates_extract()
    _staged_sources(database, extract)
    tables = release_frames(rows=30)
    tables.update({("magistrates", name): frame for name, frame in deidentify_source(MAGISTRATES, extract).tables.items()})
    for (dataset, name), frame in tables.items():
        _write(database, f"deidentified_{dataset}", name, frame)


def _publish(tmp_path, instance: DagsterInstance | None = None):
    return materialize([*_placeholders([deidentified_key(*k) for k in release_tables()]),
                        build_release_asset("deidentified")],
                       selection=[AssetKey(["release", "deidentified"])], resources=_resources(tmp_path),
                       instance=instance or DagsterInstance.ephemeral(), raise_on_error=False)


def _failure_message(result) -> str:
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    return failure.step_failure_data.error.message + "".join(
        c.message for c in [failure.step_failure_data.error.cause] if c)


PLANTED = {  # identifier class -> (column of hocas_flatfile, value written into it for the first row)
    "pnc": ("offence_code", "1990/0012345Z"),
    "cro": ("plea", "123456/90K"),
    "postcode": ("court_code", "LS6 2AB"),
    "prison_number": ("outcome", "A1234BC"),
    "crn": ("offence_group", "X123456"),
    "name": ("sex", "WHITFORD"),
    "system_id": ("ethnicity", "CASE00003"),
}


def test_identifiers_planted_into_stored_tables_are_refused_at_publishing(tmp_path):
    _release_warehouse(tmp_path)
    clean = _publish(tmp_path)
    assert clean.success
    published = latest_file(tmp_path / "releases", "deidentified").read_text().strip()
    manifest = json.loads((tmp_path / "releases" / published / "manifest.json").read_text())
    assert manifest["gates"]["passed"] and len(manifest["key_fingerprint"]) == 12
    assert all(t["gates"]["no_identifiers"]["findings"] == 0 for t in manifest["tables"])
    assert "## Gates passed before publishing" in (tmp_path / "releases" / published / "README.md").read_text()

    with warehouse_cursor(tmp_path / "warehouse.duckdb") as conn:
        for column, value in PLANTED.values():
            conn.execute(f"update deidentified_magistrates.hocas_flatfile set {column} = ? "
                         "where estimated_defendant_id = 1", [value])
        # the row's own date of birth (1990-06-15) as an event date
        conn.execute("update deidentified_magistrates.hocas_flatfile set sentence_date = date '1990-06-15' "
                     "where estimated_defendant_id = 1")
    refused = _publish(tmp_path)
    assert not refused.success
    message = _failure_message(refused)
    assert "Refusing to publish" in message
    for identifier, (column, _) in PLANTED.items():
        assert f"magistrates.hocas_flatfile.{column}: {identifier} in" in message, identifier
    assert "sentence_date: date_of_birth in 2 row(s)" in message
    assert "catalogue:magistrates" in message  # the planted values would have been listed in its catalogue page
    # nothing published past it: the previous release is still the latest and the only one
    assert latest_file(tmp_path / "releases", "deidentified").read_text().strip() == published
    assert [p.name for p in (tmp_path / "releases").iterdir() if p.is_dir()] == [published]


def test_the_manifest_and_readme_carry_each_tables_gate_and_check_results(tmp_path):
    _release_warehouse(tmp_path)
    instance = DagsterInstance.ephemeral()
    assert _deidentify_run(tmp_path, magistrates_extract(), instance=instance).success  # gates recorded as checks
    assert _publish(tmp_path, instance).success
    published = tmp_path / "releases" / latest_file(tmp_path / "releases", "deidentified").read_text().strip()
    manifest = json.loads((published / "manifest.json").read_text())
    entry = next(t for t in manifest["tables"] if (t["source"], t["table"]) == ("magistrates", "hocas_flatfile"))
    assert entry["gates"]["passed"] and entry["gates"]["contract"]["passed"]
    assert entry["gates"]["checks"] == {"disclosure_control": True, "no_identifiers": True, "schema_valid": True}
    assert "mean_risk" in entry["gates"]["disclosure"]
    readme = (published / "README.md").read_text()
    assert "| magistrates | hocas_flatfile | 0 | holds |" in readme
    assert "disclosure_control passed, no_identifiers passed, schema_valid passed" in readme


def test_publishing_with_the_development_or_a_short_key_is_refused(tmp_path, monkeypatch):
    _release_warehouse(tmp_path)
    monkeypatch.delenv(ALLOW_DEVELOPMENT_KEY_ENV)
    monkeypatch.setenv(KEY_ENV, "")
    refused = _publish(tmp_path)
    assert not refused.success and "DATAFIRST_PSEUDONYMISATION_KEY is empty" in _failure_message(refused)
    monkeypatch.setenv(KEY_ENV, "too-short")
    assert "at least 32" in _failure_message(_publish(tmp_path))
    assert not (tmp_path / "releases").exists() or not any((tmp_path / "releases").iterdir())


def test_key_rules_and_fingerprint(monkeypatch):
    monkeypatch.delenv(ALLOW_DEVELOPMENT_KEY_ENV)
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(KeyRefused, match="unset"):
        require_publishable_key()
    monkeypatch.setenv(KEY_ENV, DEVELOPMENT_KEY)
    with pytest.raises(KeyRefused, match="development key"):
        require_publishable_key()
    monkeypatch.setenv(KEY_ENV, "x" * 40)
    require_publishable_key()
    first = key_fingerprint()
    monkeypatch.setenv(KEY_ENV, "y" * 40)
    assert key_fingerprint() != first and len(first) == 12 and "x" not in first
    monkeypatch.setenv(ALLOW_DEVELOPMENT_KEY_ENV, "1")
    monkeypatch.delenv(KEY_ENV)
    require_publishable_key()
    assert os.environ.get(KEY_ENV) is None


def test_risk_is_one_over_the_people_sharing_the_key_cell():
    from datafirst_assets.deidentify.disclosure import RiskRule, reidentification_risk

    spec = release_tables()[("magistrates", "hocas_flatfile")]
    rows = [dict(estimated_defendant_id=i, age_at_first_hearing=age, sex="M", ethnicity="W1", postcode_area=area)
            for i, (age, area) in enumerate([(21, "LS"), (25, "BD"), (29, "HU"), (44, "SW"), (45, "N")], start=1)]
    frame = pl.DataFrame([{c: r.get(c) for c in spec.column_names} for r in rows], schema=spec.schema())
    risk = reidentification_risk(frame, spec, RiskRule(max_mean_risk=0.5))
    # 20-29 in Yorkshire: 3 people (LS, BD, HU); 40-49 in London: 2 (SW, N)
    assert risk.cells == 2 and risk.sample_uniques == 0
    assert risk.mean_risk == pytest.approx((3 * (1 / 3) + 2 * (1 / 2)) / 5) and risk.max_risk == 0.5
    assert risk.passed and not reidentification_risk(frame, spec, RiskRule(max_mean_risk=0.3)).passed
    assert "offence_group" not in risk.key and "first_hearing_date" not in risk.key  # no event dates in the key


def test_the_manifest_contract_refuses_an_entry_without_its_gates():
    from datafirst_assets.contracts import ContractViolation
    from datafirst_assets.contracts.documents import ManifestError, validate_manifest

    entry = {"source": "magistrates", "table": "hocas_flatfile", "path": "tables/magistrates/hocas_flatfile.parquet",
             "rows": 3, "sha256": "a" * 64, "content_sha256": "b" * 64, "gates": {"passed": True}}
    manifest = {"release_id": "r", "kind": "deidentified", "synthetic": False, "created_at": "now",
                "extract_dates": [], "model_versions": {}, "pseudonymisation_key": "k", "key_fingerprint": "0" * 12,
                "gates": {}, "tables": [entry], "catalogues": []}
    validate_manifest(manifest)
    with pytest.raises(ContractViolation, match="every table passed its gates failed for 1 row"):
        validate_manifest({**manifest, "tables": [{**entry, "gates": {"passed": False}}]})
    with pytest.raises(ManifestError, match="key_fingerprint"):
        validate_manifest({k: v for k, v in manifest.items() if k != "key_fingerprint"})


def test_a_small_cell_in_the_synthetic_summaries_stops_them_before_they_are_stored(tmp_path, monkeypatch):
    from datafirst_assets.defs import synthetic as synthetic_defs
    from datafirst_assets.synthetic import summary_parts
    from datafirst_assets.synthetic.fabricate import fabricate_release

    real = fabricate_release(200, seed=3)
    summarise = summary_parts.summarise_release

    def with_a_stricter_rule(tables, rules, **kwargs):  # every published cell now falls under the rule it claims
        doc = summarise(tables, rules, **kwargs)
        doc["rules"]["k"] = 10_000
        return doc

    monkeypatch.setattr(summary_parts, "summarise_release", with_a_stricter_rule)
    for (dataset, name), frame in real.items():
        _write(tmp_path / "warehouse.duckdb", f"deidentified_{dataset}", name, frame)
    generate = [a for a in synthetic_defs.synthetic_assets() if getattr(a, "node_def", None) is not None
                and a.node_def.name == "synthetic_magistrates"]
    assert generate  # the synthetic tables made from the summaries: they must not run
    result = materialize(
        [*_placeholders([deidentified_key(*k) for k in release_tables()]), synthetic_defs.synthetic_summaries,
         *generate],
        resources={"io_manager": WarehouseIOManager(database=str(tmp_path / "warehouse.duckdb")),
                   "warehouse": Warehouse(database=str(tmp_path / "warehouse.duckdb")),
                   "synthetic": synthetic_defs.SyntheticSettings(data_dir=str(tmp_path)),
                   "linkage": LinkageSettings(data_dir=str(tmp_path))},
        raise_on_error=False,
    )
    assert not result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "no_small_cells" and not check.passed and check.metadata["small_cells"].value > 0
    assert not any(t.startswith("synthetic") for t in _tables(tmp_path / "warehouse.duckdb"))
    assert not (tmp_path / "synthetic" / "summaries.json").exists()


# --- Tables that never are a Python frame: validated in DuckDB (pandera.ibis) before the swap --------------

@pytest.mark.parametrize("output, checked_in", [
    ("sql", "duckdb (pandera.ibis)"), ("lazy", "duckdb (pandera.ibis)"), ("sql", "polars")])
def test_a_lazy_or_sql_output_breaking_its_contract_is_refused_in_duckdb_and_the_previous_table_stays(
        tmp_path, monkeypatch, output, checked_in):
    """Checked where it lives (pandera.ibis) as a table over the in-database threshold is, or read into
    polars as a small one is (no Ibis to import): refused the same way."""
    from datafirst_assets.contracts import wiring
    from datafirst_assets.warehouse.io_manager import WarehouseQuery

    if checked_in != "polars":  # as a table over the in-database threshold is
        monkeypatch.setattr(wiring, "IN_DATABASE_ROWS", 0)

    rows = {"probability": "0.99"}
    ran = []

    def pairs_sql() -> str:
        return ("select 'r' || i::varchar as record_id_l, 'r' || (i + 1)::varchar as record_id_r, "
                f"5.0::double as match_weight, (case when i = 7 then {rows['probability']} else 0.9 end)::double "
                "as match_probability from range(20) t(i)")

    @asset(key=["linkage", "magistrates", "scored_pairs"], metadata={"schema": "linkage_magistrates"})
    def pairs():
        if output == "sql":
            return WarehouseQuery(pairs_sql())
        return pl.LazyFrame({"record_id_l": [f"r{i}" for i in range(20)], "record_id_r": [f"r{i + 1}" for i in range(20)],
                             "match_weight": [5.0] * 20,
                             "match_probability": [float(rows["probability"]) if i == 7 else 0.9 for i in range(20)]})

    @asset(deps=[pairs])
    def downstream() -> None:
        ran.append(True)

    database = tmp_path / "wh.duckdb"
    resources = {"io_manager": WarehouseIOManager(database=str(database))}
    first = materialize([pairs, downstream], resources=resources)
    meta = first.asset_materializations_for_node("linkage__magistrates__scored_pairs")[0].metadata
    assert meta["contract_checked_in"].value == checked_in and meta["contract_passed"].value
    rows["probability"] = "7.5"  # a probability over 1 on one of 20 rows
    ran.clear()
    result = materialize([pairs, downstream], resources=resources, raise_on_error=False)
    assert not result.success and ran == []
    message = _failure_message(result)
    assert "NOT stored" in message
    assert "match_probability: in_range(0, 1) failed for 1 row(s), e.g. 7.5" in message  # rule, count, value
    assert "| r7 | 7.5 |" in message  # a sample row
    with warehouse_cursor(database) as conn:  # the previous table, untouched; no staging table left behind
        assert conn.execute("select count(*), max(match_probability) from linkage_magistrates.scored_pairs"
                            ).fetchall() == [(20, 0.99)]
        assert _tables(database) == {"linkage_magistrates.scored_pairs"}


def test_the_in_database_contract_reports_what_the_polars_one_does(tmp_path):
    """Every kind of rule run by pandera.ibis in DuckDB: dtype, nullability, uniqueness (a column and a
    set of columns), isin, ge, in_range, str_matches, str_length; counts and values as in polars."""
    import pandera.polars as pa

    from datafirst_assets.contracts import validate_table
    from datafirst_assets.contracts.in_database import validate_in_duckdb

    contract = pa.DataFrameSchema({
        "id": pa.Column(pl.String, unique=True),
        "x": pa.Column(pl.Int64, pa.Check.ge(2)),
        "s": pa.Column(pl.String, [pa.Check.isin(["a", "b"]), pa.Check.str_length(max_value=1)], nullable=True),
        "d": pa.Column(pl.String, pa.Check.str_matches(r"^\d{4}-\d{2}-\d{2}$")),
        "f": pa.Column(pl.Float64, pa.Check.in_range(0, 1), nullable=True),
    }, unique=["x", "s"], strict=True, name="demo")
    bad = pl.DataFrame({"id": ["1", "1", "3", "4"], "x": [1, 1, 3, 5], "s": ["a", "a", "zz", None],
                        "d": ["2024-01-01", None, "x", "2024-01-01"], "f": [0.5, 1.5, None, 0.1]})
    _write(tmp_path / "wh.duckdb", "s", "bad", bad)
    _write(tmp_path / "wh.duckdb", "s", "good", bad.filter(pl.col("id") == "4"))
    _write(tmp_path / "wh.duckdb", "s", "typed", bad.filter(pl.col("id") == "4").with_columns(pl.col("x").cast(pl.String)))
    with warehouse_cursor(tmp_path / "wh.duckdb") as conn:
        assert validate_in_duckdb(conn, "wh", "s", "good", contract).passed
        report = validate_in_duckdb(conn, "wh", "s", "bad", contract)
        typed = validate_in_duckdb(conn, "wh", "s", "typed", contract)
    found = {(f.column, f.rule.split("(")[0]): f.failing_rows for f in report.failures}
    assert found == {("x", "greater_than_or_equal_to"): 2, ("id", "unique"): 2, ("x, s", "unique ['x', 's']"): 2,
                     ("s", "isin"): 1, ("s", "str_length"): 1, ("d", "not_nullable"): 1, ("d", "str_matches"): 1,
                     ("f", "in_range"): 1}
    in_polars = {(f.column, f.rule.split("(")[0]): f.failing_rows for f in validate_table(bad, contract).failures}
    assert {k: v for k, v in found.items() if "unique" not in k[1]} == {
        k: v for k, v in in_polars.items() if "uniqueness" not in k[1]}
    assert report.sample.height == 3 and "| 3 | 3 | zz | x |" in report.markdown()
    assert ("x", "dtype('int64')") in {(f.column, f.rule) for f in typed.failures}


def test_the_catalogue_scan_finds_what_scanning_each_catalogue_against_each_dataset_finds():
    import dataclasses

    from datafirst_assets.catalogue import build_catalogues
    from datafirst_assets.deidentify.pii_gate import RawIdentifiers, scan_table
    from datafirst_assets.deidentify.release_spec import release_tables
    from datafirst_assets.release.gates import _catalogue_frames, _small_counts, scan_release
    from datafirst_assets_tests.release_fixtures import release_frames

    catalogues = build_catalogues(release_frames(rows=40), release_tables())
    # planted: a postcode among one catalogue's listed values, and raw values equal to listed
    # values and summary cells (a name in one dataset, a system id in two, with other case and spaces)
    first = next(iter(catalogues))
    planted = catalogues[first].values.head(1).with_columns(pl.lit("sw1a 1aa").alias("value"), pl.lit(40, pl.Int64).alias("count"))
    catalogues[first] = dataclasses.replace(catalogues[first], values=pl.concat([catalogues[first].values, planted]))
    listed = [v for c in catalogues.values() for v in c.values["value"].drop_nulls().to_list() if len(v) >= 4]
    cells = [v for c in catalogues.values() for v in c.frame["median"].drop_nulls().to_list()]
    identifiers = {"magistrates": RawIdentifiers(names={listed[0].upper(), "NOBODY"}, system_ids={f" {cells[0]} "}),
                   "prison": RawIdentifiers(system_ids={cells[0], cells[-1], listed[-1].upper()}),
                   "civil": RawIdentifiers()}
    # what scan_release did before: each catalogue through scan_table once per dataset
    expected: dict = {}
    for source, raw in identifiers.items():
        no_names = RawIdentifiers(names=raw.names, addresses=raw.addresses, system_ids=raw.system_ids)
        for name, catalogue in catalogues.items():
            values, summary = _catalogue_frames(name, catalogue)
            shapes = source == "magistrates"
            findings = scan_table(f"catalogue:{name}.values", values, no_names, shapes=shapes)
            findings += scan_table(f"catalogue:{name}.summary", summary, no_names, shapes=shapes)
            findings += [f for f in [_small_counts(name, catalogue)] if f]
            for f in findings:
                key = (f.table, f.column, f.identifier)
                if key not in expected or f.rows > expected[key].rows:
                    expected[key] = f
    gates = scan_release("deidentified", {}, {}, catalogues, identifiers=identifiers)
    got = gates.catalogue_findings
    assert [(f.table, f.column, f.identifier, f.rows) for f in got] == [
        (f.table, f.column, f.identifier, f.rows) for f in expected.values()]
    kinds = {f.identifier for f in got}
    assert {"postcode", "name", "system_id"} <= kinds
