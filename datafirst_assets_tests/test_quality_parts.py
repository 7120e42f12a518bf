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


def materialize_quality(root, mode: str = "incremental"):
    """`linkage/quality` materialised alone on the warehouse `root/wh.duckdb` (its inputs as stored there):
    the run's result and the asset's materialization metadata."""
    database = str(root / "wh.duckdb")
    upstream = [linkage_key(s, t) for s in SOURCES for t in ("clusters", "scored_pairs", "person_records")]
    placeholders = [AssetSpec(key=key, metadata={"schema": f"{key.path[0]}_{key.path[1]}"}).with_io_manager_key(
        "io_manager") for key in upstream]
    result = materialize([*placeholders, linkage_quality], selection=[QUALITY], resources={
        "io_manager": WarehouseIOManager(database=database), "warehouse": Warehouse(database=database),
        "linkage": LinkageSettings(data_dir=str(root), mode=mode)})
    assert result.success
    (event,) = [m for m in result.get_asset_materialization_events() if m.asset_key == AssetKey(["linkage", "quality"])]
    return result, event.materialization.metadata


def _quality(root, mode: str = "incremental", metadata: str = "datasets_kept") -> tuple[pl.DataFrame, object]:
    _, materialized = materialize_quality(root, mode)
    with warehouse_cursor(str(root / "wh.duckdb")) as conn:
        table = pl.from_arrow(conn.sql("select * from linkage.quality order by source").to_arrow_table())
    return table, materialized[metadata].value


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


def test_a_changed_dataset_recomputes_the_transitivity_flags_of_its_changed_pairs_only(tmp_path):
    _warehouse(tmp_path)
    with warehouse_cursor(tmp_path / "wh.duckdb") as conn:  # magistrates: a person of three sure links
        conn.execute("insert into linkage_magistrates.scored_pairs values "
                     "('magistrates-0', 'magistrates-2', 14.0, 0.9999), "
                     "('magistrates-1', 'magistrates-2', 12.0, 0.9998)")
    _, computed = _quality(tmp_path, metadata="computed")
    assert computed == {s: {"support_pairs": 4 if s == "magistrates" else 2} for s in SOURCES}  # first: every pair
    with warehouse_cursor(tmp_path / "wh.duckdb") as conn:  # re-scored below the near-certain links
        conn.execute("update linkage_magistrates.scored_pairs set match_weight = 4.0, match_probability = 0.95 "
                     "where record_id_l = 'magistrates-2'")
    changed, computed = _quality(tmp_path, metadata="computed")
    # the re-scored pair, and no other: its records' near-certain links are as they were
    assert computed == {"magistrates": {"support_pairs": 1}}
    with warehouse_cursor(tmp_path / "wh.duckdb") as conn:  # a near-certain link goes: its records' pairs move
        conn.execute("delete from linkage_magistrates.scored_pairs where record_id_l = 'magistrates-1'")
    changed, computed = _quality(tmp_path, metadata="computed")
    # records 1 and 2 lost a near-certain link: the three pairs left all have one of them
    assert computed == {"magistrates": {"support_pairs": 3}}
    full, _ = _quality(tmp_path, mode="full")
    assert changed.equals(full)


def test_tables_whose_writes_recorded_their_fingerprint_are_not_hashed_again(tmp_path, monkeypatch):
    """The quality asset takes each input table's fingerprint from the event log when its write
    recorded it (`unchanged.recorded_fingerprints`) instead of hashing every row of every dataset's
    clusters, scored pairs and person records again on every run; the rows are those hashing gives."""
    from dagster import DagsterInstance, asset

    from datafirst_assets.warehouse import unchanged

    database = str(tmp_path / "wh.duckdb")

    def stub(source: str, name: str, frame: pl.DataFrame):
        @asset(key=linkage_key(source, name), metadata={"schema": f"linkage_{source}"})
        def _table() -> pl.DataFrame:
            return frame
        return _table

    stubs = []
    for source in SOURCES:
        ids = [f"{source}-{i}" for i in range(4)]
        stubs += [
            stub(source, "clusters", pl.DataFrame({
                "record_id": ids, "model_version": ["v1"] * 4, "match_threshold": [0.9] * 4,
                SOURCES[source].person_id_name: [1, 1, 2, 3], "record_hash": ["h"] * 4})),
            stub(source, "scored_pairs", pl.DataFrame({
                "record_id_l": [ids[0], ids[2]], "record_id_r": [ids[1], ids[3]], "match_weight": [5.0, -3.0],
                "match_probability": [0.97, 0.11]})),
            stub(source, "person_records", pl.DataFrame({
                "record_id": ids, "source_dataset": [source] * 4, "extract_date": ["2024-01-31"] * 4})),
        ]
    instance = DagsterInstance.ephemeral()
    resources = {"io_manager": WarehouseIOManager(database=database), "warehouse": Warehouse(database=database),
                 "linkage": LinkageSettings(data_dir=str(tmp_path), mode="incremental")}
    assert materialize(stubs, instance=instance, resources=resources).success

    def no_hashing(*_):
        raise AssertionError("a linkage table was hashed although its write recorded its fingerprint")

    hashed = unchanged.table_fingerprint
    monkeypatch.setattr(unchanged, "table_fingerprint", no_hashing)
    result = materialize([*stubs, linkage_quality], selection=[QUALITY], instance=instance, resources=resources)
    assert result.success
    with warehouse_cursor(database) as conn:
        first = pl.from_arrow(conn.sql("select * from linkage.quality order by source").to_arrow_table())
    again = materialize([*stubs, linkage_quality], selection=[QUALITY], instance=instance, resources=resources)
    (event,) = [m for m in again.get_asset_materialization_events() if m.asset_key == QUALITY]
    assert event.materialization.metadata["datasets_kept"].value == ", ".join(SOURCES)
    monkeypatch.setattr(unchanged, "table_fingerprint", hashed)
    full, _ = _quality(tmp_path, mode="full")  # hashed, on an instance with no recorded fingerprints
    assert first.equals(full)


def test_a_kept_frame_as_it_was_read_is_linked_not_written_again(tmp_path):
    # while the no-label fits are reused, the transitivity flags and same-name counts are kept as read
    # (every pair's and every name's rows): linked into the new folder, not written again
    import os

    from datafirst_assets.linkage.quality_parts import PARTS, load_kept, save_part
    from datafirst_assets.linkage.threshold import KeptWork

    support = pl.DataFrame({"record_id_l": ["a", "b"], "record_id_r": ["c", "d"], "match_weight": [12.0, 3.0],
                            "supported": [1.0, 0.0], "checkable": [True, False]})
    facts = pl.DataFrame({"record_id_l": ["a"], "record_id_r": ["c"], "different": [False]})
    largest = pl.DataFrame({"cluster_id": ["1"]})
    save_part(tmp_path, "civil", "f1", {}, largest, kept=KeptWork(support=support, pair_facts=facts))
    folder = tmp_path / PARTS / "civil"
    inode = {f: os.stat(folder / f).st_ino for f in ("support.parquet", "pair_facts.parquet")}
    loaded = load_kept(tmp_path, "civil")
    changed = facts.with_columns(pl.lit(True).alias("different"))
    save_part(tmp_path, "civil", "f2", {}, largest, kept=KeptWork(support=loaded.support, pair_facts=changed),
              loaded=loaded)
    assert os.stat(folder / "support.parquet").st_ino == inode["support.parquet"]  # linked
    assert os.stat(folder / "pair_facts.parquet").st_ino != inode["pair_facts.parquet"]  # written
    again = load_kept(tmp_path, "civil")
    assert again.support.equals(support) and again.pair_facts.equals(changed)


def test_the_kept_blocking_lists_come_back_with_the_rules_they_were_read_with(tmp_path):
    # the lists are taken by the next assessment only under the same rules: their digest is kept with them
    from datafirst_assets.linkage.quality_parts import BLOCKING_RULES, PARTS, load_kept, save_part
    from datafirst_assets.linkage.threshold import KeptWork

    lists = pl.DataFrame({"by_names": [True, None], "by_dob": [False, None]})
    facts = pl.DataFrame({"record_id_l": ["a", "b"], "record_id_r": ["c", "d"], "different": [False, False]})
    largest = pl.DataFrame({"cluster_id": ["1"]})
    save_part(tmp_path, "civil", "f1", {}, largest,
              kept=KeptWork(pair_facts=facts, blocking=lists, blocking_rules="abc123"))
    loaded = load_kept(tmp_path, "civil")
    assert loaded.blocking.equals(lists) and loaded.blocking_rules == "abc123"
    (tmp_path / PARTS / "civil" / BLOCKING_RULES).unlink()
    assert load_kept(tmp_path, "civil").blocking_rules is None  # lists of unknown rules: not taken


def test_the_kept_frames_are_written_with_lz4(tmp_path):
    # written on every assessment of a changed dataset and read only by the next: lz4, about half
    # zstd's write time for the pair facts (a row per scored pair)
    import pyarrow.parquet as pq

    from datafirst_assets.linkage.quality_parts import PARTS, load_kept, save_part
    from datafirst_assets.linkage.threshold import KeptWork

    facts = pl.DataFrame({"record_id_l": ["a", "b"], "record_id_r": ["c", "d"], "different": [False, True]})
    save_part(tmp_path, "civil", "f1", {}, pl.DataFrame({"cluster_id": ["1"]}), kept=KeptWork(pair_facts=facts))
    written = pq.ParquetFile(tmp_path / PARTS / "civil" / "pair_facts.parquet").metadata
    assert {written.row_group(0).column(i).compression for i in range(written.num_columns)} == {"LZ4"}
    assert load_kept(tmp_path, "civil").pair_facts.equals(facts)
