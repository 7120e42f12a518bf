"""The linkage quality asset keeps the row of each dataset whose clusters, scored pairs, person
records and labels did not change (linkage/quality_parts.py): not read or assessed again, and the
table is the one assessing every dataset gives."""

import polars as pl
from dagster import AssetKey, AssetSpec, materialize

from datafirst_assets.defs.linkage import QUALITY, LinkageSettings, linkage_key, linkage_quality
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.io_manager import WarehouseIOManager
from datafirst_assets_tests.warehouse_tables import write_table


def _warehouse(root) -> None:
    for source in SOURCES:
        ids = [f"{source}-{i}" for i in range(4)]
        write_table(root / "wh.duckdb", f"linkage_{source}", "clusters", pl.DataFrame({
            "record_id": ids, "model_version": ["v1"] * 4, "match_threshold": [0.9] * 4,
            SOURCES[source].person_id_name: [1, 1, 2, 3]}))
        write_table(root / "wh.duckdb", f"linkage_{source}", "scored_pairs", pl.DataFrame({
            "record_id_l": [ids[0], ids[2]], "record_id_r": [ids[1], ids[3]], "match_weight": [5.0, -3.0],
            "match_probability": [0.97, 0.11]}))


def _quality(root, mode: str = "incremental") -> tuple[pl.DataFrame, str]:
    database = str(root / "wh.duckdb")
    upstream = [linkage_key(s, t) for s in SOURCES for t in ("clusters", "scored_pairs", "person_records")]
    placeholders = [AssetSpec(key=key, metadata={"schema": f"{key.path[0]}_{key.path[1]}"}).with_io_manager_key(
        "io_manager") for key in upstream]
    result = materialize([*placeholders, linkage_quality], selection=[QUALITY], resources={
        "io_manager": WarehouseIOManager(database=database), "warehouse": Warehouse(database=database),
        "linkage": LinkageSettings(data_dir=str(root), mode=mode)})
    assert result.success
    (event,) = [m for m in result.get_asset_materialization_events() if m.asset_key == AssetKey(["linkage", "quality"])]
    with warehouse_cursor(database) as conn:
        table = pl.from_arrow(conn.sql("select * from linkage.quality order by source").to_arrow_table())
    return table, event.materialization.metadata["datasets_kept"].value


def test_unchanged_datasets_keep_their_quality_rows_and_the_table_is_the_full_one(tmp_path):
    _warehouse(tmp_path)
    first, kept = _quality(tmp_path)
    assert kept == "none"
    again, kept = _quality(tmp_path)
    assert kept == ", ".join(SOURCES) and again.equals(first)
    with warehouse_cursor(tmp_path / "wh.duckdb") as conn:
        conn.execute("update linkage_magistrates.scored_pairs set match_probability = 0.95, match_weight = 4.0 "
                     "where record_id_l = 'magistrates-2'")
    changed, kept = _quality(tmp_path)
    assert kept == ", ".join(s for s in SOURCES if s != "magistrates")
    full, kept = _quality(tmp_path, mode="full")  # a full refresh assesses every dataset
    assert kept == "none" and changed.equals(full) and not changed.equals(first)
