"""De-identification by row: an incremental run re-derives only new or changed records, keeps the
rest from the stored state, and gives exactly the tables a full rebuild gives; its gates still see
every row (a new identifier is looked for in kept rows too) and a refused run stores nothing."""

import re
from datetime import date

import polars as pl
import pytest
from dagster import DagsterInstance

from datafirst_assets.defs.deidentify import deidentified_key
from datafirst_assets.defs.linkage import LinkageSettings
from datafirst_assets.defs.release import catalogue_key
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets_tests import test_gates
from datafirst_assets_tests.test_deidentify import magistrates_extract, staged_frame
from datafirst_assets_tests.test_gates import _deidentify_run, _failed_checks

TABLES = ("hocas_flatfile", "hocas_all_offence")
SECOND = date(2024, 3, 1)


def _second_extract(first: dict[str, pl.DataFrame], **changes) -> dict[str, pl.DataFrame]:
    """The first extract plus a second date: a new defendant case with an offence, a new version of
    DC0003 (another hearing date and court), DC0002's person id changed by linkage, and offence
    OFF00002 no longer in the staged table."""
    flat, offences = first["hocas_flatfile"], first["hocas_all_offence"]
    newer = flat.filter(pl.col("defendant_case_id") == "DC0003").with_columns(
        pl.lit(SECOND).alias("extract_date"), pl.lit(date(2021, 3, 1)).alias("first_hearing_date"),
        pl.lit(changes.get("court_code", "B03")).alias("court_code"))
    new_id = changes.get("new_case", "DC0004")
    new_case = staged_frame("magistrates", "hocas_flatfile", [dict(
        defendant_case_id=new_id, case_id="CASE00004", defendant_id=changes.get("defendant_id", "DEF00004"),
        forename1="GRACE", surname="OKAFOR", dob=date(1985, 1, 2), sex="F", ethnicity="B1", postcode="M1 1AE",
        pnc_id="1985/0099999A", court_code="B01", first_hearing_date=date(2024, 2, 20), offence_group="THEFT",
        outcome="CONVICTED", estimated_defendant_id=3, extract_date=SECOND)])
    flat = pl.concat([flat.with_columns(pl.when(pl.col("defendant_case_id") == "DC0002").then(4)
                                        .otherwise(pl.col("estimated_defendant_id")).alias("estimated_defendant_id")),
                      newer, new_case])
    new_offence = staged_frame("magistrates", "hocas_all_offence", [dict(
        offence_id="OFF00005", defendant_case_id=new_id, offence_group="THEFT", offence_date=date(2024, 2, 1),
        extract_date=SECOND)])
    offences = pl.concat([offences.filter(pl.col("offence_id") != "OFF00002"), new_offence])
    return {"hocas_flatfile": flat, "hocas_all_offence": offences}


def _tables(path) -> dict[str, pl.DataFrame]:
    """The stored de-identified tables in their stored order (no ORDER BY: the order is content)."""
    with warehouse_cursor(path / "warehouse.duckdb") as conn:
        return {t: pl.from_arrow(conn.sql(f"select * from deidentified_magistrates.{t}").to_arrow_table())
                for t in TABLES}


def _metadata(result) -> dict[str, dict]:
    return {m.asset_key.path[-1]: {k: getattr(v, "value", v) for k, v in m.materialization.metadata.items()}
            for m in result.get_asset_materialization_events() if m.asset_key.path[0] == "deidentified"}


def _full_mode(monkeypatch, tmp_path) -> None:
    original = test_gates._resources

    def full(*args, **kwargs):
        return {**original(*args, **kwargs), "linkage": LinkageSettings(data_dir=str(tmp_path), mode="full")}

    monkeypatch.setattr(test_gates, "_resources", full)


@pytest.mark.parametrize("in_place", [True, False], ids=["changed in place", "rewritten whole"])
def test_an_incremental_extract_re_derives_only_changed_rows_and_equals_a_full_rebuild(tmp_path, monkeypatch,
                                                                                       in_place):
    if not in_place:  # the IO manager's fallback: the table written whole from the state
        monkeypatch.setattr("datafirst_assets.warehouse.io_manager._why_not_in_place", lambda *a: "forced")
    instance = DagsterInstance.ephemeral()
    first = magistrates_extract()
    one = _deidentify_run(tmp_path, first, instance=instance)
    assert one.success
    assert _metadata(one)["hocas_flatfile"]["deidentify_mode"].startswith("full rebuild: no row state")
    two = _deidentify_run(tmp_path, _second_extract(first), instance=instance)
    assert two.success, _failed_checks(two)
    meta = _metadata(two)
    assert meta["hocas_flatfile"]["deidentify_mode"].startswith("by row")
    # DC0002 (person id), DC0003 (new version), DC0004 (new) re-derived; DC0001 kept
    assert (meta["hocas_flatfile"]["rows_kept"], meta["hocas_flatfile"]["rows_rederived"],
            meta["hocas_flatfile"]["rows_removed"]) == (1, 3, 0)
    assert (meta["hocas_all_offence"]["rows_kept"], meta["hocas_all_offence"]["rows_rederived"],
            meta["hocas_all_offence"]["rows_removed"]) == (3, 1, 1)
    # only the changed rows written: DC0002 and DC0003 updated where they are, DC0004 appended;
    # OFF00002 deleted, OFF00005 appended (the kept rows are neither read nor written)
    assert meta["hocas_flatfile"]["write"] == ("in place: 0 row(s) deleted, 2 updated, 1 inserted" if in_place
                                                else "rewritten whole")
    assert meta["hocas_all_offence"]["write"] == ("in place: 1 row(s) deleted, 0 updated, 1 inserted" if in_place
                                                   else "rewritten whole")
    assert meta["hocas_flatfile"]["dagster/row_count"] == 4
    incremental = _tables(tmp_path)
    assert "B03" in incremental["hocas_flatfile"]["court_code"].to_list()

    _full_mode(monkeypatch, tmp_path)
    full = _deidentify_run(tmp_path, _second_extract(first), instance=instance)
    assert full.success and _metadata(full)["hocas_flatfile"]["deidentify_mode"] == "full rebuild: full mode"
    rebuilt = _tables(tmp_path)
    for table in TABLES:
        assert incremental[table].equals(rebuilt[table]), table  # same rows, same order, same types


@pytest.mark.parametrize("larger_than_a_row_group", [True, False], ids=["large table", "small table"])
def test_new_records_sorting_before_stored_ones_are_appended_to_a_table_larger_than_a_row_group(
        tmp_path, monkeypatch, larger_than_a_row_group):
    """Staged ids are text: at 1,000,000 people the magistrates' new ids (`1350537`) sort before the stored
    `999999`. A table larger than one row group keeps no stored order (nothing reads it in order), so the
    new record is appended in place instead of the table being rewritten from the state and validated
    whole; a table of one row group is still rewritten in staged-id order, the order a full rebuild gives.
    Either way the content is the full rebuild's."""
    if larger_than_a_row_group:  # the 4 released rows stand for a table of more than one row group
        monkeypatch.setattr("datafirst_assets.deidentify.by_row.UNORDERED_BEYOND", 2)
    instance = DagsterInstance.ephemeral()
    first = magistrates_extract()
    assert _deidentify_run(tmp_path, first, instance=instance).success
    second = _second_extract(first, new_case="DC00004")  # as text before every stored id (DC0001...)
    two = _deidentify_run(tmp_path, second, instance=instance)
    assert two.success, _failed_checks(two)
    meta = _metadata(two)
    assert meta["hocas_flatfile"]["write"] == ("in place: 0 row(s) deleted, 2 updated, 1 inserted"
                                                if larger_than_a_row_group else "rewritten whole")
    # only the written rows were validated against the contract, not the whole table again
    assert meta["hocas_flatfile"]["contract_rows_checked"] == (3 if larger_than_a_row_group else 4)
    incremental = _tables(tmp_path)
    _full_mode(monkeypatch, tmp_path)
    assert _deidentify_run(tmp_path, second, instance=instance).success
    rebuilt = _tables(tmp_path)
    for table in TABLES:
        if larger_than_a_row_group:  # same rows (the new one last instead of first)
            incremental[table], rebuilt[table] = (incremental[table].sort(pl.all()), rebuilt[table].sort(pl.all()))
        assert incremental[table].equals(rebuilt[table]), table


def test_a_changed_row_carrying_an_identifier_is_refused_by_row_and_nothing_moves(tmp_path):
    instance = DagsterInstance.ephemeral()
    first = magistrates_extract()
    assert _deidentify_run(tmp_path, first, instance=instance).success
    before = _tables(tmp_path)
    # DC0003's new version carries a raw PNC (of DC0001, an unchanged record) in a kept column
    refused = _deidentify_run(tmp_path, _second_extract(first, court_code="1990/0012345Z"), instance=instance)
    assert not refused.success
    failed = _failed_checks(refused)
    assert set(failed) == {("hocas_flatfile", "no_identifiers")}
    assert "court_code" in failed[("hocas_flatfile", "no_identifiers")]["findings"].value
    materialised = {m.asset_key for m in refused.get_asset_materialization_events()}
    assert catalogue_key("deidentified", "magistrates") not in materialised
    assert deidentified_key("magistrates", "hocas_flatfile") not in materialised
    after = _tables(tmp_path)
    assert all(before[t].equals(after[t]) for t in TABLES)  # the stored tables stay as they were
    # the state did not move: the corrected extract re-derives the same rows as if nothing was refused
    fixed = _deidentify_run(tmp_path, _second_extract(first), instance=instance)
    assert fixed.success and _metadata(fixed)["hocas_flatfile"]["rows_rederived"] == 3


def test_a_kept_row_equal_to_a_new_records_identifier_fails_the_gate(tmp_path):
    instance = DagsterInstance.ephemeral()
    first = magistrates_extract()
    # DC0001's court code is harmless until a later record's raw defendant id has the same value
    first["hocas_flatfile"] = first["hocas_flatfile"].with_columns(
        pl.when(pl.col("defendant_case_id") == "DC0001").then(pl.lit("QQ77777")).otherwise(pl.col("court_code"))
        .alias("court_code"))
    assert _deidentify_run(tmp_path, first, instance=instance).success
    refused = _deidentify_run(tmp_path, _second_extract(first, defendant_id="QQ77777"), instance=instance)
    assert not refused.success
    findings = _failed_checks(refused)[("hocas_flatfile", "no_identifiers")]["findings"].value
    assert "court_code: system_id in 1 row(s)" in findings


# --- every dataset of a small simulated world, over two extract dates ----------------------------

def _staged_world(folder) -> dict[tuple[str, str], pl.DataFrame]:
    """Every table of every source of a small simulated world, staged (all extract dates), person
    tables with a per-dataset person id (two records a person, by record id: linkage is not under test)."""
    from datafirst_assets.sources.registry import SOURCES
    from datafirst_assets_tests.xjs_fixtures import simulate_world, stage_table

    landing = simulate_world(folder, people=300, seed=3, extracts=2).landing
    staged = {}
    for source in SOURCES.values():
        for table in source.tables:
            frame = stage_table(landing, source.key, table.name).with_columns(pl.col("extract_date").cast(pl.String))
            if table.is_person_table:
                frame = frame.with_columns((pl.col(table.id_column).rank("dense") // 2 + 1).cast(pl.Int64)
                                           .alias(source.person_id_name))
            staged[(source.key, table.name)] = frame
    return staged


def _write_world(database, staged: dict[tuple[str, str], pl.DataFrame], up_to: str, moved: bool,
                 redated: str | None = None) -> None:
    """The warehouse as it stands once `up_to` was delivered; `moved`: linkage moved every 7th
    person record to a new person id (the per-dataset id of a record changes), and every 5th case
    whose parties are aged at its date has another date (their ages change, their rows do not).
    `redated`: that new date arrives instead as a new version of each such case in extract date
    `redated` (its earlier rows unchanged)."""
    from datafirst_assets.deidentify.by_row import needs_parent_date
    from datafirst_assets.deidentify.release_spec import release_tables
    from datafirst_assets.sources.registry import SOURCES
    from datafirst_assets_tests.warehouse_tables import write_table

    aged_at = {(s.key, t.parent) for s in SOURCES.values() for t in s.tables
               if needs_parent_date(s, t, release_tables()[(s.key, t.name)])}
    assert aged_at  # family and civil parties
    for (source_key, name), frame in staged.items():
        source = SOURCES[source_key]
        frame = frame.filter(pl.col("extract_date") <= up_to)
        if moved and (source_key, name) in aged_at:
            table = source.table(name)
            if redated is None:
                frame = frame.with_columns(pl.when(pl.col(table.id_column).rank("dense") % 5 == 0)
                                           .then(pl.col(table.event_date) + pl.duration(days=400))
                                           .otherwise(pl.col(table.event_date)))
            else:  # each such case's latest row again, as a version of `redated` (one row per case and date)
                chosen = pl.col(table.id_column).is_in(frame[table.id_column].unique().sort()[::5].implode())
                newest = frame.sort("extract_date").unique(subset=[table.id_column], keep="last").filter(chosen)
                frame = pl.concat([frame.filter(~(chosen & (pl.col("extract_date") == redated))),
                                   newest.with_columns(pl.col(table.event_date) + pl.duration(days=400),
                                                       pl.lit(redated).alias("extract_date"))])
        if source.table(name).is_person_table:
            if moved:
                frame = frame.with_columns(pl.when(pl.col(source.table(name).id_column).rank("dense") % 7 == 0)
                                           .then(pl.col(source.person_id_name) + 10_000)
                                           .otherwise(pl.col(source.person_id_name)))
            write_table(database, f"linked_{source_key}", name, frame)
            frame = frame.drop(source.person_id_name)
        write_table(database, f"staged_{source_key}", name, frame)


def _deidentify_world(tmp_path, instance, mode: str = "incremental"):
    from dagster import AssetKey, materialize

    from datafirst_assets.defs.deidentify import build_deidentify_assets
    from datafirst_assets.defs.ingest import staged_key
    from datafirst_assets.sources.registry import SOURCES

    upstream = [AssetKey(["linked", s.key, t.name]) if t.is_person_table else staged_key(s.key, t.name)
                for s in SOURCES.values() for t in s.tables]
    resources = {**test_gates._resources(tmp_path), "linkage": LinkageSettings(data_dir=str(tmp_path), mode=mode)}
    return materialize([*test_gates._placeholders(upstream), *(build_deidentify_assets(s) for s in SOURCES)],
                       selection=[deidentified_key(s.key, t.name) for s in SOURCES.values() for t in s.tables],
                       resources=resources, instance=instance, raise_on_error=False)


def _every_table(tmp_path) -> dict[str, pl.DataFrame]:
    with warehouse_cursor(tmp_path / "warehouse.duckdb") as conn:
        names = [f"{s}.{t}" for s, t in conn.execute(
            "select schema_name, table_name from duckdb_tables() where schema_name like 'deidentified_%'").fetchall()]
        return {n: pl.from_arrow(conn.sql(f"select * from {n}").to_arrow_table()) for n in names}


def _identifier_index(tmp_path) -> dict[str, list[tuple]]:
    """Each dataset's stored raw identifiers (`by_row.update_identifiers`), sorted."""
    from datafirst_assets.deidentify.by_row import RAW_IDENTIFIERS
    from datafirst_assets.sources.registry import SOURCES

    with warehouse_cursor(tmp_path / "warehouse.duckdb") as conn:
        return {s: sorted(conn.execute(f'select * from deidentify_state."{s}__{RAW_IDENTIFIERS}"').fetchall())
                for s in SOURCES}


def test_every_dataset_of_a_simulated_world_by_row_equals_a_full_rebuild(tmp_path):
    staged = _staged_world(tmp_path / "world")
    dates = sorted({d for frame in staged.values() for d in frame["extract_date"].unique().to_list()})
    assert len(dates) == 2
    database, instance = tmp_path / "warehouse.duckdb", DagsterInstance.ephemeral()
    _write_world(database, staged, dates[0], moved=False)
    assert _deidentify_world(tmp_path, instance).success
    _write_world(database, staged, dates[1], moved=True)
    incremental = _deidentify_world(tmp_path, instance)
    assert incremental.success, _failed_checks(incremental)
    meta = _metadata(incremental)
    assert all(m["deidentify_mode"].startswith("by row") for m in meta.values())
    rederived = sum(m["rows_rederived"] for m in meta.values())
    assert 0 < rederived < sum(m["rows_kept"] for m in meta.values())
    for table, m in meta.items():  # only the changed rows written, the kept ones left where they are
        deleted, updated, inserted = map(int, re.fullmatch(
            r"in place: (\d+) row\(s\) deleted, (\d+) updated, (\d+) inserted", m["write"]).groups())
        assert (updated + inserted, deleted) == (m["rows_rederived"], m["rows_removed"]), table
    by_row, identifiers = _every_table(tmp_path), _identifier_index(tmp_path)
    assert _deidentify_world(tmp_path, instance, mode="full").success
    rebuilt = _every_table(tmp_path)
    assert set(by_row) == set(rebuilt) and len(by_row) == len(meta)
    for name in rebuilt:
        assert by_row[name].equals(rebuilt[name]), name  # same rows, same order, same types
    # the raw identifiers the PII gate looks values up in, updated by row: those of every latest row
    assert identifiers == _identifier_index(tmp_path) and all(identifiers.values())


def _compared(meta: dict[str, dict]) -> dict[str, int | str]:
    """Each table's `records_compared` (a count, or "every record")."""
    return {t: (m["records_compared"] if m["records_compared"] == "every record"
                else int(m["records_compared"].split()[0].replace(",", ""))) for t, m in meta.items()}


def test_a_new_extract_date_compares_only_the_records_it_can_change_and_equals_a_full_rebuild(tmp_path):
    """Only the records with a row in the new date, those linkage moved to another person, and the
    parties of a case with a new version there (their age at its date) are hashed and compared: the
    rest is kept unread. Every table still equals a full rebuild."""
    staged = _staged_world(tmp_path / "world")
    first, second = sorted({d for frame in staged.values() for d in frame["extract_date"].unique().to_list()})
    database, instance = tmp_path / "warehouse.duckdb", DagsterInstance.ephemeral()
    _write_world(database, staged, first, moved=False)
    assert _deidentify_world(tmp_path, instance).success
    _write_world(database, staged, second, moved=True, redated=second)
    incremental = _deidentify_world(tmp_path, instance)
    assert incremental.success, _failed_checks(incremental)
    meta = _metadata(incremental)
    compared = _compared(meta)
    assert all(isinstance(n, int) for n in compared.values()), compared
    for table, m in meta.items():
        assert m["rows_rederived"] <= compared[table] < m["rows_kept"] + m["rows_rederived"], table
    # parties aged at a case re-dated in the new extract: re-derived though their own rows did not change
    with warehouse_cursor(database) as conn:
        new_parties = conn.execute(f"select count(distinct party_id) from staged_civil.parties "
                                   f"where extract_date = '{second}'").fetchall()[0][0]
    assert meta["parties"]["rows_rederived"] > new_parties
    by_row = _every_table(tmp_path)
    assert _deidentify_world(tmp_path, instance, mode="full").success
    rebuilt = _every_table(tmp_path)
    for name in rebuilt:
        assert by_row[name].equals(rebuilt[name]), name  # same rows, same order, same types


def test_a_changed_extract_date_or_no_recorded_dates_compare_every_record(tmp_path):
    """A date whose rows changed since the state was made (a re-delivery: which records had rows there is
    not known), or a state stored without its inputs' dates (by earlier code), has every record
    compared, still equal to a full rebuild; the dates are recorded again for the next run."""
    from datafirst_assets.deidentify.by_row import INPUT_DATES

    staged = _staged_world(tmp_path / "world")
    first, second = sorted({d for frame in staged.values() for d in frame["extract_date"].unique().to_list()})
    database, instance = tmp_path / "warehouse.duckdb", DagsterInstance.ephemeral()
    _write_world(database, staged, first, moved=False)
    assert _deidentify_world(tmp_path, instance).success
    with warehouse_cursor(database) as conn:  # magistrates' state as stored before the dates were recorded
        conn.execute(f'drop table deidentify_state."magistrates__{INPUT_DATES}"')
    _write_world(database, staged, second, moved=True)  # the cases' first-date rows have other dates
    incremental = _deidentify_world(tmp_path, instance)
    assert incremental.success, _failed_checks(incremental)
    compared = _compared(_metadata(incremental))
    every = {t for t, n in compared.items() if n == "every record"}
    assert every == {"hocas_flatfile", "hocas_all_offence", "family_cases", "family_people", "cases", "parties"}, every
    with warehouse_cursor(database) as conn:
        assert conn.execute(f'select count(*) from deidentify_state."magistrates__{INPUT_DATES}"').fetchall()[0][0]
    by_row = _every_table(tmp_path)
    assert _deidentify_world(tmp_path, instance, mode="full").success
    rebuilt = _every_table(tmp_path)
    for name in rebuilt:
        assert by_row[name].equals(rebuilt[name]), name


def test_the_coarsen_policy_rebuilds_every_row_and_says_so(tmp_path):
    from datafirst_assets.defs.release import ReleaseSettings

    coarsen = ReleaseSettings(max_mean_risk=1.0, disclosure_policy="coarsen")
    instance = DagsterInstance.ephemeral()
    first = magistrates_extract()
    assert _deidentify_run(tmp_path, first, coarsen, instance=instance).success
    again = _deidentify_run(tmp_path, _second_extract(first), coarsen, instance=instance)
    assert again.success
    mode = _metadata(again)["hocas_flatfile"]["deidentify_mode"]
    assert mode.startswith("full rebuild: disclosure policy 'coarsen'") and "rows_kept" not in _metadata(again)["hocas_flatfile"]


def test_the_contract_gate_by_row_sees_the_whole_table_not_only_the_re_derived_rows(tmp_path):
    instance = DagsterInstance.ephemeral()
    first = magistrates_extract()
    assert _deidentify_run(tmp_path, first, instance=instance).success
    before = _tables(tmp_path)
    # a kept row duplicated in the stored state (as a broken earlier write could leave it)
    with warehouse_cursor(tmp_path / "warehouse.duckdb") as conn:
        conn.execute("insert into deidentify_state.magistrates__hocas_all_offence select * "
                     "from deidentify_state.magistrates__hocas_all_offence where _staged_id = 'OFF00001'")
    result = _deidentify_run(tmp_path, _second_extract(first), instance=instance)
    failed = _failed_checks(result)
    assert not result.success and set(failed) == {("hocas_all_offence", "schema_valid")}
    assert "1 row(s)" not in failed[("hocas_all_offence", "schema_valid")]["problems"].value
    assert "2 row(s) share their key" in failed[("hocas_all_offence", "schema_valid")]["problems"].value
    assert all(before[t].equals(_tables(tmp_path)[t]) for t in TABLES)


def test_a_stored_table_changed_outside_the_pipeline_is_rewritten_whole_not_patched(tmp_path, monkeypatch):
    instance = DagsterInstance.ephemeral()
    first = magistrates_extract()
    assert _deidentify_run(tmp_path, first, instance=instance).success
    # a kept row edited by hand: its content is no longer what the last write validated
    with warehouse_cursor(tmp_path / "warehouse.duckdb") as conn:
        conn.execute("update deidentified_magistrates.hocas_flatfile set court_code = 'HAND' "
                     "where defendant_case_id_hash = (select min(defendant_case_id_hash) "
                     "from deidentified_magistrates.hocas_flatfile)")
    two = _deidentify_run(tmp_path, _second_extract(first), instance=instance)
    assert two.success, _failed_checks(two)
    meta = _metadata(two)
    assert meta["hocas_flatfile"]["write"] == "rewritten whole"  # from the state: the edit is gone
    assert meta["hocas_all_offence"]["write"].startswith("in place")
    incremental = _tables(tmp_path)
    assert "HAND" not in incremental["hocas_flatfile"]["court_code"].to_list()
    _full_mode(monkeypatch, tmp_path)
    assert _deidentify_run(tmp_path, _second_extract(first), instance=instance).success
    rebuilt = _tables(tmp_path)
    assert all(incremental[t].equals(rebuilt[t]) for t in TABLES)


def test_the_changed_records_latest_rows_are_computed_for_them_alone(tmp_path):
    """`input_sql(only=...)`, as `changed_input_rows` reads the new or changed records: their latest
    versions (with their parent's event date) computed from their own rows only, equal to those
    rows of every record's latest versions, for records with versions on several dates."""
    from datafirst_assets.deidentify.by_row import input_sql
    from datafirst_assets.deidentify.release_spec import release_tables
    from datafirst_assets.sources.registry import SOURCES
    from datafirst_assets.warehouse.io_manager import StoredTable

    staged = _staged_world(tmp_path / "world")
    database = tmp_path / "warehouse.duckdb"
    _write_world(database, staged, max(d for f in staged.values() for d in f["extract_date"].to_list()), moved=True)
    checked = 0
    with warehouse_cursor(database) as conn:
        for source in SOURCES.values():
            stored = {t.name: StoredTable(str(database), f"linked_{source.key}" if t.is_person_table
                                          else f"staged_{source.key}", t.name) for t in source.tables}
            for table in source.tables:
                spec, key = release_tables()[(source.key, table.name)], table.id_column
                ids = conn.sql(f"select distinct {key} from {stored[table.name].name} using sample 30 percent (bernoulli, 7)")
                conn.register("_some_ids", ids.to_arrow_table())
                only = pl.from_arrow(conn.sql(input_sql(conn, source, table, stored, spec, only="select * from _some_ids")
                                              ).to_arrow_table()).sort(key)
                every = pl.from_arrow(conn.sql(input_sql(conn, source, table, stored, spec)).to_arrow_table())
                wanted = every.join(pl.from_arrow(ids.to_arrow_table()), on=key, how="semi").sort(key)
                conn.unregister("_some_ids")
                assert 0 < only.height < every.height and only.equals(wanted), f"{source.key}.{table.name}"
                checked += 1
    assert checked == sum(len(s.tables) for s in SOURCES.values())


def test_the_linked_input_is_fingerprinted_from_its_recorded_write_not_hashed_again(tmp_path, monkeypatch):
    """The step's inputs fingerprint takes the linked person table's from the metadata its write
    recorded (`unchanged.recorded_fingerprints`); the staged tables (partitioned) are hashed."""
    from dagster import AssetKey, AssetMaterialization, MetadataValue

    from datafirst_assets.warehouse import unchanged
    from datafirst_assets.warehouse.content import TABLE_FINGERPRINT, recorded_fingerprint, table_fingerprint
    from datafirst_assets.warehouse.io_manager import StoredTable

    instance = DagsterInstance.ephemeral()
    first = magistrates_extract()
    assert _deidentify_run(tmp_path, first, instance=instance).success
    database = str(tmp_path / "warehouse.duckdb")
    linked = StoredTable(database, "linked_magistrates", "hocas_flatfile")
    with warehouse_cursor(database) as conn:
        fingerprint = table_fingerprint(conn, linked)
    instance.report_runless_asset_event(AssetMaterialization(
        AssetKey(["linked", "magistrates", "hocas_flatfile"]), metadata={TABLE_FINGERPRINT: MetadataValue.json(
            recorded_fingerprint(database, linked.schema, linked.table, fingerprint))}))
    hashing = unchanged.table_fingerprint

    def not_the_linked_table(conn, table):
        assert table.schema != "linked_magistrates", "the linked table was hashed although its write recorded it"
        return hashing(conn, table)

    monkeypatch.setattr(unchanged, "table_fingerprint", not_the_linked_table)
    again = _deidentify_run(tmp_path, first, instance=instance)
    assert again.success
    assert all(m.get("unchanged", "").startswith("inputs unchanged") for m in _metadata(again).values())
