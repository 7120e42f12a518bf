"""Tests of the source-systems simulator (datafirst_assets.simulate)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from datafirst_assets.simulate import (
    JUNK_PNCS,
    ErrorProfile,
    SimulationConfig,
    default_truth_dir,
    is_valid_pnc,
    pnc_check_letter,
    simulate,
)
from datafirst_assets.simulate.calibration import agreement_report, load_person_records
from datafirst_assets.simulate.population import build_population
from datafirst_assets.simulate.recording import SEX_UNKNOWN, Recorder
from datafirst_assets.simulate.util import to_day
from datafirst_assets.simulate.vocab import build_vocab
from datafirst_assets.sources.registry import ETHNICITY_CODES, ETHNICITY_UNKNOWN, SOURCES, all_tables

PEOPLE = 2_000
SEED = 7
EXTRACTS = 3
FIRST = date(2024, 1, 31)
DATES = ["2024-01-31", "2024-03-01", "2024-03-31"]


def _run(base: Path, seed: int = SEED, people: int = PEOPLE, config: SimulationConfig | None = None) -> dict:
    return simulate(
        people=people,
        seed=seed,
        extracts=EXTRACTS,
        out=base / "landing",
        truth_out=base / "truth",
        first_extract=FIRST,
        config=config,
    )


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> tuple[Path, Path, dict]:
    base = tmp_path_factory.mktemp("sim")
    summary = _run(base)
    return base / "landing", base / "truth", summary


@pytest.fixture(scope="module")
def tables(sim) -> dict[tuple[str, str], pl.DataFrame]:
    """Every table of every delivery as raw text, with its extract date."""
    out, _, _ = sim
    frames = {}
    for spec, t in all_tables():
        parts = []
        for d in DATES:
            f = out / spec.key / d / f"{t.name}.csv"
            df = pl.read_csv(f, separator=spec.delimiter, infer_schema=False, encoding="utf8")
            parts.append(df.with_columns(pl.lit(d).alias("_extract")))
        frames[(spec.key, t.name)] = pl.concat(parts)
    return frames


@pytest.fixture(scope="module")
def truth(sim) -> dict[str, pl.DataFrame]:
    _, truth_out, _ = sim
    return {
        name: pl.read_parquet(truth_out / f"{name}.parquet")
        for name in ("people", "person_records", "case_links")
    }


def _hashes(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------------------------
# API, determinism, layout
# --------------------------------------------------------------------------------------------


def test_summary_and_default_truth_dir(sim):
    _, _, summary = sim
    assert summary["people"] == PEOPLE
    assert summary["extract_dates"] == DATES
    assert summary["people_appearing"] == PEOPLE  # everyone simulated appears somewhere
    assert set(summary["records"]) == set(SOURCES)
    assert all(set(summary["records"][s.key]) == {t.name for t in s.tables} for s in SOURCES.values())
    assert summary["total_records"] == sum(summary["records"].values())  # per-source counts add up
    assert summary["total_records"] == sum(n for t in summary["records"].values() for n in t.values())
    assert json.loads(json.dumps(summary))["records"] == summary["records"]
    assert summary["seconds"] > 0
    assert default_truth_dir(Path("data/landing")) == Path("data/truth")


def test_determinism_same_seed_same_bytes(sim, tmp_path):
    out, truth_out, _ = sim
    _run(tmp_path / "again")
    assert _hashes(out) == _hashes(tmp_path / "again" / "landing")
    assert _hashes(truth_out) == _hashes(tmp_path / "again" / "truth")


def test_different_seed_different_output(sim, tmp_path):
    out, _, _ = sim
    _run(tmp_path / "other", seed=SEED + 1)
    a, b = _hashes(out), _hashes(tmp_path / "other" / "landing")
    assert a.keys() == b.keys()
    differing = [k for k in a if a[k] != b[k] and k.endswith("flatfile.csv")]
    assert len(differing) >= 4


def test_every_table_in_every_delivery_with_registry_header(sim):
    out, _, _ = sim
    for spec in SOURCES.values():
        dirs = sorted(p.name for p in (out / spec.key).iterdir() if p.is_dir())
        assert dirs == DATES
        for d in DATES:
            for t in spec.tables:
                raw = (out / spec.key / d / f"{t.name}.csv").read_bytes().decode(spec.encoding)
                header = raw.split("\n", 1)[0]
                assert header.split(spec.delimiter) == t.column_names, (spec.key, t.name)


def test_manifests_match_files(sim):
    out, _, _ = sim
    for spec in SOURCES.values():
        for d in DATES:
            folder = out / spec.key / d
            text = (folder / "manifest.json").read_text()
            m = json.loads(text)
            assert text == json.dumps(m, indent=2, sort_keys=True) + "\n"
            assert m["source"] == spec.key and m["system"] == spec.system and m["extract_date"] == d
            assert set(m["tables"]) == {t.name for t in spec.tables}
            for name, entry in m["tables"].items():
                data = (folder / entry["file"]).read_bytes()
                assert entry["file"] == f"{name}.csv"
                assert entry["sha256"] == hashlib.sha256(data).hexdigest()
                df = pl.read_csv(data, separator=spec.delimiter, infer_schema=False)
                assert df.height == entry["rows"]


def test_deliveries_are_incremental_and_later_ones_not_empty(sim, tables):
    for spec in SOURCES.values():
        lo = to_day(SimulationConfig().coverage[spec.key][0])
        for t in spec.tables:
            if t.parent is not None:
                continue
            df = tables[(spec.key, t.name)]
            days = df[t.event_date].str.strptime(pl.Date, spec.date_format).dt.epoch("d").to_numpy()
            k = np.searchsorted([to_day(d) for d in DATES], days, side="left")
            expected = np.array([DATES.index(x) for x in df["_extract"].to_list()])
            assert (k == expected).all(), (spec.key, t.name)
            assert days.min() >= lo
    # open systems keep receiving records after the first (history) delivery; civil (to 2022)
    # and OASys (to 2023) have closed, so their later deliveries are header-only files
    for key, name in (
        ("magistrates", "hocas_flatfile"),
        ("probation", "delius_flatfile"),
        ("prison", "nomis_flatfile"),
    ):
        counts = tables[(key, name)]["_extract"].value_counts()
        assert counts.filter(pl.col("_extract") != DATES[0])["count"].sum() > 0
    for key, name in (("civil", "cases"), ("oasys", "assessments_metadata")):
        assert set(tables[(key, name)]["_extract"].unique().to_list()) == {DATES[0]}


# --------------------------------------------------------------------------------------------
# Content: formats, codes, keys
# --------------------------------------------------------------------------------------------


def test_values_follow_the_registry(tables):
    sex_unknown = {s for s in SEX_UNKNOWN if s}
    eth_ok = set(ETHNICITY_CODES) | set(ETHNICITY_UNKNOWN)
    for spec, t in all_tables():
        df = tables[(spec.key, t.name)]
        for c in t.columns:
            s = df[c.name].drop_nulls()
            if c.kind in ("date", "dob"):
                parsed = s.str.strptime(pl.Date, spec.date_format, strict=False)
                assert parsed.null_count() == 0, (spec.key, t.name, c.name)
                assert parsed.min() >= date(1900, 1, 1) and parsed.max() <= date(2024, 3, 31)
            elif c.kind == "code":
                assert set(s.unique().to_list()) <= set(c.codes), (spec.key, t.name, c.name)
            elif c.kind == "flag":
                assert set(s.unique().to_list()) <= {"Y", "N"}
            elif c.kind == "int":
                assert s.cast(pl.Int64, strict=False).null_count() == 0
            elif c.kind == "float":
                assert s.cast(pl.Float64, strict=False).null_count() == 0
            elif c.kind == "sex":
                assert set(s.unique().to_list()) <= set(spec.sex_codes) | sex_unknown
            elif c.kind == "ethnicity":
                assert set(s.unique().to_list()) <= eth_ok
            elif c.kind == "id":
                assert df[c.name].null_count() == 0 and df[c.name].n_unique() == df.height, (spec.key, t.name)
            if c.required:
                assert df[c.name].null_count() == 0, (spec.key, t.name, c.name)


def test_identifier_formats(tables):
    assert pnc_check_letter(2000, 1234567) == "V"  # int("00" + "1234567") % 23 == 18 -> V
    assert pnc_check_letter(1999, 42) == "ZABCDEFGHJKLMNPQRTUVWXY"[(99 * 10**7 + 42) % 23]
    pncs = (
        pl.concat(
            [
                tables[(k, t)]["pnc_id"]
                for k, t in (
                    ("magistrates", "hocas_flatfile"),
                    ("crown_court", "xhibit_flatfile"),
                    ("prison", "nomis_flatfile"),
                    ("probation", "delius_flatfile"),
                    ("oasys", "assessments_metadata"),
                )
            ]
        )
        .drop_nulls()
        .to_list()
    )
    assert pncs
    for p in pncs:
        assert p in JUNK_PNCS or is_valid_pnc(p), p
    assert sum(p in JUNK_PNCS for p in pncs) > 0  # junk placeholders occur...
    assert sum(p in JUNK_PNCS for p in pncs) < 0.02 * len(pncs)  # ...but rarely
    nomis = tables[("prison", "nomis_flatfile")]
    assert nomis["prison_number"].str.contains(r"^[A-Z]\d{4}[A-Z]{2}$").all()
    assert tables[("probation", "delius_flatfile")]["crn"].str.contains(r"^[A-Z]\d{6}$").all()
    cro = tables[("magistrates", "hocas_flatfile")]["cro_number"].drop_nulls()
    assert cro.str.contains(r"^\d{6}/\d{2}[A-Z]$").all()
    pcs = pl.concat(
        [tables[("magistrates", "hocas_flatfile")]["postcode"], tables[("civil", "parties")]["postcode"]]
    ).drop_nulls()
    pattern = r"^[A-Z]{1,2}\d{1,2} ?\d[A-Z]{2}$"
    assert pcs.str.to_uppercase().str.contains(pattern).all()
    assert pcs.str.contains(r"^[A-Z]{1,2}\d{1,2} \d[A-Z]{2}$").mean() > 0.9  # most well formatted


def test_parent_references(tables):
    for spec, t in all_tables():
        if t.parent is None:
            continue
        parent = tables[(spec.key, t.parent)]
        pid = SOURCES[spec.key].table(t.parent).id_column
        child = tables[(spec.key, t.name)]
        ref = next((c.name for c in t.columns if c.kind == "ref"), t.id_column)
        j = child.select(pl.col(ref).alias("_pid"), pl.col("_extract").alias("_ck")).join(
            parent.select(pl.col(pid).alias("_pid"), pl.col("_extract").alias("_pk")), on="_pid", how="left"
        )
        assert j["_pk"].null_count() == 0, (spec.key, t.name)  # parent exists
        assert (j["_pk"] <= j["_ck"]).all(), (spec.key, t.name)  # in the same or an earlier delivery


def test_chronology(tables):
    def days(df, col, fmt):
        return df[col].str.strptime(pl.Date, fmt, strict=False)

    f = "%Y%m%d"
    n = tables[("prison", "nomis_flatfile")]
    rel, rec = days(n, "release_date", f), days(n, "reception_date", f)
    ok = rel.is_null() | (rel >= rec)
    assert ok.all()
    d = tables[("probation", "delius_flatfile")]
    f = "%Y-%m-%d"
    term, ref = days(d, "termination_date", f), days(d, "referral_date", f)
    assert (term.is_null() | (term >= ref)).all()
    x = tables[("crown_court", "xhibit_flatfile")]
    comm, receipt = days(x, "committal_date", f), days(x, "receipt_date", f)
    assert (comm.is_null() | (comm <= receipt)).all()
    disp = days(x, "disposal_date", f)
    assert (disp.is_null() | (disp >= receipt)).all()
    h = tables[("magistrates", "hocas_flatfile")]
    f = "%d/%m/%Y"
    dob, hearing = days(h, "dob", f), days(h, "first_hearing_date", f)
    age = (hearing - dob).dt.total_days() / 365.25
    assert age.drop_nulls().min() >= 9 and age.drop_nulls().max() < 100
    # outcome ADJOURNED only where the case was unresolved at the extract date
    assert set(h.filter(pl.col("outcome") == "ADJOURNED")["sentence_date"].to_list()) <= {None}


# --------------------------------------------------------------------------------------------
# Truth
# --------------------------------------------------------------------------------------------


def test_truth_person_records_match_files(tables, truth):
    pr = truth["person_records"]
    people = truth["people"]
    assert people.height == PEOPLE and people["person_id"].n_unique() == PEOPLE
    assert set(pr["person_id"].unique().to_list()) <= set(people["person_id"].to_list())
    assert pr.select(["source", "table", "record_id"]).n_unique() == pr.height
    for spec, t in all_tables():
        sub = pr.filter((pl.col("source") == spec.key) & (pl.col("table") == t.name))
        if not t.is_person_table:
            assert sub.height == 0
            continue
        df = tables[(spec.key, t.name)]
        got = set(zip(df[t.id_column].to_list(), df["_extract"].to_list(), strict=True))
        want = set(zip(sub["record_id"].to_list(), sub["extract_date"].cast(pl.Utf8).to_list(), strict=True))
        assert got == want, (spec.key, t.name)
    # system ids are unreliable: some people have several prison numbers / CRNs
    nomis = tables[("prison", "nomis_flatfile")].join(
        pr.filter(pl.col("table") == "nomis_flatfile").select(
            pl.col("record_id").alias("custodial_journey_id"), "person_id"
        ),
        on="custodial_journey_id",
    )
    per_person = nomis.group_by("person_id").agg(pl.col("prison_number").n_unique())
    assert per_person["prison_number"].max() >= 2


def test_case_links(tables, truth):
    links = truth["case_links"]
    mag = tables[("magistrates", "hocas_flatfile")]
    crown = tables[("crown_court", "xhibit_flatfile")]
    assert links.height > 0
    assert set(links["defendant_case_id"].to_list()) <= set(mag["defendant_case_id"].to_list())
    # every Crown Court defendant-on-case came from a magistrates' case
    assert set(links["defendant_on_case_id"].to_list()) == set(crown["defendant_on_case_id"].to_list())
    pr = truth["person_records"]
    j = links.join(
        pr.filter(pl.col("table") == "hocas_flatfile").select(
            pl.col("record_id").alias("defendant_case_id"), pl.col("person_id").alias("mag_person")
        ),
        on="defendant_case_id",
    )
    assert (j["mag_person"] == j["person_id"]).all()
    # the natural keys mostly agree, with realistic errors
    k = links.join(
        mag.select(
            "defendant_case_id", "urn", "asn", pl.col("committal_date").alias("mc"), pl.col("court_code")
        ),
        on="defendant_case_id",
    ).join(
        crown.select(
            "defendant_on_case_id",
            pl.col("urn").alias("curn"),
            pl.col("asn").alias("casn"),
            pl.col("committal_date").alias("cc"),
            "originating_court_code",
            "case_type",
        ),
        on="defendant_on_case_id",
    )
    urn_agree = (k["urn"] == k["curn"]).mean()
    assert 0.85 < urn_agree < 1.0 or k.height < 60
    committal = k.filter(pl.col("case_type") != "APPEAL")
    mc = committal["mc"].str.strptime(pl.Date, "%d/%m/%Y", strict=False)
    cc = committal["cc"].str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    both = mc.is_not_null() & cc.is_not_null()
    diff = (mc.filter(both) - cc.filter(both)).dt.total_days().abs()
    assert (diff <= 7).all() and (diff == 0).mean() > 0.8
    assert (k["court_code"] == k["originating_court_code"]).mean() > 0.9


def test_config_json_round_trip(sim):
    _, truth_out, _ = sim
    doc = json.loads((truth_out / "config.json").read_text())
    assert doc["seed"] == SEED and doc["people"] == PEOPLE and doc["extract_dates"] == DATES
    cfg = SimulationConfig.from_dict(doc["config"])
    assert cfg == SimulationConfig()


def test_civil_companies(tables, truth):
    parties = tables[("civil", "parties")]
    pr = truth["person_records"].filter(pl.col("table") == "parties")
    people = truth["people"].select("person_id", "is_company")
    j = parties.join(pr.select(pl.col("record_id").alias("party_id"), "person_id"), on="party_id").join(
        people, on="person_id"
    )
    companies = j.filter(pl.col("is_company"))
    assert companies.height > 0
    assert (companies["party_type"] == "COMPANY").mean() > 0.85
    assert companies.filter(pl.col("party_type") == "COMPANY")["company_name"].null_count() == 0
    as_person = companies.filter(pl.col("party_type") == "INDIVIDUAL")
    assert as_person["company_name"].null_count() == as_person.height
    assert j.filter(~pl.col("is_company"))["party_type"].eq("INDIVIDUAL").all()


# --------------------------------------------------------------------------------------------
# Recording errors
# --------------------------------------------------------------------------------------------


def _with_truth(out: Path, truth_out: Path, source: str) -> pl.DataFrame:
    recs = load_person_records(out, truth_out, source)
    people = pl.read_parquet(truth_out / "people.parquet")
    return recs.join(
        people.select(
            "person_id",
            pl.col("dob").alias("t_dob"),
            pl.col("surname").str.to_uppercase().alias("t_sur"),
            pl.col("birth_surname").str.to_uppercase().alias("t_birth"),
            pl.col("sex").alias("t_sex"),
            "is_company",
            "name_origin",
        ),
        on="person_id",
    )


def test_default_error_rates_are_calibrated(sim):
    out, truth_out, _ = sim
    mag = _with_truth(out, truth_out, "magistrates")
    known = mag.filter(pl.col("dob").is_not_null())
    dob_exact = (known["dob"] == known["t_dob"]).mean()
    assert 0.95 <= dob_exact <= 0.995  # per record; pairs of records agree ~95%
    sur = mag.filter(pl.col("surname").is_not_null())
    sur_off = (
        ~sur["surname"].is_in(sur["t_sur"])
        & (sur["surname"] != sur["t_birth"])
        & (sur["surname"] != sur["t_sur"])
    ).mean()
    assert 0.005 < sur_off < 0.08
    fam = _with_truth(out, truth_out, "family")
    civ = _with_truth(out, truth_out, "civil").filter(~pl.col("is_company"))
    mag_missing = mag["dob"].is_null().mean()
    assert fam["dob"].is_null().mean() > 5 * mag_missing + 0.05
    assert civ["dob"].is_null().mean() > 0.4
    # pairwise agreement of records of one person, against DOMAIN.md's calibration
    rep = agreement_report(out, truth_out, ["magistrates", "probation", "oasys"])
    for row in rep.iter_rows(named=True):
        assert 0.90 < row["dob_exact"] < 0.99, row
        assert 0.87 < row["forename_exact"] < 0.98, row
        assert 0.87 < row["surname_exact"] < 0.98, row
        assert 0.80 < row["full_name_exact"] < 0.95, row
        assert row["pnc_agree"] > 0.95, row
    mag_row = rep.filter(pl.col("source") == "magistrates").row(0, named=True)
    assert 0.08 < mag_row["postcode_differs"] < 0.40


def test_configured_rates_are_observed(tmp_path):
    """With subgroup multipliers off, observed rates match the configured ones."""
    prof = dataclasses.replace(
        SimulationConfig().profile("magistrates"),
        dob_missing=0.10,
        dob_placeholder=0.06,
        dob_day_month_swap=0.0,
        dob_near_miss=0.0,
        pnc_missing=0.2,
        pnc_junk=0.05,
        pnc_typo=0.0,
        pnc_alternate=0.0,
        sex_unknown=0.08,
        sex_flip=0.0,
        surname_missing=0.05,
        postcode_missing=0.15,
        no_fixed_abode=0.0,
    )
    cfg = dataclasses.replace(
        SimulationConfig(), subgroup_multipliers={}, errors={**SimulationConfig().errors, "magistrates": prof}
    )
    _run(tmp_path, config=cfg)
    recs = _with_truth(tmp_path / "landing", tmp_path / "truth", "magistrates")
    raw = pl.concat(
        [
            pl.read_csv(tmp_path / "landing" / "magistrates" / d / "hocas_flatfile.csv", infer_schema=False)
            for d in DATES
        ]
    )
    n = recs.height
    tol = 3.5 * np.sqrt(0.25 / n) + 0.01
    assert abs(recs["dob"].is_null().mean() - 0.10) < tol
    known = recs.filter(pl.col("dob").is_not_null())
    placeholder = (
        (known["dob"] != known["t_dob"]) & (known["dob"].dt.day() == 1) & (known["dob"].dt.month() == 1)
    )
    assert abs(placeholder.mean() - 0.06) < tol
    assert (known["dob"] == known["t_dob"]).mean() > 0.93 - tol
    junk = raw["pnc_id"].is_in(list(JUNK_PNCS))
    assert abs(junk.mean() - 0.05) < tol
    assert abs(raw["pnc_id"].is_null().mean() - 0.95 * 0.2) < tol
    unknown_sex = ~raw["sex"].is_in(["M", "F"]) | raw["sex"].is_null()
    assert abs(unknown_sex.mean() - 0.08) < tol
    assert abs(recs["surname"].is_null().mean() - 0.05) < tol
    assert abs(recs["postcode"].is_null().mean() - 0.15) < tol


@pytest.fixture(scope="module")
def population():
    cfg = SimulationConfig()
    days = np.array([to_day(FIRST) + 30 * k for k in range(EXTRACTS)])
    people, rosters = build_population(20_000, cfg, build_vocab(), days, np.random.default_rng(3))
    return cfg, people, rosters, days


def _record_many(cfg, people, who: np.ndarray, source: str, n: int, seed: int, day: int | None = None):
    rng = np.random.default_rng(seed)
    p = who[rng.integers(0, len(who), n)]
    d = np.full(n, day if day is not None else to_day("2023-06-01"))
    return p, Recorder(people, cfg, build_vocab(), source).record(p, d, rng)


def test_subgroup_rates_differ(population):
    cfg, people, _, _ = population
    from datafirst_assets.simulate.names import NAME_ORIGINS

    adults = (people.segment != 3) & (people.dob < to_day("2000-01-01"))
    anglo = np.flatnonzero(adults & (people.origin == NAME_ORIGINS.index("anglo")))
    asian = np.flatnonzero(
        adults
        & np.isin(people.origin, [NAME_ORIGINS.index("east_asian"), NAME_ORIGINS.index("somali_arabic")])
    )
    n = 60_000
    pa, ra = _record_many(cfg, people, anglo, "magistrates", n, 1)
    pb, rb = _record_many(cfg, people, asian, "magistrates", n, 2)

    def swapped(p, r):
        return ((r.fore == people.sur[p]) & (r.sur == people.fore[p]) & (r.fore != r.sur)).mean()

    base = cfg.profile("magistrates").name_swap
    assert abs(swapped(pa, ra) - base) < 0.0025
    assert swapped(pb, rb) > 3 * swapped(pa, ra)

    def spelled_differently(p, r):
        return ((r.sur >= 0) & (r.sur != people.surname_at(p, np.full(len(p), to_day("2023-06-01"))))).mean()

    assert spelled_differently(pb, rb) > 1.5 * spelled_differently(pa, ra)
    # young people: more missing identifiers
    young = np.flatnonzero((people.segment != 3) & (people.dob > to_day("2007-01-01")))
    _, rn = _record_many(cfg, people, young, "magistrates", n, 3)
    assert (rn.postcode < 0).mean() > 1.5 * (ra.postcode < 0).mean()
    # women change surnames more often than men (truth), and it shows in the records
    women = people.sex == 1
    men = people.sex == 0
    changed = people.sur_new >= 0
    assert changed[women].mean() > 4 * changed[men].mean()


def test_recorder_errors_use_the_vocabulary(population):
    cfg, people, _, _ = population
    vocab = build_vocab()
    hi = dataclasses.replace(
        ErrorProfile(), forename_nickname=0.3, forename_typo=0.0, forename_phonetic=0.0, middle_promoted=0.0
    )
    cfg2 = dataclasses.replace(cfg, errors={"magistrates": hi}, subgroup_multipliers={})
    william = vocab.index("William")
    who = np.flatnonzero(people.fore == william)
    if len(who) == 0:
        pytest.skip("no William in this population")
    _, rec = _record_many(cfg2, people, who, "magistrates", 5_000, 4)
    recorded = {vocab.strings[i] for i in np.unique(rec.fore) if i >= 0}
    assert recorded <= {"William", "Bill", "Will", "Billy", "Liam"} | {
        vocab.strings[j] for j in np.unique(people.sur[who])
    }
    assert {"Bill", "Will"} <= recorded
