"""In-process materialisation of every raw and staged asset, with its checks."""

import pytest
from dagster import DagsterInstance

from datafirst_assets.defs.resources import DataLayout
from datafirst_assets.definitions import build_definitions
from datafirst_assets.runner import PipelineFailed, format_summary, run_pipeline, warehouse_summary
from datafirst_assets.sources.registry import SOURCES, all_tables
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets_tests.deliveries import to_csv, valid_rows, write_delivery

DATES = ["2024-01-31", "2024-03-01"]


def _counts(layout, schema, table):
    with warehouse_cursor(layout.warehouse) as conn:
        return dict(conn.execute(
            f"select extract_date, count(*) from {schema}.{table} group by 1 order by 1").fetchall())


@pytest.fixture
def layout(tmp_path):
    layout = DataLayout(tmp_path / "data")
    for extract_date in DATES:
        for source in SOURCES:
            write_delivery(layout.landing, source, extract_date, rows=4)
    # one bad row in the second delivery of the magistrates' offences
    table = SOURCES["magistrates"].table("hocas_all_offence")
    rows = valid_rows(SOURCES["magistrates"], table, 4)
    rows[2]["offence_date"] = "2024-13-45"
    write_delivery(layout.landing, "magistrates", DATES[1], files={table.name: to_csv(rows, table.column_names)}, rows=4)
    return layout


def test_every_raw_and_staged_asset_materialises_with_checks(layout):
    instance = DagsterInstance.ephemeral()
    report = run_pipeline(layout, instance, link=False)
    assert len(report.deliveries) == len(SOURCES) * len(DATES)
    for source, table in all_tables():
        raw = _counts(layout, f"raw_{source.key}", table.name)
        staged = _counts(layout, f"staged_{source.key}", table.name)
        quarantined = _counts(layout, f"quarantine_{source.key}", table.name)
        assert raw == {d: 4 for d in DATES}
        for d in DATES:
            assert raw[d] == staged.get(d, 0) + quarantined.get(d, 0)
    assert _counts(layout, "quarantine_magistrates", "hocas_all_offence") == {DATES[1]: 1}

    # every staged asset's checks ran and passed, in every run
    evaluations = [
        e for run_id in report.run_ids
        for e in instance.get_records_for_run(run_id).records
        if e.event_log_entry.dagster_event and e.event_log_entry.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    # one run covers both dates: schema_valid and rows_conserved per staged table, and a `contract`
    # check per raw, staged and quarantine table
    assert len(evaluations) == (2 + 3) * len(all_tables())
    assert all(e.event_log_entry.dagster_event.event_specific_data.passed for e in evaluations)

    # re-running is idempotent: no duplicated rows
    run_pipeline(layout, instance, link=False)
    assert _counts(layout, "raw_prison", "nomis_movements") == {d: 4 for d in DATES}
    summary = format_summary(layout, report)
    assert "magistrates.hocas_all_offence" in summary and "warehouse.duckdb" in summary
    assert sum(q for *_, q in warehouse_summary(layout)) == 1


def test_a_corrupt_delivery_fails_the_run_with_the_file_named(layout):
    path = layout.landing / "prison" / DATES[0] / "nomis_movements.csv"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(PipelineFailed, match="nomis_movements.csv: sha256"):
        run_pipeline(layout, DagsterInstance.ephemeral(), dates=[DATES[0]], link=False)


def test_definitions_group_assets_by_stage_with_checks(tmp_path):
    defs = build_definitions(tmp_path)
    graph = defs.resolve_asset_graph()
    groups = {}
    for key in graph.get_all_asset_keys():
        groups.setdefault(graph.get(key).group_name, set()).add(key.path[1])
    assert groups["raw"] == groups["staged"] == groups["quarantine"] == set(SOURCES)
    linkage_groups = set().union(*(paths for group, paths in groups.items()
                                   if group == "linkage" or group.startswith("dedup_")))
    assert linkage_groups == {*SOURCES, "quality", "xjs", "criminal_courts"}
    for source in SOURCES:  # one group per dataset's dedupe: the lineage tells the seven models apart
        assert groups[f"dedup_{source}"] == {source}
    assert groups["linked"] == set(SOURCES)
    assert groups["deidentified"] == {*SOURCES, "linking"}
    # every stored table also has a `contract` check (test_gates); here, each stage's own checks
    own_checks = [k for k in graph.asset_check_keys if k.name != "contract"]
    released = [k for k in own_checks if k.asset_key.path[0] == "deidentified"]
    assert {k.name for k in released} == {"no_identifiers", "schema_valid", "disclosure_control"}
    assert len(released) == 3 * (len(all_tables()) + 2)
    staged_checks = [k for k in own_checks if k.asset_key.path[0] == "staged"]
    assert {k.name for k in staged_checks} == {"schema_valid", "rows_conserved"}
    assert len(staged_checks) == 2 * len(all_tables())
    linkage_checks = {(k.asset_key.to_user_string(), k.name) for k in own_checks
                      if k.asset_key.path[0] == "linkage"}
    assert linkage_checks == {(f"linkage/{s}/clusters", c) for s in SOURCES
                              for c in ("every_record_clustered", "no_chained_clusters")} | {
        ("linkage/quality", "accuracy_evidence"), ("linkage/xjs/lookup", "lookup_invariants"),
        ("linkage/criminal_courts/case_lookup", "one_to_one")}
    assert groups["evaluation"] == {"linkage", "xjs"}  # the only readers of truth
