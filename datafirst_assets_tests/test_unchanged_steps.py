"""Steps whose inputs did not change keep their stored tables (warehouse/unchanged.py), and a full
run or any change of input recomputes them, giving the same tables as a run from scratch."""

import json
import re
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from dagster import AssetCheckKey, AssetKey, DagsterInstance, materialize

from datafirst_assets.common.hashing import sha256_file
from datafirst_assets.catalogue.build import Catalogue
from datafirst_assets.catalogue.stored import load_catalogue, save_catalogue, stored_folder
from datafirst_assets.defs.release import release_assets
from datafirst_assets.deidentify.release_spec import release_tables
from datafirst_assets.release.publish import latest_manifest, parquet_metadata

from datafirst_assets.defs.deidentify import deidentified_key
from datafirst_assets.defs.linkage import LinkageSettings
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.io_manager import StoredTable
from datafirst_assets.warehouse.unchanged import CARRIED_OVER, inputs_fingerprint
from datafirst_assets_tests.test_deidentify import magistrates_extract
from datafirst_assets_tests.test_gates import (
    _deidentify_run,
    _placeholders,
    _publish,
    _release_warehouse,
    _resources,
)
from datafirst_assets_tests.warehouse_tables import write_table

FLATFILE = deidentified_key("magistrates", "hocas_flatfile")


def _kept(result) -> set[str]:
    return {m.asset_key.path[-1] for m in result.get_asset_materialization_events()
            if "unchanged" in m.materialization.metadata}


def _stored(tmp_path) -> pl.DataFrame:
    with warehouse_cursor(tmp_path / "warehouse.duckdb") as conn:
        return pl.from_arrow(conn.sql("select * from deidentified_magistrates.hocas_flatfile order by all").to_arrow_table())


def test_the_fingerprint_follows_content_not_row_order_and_sees_one_changed_value(tmp_path):
    database = tmp_path / "w.duckdb"
    frame = pl.DataFrame({"id": [1, 2, 3], "name": ["a", "b", None]})
    write_table(database, "s", "t", frame)
    table = StoredTable(str(database), "s", "t")
    first = inputs_fingerprint({"t": table})
    write_table(database, "s", "t", frame.reverse())
    assert inputs_fingerprint({"t": table}) == first
    assert inputs_fingerprint({"t": table}, settings="other") != first
    write_table(database, "s", "t", frame.with_columns(pl.Series("name", ["a", "b", "c"])))
    assert inputs_fingerprint({"t": table}) != first
    write_table(database, "s", "t", frame.with_columns(pl.col("id").cast(pl.Float64)))
    assert inputs_fingerprint({"t": table}) != first  # same values, another type


def test_unchanged_inputs_keep_the_stored_tables_and_carry_the_gates_over(tmp_path):
    instance = DagsterInstance.ephemeral()
    first = _deidentify_run(tmp_path, magistrates_extract(), instance=instance)
    assert first.success and _kept(first) == set()
    stored = _stored(tmp_path)
    second = _deidentify_run(tmp_path, magistrates_extract(), instance=instance)
    assert second.success
    assert _kept(second) == {"hocas_flatfile", "hocas_all_offence", "magistrates"}  # tables and their catalogue
    assert _stored(tmp_path).equals(stored)
    gates = {e.check_name: e for e in second.get_asset_check_evaluations() if e.asset_key == FLATFILE}
    assert set(gates) == {"no_identifiers", "schema_valid", "disclosure_control"}
    assert all(g.passed and g.metadata[CARRIED_OVER].value == first.run_id for g in gates.values())
    record = instance.get_latest_asset_check_evaluation_record(AssetCheckKey(FLATFILE, "no_identifiers"))
    assert record.run_id == second.run_id


def test_a_changed_input_is_recomputed_as_a_run_from_scratch_would(tmp_path):
    instance = DagsterInstance.ephemeral()
    assert _deidentify_run(tmp_path, magistrates_extract(), instance=instance).success
    extract = magistrates_extract()
    extract["hocas_flatfile"] = extract["hocas_flatfile"].with_columns(
        pl.when(pl.col("defendant_case_id") == "DC0003").then(pl.lit("B09")).otherwise(pl.col("court_code"))
        .alias("court_code"))
    again = _deidentify_run(tmp_path, extract, instance=instance)
    assert again.success and _kept(again) == set()
    incremental = _stored(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert _deidentify_run(scratch, extract).success
    assert incremental.equals(_stored(scratch))
    assert "B09" in incremental["court_code"].to_list()


def test_a_full_run_recomputes_even_when_nothing_changed(tmp_path, monkeypatch):
    instance = DagsterInstance.ephemeral()
    assert _deidentify_run(tmp_path, magistrates_extract(), instance=instance).success

    def full_mode(*args, **kwargs):
        return {**_resources(*args, **kwargs), "linkage": LinkageSettings(data_dir=str(tmp_path), mode="full")}

    monkeypatch.setattr("datafirst_assets_tests.test_gates._resources", full_mode)
    again = _deidentify_run(tmp_path, magistrates_extract(), instance=instance)
    assert again.success and _kept(again) == set()


def test_a_republished_release_carries_the_gates_of_unchanged_tables_and_rescans_a_changed_one(tmp_path):
    _release_warehouse(tmp_path)
    assert _publish(tmp_path).success
    first = _manifest(tmp_path)
    assert all("carried_over_from" not in t["gates"] for t in first["tables"])
    with warehouse_cursor(tmp_path / "warehouse.duckdb") as conn:
        conn.execute("update deidentified_magistrates.hocas_flatfile set court_code = 'B07'")
    assert _publish(tmp_path).success
    second = _manifest(tmp_path)
    carried = {t["table"] for t in second["tables"] if t["gates"].get("carried_over_from") == first["release_id"]}
    assert carried == {t["table"] for t in first["tables"]} - {"hocas_flatfile"}
    assert second["gates"]["passed"] and all(t["gates"]["passed"] for t in second["tables"])
    assert second["release_id"] != first["release_id"]
    assert second["tables"] != first["tables"] and len(second["tables"]) == len(first["tables"])
    # the files of unchanged tables are linked from the first release, checksums verified; the changed one is new
    releases = tmp_path / "releases"
    linked = {t["table"] for t in second["tables"] if t.get("file_from") == first["release_id"]}
    assert linked == carried
    for entry in second["tables"]:
        file = releases / second["release_id"] / entry["path"]
        assert sha256_file(file) == entry["sha256"]
        assert parquet_metadata(file)["release_id"] == entry.get("file_from", second["release_id"])
        assert parquet_metadata(file)["content_sha256"] == entry["content_sha256"]
    # a linked file changed since it was published is written again, not linked
    before = {t["table"]: t for t in first["tables"]}
    victim = next(t for t in second["tables"] if t["table"] in linked and before[t["table"]]["rows"])
    tampered = releases / second["release_id"] / victim["path"]
    pq.write_table(pq.read_table(tampered).slice(1), tampered.with_suffix(".tmp"))
    tampered.with_suffix(".tmp").replace(tampered)  # a new file: the first release's link is untouched
    with warehouse_cursor(tmp_path / "warehouse.duckdb") as conn:
        conn.execute("update deidentified_magistrates.hocas_flatfile set court_code = 'B08'")
    assert _publish(tmp_path).success
    third = _manifest(tmp_path)
    again = next(t for t in third["tables"] if t["table"] == victim["table"])
    assert "file_from" not in again and again["sha256"] == sha256_file(releases / third["release_id"] / again["path"])
    assert again["content_sha256"] == victim["content_sha256"] and again["rows"] == victim["rows"]


def test_a_carried_file_older_than_its_manifest_is_linked_unread_and_one_changed_since_is_hashed(tmp_path, monkeypatch):
    """A carried table's file that was not modified after its release's manifest was written keeps the
    checksum that manifest recorded without being read again; one modified since is hashed, and written
    again when it differs. The manifests' checksums describe the files either way."""
    import os

    from datafirst_assets.release import publish

    _release_warehouse(tmp_path)
    assert _publish(tmp_path).success
    first = _manifest(tmp_path)
    releases = tmp_path / "releases"
    published = (releases / first["release_id"] / "manifest.json").stat().st_mtime_ns
    for entry in first["tables"]:  # written before their manifest, as every release's are (not within one clock tick)
        os.utime(releases / first["release_id"] / entry["path"], ns=(published - 10**9, published - 10**9))
    hashed = []
    real = publish.sha256_file
    monkeypatch.setattr(publish, "sha256_file", lambda path: hashed.append(Path(path).name) or real(path))
    with warehouse_cursor(tmp_path / "warehouse.duckdb") as conn:
        conn.execute("update deidentified_magistrates.hocas_flatfile set court_code = 'B07'")
    assert _publish(tmp_path).success
    second = _manifest(tmp_path)
    linked = {t["path"] for t in second["tables"] if t.get("file_from") == first["release_id"]}
    assert len(linked) == len(first["tables"]) - 1
    assert hashed == ["hocas_flatfile.parquet"]  # the changed table's new file only
    for entry in second["tables"]:
        assert real(releases / second["release_id"] / entry["path"]) == entry["sha256"]

    # a carried file changed in place after its manifest: hashed, found changed, written again
    victim = next(t for t in second["tables"] if t["path"] in linked and t["rows"])
    file = releases / second["release_id"] / victim["path"]
    pq.write_table(pq.read_table(file).slice(1), file.with_suffix(".tmp"))
    file.write_bytes(file.with_suffix(".tmp").read_bytes())  # same inode: the first release's link changes too
    file.with_suffix(".tmp").unlink()
    written = (releases / second["release_id"] / "manifest.json").stat().st_mtime_ns
    os.utime(file, ns=(written + 10**9, written + 10**9))
    hashed.clear()
    with warehouse_cursor(tmp_path / "warehouse.duckdb") as conn:
        conn.execute("update deidentified_magistrates.hocas_flatfile set court_code = 'B08'")
    assert _publish(tmp_path).success
    third = _manifest(tmp_path)
    again = next(t for t in third["tables"] if t["path"] == victim["path"])
    assert "file_from" not in again and again["sha256"] == real(releases / third["release_id"] / again["path"])
    assert Path(victim["path"]).name in hashed and again["content_sha256"] == victim["content_sha256"]


def _manifest(tmp_path) -> dict:
    import json

    from datafirst_assets.release.publish import latest_manifest

    manifest = latest_manifest(tmp_path / "releases", "deidentified")
    assert manifest is not None
    return json.loads(json.dumps(manifest))


def test_the_contract_check_passes_an_unchanged_table_unread_and_rechecks_one_changed_by_hand(tmp_path):
    from dagster import AssetSelection, materialize

    from datafirst_assets.contracts.checks import VERIFIED_IN
    from datafirst_assets_tests.warehouse_tables import checked_scored_pairs

    database = str(tmp_path / "wh.duckdb")
    pairs, checks, resources = checked_scored_pairs(database)
    instance = DagsterInstance.ephemeral()
    first = materialize([pairs, *checks], resources=resources, instance=instance)
    (checked,) = first.get_asset_check_evaluations()
    # the IO manager validated every row of the whole table as it wrote it: not read a second time
    assert checked.passed and checked.metadata[VERIFIED_IN].value == first.run_id
    assert checked.metadata["checked"].value.startswith("every row, validated before it was written")

    def check_again():
        result = materialize([pairs, *checks], resources=resources, instance=instance, raise_on_error=False,
                             selection=AssetSelection.checks_for_assets(pairs))
        (evaluation,) = result.get_asset_check_evaluations()
        return evaluation

    unchanged = check_again()
    assert unchanged.passed and unchanged.metadata[VERIFIED_IN].value == first.run_id
    assert check_again().metadata[VERIFIED_IN].value == first.run_id  # still the run that read it
    with warehouse_cursor(database) as conn:  # changed by hand, still valid: read and validated again
        conn.execute("update linkage_magistrates.scored_pairs set match_probability = 0.5 where record_id_l = 'b'")
    reread = check_again()
    assert reread.passed and VERIFIED_IN not in reread.metadata and reread.metadata["checked"].value == "every row"
    with warehouse_cursor(database) as conn:
        conn.execute("update linkage_magistrates.scored_pairs set match_probability = 7 where record_id_l = 'b'")
    changed = check_again()
    assert not changed.passed and VERIFIED_IN not in changed.metadata
    assert "e.g. 7.0" in changed.metadata["contract_report"].value
    assert not check_again().passed  # a failed check is never carried over as passed


def test_a_run_opening_the_sealed_warehouse_checks_tables_it_did_not_write_unhashed_and_a_file_written_outside_is_hashed(
        tmp_path, monkeypatch):
    """Closing the warehouse seals it; a run that opens it as sealed takes each table's fingerprint from
    its latest write's record. Written by another DuckDB client in between, the seal no longer holds:
    the check hashes the table, finds the change and fails."""
    import duckdb
    from dagster import AssetSelection

    from datafirst_assets.contracts import checks as check_module
    from datafirst_assets.warehouse.connection import close_warehouse, seal_path
    from datafirst_assets_tests.warehouse_tables import checked_scored_pairs

    database = str(tmp_path / "wh.duckdb")
    pairs, checks, resources = checked_scored_pairs(database)
    instance = DagsterInstance.ephemeral()
    first = materialize([pairs, *checks], resources=resources, instance=instance)
    hashed = []
    real = check_module.table_fingerprint
    monkeypatch.setattr(check_module, "table_fingerprint", lambda conn, table: hashed.append(table.table) or real(conn, table))

    def check_again():
        result = materialize([pairs, *checks], resources=resources, instance=instance, raise_on_error=False,
                             selection=AssetSelection.checks_for_assets(pairs))
        (evaluation,) = result.get_asset_check_evaluations()
        return evaluation

    open_since_before = check_again()  # opened by the first run: not this run's sealed opening
    assert open_since_before.passed and hashed == ["scored_pairs"]
    close_warehouse(database)
    assert seal_path(str(Path(database).resolve())).exists()
    sealed = check_again()
    assert sealed.passed and hashed == ["scored_pairs"]  # not hashed again
    assert sealed.metadata["checked"].value == "unchanged since verified row by row"
    assert sealed.metadata["content_read"].value.startswith("as the table's latest write recorded it")
    assert open_since_before.metadata["content_read"].value == "hashed from the stored rows"
    assert sealed.metadata["verified_in_run"].value == first.run_id
    assert sealed.metadata["content_fingerprint"].value == open_since_before.metadata["content_fingerprint"].value
    close_warehouse(database)
    with duckdb.connect(database) as outside:
        outside.execute("update linkage_magistrates.scored_pairs set match_probability = 7 where record_id_l = 'b'")
    changed = check_again()
    assert hashed == ["scored_pairs", "scored_pairs"]
    assert not changed.passed and "e.g. 7.0" in changed.metadata["contract_report"].value
    close_warehouse(database)


def test_a_warehouse_written_while_its_opener_waited_for_the_lock_is_not_taken_as_sealed(tmp_path, monkeypatch):
    """The seal is compared once the file is the opener's: a writer that held the file while it waited
    (a DuckDB client outside the pipeline) leaves it unsealed; a clean close seals it again."""
    import duckdb

    from datafirst_assets.warehouse import connection

    database = str(tmp_path / "w.duckdb")
    with warehouse_cursor(database) as conn:
        conn.execute("create table t as select 1 as x")
    connection.close_warehouse(database)
    real = connection._connect_waiting_for_lock

    def written_meanwhile(key, settings):
        with duckdb.connect(key) as other:
            other.execute("insert into t values (2)")
        return real(key, settings)

    monkeypatch.setattr(connection, "_connect_waiting_for_lock", written_meanwhile)
    with warehouse_cursor(database):
        pass
    assert not connection.opened_untouched_since(database, 0.0)
    connection.close_warehouse(database)
    monkeypatch.setattr(connection, "_connect_waiting_for_lock", real)
    with warehouse_cursor(database) as conn:
        assert conn.execute("select count(*) from t").fetchone()[0] == 2
    assert connection.opened_untouched_since(database, 0.0)
    connection.close_warehouse(database)


def test_a_new_partition_without_rows_leaves_the_fingerprint_unchanged(tmp_path):
    database = tmp_path / "w.duckdb"
    write_table(database, "s", "t", pl.DataFrame({"id": [1, 2], "extract_date": ["2024-01-31", "2024-01-31"]}))
    before = inputs_fingerprint({"t": StoredTable(str(database), "s", "t", "extract_date", ("2024-01-31",))})
    after = StoredTable(str(database), "s", "t", "extract_date", ("2024-01-31", "2024-03-31"))
    assert inputs_fingerprint({"t": after}) == before


def _publish_with_catalogues(tmp_path, instance):
    """Every de-identified catalogue asset, then the release (as the graph runs them)."""
    assets = [*_placeholders([deidentified_key(*k) for k in release_tables()]), *release_assets("deidentified")]
    keys = [key for a in assets[len(release_tables()):] for key in a.keys]
    return materialize(assets, selection=keys, resources=_resources(tmp_path), instance=instance, raise_on_error=False)


def _release_metadata(result) -> dict:
    event = next(m for m in result.get_asset_materialization_events()
                 if m.asset_key == AssetKey(["release", "deidentified"]))
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


def _without_generated_time(page: str) -> str:
    """A rendered page without its "Generated <minute> UTC" line: two builds a minute apart differ only there."""
    return re.sub(r"Generated \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "Generated <time>", page)


def test_an_incremental_release_reads_only_changed_tables_and_takes_the_stored_catalogues(tmp_path):
    _release_warehouse(tmp_path)
    instance = DagsterInstance.ephemeral()
    first = _publish_with_catalogues(tmp_path, instance)
    assert first.success
    datasets = len({dataset for dataset, _ in release_tables()})
    assert _release_metadata(first)["catalogues_reused"] == datasets  # built by the catalogue assets just before
    with warehouse_cursor(tmp_path / "warehouse.duckdb") as conn:
        conn.execute("update deidentified_magistrates.hocas_flatfile set court_code = 'B07'")
    second = _publish_with_catalogues(tmp_path, instance)
    assert second.success
    metadata = _release_metadata(second)
    # building every catalogue again read every release table; the unchanged ones are now not read at all
    assert metadata["tables_read"] == 1 and metadata["catalogues_reused"] == datasets
    # the same release as one whose catalogues are built from the tables (no stored catalogue)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    _release_warehouse(scratch)
    with warehouse_cursor(scratch / "warehouse.duckdb") as conn:
        conn.execute("update deidentified_magistrates.hocas_flatfile set court_code = 'B07'")
    assert _publish(scratch).success
    ours, theirs = _manifest(tmp_path), json.loads(json.dumps(latest_manifest(scratch / "releases", "deidentified")))
    assert ours["release_id"] == theirs["release_id"]
    assert [t["content_sha256"] for t in ours["tables"]] == [t["content_sha256"] for t in theirs["tables"]]
    for entry in theirs["catalogues"]:
        for fmt in ("markdown", "html"):
            path = entry.get(fmt)
            if path:
                assert (_without_generated_time((tmp_path / "releases" / ours["release_id"] / path).read_text())
                        == _without_generated_time((scratch / "releases" / theirs["release_id"] / path).read_text()))


def test_a_stored_catalogue_is_taken_only_for_the_tables_it_was_built_from(tmp_path):
    frame = pl.DataFrame({"dataset": ["d"], "table": ["t"]})
    catalogue = Catalogue("d", False, frame, frame, frame, "# md", "<p>html</p>")
    save_catalogue(tmp_path, catalogue, "fp1")
    loaded = load_catalogue(tmp_path, "d", "fp1", synthetic=False)
    assert (loaded.markdown, loaded.html) == (catalogue.markdown, catalogue.html)
    assert all(getattr(loaded, part).equals(getattr(catalogue, part)) for part in ("frame", "tables", "values"))
    assert load_catalogue(tmp_path, "d", "fp2", synthetic=False) is None  # other tables
    assert load_catalogue(tmp_path, "d", "fp1", synthetic=True) is None  # the other kind
    (stored_folder(tmp_path, "d") / "values.parquet").unlink()
    assert load_catalogue(tmp_path, "d", "fp1", synthetic=False) is None  # damaged: built again


def test_a_partition_validated_at_its_write_vouches_for_that_partition_only(tmp_path):
    from dagster import AssetKey as Key

    from datafirst_assets.warehouse.content import VALIDATED_CONTENT, VALIDATED_PARTITIONS
    from datafirst_assets.warehouse.io_manager import _validated_content

    database = str(tmp_path / "wh.duckdb")
    write_table(database, "linkage_magistrates", "scored_pairs",
                pl.DataFrame({"record_id_l": ["a", "b"], "extract_date": ["2024-01-31", "2024-03-01"]}))
    key = Key(["linkage", "magistrates", "scored_pairs"])
    with warehouse_cursor(database) as conn:
        whole = _validated_content(conn, key, StoredTable(database, "linkage_magistrates", "scored_pairs"),
                                   {"contract": "x"}, "run")
        part = _validated_content(conn, key, StoredTable(database, "linkage_magistrates", "scored_pairs",
                                                         "extract_date", ("2024-01-31",)), {"contract": "x"}, "run")
    assert whole["contract_validated_in_run"] == "run" and VALIDATED_CONTENT in whole
    assert VALIDATED_CONTENT not in part and list(part[VALIDATED_PARTITIONS].value) == ["2024-01-31"]


def _quarantine_by_date(dates: list[str]):
    """A partitioned quarantine table: the n-th date holds n rows."""
    from dagster import StaticPartitionsDefinition, asset

    @asset(key=["quarantine", "magistrates", "hocas_flatfile"], partitions_def=StaticPartitionsDefinition(dates),
           metadata={"schema": "quarantine_magistrates", "partition_expr": "extract_date"}, group_name="quarantine")
    def rows(context) -> pl.DataFrame:
        n = 1 + dates.index(context.partition_key)
        return pl.DataFrame({"extract_date": [context.partition_key] * n, "source": "magistrates",
                             "table": "hocas_flatfile", "record_id": [f"r{i}" for i in range(n)],
                             "_source_file": "f.csv", "_row_number": [2 + i for i in range(n)], "reason": "bad",
                             "raw_record": None}, schema_overrides={"raw_record": pl.String})
    return rows


def test_a_partitioned_table_is_verified_by_partition_and_only_a_changed_one_is_read_again(tmp_path):
    from dagster import AssetSelection

    from datafirst_assets.contracts.checks import VERIFIED_PARTITIONS, contract_checks
    from datafirst_assets.defs.resources import Warehouse
    from datafirst_assets.warehouse.io_manager import WarehouseIOManager

    dates = ["2024-01-31", "2024-03-01"]

    rows = _quarantine_by_date(dates)

    database = str(tmp_path / "wh.duckdb")
    resources = {"io_manager": WarehouseIOManager(database=database), "warehouse": Warehouse(database=database)}
    instance = DagsterInstance.ephemeral()

    def run(date=None):
        result = materialize([rows, *contract_checks([rows])], resources=resources, instance=instance,
                             partition_key=date, raise_on_error=False,
                             selection=None if date else AssetSelection.checks_for_assets(rows))
        (evaluation,) = result.get_asset_check_evaluations()
        return evaluation

    for date in dates:  # each date validated as it is written; the earlier one as the last check saw it
        loaded = run(date)
        assert loaded.passed and loaded.metadata["checked"].value.startswith("every partition unchanged")
    assert set(loaded.metadata[VERIFIED_PARTITIONS].value) == set(dates)
    with warehouse_cursor(database) as conn:  # one partition changed by hand, still valid: read again
        conn.execute("update quarantine_magistrates.hocas_flatfile set reason = 'other' where extract_date = '2024-01-31'")
    reread = run()
    assert reread.passed and reread.metadata["checked"].value == "every row"
    assert run().metadata["checked"].value.startswith("every partition unchanged")  # as this check verified it
    with warehouse_cursor(database) as conn:
        conn.execute("update quarantine_magistrates.hocas_flatfile set _row_number = 1 where extract_date = '2024-03-01'")
    assert not run().passed and not run().passed  # a failed check is never carried over as passed


def test_a_sealed_run_checks_a_partitioned_table_from_the_records_and_one_written_outside_is_read_again(
        tmp_path, monkeypatch):
    """A run that opens the sealed warehouse takes each earlier partition's content from the last
    passing check and the partition it writes from its own write: no partition is hashed, and the
    contents are those a hash gives. After another DuckDB client changed a partition, it is read."""
    import duckdb
    from dagster import AssetSelection

    from datafirst_assets.contracts import checks as check_module
    from datafirst_assets.contracts.checks import VERIFIED_PARTITIONS, contract_checks
    from datafirst_assets.contracts.registry import contract_for
    from datafirst_assets.defs.resources import Warehouse
    from datafirst_assets.warehouse.connection import close_warehouse
    from datafirst_assets.warehouse.io_manager import WarehouseIOManager

    dates = ["2024-01-31", "2024-03-01", "2024-04-30"]

    rows = _quarantine_by_date(dates)

    database = str(tmp_path / "wh.duckdb")
    resources = {"io_manager": WarehouseIOManager(database=database), "warehouse": Warehouse(database=database)}
    instance = DagsterInstance.ephemeral()
    hashed = []
    real = check_module.partition_contents
    monkeypatch.setattr(check_module, "partition_contents", lambda conn, table, name: hashed.append(table.table)
                        or real(conn, table, name))

    def run(date=None):
        result = materialize([rows, *contract_checks([rows])], resources=resources, instance=instance,
                             partition_key=date, raise_on_error=False,
                             selection=None if date else AssetSelection.checks_for_assets(rows))
        close_warehouse(database)  # as the command line does after each run: sealed
        (evaluation,) = result.get_asset_check_evaluations()
        return evaluation

    run(dates[0])
    assert hashed == ["hocas_flatfile"]  # the first run found no seal
    for date in dates[1:]:
        loaded = run(date)
        assert loaded.passed and loaded.metadata["content_read"].value.startswith("as the table's latest write")
    assert hashed == ["hocas_flatfile"]
    with warehouse_cursor(database) as conn:
        assert loaded.metadata[VERIFIED_PARTITIONS].value == real(
            conn, StoredTable(database, "quarantine_magistrates", "hocas_flatfile", "extract_date"),
            contract_for(rows.key).name)
    close_warehouse(database)
    with duckdb.connect(database) as outside:  # still valid, but not what was verified
        outside.execute("update quarantine_magistrates.hocas_flatfile set reason = 'other' where extract_date = '2024-01-31'")
    reread = run()
    assert len(hashed) == 2 and reread.passed and reread.metadata["checked"].value == "every row"
    with duckdb.connect(database) as outside:
        outside.execute("update quarantine_magistrates.hocas_flatfile set _row_number = 1 where extract_date = '2024-03-01'")
    assert not run().passed


def test_a_release_reads_each_table_once_for_its_gates_and_checksum_and_once_for_its_file(tmp_path):
    _release_warehouse(tmp_path)
    metadata = _release_metadata(_publish_with_catalogues(tmp_path, DagsterInstance.ephemeral()))
    # the dates of birth are joined while the gate holds the table, the checksum taken as it is scanned
    assert metadata["tables_read"] <= 2 * metadata["tables"]


def test_latest_metadata_reads_every_output_at_once_and_a_never_stored_output_is_never_unchanged():
    from dagster import DagsterInstance, asset, materialize

    from datafirst_assets.warehouse.unchanged import FINGERPRINT, latest_metadata, unchanged

    @asset
    def stored(context):
        context.add_output_metadata({FINGERPRINT: "abc"})
        return 1

    instance = DagsterInstance.ephemeral()
    assert materialize([stored], instance=instance).success
    never = AssetKey("never_stored")
    previous = latest_metadata(instance, [AssetKey("stored"), never])
    assert previous[never] == {}
    assert previous[AssetKey("stored")][FINGERPRINT].value == "abc"
    assert unchanged({AssetKey("stored"): previous[AssetKey("stored")]}, "abc", "incremental")
    assert not unchanged(previous, "abc", "incremental")  # the output never stored must be computed


def test_a_partitioned_table_written_in_its_run_is_checked_without_the_event_log_unless_changed_after(
        tmp_path, monkeypatch):
    """A first load: the run's own write validated every partition it stored, so its contract check
    compares the stored partitions' fingerprints with that write's (kept in the process) and asks the
    event log nothing; a partition changed after the write, inside the run, is read and validated again."""
    from dagster import StaticPartitionsDefinition, asset

    from datafirst_assets.contracts.checks import contract_checks
    from datafirst_assets.defs.resources import Warehouse
    from datafirst_assets.warehouse.io_manager import WarehouseIOManager

    DAY = "2024-01-31"

    @asset(key=["quarantine", "magistrates", "hocas_flatfile"], partitions_def=StaticPartitionsDefinition([DAY]),
           metadata={"schema": "quarantine_magistrates", "partition_expr": "extract_date"}, group_name="quarantine")
    def rows() -> pl.DataFrame:
        return pl.DataFrame({"extract_date": [DAY, DAY], "source": "magistrates", "table": "hocas_flatfile",
                             "record_id": ["r0", "r1"], "_source_file": "f.csv", "_row_number": [2, 3],
                             "reason": "bad", "raw_record": None}, schema_overrides={"raw_record": pl.String})

    database = str(tmp_path / "wh.duckdb")
    resources = {"io_manager": WarehouseIOManager(database=database), "warehouse": Warehouse(database=database)}
    asked = []
    real = DagsterInstance.get_latest_materialization_event
    monkeypatch.setattr(DagsterInstance, "get_latest_materialization_event",
                        lambda self, key: asked.append(key) or real(self, key))
    result = materialize([rows, *contract_checks([rows])], resources=resources, partition_key=DAY)
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed and asked == []
    assert evaluation.metadata["checked"].value.startswith("every partition unchanged")

    class ChangedAfterTheWrite(WarehouseIOManager):
        def handle_output(self, context, obj) -> None:
            super().handle_output(context, obj)
            with warehouse_cursor(self.database) as conn:  # still valid, but not what the write validated
                conn.execute("update quarantine_magistrates.hocas_flatfile set reason = 'other'")

    result = materialize([rows, *contract_checks([rows])], partition_key=DAY, raise_on_error=False,
                         resources={**resources, "io_manager": ChangedAfterTheWrite(database=database)})
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.metadata["checked"].value == "every row"


def test_a_remembered_partition_write_belongs_to_its_run_only(tmp_path):
    from datafirst_assets.warehouse.content import remember_validated_write, validated_in_run

    database = str(tmp_path / "wh.duckdb")
    remember_validated_write(database, "raw_civil", "cases", "run-a", {"2024-01-31": "c1"})
    assert validated_in_run(database, "raw_civil", "cases", "run-a") == {"2024-01-31": "c1"}
    assert validated_in_run(database, "raw_civil", "cases", "run-b") is None
    assert validated_in_run(database, "raw_civil", "hearings", "run-a") is None
    remember_validated_write(database, "raw_civil", "cases", "run-a", "whole")  # a later whole-table write
    assert validated_in_run(database, "raw_civil", "cases", "run-a") == "whole"
