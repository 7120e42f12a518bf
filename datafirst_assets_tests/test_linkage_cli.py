"""The generic ``datafirst dedupe`` command (and the argparse wiring of the linkage commands)."""

from __future__ import annotations

import argparse
import datetime as dt

import polars as pl
import pytest

import datafirst_assets.linkage.dedupe_cli as cli
from datafirst_assets.linkage.dedupe_cli import (
    DedupeConfigError,
    add_dedupe_parser,
    add_evaluate_parser,
    add_review_sample_parser,
    parse_dates,
    run_dedupe,
    standardise,
)
from datafirst_assets.linkage.metrics import evaluate_clusters
from datafirst_assets.linkage.train import TrainingConfig
from datafirst_assets.sources.identifiers import normalise_pnc, normalise_postcode, pnc_check_letter
from datafirst_assets_tests.linkage_fixtures import make_people, make_person_records

FAST = TrainingConfig(u_max_pairs=3e5, seed=3)
MAPS = ["forename=First Name", "surname=LAST", "dob=birth", "postcode=pc", "sex=gender", "pnc=pnc_id"]


def _outside_file(records: pl.DataFrame, date_fmt: str, id_from: int = 0) -> pl.DataFrame:
    """Person records as an outside share would send them: own column names, mixed case,
    punctuation, unspaced postcodes, dates as text."""
    return records.select(
        (pl.int_range(pl.len()) + id_from).alias("ref"),
        pl.col("forename").str.to_titlecase().alias("First Name"),
        (pl.col("surname").str.to_lowercase() + pl.lit(".")).alias("LAST"),
        pl.col("dob").dt.strftime(date_fmt).alias("birth"),
        pl.col("postcode").str.replace(" ", "").str.to_lowercase().alias("pc"),
        pl.col("sex").replace({"M": "Male", "F": "Female"}).alias("gender"),
        pl.col("pnc").alias("pnc_id"),
        pl.lit("x").alias("unused"),
    ), records.select(pl.col("record_id").alias("orig"))


@pytest.fixture(scope="module")
def people() -> pl.DataFrame:
    return make_people(700, seed=11)


def _truth_by_row(truth: pl.DataFrame, orig: pl.DataFrame) -> pl.Series:
    return orig.join(truth, left_on="orig", right_on="record_id", how="left", maintain_order="left").get_column(
        "person_id")


def test_dedupe_one_file(tmp_path, people, capsys):
    records, truth = make_person_records(people, seed=12)
    df, orig = _outside_file(records, "%d/%m/%Y")
    df.write_csv(tmp_path / "share.csv")
    out = run_dedupe([tmp_path / "share.csv"], "ref", MAPS, [], None, tmp_path / "out" / "ids.parquet", None,
                     training=FAST)
    assert (tmp_path / "out" / "ids.parquet").exists()
    assert out.columns == ["source", "record_id", "person_id"]
    assert out.schema["record_id"] == pl.String and out.schema["person_id"] == pl.Int64
    assert out.height == df.height
    assert out.get_column("record_id").to_list() == [str(i) for i in range(df.height)]  # input order
    assert out.get_column("source").unique().to_list() == ["share"]
    assert "estimating u" in capsys.readouterr().err  # progress on stderr
    truth_ids = _truth_by_row(truth, orig)
    report = evaluate_clusters(out.select("record_id", pl.col("person_id").alias("cluster_id")),
                               pl.DataFrame({"record_id": out.get_column("record_id"), "person_id": truth_ids}),
                               subgroups=[])
    assert report["bcubed"]["f1"] >= 0.95, report["bcubed"]


def test_link_three_files_with_three_date_formats(tmp_path, people):
    # the same people in three files; ids restart at 0 in every file
    parts = []
    for i, fmt in enumerate(["%Y-%m-%d", "%Y%m%d", "%d/%m/%Y"]):
        records, truth = make_person_records(people.slice(i * 150, 400), seed=20 + i)
        df, orig = _outside_file(records, fmt)
        parts.append((df, orig, truth))
    parts[0][0].write_csv(tmp_path / "courts.csv")
    parts[1][0].write_parquet(tmp_path / "prisons.parquet")
    parts[2][0].write_csv(tmp_path / "probation.csv")
    out = run_dedupe([tmp_path / "courts.csv", tmp_path / "prisons.parquet", tmp_path / "probation.csv"],
                     "ref", dict(m.split("=") for m in MAPS), ["unused"], None, tmp_path / "ids.parquet", 0.9,
                     progress=False, training=FAST)
    assert out.height == sum(p[0].height for p in parts)
    assert out.get_column("source").unique(maintain_order=True).to_list() == ["courts", "prisons", "probation"]
    assert out.select("source", "record_id").is_duplicated().sum() == 0
    # links across files: many people appear in more than one file
    multi = out.group_by("person_id").agg(pl.col("source").n_unique().alias("k"))
    assert multi.filter(pl.col("k") >= 2).height > 200
    truth_ids = pl.concat([_truth_by_row(t, o) for _, o, t in parts])
    key = out.select(pl.concat_str(["source", "record_id"], separator=":")).to_series()
    report = evaluate_clusters(pl.DataFrame({"record_id": key, "cluster_id": out.get_column("person_id")}),
                               pl.DataFrame({"record_id": key, "person_id": truth_ids}), subgroups=[])
    assert report["bcubed"]["f1"] >= 0.95, report["bcubed"]


def test_date_formats_recognised():
    s = pl.Series("d", ["1985-03-07", "19850307", "07/03/1985", "1985-03-07T00:00:00", "7/3/1985", "", None,
                        "31/02/1985", "not a date"])
    got = parse_dates(s).to_list()
    d = dt.date(1985, 3, 7)
    assert got[:5] == [d, d, d, d, d]
    assert got[5:] == [None, None, None, None]
    assert parse_dates(pl.Series(["07.03.1985"]), "%d.%m.%Y").to_list() == [d]
    assert parse_dates(pl.Series([dt.datetime(1985, 3, 7, 12)])).to_list() == [d]


def test_light_standardisation_follows_the_staging_rules():
    df = pl.DataFrame({"id": [1, 2, 3], "fn": ["  mary-jane ", "O'Neil  John", "ann"],
                       "ln": ["smith-jones", "  ", "lee"], "pc": ["sw1a1aa", "n1  9gu", "NOT KNOWN"],
                       "sx": ["female", "9", "m"], "pnc": ["2000/ 1234567v", None, "2000/1234567A"]})
    out = standardise(df, id_col="id", maps={"forename": "fn", "surname": "ln", "postcode": "pc", "sex": "sx",
                                               "pnc": "pnc"}, extras=[], source="x")
    assert out.get_column("record_id").to_list() == ["1", "2", "3"]
    assert out.get_column("forename").to_list() == ["MARY-JANE", "O'NEIL", "ANN"]
    assert out.get_column("middle_names").to_list() == [None, "JOHN", None]
    assert out.get_column("surname").to_list() == ["SMITH-JONES", None, "LEE"]
    assert out.get_column("sex").to_list() == ["F", None, "M"]
    # what staging nulls as invalid (not a postcode shape, wrong PNC check letter) is null here too
    assert out.get_column("postcode").to_list() == ["SW1A 1AA", "N1 9GU", None]
    assert out.get_column("pnc").to_list() == ["2000/1234567V", None, None]
    staged = df.select(normalise_postcode(pl.col("pc")).alias("postcode"), normalise_pnc(pl.col("pnc")).alias("pnc"))
    assert out.select("postcode", "pnc").equals(staged)


@pytest.fixture
def small_csv(tmp_path):
    p = tmp_path / "in.csv"
    pl.DataFrame({"id": ["1", "2", "3"], "fn": ["A", "B", "C"], "sn": ["X", "Y", "Z"],
                  "sex": ["M", "F", "M"], "dob": ["2000-01-01"] * 3}).write_csv(p)
    return p


@pytest.mark.parametrize("kwargs, message", [
    (dict(maps=["firstname=fn"]), "unknown field 'firstname'"),
    (dict(maps=["forename=first"]), "column 'first' \\(mapped to forename\\) not found"),
    (dict(id_col="ref"), "id column 'ref' not found"),
    (dict(maps=["sex=sex"]), "no usable fields"),
    (dict(maps=[]), "no usable fields"),
    (dict(maps=["forename"]), "expected FIELD=COLUMN"),
    (dict(maps=["forename=fn", "forename=sn"]), "mapped twice"),
    (dict(extras=["shoe"]), "--extra column 'shoe' not found"),
    (dict(inputs=["missing.csv"]), "not found"),
    (dict(inputs=["data.xlsx"]), "only CSV"),
    (dict(threshold=1.5), "threshold"),
])
def test_bad_mappings_fail_before_any_work(small_csv, tmp_path, monkeypatch, kwargs, message):
    def boom(*a, **k):
        raise AssertionError("work started despite a bad mapping")

    monkeypatch.setattr(cli, "deduplicate", boom)
    monkeypatch.setattr(cli, "_read", boom)
    if "inputs" in kwargs:
        kwargs["inputs"] = [tmp_path / x for x in kwargs["inputs"]]
        if kwargs["inputs"][0].suffix == ".xlsx":
            kwargs["inputs"][0].write_text("x")
    args = dict(inputs=[small_csv], id_col="id", maps=["forename=fn", "surname=sn"], extras=[],
                dob_format=None, out=tmp_path / "o.parquet", threshold=None)
    args.update(kwargs)
    with pytest.raises(DedupeConfigError, match=message):
        run_dedupe(**args, progress=False)
    assert not (tmp_path / "o.parquet").exists()


def test_duplicate_ids_are_an_error(tmp_path):
    p = tmp_path / "dup.csv"
    pl.DataFrame({"id": ["1", "1", "2"], "sn": ["A", "B", "C"], "dob": ["2000-01-01"] * 3}).write_csv(p)
    with pytest.raises(DedupeConfigError, match="not unique"):
        run_dedupe([p], "id", ["surname=sn", "dob=dob"], [], None, tmp_path / "o.parquet", None, progress=False)


def test_argparse_wiring(small_csv, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="datafirst")
    sub = parser.add_subparsers(dest="command")
    add_dedupe_parser(sub)
    add_review_sample_parser(sub)
    add_evaluate_parser(sub)
    args = parser.parse_args(["dedupe", str(small_csv), "--id", "id", "--map", "forename=fn", "--map",
                              "surname=nope", "--extra", "sex", "--out", str(tmp_path / "o.parquet"),
                              "--threshold", "0.8"])
    assert args.maps == ["forename=fn", "surname=nope"] and args.extras == ["sex"] and args.threshold == 0.8
    assert args.func(args) == 2
    assert "column 'nope'" in capsys.readouterr().err
    ev = parser.parse_args(["evaluate", "--labels", "l.csv"])
    assert ev.func(ev) == 2  # neither --pairs nor --clusters
    rs = parser.parse_args(["review-sample", "--pairs", "p.parquet", "--records", "r.parquet", "--out", "s.csv"])
    assert rs.n == 200 and rs.threshold is None


def test_mapped_columns_all_empty_is_no_usable_fields(tmp_path):
    p = tmp_path / "empty.csv"
    pl.DataFrame({"id": ["1", "2", "3"], "fn": ["", "", ""], "sn": [None, None, None],
                  "sx": ["M", "F", "M"]}).write_csv(p)
    with pytest.raises(DedupeConfigError, match="no usable fields"):
        run_dedupe([p], "id", ["forename=fn", "surname=sn", "sex=sx"], [], None, tmp_path / "o.parquet", None,
                   progress=False)


def test_junk_pncs_are_nulled_as_staging_nulls_them():
    placeholder = "2010/0000000" + pnc_check_letter(2010, 0)
    shared = "2001/1234567" + pnc_check_letter(2001, 1234567)
    kept = "2002/7654321" + pnc_check_letter(2002, 7654321)
    df = pl.DataFrame({"id": list(range(6)), "pnc": [placeholder, shared, shared, shared, shared, kept],
                       "birth": ["1980-01-02", "1980-01-02", "1981-02-03", "1982-03-04", "1983-04-05", "1984-05-06"]})
    out = standardise(df, id_col="id", maps={"pnc": "pnc", "dob": "birth"}, extras=[], source="x")
    assert out.get_column("pnc").to_list() == [None, None, None, None, None, kept]
    four_dobs = df.head(4)  # the shared PNC on three dates of birth only: kept
    assert standardise(four_dobs, id_col="id", maps={"pnc": "pnc", "dob": "birth"}, extras=[],
                       source="x").get_column("pnc").to_list() == [None, shared, shared, shared]


def test_person_ids_follow_first_appearance_and_a_record_left_out_is_its_own_person():
    # records 0..5 numbered as Splink saw them; clusters come back in any order, ids as Splink made them
    clusters = pl.DataFrame({"record_id": [4, 1, 3, 0, 2], "cluster_id": ["b-__-1", "b-__-1", "a-__-0", "a-__-0",
                                                                          "c-__-2"]})
    ids = cli.person_ids_in_input_order(clusters, 6)
    # record 0 and 3 first (person 1), then 1 and 4 (person 2), then 2, then 5 which no cluster holds
    assert ids.to_list() == [1, 2, 3, 1, 2, 4]
    assert ids.name == "person_id" and ids.dtype == pl.Int64
