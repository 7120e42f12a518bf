"""A new extract's person records computed again only for the records it can touch
(`records.touched_records_sql`, `defs.linkage._records_changes`) give exactly the table a build from
every staged row gives: records re-sent, changed, gone, turned companies, a whole extract date
changed or withdrawn."""

from __future__ import annotations

import random

import polars as pl
import pytest
from dagster import DagsterInstance, SourceAsset, materialize

from datafirst_assets.defs.linkage import LinkageSettings, build_dedupe_assets
from datafirst_assets.defs.resources import DataLayout, build_resources
from datafirst_assets.linkage.records import changed_partitions, person_records, records_change, touched_records_sql
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.content import fingerprint_by_partition, table_fingerprint
from datafirst_assets.warehouse.io_manager import StoredTable
from datafirst_assets_tests.test_deidentify import staged_frame

SOURCE = SOURCES["civil"]  # its parties have a party type: a record's latest version may be a company's
TABLE = SOURCE.person_table
DATES = ("2024-01-31", "2024-04-30", "2024-07-29")
NAMES = ["SMITH", "O'BRIEN", "JONES LTD", "ACME HOLDINGS LIMITED", "OKAFOR", None]


def _row(rng: random.Random, i: int, date: str) -> dict:
    return dict(party_id=f"P{i:05d}", case_id=f"C{i // 3:05d}", role=rng.choice(["CLAIMANT", "DEFENDANT"]),
                party_type=rng.choice(["INDIVIDUAL", "INDIVIDUAL", "COMPANY", None]),
                forename=rng.choice(["AMY", "BEN", None]), surname=rng.choice(NAMES),
                postcode=rng.choice(["LS6 2AB", "M1 1AE", None]),
                address_line1=rng.choice(["12 HIGH STREET", "NFA", None]), extract_date=date)


def _staged(rows: list[dict]) -> pl.DataFrame:
    frame = staged_frame("civil", TABLE.name, [{k: v for k, v in r.items() if k != "extract_date"} for r in rows])
    return frame.with_columns(pl.Series("extract_date", [r["extract_date"] for r in rows], dtype=pl.String))


def _worlds(seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Staged rows when the stored records were made, and now: the second date re-delivered with a
    record gone and one changed, a third date of new and re-sent records (some now a company's), and in
    some worlds the first date withdrawn."""
    rng = random.Random(seed)
    first = [_row(rng, i, DATES[0]) for i in range(60)]
    second = [_row(rng, i, DATES[1]) for i in rng.sample(range(60), 15)] + [_row(rng, i, DATES[1]) for i in range(60, 70)]
    before = first + second
    # the second date delivered again: its first record gone, its third changed
    second_now = [second[1], {**second[2], "postcode": "ZZ1 1ZZ"}, *second[3:]]
    third = [_row(rng, i, DATES[2]) for i in rng.sample(range(70), 12)] + [_row(rng, i, DATES[2]) for i in range(70, 80)]
    now = (first if seed % 2 else []) + second_now + third
    return _staged(before), _staged(now)


def _write(conn, name: str, frame: pl.DataFrame) -> None:
    arrow = frame.to_arrow()  # noqa: F841 (read by name in the SQL)
    conn.execute(f"create or replace table {name} as select * from arrow")


@pytest.mark.parametrize("seed", range(8))
def test_recomputing_the_touched_records_gives_the_table_built_from_every_row(tmp_path, seed):
    before, now = _worlds(seed)
    stored = person_records(before, SOURCE, TABLE)
    database = str(tmp_path / "w.duckdb")
    with warehouse_cursor(database) as conn:
        _write(conn, "staged_before", before)
        _write(conn, "staged", now)
        _write(conn, "records", stored)
        dates_before = fingerprint_by_partition(conn, StoredTable(database, "main", "staged_before"), "extract_date")[1]
        whole, dates_now = fingerprint_by_partition(conn, StoredTable(database, "main", "staged"), "extract_date")
        assert whole == table_fingerprint(conn, StoredTable(database, "main", "staged"))  # the same pass gives both
        changed = changed_partitions(dates_before, dates_now)
        assert changed == (list(DATES[:3]) if seed % 2 == 0 else list(DATES[1:]))
        touched = conn.sql(touched_records_sql("select * from staged", "select * from records", TABLE.id_column,
                                               changed)).pl()["record_id"].implode()
    rows = now.filter(pl.col(TABLE.id_column).is_in(touched))
    assert rows.height < now.height or seed % 2 == 0
    deletes, updates, inserts = records_change(person_records(rows, SOURCE, TABLE),
                                               stored.filter(pl.col("record_id").is_in(touched)))
    # applied as the IO manager applies it: deleted, updated where they are, appended
    kept = stored.join(deletes, on="record_id", how="anti")
    applied = pl.concat([kept.update(updates, on="record_id", include_nulls=True), inserts]) if kept.height else inserts
    expected = person_records(now, SOURCE, TABLE)
    assert deletes.height + updates.height + inserts.height > 0
    if inserts.height and kept.height and inserts["record_id"].min() < kept["record_id"].max():
        applied = applied.sort("record_id")  # not appendable: the IO manager writes the rows in record order
    assert applied.equals(expected)


def _materialise(layout: DataLayout, instance: DagsterInstance, staged: pl.DataFrame, mode: str) -> dict:
    with warehouse_cursor(layout.warehouse) as conn:
        conn.execute(f"create schema if not exists staged_{SOURCE.key}")
        _write(conn, f"staged_{SOURCE.key}.{TABLE.name}", staged)
    records = build_dedupe_assets(SOURCE)[0]
    staged_asset = SourceAsset(key=list(records.dependency_keys)[0], metadata={"schema": f"staged_{SOURCE.key}"})
    return _materialized_metadata(layout, instance, mode, [staged_asset], records)


def _materialized_metadata(layout: DataLayout, instance, mode: str, upstream: list, asset) -> dict:
    """`asset` materialised over `upstream` in `mode`: its materialization's metadata, as values."""
    result = materialize([*upstream, asset], instance=instance, selection=[asset.key],
                         resources={**build_resources(layout), "linkage": LinkageSettings(data_dir=str(layout.root),
                                                                                          mode=mode)})
    assert result.success
    (event,) = result.asset_materializations_for_node(asset.node_def.name)
    return {k: getattr(v, "value", v) for k, v in event.metadata.items()}


def _stored(layout: DataLayout, table: str = f"linkage_{SOURCE.key}.person_records") -> pl.DataFrame:
    with warehouse_cursor(layout.warehouse) as conn:
        conn.execute("set preserve_insertion_order = true")  # the stored order
        return pl.from_arrow(conn.sql(f"select * from {table}").to_arrow_table())


@pytest.mark.parametrize("seed", [0, 2, 5])  # 0: a new record sorts first (the table sorted again)
def test_the_incremental_person_records_step_stores_what_a_full_build_stores(tmp_path, seed):
    before, now = _worlds(seed)
    layout, instance = DataLayout(tmp_path / "inc" / "data"), DagsterInstance.ephemeral()
    first = _materialise(layout, instance, before, "incremental")
    assert "write" not in first  # nothing stored yet: every record computed
    second = _materialise(layout, instance, now, "incremental")
    fresh = DataLayout(tmp_path / "full" / "data")
    _materialise(fresh, DagsterInstance.ephemeral(), now, "full")
    # written in place, also when a new record sorts before stored ones (the table is then sorted again,
    # not rewritten from every staged row: ids as text pass "999999" -> "1000000" at 1,000,000 people)
    stored, expected = person_records(before, SOURCE, TABLE), person_records(now, SOURCE, TABLE)
    new_ids = expected.join(stored, on="record_id", how="anti")["record_id"]
    assert seed != 0 or new_ids.min() < stored["record_id"].max()
    assert second["write"].startswith("in place"), second["write"]
    assert _stored(layout).equals(_stored(fresh))
    assert _stored(layout).equals(person_records(now, SOURCE, TABLE))
    # and a stored table not what its last write validated is written whole, from every staged row
    with warehouse_cursor(layout.warehouse) as conn:
        conn.execute(f"update linkage_{SOURCE.key}.person_records set surname = 'TAMPERED'")
    third = _materialise(layout, instance, now.with_columns(pl.lit("X").alias("case_id")), "incremental")
    assert third["write"] == "rewritten whole"
    assert _stored(layout).equals(person_records(now.with_columns(pl.lit("X").alias("case_id")), SOURCE, TABLE))


# --- the linked table (staged person table + person id): only the records that can have changed -----

def _clusters(staged: pl.DataFrame, seed: int, moved: int) -> pl.DataFrame:
    """A person id for most records (every `moved`-th of them another one; some records none)."""
    ids = staged.select(pl.col(TABLE.id_column).alias("record_id")).unique().sort("record_id")
    rank = pl.int_range(pl.len())
    return ids.filter(rank % 9 != seed % 9).with_columns(
        (pl.when(rank % moved == 0).then(rank + 1000).otherwise(rank // 2 + 1)).cast(pl.Int64).alias(SOURCE.person_id_name))


def _as_staged(frame: pl.DataFrame) -> pl.DataFrame:
    """`_worlds`' rows as the staged table holds them (the load's and standardisation's columns; no person id)."""
    frame = frame.drop(SOURCE.person_id_name)
    return frame.with_columns(
        pl.lit("f.csv").alias("_source_file"), pl.int_range(2, pl.len() + 2, dtype=pl.Int64).alias("_row_number"),
        *[pl.col(c).alias(f"{c}_original") for c in ("forename", "surname", "company_name")],
        pl.lit(None, dtype=pl.String).alias("dob_issue"))


def _materialise_linked(layout: DataLayout, instance: DagsterInstance, staged: pl.DataFrame, clusters: pl.DataFrame,
                        mode: str) -> dict:
    from datafirst_assets.defs.ingest import staged_key
    from datafirst_assets.defs.linkage import linkage_key

    with warehouse_cursor(layout.warehouse) as conn:
        for schema, name, frame in ((f"staged_{SOURCE.key}", TABLE.name, _as_staged(staged)),
                                    (f"linkage_{SOURCE.key}", "clusters", clusters)):
            conn.execute(f"create schema if not exists {schema}")
            _write(conn, f"{schema}.{name}", frame)
    linked = build_dedupe_assets(SOURCE)[3]
    upstream = [SourceAsset(key=k, metadata={"schema": f"{k.path[0]}_{SOURCE.key}"}) for k in linked.dependency_keys]
    assert set(linked.dependency_keys) == {staged_key(SOURCE.key, TABLE.name), linkage_key(SOURCE.key, "clusters")}
    return _materialized_metadata(layout, instance, mode, upstream, linked)


def _stored_linked(layout: DataLayout) -> pl.DataFrame:
    return _stored(layout, f"linked_{SOURCE.key}.{TABLE.name}")


@pytest.mark.parametrize("seed", range(6))
def test_the_incremental_linked_step_recomputes_the_touched_records_and_stores_what_a_full_build_stores(tmp_path, seed):
    """Staged dates re-delivered, withdrawn or new, and person ids moved by linkage: the linked table
    changed from the records those touch equals the one built from every row; a third run with only
    person ids moved recomputes those records alone."""
    from datafirst_assets.linkage.records import add_person_ids

    before, now = _worlds(seed)
    clusters_before, clusters_now = _clusters(before, seed, moved=11), _clusters(now, seed, moved=4 + seed % 3)
    layout, instance = DataLayout(tmp_path / "inc" / "data"), DagsterInstance.ephemeral()
    first = _materialise_linked(layout, instance, before, clusters_before, "incremental")
    assert "write" not in first and set(first["staged_dates"]["dates"]) == set(before["extract_date"])
    second = _materialise_linked(layout, instance, now, clusters_now, "incremental")
    assert second["write"].startswith("in place"), second["write"]  # also when new ids sort before stored ones
    fresh = DataLayout(tmp_path / "full" / "data")
    _materialise_linked(fresh, DagsterInstance.ephemeral(), now, clusters_now, "full")
    expected = add_person_ids(_as_staged(now), clusters_now, TABLE.id_column, SOURCE.person_id_name)
    assert _stored_linked(layout).equals(_stored_linked(fresh))
    assert _stored_linked(layout).equals(expected)
    # the same staged rows, three records given another person: those three rows updated, nothing else read
    moved = clusters_now.with_columns(pl.when(pl.int_range(pl.len()) % 17 == 3).then(pl.col(SOURCE.person_id_name) + 5000)
                                      .otherwise(pl.col(SOURCE.person_id_name)))
    third = _materialise_linked(layout, instance, now, moved, "incremental")
    changed = moved.join(clusters_now, on=["record_id", SOURCE.person_id_name], how="anti").height
    assert third["write"] == f"in place: 0 row(s) deleted, {changed} updated, 0 inserted"
    assert _stored_linked(layout).equals(add_person_ids(_as_staged(now), moved, TABLE.id_column, SOURCE.person_id_name))


def test_linked_touched_records_are_the_changed_dates_and_the_moved_person_ids(tmp_path):
    from datafirst_assets.linkage.records import add_person_ids, linked_touched_sql

    before, now = _worlds(3)
    clusters_before, clusters_now = _clusters(before, 3, moved=11), _clusters(now, 3, moved=5)
    before, now = _as_staged(before), _as_staged(now)
    linked = add_person_ids(before, clusters_before, TABLE.id_column, SOURCE.person_id_name)
    with warehouse_cursor(str(tmp_path / "w.duckdb")) as conn:
        for name, frame in (("staged", now), ("linked", linked), ("clusters", clusters_now)):
            _write(conn, name, frame)
        touched = set(conn.sql(linked_touched_sql("select * from staged", "select * from linked", "select * from clusters",
                                                  TABLE.id_column, SOURCE.person_id_name, [DATES[2]])).pl()["record_id"])
    expected = add_person_ids(now, clusters_now, TABLE.id_column, SOURCE.person_id_name)
    differ = set(expected.join(linked, on=expected.columns, how="anti", nulls_equal=True)[TABLE.id_column]) | \
        set(linked.join(expected, on=TABLE.id_column, how="anti")[TABLE.id_column])
    moved = set(expected.join(linked, on=TABLE.id_column).filter(
        pl.col(SOURCE.person_id_name).ne_missing(pl.col(SOURCE.person_id_name + "_right")))[TABLE.id_column])
    assert moved and moved <= touched
    assert set(now.filter(pl.col("extract_date") == DATES[2])[TABLE.id_column]) <= touched
    # every row that differs is touched, only dates 2 and 3 differ here (withdrawn date 1 aside)
    assert (differ - set(before.filter(pl.col("extract_date") == DATES[1])[TABLE.id_column])) <= touched


def _ids_passing_a_power_of_ten(frame: pl.DataFrame) -> pl.DataFrame:
    """`_worlds`' records numbered 99990, 99991, ... as text: the new ones (100060 on) sort before "99999"."""
    number = pl.col(TABLE.id_column).str.slice(1).cast(pl.Int64)
    return frame.with_columns((number + 99_990).cast(pl.String).alias(TABLE.id_column))


@pytest.mark.parametrize("seed", [1, 4])
def test_new_ids_sorting_before_stored_ones_still_change_the_linked_table_in_place(tmp_path, seed):
    """At 1,000,000 people the magistrates' record ids pass 999999 -> 1000000 as text, so every new
    record sorts before stored ones: the linked table (and the person records) were rewritten from every
    staged row on each new extract, dearer than in a full run. Now the change is applied in place and
    the table sorted again: the rows and order of the full build."""
    from datafirst_assets.linkage.records import add_person_ids

    before, now = (_ids_passing_a_power_of_ten(frame) for frame in _worlds(seed))
    clusters_before, clusters_now = _clusters(before, seed, moved=11), _clusters(now, seed, moved=5)
    layout, instance = DataLayout(tmp_path / "inc" / "data"), DagsterInstance.ephemeral()
    _materialise_linked(layout, instance, before, clusters_before, "incremental")
    second = _materialise_linked(layout, instance, now, clusters_now, "incremental")
    stored_max = before[TABLE.id_column].max()
    assert now.join(before, on=TABLE.id_column, how="anti")[TABLE.id_column].min() < stored_max  # sorts first
    assert second["write"].startswith("in place"), second["write"]
    fresh = DataLayout(tmp_path / "full" / "data")
    _materialise_linked(fresh, DagsterInstance.ephemeral(), now, clusters_now, "full")
    assert _stored_linked(layout).equals(_stored_linked(fresh))
    assert _stored_linked(layout).equals(add_person_ids(_as_staged(now), clusters_now, TABLE.id_column,
                                                        SOURCE.person_id_name))
    # the person records too
    records = DataLayout(tmp_path / "records" / "data")
    _materialise(records, instance, before, "incremental")
    assert _materialise(records, instance, now, "incremental")["write"].startswith("in place")
    assert _stored(records).equals(person_records(now, SOURCE, TABLE))
