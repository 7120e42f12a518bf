"""The synthetic assets in Dagster: from hand-built release assets to the report, with every check."""

import hashlib
import json

import polars as pl
from dagster import AssetOut, Output, materialize, multi_asset

from datafirst_assets.definitions import SYNTHETIC_JOB, build_definitions
from datafirst_assets.defs.linkage import LinkageSettings
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.deidentify.release_spec import release_tables
from datafirst_assets.defs.synthetic import (
    REPORT,
    SUMMARIES,
    SyntheticSettings,
    deidentified_key,
    synthetic_assets,
    synthetic_key,
)
from datafirst_assets.synthetic.fabricate import fabricate_release
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.io_manager import WarehouseIOManager

REAL: dict = {}


@multi_asset(outs={
    f"{s}__{t}": AssetOut(key=deidentified_key(s, t), metadata={"schema": f"deidentified_{s}"})
    for s, t in release_tables()
})
def release():
    for (s, t) in release_tables():
        yield Output(REAL[(s, t)], output_name=f"{s}__{t}")


def test_synthetic_assets_materialise_with_their_checks(tmp_path):
    REAL.update(fabricate_release(2000, seed=3))
    database = tmp_path / "warehouse.duckdb"
    result = materialize(
        [release, *synthetic_assets(defined=set(release.keys))],
        resources={"io_manager": WarehouseIOManager(database=str(database)),
                   "warehouse": Warehouse(database=str(database)),
                   "synthetic": SyntheticSettings(data_dir=str(tmp_path), seed=1),
                   "linkage": LinkageSettings(data_dir=str(tmp_path))},
        raise_on_error=False,
    )
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 1 + 2 * len(release_tables()) + 4  # summaries; schema + PII gate per table; report
    assert [(c.asset_key, c.check_name) for c in checks if not c.passed] == []

    materialised = {m.asset_key: m.materialization.metadata for m in result.get_asset_materialization_events()}
    text = (tmp_path / "synthetic" / "summaries.json").read_text()
    assert materialised[SUMMARIES]["sha256"].value == hashlib.sha256(text.encode()).hexdigest()
    for (s, t), spec in release_tables().items():
        metadata = materialised[synthetic_key(s, t)]
        assert metadata["synthetic"].value is True and "SYNTHETIC" in metadata["label"].value
        assert metadata["summaries_sha256"].value == materialised[SUMMARIES]["sha256"].value
    with warehouse_cursor(database) as conn:
        stored = pl.from_arrow(conn.sql("select * from synthetic_magistrates.hocas_flatfile").to_arrow_table())
        summaries = json.loads(conn.execute("select summaries_json from synthetic.summaries").fetchall()[0][0])
    assert stored.columns == release_tables()[("magistrates", "hocas_flatfile")].column_names
    assert summaries == json.loads(text)
    assert materialised[REPORT]["mean_shape_similarity"].value >= 0.9
    # a release this small is held whole by the report: each real and synthetic table read once
    assert materialised[REPORT]["tables_read"].value == 2 * len(release_tables())
    for path in ("reports/synthetic_report.md", "reports/synthetic_report.html", "synthetic/README.md"):
        assert (tmp_path / path).stat().st_size > 1000, path


def test_definitions_place_synthetic_assets_downstream_of_the_release(tmp_path):
    defs = build_definitions(tmp_path)
    graph = defs.resolve_asset_graph()
    assert deidentified_key("magistrates", "hocas_flatfile") in graph.get(SUMMARIES).parent_keys
    assert graph.get(synthetic_key("magistrates", "hocas_all_offence")).parent_keys == {SUMMARIES}
    assert synthetic_key("linking", "xjs_lookup") in graph.get(REPORT).parent_keys
    assert defs.resolve_job_def(SYNTHETIC_JOB) is not None


def test_the_assets_reading_every_release_table_depend_on_them_without_an_input_each():
    """The releases, the catalogues, the summaries and the report read the release tables by handle: the same lineage
    (deps), no input per table (each wrote two run events), and the handles name the tables where the
    IO manager stores them."""
    from dagster import AssetKey

    from datafirst_assets.defs.release import catalogue_key, stored_release_table, table_key

    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    readers = {AssetKey(["release", "deidentified"]): ("deidentified",), AssetKey(["release", "synthetic"]): ("synthetic",),
               AssetKey(["synthetic", "summaries"]): ("deidentified",),
               AssetKey(["synthetic", "report"]): ("deidentified", "synthetic")}
    for kind in ("deidentified", "synthetic"):  # each dataset's catalogue reads its tables the same way
        for dataset in {d for d, _ in release_tables()}:
            readers[catalogue_key(kind, dataset)] = (kind,)
    for key, kinds in readers.items():
        node = defs.resolve_assets_def(key).node_def
        assert [i.name for i in node.input_defs if not i.dagster_type.is_nothing] in ([], ["summaries"]), key
        tables = [tid for tid in release_tables() if key.path[0] != "catalogue" or tid[0] == key.path[-1]]
        assert {table_key(kind, *tid) for kind in kinds for tid in tables} <= graph.get(key).parent_keys
    for kind in ("deidentified", "synthetic"):
        for dataset, name in release_tables():
            schema = graph.get(table_key(kind, dataset, name)).metadata["schema"]
            assert stored_release_table("wh.duckdb", kind, dataset, name).schema == schema and name == table_key(
                kind, dataset, name).path[-1]


def test_the_assets_reading_every_datasets_linkage_tables_depend_on_them_without_an_input_each():
    """linkage/quality and the cross-justice lookup read every dataset's records, pairs or clusters by
    handle (`linkage_table`): the same lineage, no input per table, handles named as the IO manager stores them."""
    from dagster import AssetKey

    from datafirst_assets.defs.linkage import linkage_key, linkage_table
    from datafirst_assets.sources.registry import SOURCES

    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    readers = {AssetKey(["linkage", "quality"]): ("clusters", "scored_pairs", "person_records"),
               AssetKey(["linkage", "xjs", "lookup"]): ("person_records", "clusters")}
    for key, names in readers.items():
        node = defs.resolve_assets_def(key).node_def
        assert [i.name for i in node.input_defs if not i.dagster_type.is_nothing] == [], key
        assert {linkage_key(s, n) for s in SOURCES for n in names} <= graph.get(key).parent_keys
    for source in SOURCES:
        for name in ("clusters", "scored_pairs", "person_records"):
            schema = graph.get(linkage_key(source, name)).metadata["schema"]
            assert linkage_table("wh.duckdb", source, name).schema == schema


def test_the_report_holds_a_small_side_whole_and_a_large_one_two_tables_at_a_time():
    from datafirst_assets.synthetic.report_parts import HOLD_WHOLE_ROWS, tables_held

    small = {("a", str(i)): 1_000 for i in range(29)}
    assert tables_held(small) == 29
    assert tables_held({("a", "t"): 10}) == 2
    large = {("a", str(i)): HOLD_WHOLE_ROWS // 10 for i in range(29)}
    assert tables_held(large) == 2
