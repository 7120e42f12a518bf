"""A write in place in a sealed warehouse: the stored table's sums as its last write recorded them."""

import duckdb
import polars as pl
from dagster import AssetKey, DagsterInstance, asset, materialize

from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.warehouse import io_manager
from datafirst_assets.warehouse.connection import close_warehouse, warehouse_cursor
from datafirst_assets.warehouse.content import VALIDATED_CONTENT
from datafirst_assets.warehouse.io_manager import ChangedRows, WarehouseIOManager
from datafirst_assets.warehouse.unchanged import latest_metadata

KEY = AssetKey(["linkage", "magistrates", "scored_pairs"])
PAIR = ("record_id_l", "record_id_r")


def _pairs(*ids: str) -> pl.DataFrame:
    return pl.DataFrame({"record_id_l": list(ids), "record_id_r": [f"{i}z" for i in ids],
                         "match_weight": [3.0] * len(ids), "match_probability": [0.9] * len(ids)},
                        schema={"record_id_l": pl.String, "record_id_r": pl.String, "match_weight": pl.Float64,
                                "match_probability": pl.Float64})


def _stored(database: str) -> pl.DataFrame:
    with warehouse_cursor(database) as conn:
        return pl.from_arrow(conn.sql("select * from linkage_magistrates.scored_pairs").to_arrow_table()).sort(PAIR)


def test_a_sealed_run_writes_in_place_without_hashing_the_stored_table_and_a_file_written_outside_is_hashed(
        tmp_path, monkeypatch):
    """The first run writes the table whole; each later run appends one pair as a change. A run that
    opened the warehouse as the last close sealed it takes the stored sums from the table's latest
    write; a run of a process that kept it open since, or of a file another client wrote, hashes the
    stored rows, and the outside change is caught (the table is rewritten to what the step expects)."""
    database = str(tmp_path / "wh.duckdb")
    stored_ids: list[str] = []

    @asset(key=KEY, metadata={"schema": "linkage_magistrates"}, group_name="linkage")
    def pairs(context):
        new = chr(ord("a") + len(stored_ids))
        expected = _pairs(*stored_ids, new)
        validated = latest_metadata(context.instance, [KEY])[KEY].get(VALIDATED_CONTENT)
        before, stored_ids[:] = list(stored_ids), [*stored_ids, new]
        if validated is None:
            return expected
        return ChangedRows(key=PAIR, deletes=_pairs().select(PAIR), updates=_pairs(), inserts=_pairs(new),
                           expected=expected, rewrite=expected, validated_before=validated.value,
                           appendable=bool(before))

    hashed: list[str] = []
    real = io_manager._stored_sums
    monkeypatch.setattr(io_manager, "_stored_sums", lambda conn, name, *a: hashed.append(name) or real(conn, name, *a))
    instance = DagsterInstance.ephemeral()
    resources = {"io_manager": WarehouseIOManager(database=database), "warehouse": Warehouse(database=database)}

    def run() -> str:
        result = materialize([pairs], resources=resources, instance=instance)
        (event,) = result.get_asset_materialization_events()
        return event.materialization.metadata["write"].value if "write" in event.materialization.metadata else "whole"

    assert run() == "whole"
    close_warehouse(database)
    assert run().startswith("in place: 0 row(s) deleted, 0 updated, 1 inserted") and hashed == []
    assert run().startswith("in place") and len(hashed) == 1  # kept open since the last run: not sealed
    close_warehouse(database)
    with duckdb.connect(database) as outside:
        outside.execute("update linkage_magistrates.scored_pairs set match_weight = 7 where record_id_l = 'a'")
    assert run() == "rewritten whole" and len(hashed) == 2
    assert _stored(database).equals(_pairs(*stored_ids))  # the outside change undone by the rewrite
    close_warehouse(database)
