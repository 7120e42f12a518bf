"""De-identification by row: an incremental run re-derives only new or changed records, keeps the
rest from the stored state, and gives exactly the tables a full rebuild gives; its gates still see
every row (a new identifier is looked for in kept rows too) and a refused run stores nothing."""

from datetime import date

import polars as pl
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
    new_case = staged_frame("magistrates", "hocas_flatfile", [dict(
        defendant_case_id="DC0004", case_id="CASE00004", defendant_id=changes.get("defendant_id", "DEF00004"),
        forename1="GRACE", surname="OKAFOR", dob=date(1985, 1, 2), sex="F", ethnicity="B1", postcode="M1 1AE",
        pnc_id="1985/0099999A", court_code="B01", first_hearing_date=date(2024, 2, 20), offence_group="THEFT",
        outcome="CONVICTED", estimated_defendant_id=3, extract_date=SECOND)])
    flat = pl.concat([flat.with_columns(pl.when(pl.col("defendant_case_id") == "DC0002").then(4)
                                        .otherwise(pl.col("estimated_defendant_id")).alias("estimated_defendant_id")),
                      newer, new_case])
    new_offence = staged_frame("magistrates", "hocas_all_offence", [dict(
        offence_id="OFF00005", defendant_case_id="DC0004", offence_group="THEFT", offence_date=date(2024, 2, 1),
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


def test_an_incremental_extract_re_derives_only_changed_rows_and_equals_a_full_rebuild(tmp_path, monkeypatch):
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
    incremental = _tables(tmp_path)
    assert "B03" in incremental["hocas_flatfile"]["court_code"].to_list()

    _full_mode(monkeypatch, tmp_path)
    full = _deidentify_run(tmp_path, _second_extract(first), instance=instance)
    assert full.success and _metadata(full)["hocas_flatfile"]["deidentify_mode"] == "full rebuild: full mode"
    rebuilt = _tables(tmp_path)
    for table in TABLES:
        assert incremental[table].equals(rebuilt[table]), table  # same rows, same order, same types


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
