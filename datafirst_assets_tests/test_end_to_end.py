"""The whole asset graph, in process, on a small simulated extract, with no truth anywhere the
pipeline could read it (production mode): ingest, dedupe, estimated quality, releases; then the
evaluation stage alone, given the truth, measures what was published."""

import json
import os

import polars as pl
import pytest
from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey, DagsterInstance

from datafirst_assets.definitions import LINK_JOB, build_definitions
from datafirst_assets.defs.evaluation import LINKAGE_EVALUATION, XJS_EVALUATION
from datafirst_assets.defs.resources import DataLayout
from datafirst_assets.defs.xjs import XJS_THRESHOLDS
from datafirst_assets.evaluation.truth import TRUTH_DIR_ENV, TRUTH_FILES
from datafirst_assets.linkage.quality import FLOORS
from datafirst_assets.runner import format_summary, run_pipeline
from datafirst_assets.warehouse.connection import close_warehouse
from datafirst_assets.simulate import simulate
from datafirst_assets.sources.registry import SOURCES, all_tables
from datafirst_assets.warehouse.connection import warehouse_cursor


def _query(layout, sql):
    with warehouse_cursor(layout.warehouse) as conn:
        return pl.from_arrow(conn.sql(sql).to_arrow_table())


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    layout = DataLayout(root / "data")
    summary = simulate(people=2_500, seed=7, extracts=2, out=layout.landing, truth_out=root / "truth")
    # A decoy where truth used to live: anything that reads it crashes the run.
    (layout.root / "truth").mkdir()
    for name in TRUTH_FILES:
        (layout.root / "truth" / name).write_text("not truth: no asset outside the evaluation group may read this")
    saved = os.environ.pop(TRUTH_DIR_ENV, None)
    try:
        instance = DagsterInstance.ephemeral()
        report = run_pipeline(layout, instance)
        report.summary_text = format_summary(layout, report)  # before the evaluation stage ever had truth
    finally:
        if saved is not None:
            os.environ[TRUTH_DIR_ENV] = saved
    return layout, summary, report, instance


@pytest.fixture(scope="module")
def evaluated(pipeline):
    """The evaluation group alone, now given the truth, on what the production run stored."""
    layout, _, _, instance = pipeline
    saved = os.environ.get(TRUTH_DIR_ENV)
    os.environ[TRUTH_DIR_ENV] = str(layout.root.parent / "truth")
    try:
        defs = build_definitions(layout.root)
        result = defs.resolve_job_def(LINK_JOB).execute_in_process(
            instance=instance, asset_selection=[LINKAGE_EVALUATION, XJS_EVALUATION], raise_on_error=False)
    finally:
        os.environ.pop(TRUTH_DIR_ENV)
        if saved is not None:
            os.environ[TRUTH_DIR_ENV] = saved
    assert result.success
    return layout, result


def _check(instance, key, name):
    record = instance.get_latest_asset_check_evaluation_record(AssetCheckKey(key, name))
    assert record is not None, (key, name)
    return record.event.asset_check_evaluation


def test_with_no_truth_both_releases_publish_and_quality_checks_warn_naming_the_missing_evidence(pipeline):
    from datafirst_assets.defs.linkage import QUALITY
    from datafirst_assets.release import release_path

    layout, _, _, instance = pipeline
    assert release_path(layout.releases, "deidentified").exists() and release_path(layout.releases, "synthetic").exists()
    evidence = _check(instance, QUALITY, "accuracy_evidence")
    assert not evidence.passed and evidence.severity == AssetCheckSeverity.WARN
    assert "no clerical labels for magistrates" in evidence.metadata["missing_evidence"].value
    quality = pl.read_parquet(layout.reports / "linkage_quality.parquet")
    assert set(quality["threshold_source"]) == {"model_estimate"} and set(quality["source"]) == set(SOURCES)
    assert quality["estimated_bcubed_f1"].is_between(0, 1).all()
    for key, check in ((LINKAGE_EVALUATION, "accuracy_floors"), (LINKAGE_EVALUATION, "estimates_match_measured"),
                       (XJS_EVALUATION, "accuracy_floors")):
        result = _check(instance, key, check)
        assert not result.passed and result.severity == AssetCheckSeverity.WARN
        assert "no truth available" in result.metadata["missing_evidence"].value
    status = _query(layout, "select * from evaluation.linkage")
    assert status.columns == ["status"] and status["status"][0].startswith("no truth available")


def test_rows_are_conserved_from_files_to_staging(pipeline):
    layout, summary, _, _ = pipeline
    for source, table in all_tables():
        delivered = summary["records"][source.key][table.name]
        counts = _query(layout, f"""
            select (select count(*) from raw_{source.key}.{table.name}) as raw,
                   (select count(*) from staged_{source.key}.{table.name}) as staged,
                   (select count(*) from quarantine_{source.key}.{table.name}) as quarantined""").row(0)
        assert counts[0] == delivered, (source.key, table.name)
        assert counts[0] == counts[1] + counts[2], (source.key, table.name)


def test_every_person_record_gets_exactly_one_person_id(pipeline):
    layout, _, _, _ = pipeline
    for source in SOURCES.values():
        records = _query(layout, f"select record_id from linkage_{source.key}.person_records")
        clusters = _query(layout, f"select * from linkage_{source.key}.clusters")
        assert source.person_id_name in clusters.columns
        assert clusters["record_id"].n_unique() == clusters.height == records.height
        assert clusters[source.person_id_name].null_count() == 0
        # far fewer persons than records in every dataset, but more than one
        assert 1 < clusters[source.person_id_name].n_unique() < clusters.height


def test_person_ids_are_added_to_the_staged_person_tables(pipeline):
    layout, _, _, _ = pipeline
    for source in SOURCES.values():
        table = source.person_table
        linked = _query(layout, f"select * from linked_{source.key}.{table.name}")
        staged_ids = _query(layout, f"select distinct {table.id_column} from staged_{source.key}.{table.name}")
        assert linked.height == staged_ids.height
        with_id = linked.filter(pl.col(source.person_id_name).is_not_null()).height
        if source.key == "civil":  # company parties are not people
            assert 0 < with_id < linked.height
        else:
            assert with_id == linked.height


def test_linkage_measured_by_the_evaluation_stage_meets_floors_and_reports_subgroups(evaluated):
    layout, _ = evaluated
    measured = pl.read_parquet(layout.reports / "linkage_evaluation.parquet")
    overall = {r["source"]: r for r in measured.iter_rows(named=True)}
    assert set(overall) == set(SOURCES)
    for source, row in overall.items():
        assert row["measured_bcubed_f1"] >= FLOORS[source], (source, row)
        assert row["threshold_source"] == "model_estimate"
        assert row["bcubed_f1_below_optimal"] >= -1e-9  # both plain connected components of the stored pairs
    subgroups = pl.read_parquet(layout.reports / "linkage_evaluation_subgroups.parquet")
    assert set(subgroups["subgroup"].unique()) == {"sex", "ethnic_group", "age_band"}
    report = (layout.reports / "linkage_evaluation.md").read_text()
    assert "Best-to-worst subgroup gap" in report and "Estimated vs measured" in report


def test_models_are_versioned_json_with_offline_charts(pipeline):
    layout, _, _, _ = pipeline
    for source in SOURCES:
        model = _query(layout, f"select * from linkage_{source}.model")
        version = model["version"][0]
        stored = json.loads((layout.models / source / f"{version}.json").read_text())
        assert stored["version"] == version
        assert stored["splink_model"]["comparisons"]
        chart = layout.models / source / "charts" / f"{version}_match_weights_chart.html"
        assert chart.exists() and "cdn.jsdelivr" not in chart.read_text()


def test_ground_truth_columns_never_reach_linkage(pipeline):
    layout, _, _, _ = pipeline
    for source in SOURCES:
        columns = _query(layout, f"select * from linkage_{source}.person_records limit 0").columns
        assert "person_id" not in columns


def test_summary_names_tables_quarantine_and_warehouse(pipeline):
    layout, _, report, _ = pipeline
    text = report.summary_text
    assert "hocas_flatfile" in text and "quarantined" in text and str(layout.warehouse.resolve()) in text
    assert "ESTIMATED accuracy" in text and "accuracy not measured" in text


def test_cross_justice_lookup_covers_every_record_and_nests(pipeline):
    layout, _, _, _ = pipeline
    lookup = _query(layout, "select * from linkage_xjs.lookup")
    records = sum(_query(layout, f"select count(*) as n from linkage_{s}.person_records")["n"][0] for s in SOURCES)
    assert lookup.height == records
    assert lookup["record_id_hash"].null_count() == 0 and lookup["record_id_hash"].n_unique() == lookup.height
    persons = lookup.select("person_id_dataset", "person_id_high", "person_id_medium", "person_id_low").unique()
    assert persons["person_id_dataset"].n_unique() == persons.height  # one id per threshold per person
    for finer, coarser in (("person_id_high", "person_id_medium"), ("person_id_medium", "person_id_low")):
        assert persons.group_by(finer).agg(pl.col(coarser).n_unique().alias("n"))["n"].max() == 1
    # linking across datasets merged people: fewer cross-justice persons than per-dataset persons
    assert persons["person_id_medium"].n_unique() < persons.height


def test_case_link_and_cross_justice_accuracy_meet_floors(evaluated):
    layout, _ = evaluated
    overall = pl.read_parquet(layout.reports / "xjs_evaluation_overall.parquet")
    medium = overall.filter((pl.col("level") == "medium") & (pl.col("scope") == "all_pairs")).row(0, named=True)
    assert medium["bcubed_f1"] >= 0.95
    assert overall["threshold"].null_count() == 0 and medium["threshold"] == XJS_THRESHOLDS[1]
    case = pl.read_parquet(layout.reports / "xjs_evaluation_case_link.parquet").filter(pl.col("case_type") == "all")
    assert case["precision"][0] >= 0.99 and case["recall"][0] >= 0.97
    links = _query(layout, "select * from linkage_criminal_courts.case_lookup")
    assert links["defendant_on_case_id"].n_unique() == links.height
    assert links["match_score"].is_between(0, 1).all()


def test_every_research_table_is_released_once_per_record_with_its_checks_passing(pipeline):
    from dagster import AssetCheckKey

    from datafirst_assets.defs.deidentify import CHECKS, deidentified_key
    from datafirst_assets.deidentify.release_spec import release_tables

    layout, _, _, instance = pipeline
    for (dataset, name), spec in release_tables().items():
        released = _query(layout, f"select * from deidentified_{dataset}.{name}")
        assert released.columns == spec.column_names, (dataset, name)
        if dataset != "linking":
            id_column = SOURCES[dataset].table(name).id_column
            staged = _query(layout, f"select count(distinct {id_column}) as n from staged_{dataset}.{name}")["n"][0]
            assert released.height == staged, (dataset, name)
        for check in CHECKS:
            record = instance.get_latest_asset_check_evaluation_record(
                AssetCheckKey(deidentified_key(dataset, name), check))
            assert record is not None, (dataset, name, check)
            if CHECKS[check][1]:  # blocking checks must pass
                assert record.event.asset_check_evaluation.passed, (dataset, name, check)


def test_no_raw_identifier_value_survives_into_any_released_table(pipeline):
    from datafirst_assets.deidentify.release_spec import release_tables

    layout, _, _, _ = pipeline
    identifying = {"name", "postcode", "pnc", "cro"}  # dates of birth: row by row, below
    for source in SOURCES.values():
        raw_values: set[str] = set()
        for table in source.tables:
            columns = [c.name for c in table.columns if c.kind in identifying or c.kind in ("id", "ref")
                       or c.name in ("case_number", "prison_number", "crn", "urn", "asn", "address_line1")]
            frame = _query(layout, f"select {', '.join(columns)} from staged_{source.key}.{table.name}")
            for column in frame.columns:
                raw_values |= {str(v) for v in frame[column].drop_nulls().unique().to_list() if len(str(v)) > 3}
        for (dataset, name) in release_tables():
            if dataset != source.key:
                continue
            released = _query(layout, f"select * from deidentified_{dataset}.{name}")
            for column in released.columns:
                values = {str(v) for v in released[column].drop_nulls().unique().to_list()}
                assert not values & raw_values, (dataset, name, column, sorted(values & raw_values)[:3])
        # event dates coincide with other people's birthdays; a record's own date of birth must not appear
        table = source.person_table
        dob = next(c.name for c in table.columns if c.kind == "dob")
        staged = _query(layout, f"""select {dob} from (select *, row_number() over (partition by {table.id_column}
            order by extract_date desc) as version from staged_{source.key}.{table.name}) where version = 1
            order by {table.id_column}""")[dob]
        released = _query(layout, f"select * from deidentified_{source.key}.{table.name}")
        for column, dtype in released.schema.items():
            if dtype == pl.Date:
                assert not (released[column] == staged).fill_null(False).any(), (source.key, column)


def test_the_release_is_on_disk_with_manifest_catalogues_and_the_documented_joins_return_rows(pipeline):
    from datafirst_assets.deidentify.release_spec import release_datasets, release_tables
    from datafirst_assets.release import example_queries, open_release, release_path, verify_release

    layout, _, _, _ = pipeline
    path = release_path(layout.releases, "deidentified")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["kind"] == "deidentified" and manifest["release_id"] == path.name
    assert {(t["source"], t["table"]) for t in manifest["tables"]} == set(release_tables())
    assert manifest["extract_dates"] and set(manifest["model_versions"]) == set(SOURCES)
    assert manifest["pseudonymisation_key"].startswith("development key")
    assert verify_release(path) == []
    for dataset, specs in release_datasets().items():
        catalogue = (path / "catalogue" / f"{dataset}.md").read_text()
        for spec in specs:
            for column in spec.column_names:
                assert f"`{column}`" in catalogue, (dataset, spec.name, column)
    with open_release(path) as conn:
        for example in example_queries():
            assert conn.sql(example.sql).fetchall(), example.title


def test_the_readme_shows_exactly_the_joins_the_tests_run():
    from pathlib import Path

    from datafirst_assets.release import example_queries

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for example in example_queries():
        assert f"-- {example.title}\n{example.sql.strip()}\n```" in readme, example.title


def test_the_synthetic_release_sits_next_to_the_real_one_labelled_and_the_same_joins_return_rows(pipeline):
    from datafirst_assets.defs.release import SYNTHETIC_NOTE
    from datafirst_assets.deidentify.release_spec import release_tables
    from datafirst_assets.release import example_queries, open_release, parquet_metadata, release_path

    layout, _, _, _ = pipeline
    real, synthetic = release_path(layout.releases, "deidentified"), release_path(layout.releases, "synthetic")
    assert real.parent == synthetic.parent and synthetic.name.startswith("synthetic-")
    manifest = json.loads((synthetic / "manifest.json").read_text())
    assert manifest["synthetic"] is True and len(manifest["tables"]) == len(release_tables())
    for entry in manifest["tables"]:
        assert entry["path"].endswith(".synthetic.parquet")
        assert parquet_metadata(synthetic / entry["path"])["synthetic"] == "true"
    assert "SYNTHETIC" in (synthetic / "catalogue" / "magistrates.md").read_text()
    assert "relationships" in (synthetic / SYNTHETIC_NOTE).read_text().lower()
    with open_release(real) as real_conn, open_release(synthetic) as synthetic_conn:
        for (dataset, table) in release_tables():
            assert (real_conn.sql(f"select * from {dataset}.{table} limit 0").to_arrow_table().schema
                    == synthetic_conn.sql(f"select * from {dataset}.{table} limit 0").to_arrow_table().schema)
        for example in example_queries():
            assert synthetic_conn.sql(example.sql).fetchall(), example.title


def test_a_run_with_nothing_new_keeps_every_dataset_step_and_changes_no_table(pipeline):
    """Incremental all the way down: with no new extract, each dataset's linkage, de-identification,
    synthetic and catalogue steps keep their stored tables, the release carries every table's gates
    over, the contract checks read nothing again, and every table is what the first run stored."""
    from datafirst_assets.deidentify.release_spec import release_tables
    from datafirst_assets.release.publish import latest_manifest
    from datafirst_assets.warehouse.unchanged import FINGERPRINT

    layout, _, _, instance = pipeline
    tables = [f"deidentified_{d}.{t}" for d, t in release_tables()] + [
        f"linkage_{s}.clusters" for s in SOURCES] + ["linkage_xjs.lookup", "synthetic_magistrates.hocas_flatfile"]
    before = {t: _query(layout, f"select * from {t} order by all") for t in tables}
    close_warehouse(layout.warehouse)  # as the command line leaves it after a run: sealed
    report = run_pipeline(layout, instance)
    assert report.already_loaded and len(report.run_ids) == 1  # no ingest: the link job alone
    after = {t: _query(layout, f"select * from {t} order by all") for t in tables}
    assert [t for t in tables if not after[t].equals(before[t])] == []
    kept, computed = set(), set()
    for event in instance.all_logs(report.run_ids[0]):
        materialization = event.asset_materialization
        if materialization is not None and FINGERPRINT in materialization.metadata:
            (kept if "unchanged" in materialization.metadata else computed).add(materialization.asset_key)
    assert computed == set()  # every step that can keep its tables did
    # the cross-justice lookup and the case link kept their tables: no pair scored, no case linked again
    assert {AssetKey(["linkage", "xjs", "edges"]), AssetKey(["linkage", "xjs", "lookup"]),
            AssetKey(["linkage", "criminal_courts", "case_lookup"])} <= kept
    stages = {key.path[0] for key in kept}
    assert {"linkage", "linked", "deidentified", "synthetic", "catalogue"} <= stages
    manifest = latest_manifest(layout.releases, "deidentified")
    assert all("carried_over_from" in t["gates"] for t in manifest["tables"])
    contracts = [e.asset_check_evaluation for e in instance.all_logs(report.run_ids[0])
                 if e.asset_check_evaluation is not None and e.asset_check_evaluation.check_name == "contract"]
    assert contracts and all(c.passed for c in contracts)
    assert sum("verified_in_run" in c.metadata for c in contracts) > len(contracts) // 2
    # the run opened the warehouse as the first one's close sealed it: no table hashed for its checks
    read = [c.metadata["content_read"].value for c in contracts]
    assert "hashed from the stored rows" not in read
    assert sum(r.startswith("as the table's latest write recorded it") for r in read) > len(read) // 2


def _pandera_passes(frame: pl.DataFrame, schema) -> bool:
    from datafirst_assets.common.pandera_polars import pa

    try:
        schema.validate(frame, lazy=True)
        return True
    except (pa.errors.SchemaErrors, pa.errors.SchemaError):
        return False


def _broken_copies(frame: pl.DataFrame, schema):
    """The table with one rule broken at a time: a null, a duplicate, values out of any range or
    pattern, another dtype, a column missing, one too many, the order changed."""
    first = pl.int_range(pl.len()) == 0
    for name, column in list(schema.columns.items())[:8]:
        if name not in frame.columns:
            continue
        yield frame.with_columns(pl.when(first).then(None).otherwise(pl.col(name)).alias(name))
        if frame.height >= 2:
            yield frame.with_columns(pl.lit(frame[name][0]).alias(name))
        dtype = frame.schema[name]
        if dtype.is_numeric():
            for extreme in (-10**9, 10**9):
                yield frame.with_columns(pl.when(first).then(pl.lit(extreme).cast(dtype, strict=False))
                                         .otherwise(pl.col(name)).alias(name))
            yield frame.with_columns(pl.col(name).cast(pl.String))
        elif dtype == pl.String:
            for odd in ("", "not a value any rule allows \u00e9"):
                yield frame.with_columns(pl.when(first).then(pl.lit(odd)).otherwise(pl.col(name)).alias(name))
            yield frame.with_columns(pl.col(name).cast(pl.Categorical))
    yield frame.drop(frame.columns[-1])
    yield frame.with_columns(pl.lit(1).alias("a_column_no_contract_has"))
    yield frame.select(list(reversed(frame.columns)))


def test_the_contract_fast_path_never_passes_what_pandera_fails(pipeline):
    """`contracts.fast_path.holds_for_certain` answers True only where pandera's validation passes:
    on every stored table of the pipeline, and on broken copies of one table per contract stage. And it
    does answer True for most stored tables (else `make demo` pays pandera's query per rule again)."""
    from datafirst_assets.contracts.fast_path import holds_for_certain
    from datafirst_assets.contracts.registry import contract_for

    layout = pipeline[0]
    with warehouse_cursor(layout.warehouse) as conn:
        stored = conn.execute("select schema_name, table_name from duckdb_tables() "
                              "where not starts_with(table_name, '__')").fetchall()
    by_stage, fast_true, checked = {}, 0, 0
    for schema_name, table in stored:
        contract = contract_for(AssetKey([*schema_name.split("_", 1), table]))
        if contract is None:
            continue
        frame = _query(layout, f'select * from "{schema_name}"."{table}"')
        fast, passes = holds_for_certain(frame, contract), _pandera_passes(frame, contract)
        assert passes or not fast, f"{schema_name}.{table}: the fast path passed what pandera fails"
        checked, fast_true = checked + 1, fast_true + fast
        if fast and frame.height >= 2:
            by_stage.setdefault(schema_name.split("_", 1)[0], (schema_name, table, frame, contract))
    assert checked >= 100 and fast_true >= 0.7 * checked, (checked, fast_true)
    assert {"raw", "staged", "linkage", "linked", "deidentified", "synthetic"} <= set(by_stage)
    broken_and_caught = 0
    for schema_name, table, frame, contract in by_stage.values():
        for broken in _broken_copies(frame, contract):
            passes = _pandera_passes(broken, contract)
            assert passes or not holds_for_certain(broken, contract), (
                f"{schema_name}.{table}: the fast path passed a broken copy pandera fails")
            broken_and_caught += not passes
    assert broken_and_caught >= 50, broken_and_caught  # the copies did break rules


def test_without_truth_the_evaluation_steps_read_none_of_their_inputs(pipeline, monkeypatch):
    """A production run has no truth: the evaluation steps say so without reading every dataset's
    clusters and pairs and the whole lookup (~1 s of a 1M-people run spent for nothing)."""
    from datafirst_assets.warehouse.io_manager import StoredTable

    layout, _, _, instance = pipeline

    read = StoredTable.relation

    def refuse(self, connection, columns=None):  # every read of a stored table goes through here
        if self.table != "quality":  # the quality table is small and an input of the step itself
            raise AssertionError(f"{self.schema}.{self.table} read with no truth to measure against")
        return read(self, connection, columns)

    monkeypatch.setattr(StoredTable, "relation", refuse)
    monkeypatch.delenv(TRUTH_DIR_ENV, raising=False)
    result = build_definitions(layout.root).resolve_job_def(LINK_JOB).execute_in_process(
        instance=instance, asset_selection=[LINKAGE_EVALUATION, XJS_EVALUATION], raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    status = _query(layout, "select * from evaluation.xjs")
    assert status["status"][0].startswith("no truth available")
