"""Derived tables: journeys against a hand-built release, the suppression rule, synthetic-shaped input, assets."""

import datetime as dt

import pandera.polars as pa
import polars as pl
import pytest
from dagster import AssetKey, AssetOut, Output, materialize, multi_asset

from datafirst_assets.defs.deidentify import deidentify_assets
from datafirst_assets.defs.derived import available_variants, derived_assets, derived_key
from datafirst_assets.defs.linkage import LinkageSettings
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.deidentify.release_spec import release_tables
from datafirst_assets.derived import DERIVED_TABLES, derived_release_tables
from datafirst_assets.derived.person_journeys import (
    COLUMNS_READ,
    CONTACTS,
    PERSON,
    PERSON_JOURNEYS,
    person_journeys,
    unlinked_rows,
)
from datafirst_assets.derived.repeat_offending_profile import (
    REPEAT_OFFENDING_PROFILE,
    profile_from_journeys,
    suppress,
)
from datafirst_assets.derived.report import profile_report
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.io_manager import WarehouseIOManager
from datafirst_assets_tests.derived_fixtures import AS_OF, hand_built_release, random_release, relabelled_release

D = dt.date


@pytest.fixture(scope="module")
def journeys() -> pl.DataFrame:
    return person_journeys(hand_built_release(), as_of=AS_OF)


def person(journeys: pl.DataFrame, xjs: int) -> dict:
    return journeys.filter(pl.col(PERSON) == xjs).row(0, named=True)


def test_journey_counts_match_the_hand_built_example(journeys):
    assert journeys[PERSON].to_list() == [100, 200, 300, 400, 500]
    a = person(journeys, 100)
    assert {k: a[k] for k in ("datasets", "magistrates_cases", "crown_court_cases", "criminal_cases",
                              "custodial_journeys", "probation_events", "probation_requirements",
                              "oasys_assessments")} == {
        "datasets": 6, "magistrates_cases": 3, "crown_court_cases": 2,
        "criminal_cases": 4,  # C1 is M2's Crown Court stage (case lookup, same person): not a new case
        "custodial_journeys": 3, "probation_events": 2, "probation_requirements": 3, "oasys_assessments": 3,
    }
    # P1 and P2 overlap: 2015-10-15..2016-02-01 = 109 days once; P3 is open: 2019-06-01..2020-01-01 = 214.
    assert (a["days_in_custody"], a["in_custody_on_as_of"]) == (109 + 214, True)
    assert (a["first_ogrs3_score"], a["latest_ogrs3_score"]) == (45, 60)  # the unscored middle one is skipped
    assert (a["first_contact_date"], a["last_contact_date"], a["first_contact_dataset"]) == (
        D(2014, 6, 1), D(2019, 6, 1), "civil")
    assert (a["age_at_first_contact"], a["sex"], a["ethnicity"], a["ethnic_group"]) == (16, "M", "B1", "Black")
    assert (a["first_criminal_case_date"], a["first_offence_date"], a["age_at_first_offence"]) == (
        D(2015, 3, 1), D(2015, 1, 10), 17)
    assert (a["family_court"], a["civil_court"]) == (False, True)
    assert (a["returned_within_1y"], a["returned_within_2y"]) == (True, True)  # M2 184 days after M1

    b = person(journeys, 200)
    assert (b["first_contact_dataset"], b["age_at_first_contact"], b["family_court"]) == ("family", 21, True)
    assert (b["sex"], b["ethnicity"]) == ("F", "A1")  # A1 (family) and W1 once each: the first recorded wins
    assert (b["first_offence_date"], b["age_at_first_offence"]) == (D(2019, 5, 1), 30)
    # First case 2019-06-01: the year ends after the as-of date, so the return is unknown, not False.
    assert (b["returned_within_1y"], b["returned_within_2y"]) == (None, None)

    c = person(journeys, 300)
    # C3's linked magistrates' case belongs to someone else (D), so C3 stays C's own case.
    assert (c["crown_court_cases"], c["criminal_cases"], c["first_offence_date"]) == (2, 2, D(2012, 1, 1))
    assert (c["returned_within_1y"], c["returned_within_2y"]) == (False, True)  # C4 517 days after C3

    d = person(journeys, 400)
    assert (d["criminal_cases"], d["returned_within_1y"], d["returned_within_2y"], d["sex"]) == (1, False, False, None)

    e = person(journeys, 500)
    assert (e["criminal_cases"], e["civil_court"], e["first_criminal_case_date"], e["returned_within_1y"]) == (
        0, True, None, None)
    assert unlinked_rows(hand_built_release())["magistrates"] == 1  # defendant 99 is in no lookup row
    assert journeys["as_of_date"].unique().to_list() == [AS_OF]


def test_as_of_defaults_to_the_latest_contact_and_bounds_open_custody():
    journeys = person_journeys(hand_built_release())
    a = person(journeys, 100)
    assert a["as_of_date"] == D(2019, 6, 1)
    assert (a["days_in_custody"], a["in_custody_on_as_of"]) == (109, True)  # P3 received on the as-of date


def test_journeys_pass_their_schema_and_the_schema_catches_broken_rows(journeys):
    schema = PERSON_JOURNEYS.pandera_schema()
    schema.validate(journeys, lazy=True)
    broken = journeys.with_columns(
        pl.when(pl.col(PERSON) == 400).then(True).otherwise(pl.col("returned_within_1y")).alias("returned_within_1y"))
    with pytest.raises(pa.errors.SchemaErrors, match="a return needs a second criminal case"):
        schema.validate(broken, lazy=True)


def test_derived_tables_read_only_release_tables_with_the_roles_they_expect():
    specs = release_tables()
    assert set(PERSON_JOURNEYS.inputs) <= set(specs)
    for key, columns in COLUMNS_READ.items():
        assert set(columns) <= set(specs[key].column_names), key
    for c in CONTACTS:
        spec = specs[(c.dataset, c.table)]
        assert spec.column(c.person).role == "person_key"
        assert spec.column(c.age).role == "age"
        dated = specs[(c.dataset, c.via[0])] if c.via else spec
        assert dated.column(c.date).role == "date"
        for name in (c.sex, c.ethnicity):
            if name:
                assert spec.column(name).role == "categorical"
    catalogue = derived_release_tables()
    assert [c.name for c in catalogue[("derived", "person_journeys")].columns] == PERSON_JOURNEYS.column_names
    assert all(c.description for t in catalogue.values() for c in t.columns)


def _cohort(groups: dict[str, tuple[int, int, int]]) -> pl.DataFrame:
    """Journeys rows: sex -> (people, of whom eligible for 1y, of whom returned in 1y); 2y as 1y."""
    rows, pid = [], 0
    for sex, (people, eligible, returned) in groups.items():
        for i in range(people):
            pid += 1
            flag = None if i >= eligible else i < returned
            rows.append({PERSON: pid, "sex": None if sex == "U" else sex, "ethnic_group": "White",
                         "first_criminal_case_date": D(2015, 1, 1), "first_offence_date": D(2015, 1, 1),
                         "age_at_first_offence": 30, "returned_within_1y": flag, "returned_within_2y": flag})
    return pl.DataFrame(rows, schema_overrides={"sex": pl.String, "returned_within_1y": pl.Boolean,
                                                "returned_within_2y": pl.Boolean})


def test_counts_under_ten_are_suppressed_with_their_rate_and_one_more_to_protect_them():
    profile = profile_from_journeys(_cohort({"M": (50, 40, 15), "F": (8, 8, 3), "U": (30, 30, 24)}))
    REPEAT_OFFENDING_PROFILE.pandera_schema().validate(profile, lazy=True)
    rows = {(r["breakdown"], r["group"]): r for r in profile.iter_rows(named=True)}
    total = rows[("total", "All")]
    assert (total["people"], total["eligible_1y"], total["returned_1y"], total["rate_1y"], total["suppressed"]) == (
        88, 78, 42, round(42 / 78, 4), False)
    female = rows[("sex", "Female")]  # 8 people: the whole row is withheld
    assert [female[k] for k in ("people", "eligible_1y", "returned_1y", "rate_1y")] == [None] * 4
    assert female["suppressed"]
    # Unknown: 30 people of whom 6 did not return: returned and rate withheld (6 = 30 - 24 < 10), and as
    # the smallest shown group it is withheld entirely, else Female = total - Male - Unknown.
    unknown = rows[("sex", "Unknown")]
    assert (unknown["people"], unknown["eligible_1y"], unknown["returned_1y"], unknown["rate_1y"]) == (
        None, None, None, None)
    male = rows[("sex", "Male")]
    assert (male["people"], male["eligible_1y"], male["returned_1y"], male["rate_1y"], male["suppressed"]) == (
        50, 40, 15, 0.375, False)
    # Every shown count is at least 10 (the schema checks it too).
    counts = profile.select("people", "eligible_1y", "returned_1y", "eligible_2y", "returned_2y")
    assert all(v is None or v >= 10 for col in counts.iter_columns() for v in col)


def test_suppression_rule_on_single_cells():
    def row(group, people, eligible, returned):
        return {"breakdown": "sex", "group": group, "people": people, "eligible_1y": eligible,
                "returned_1y": returned, "eligible_2y": people, "returned_2y": people // 2}

    rows = [row("Male", 100, 60, 30), row("Female", 40, 9, 5), row("Unknown", 20, 20, 10)]
    suppress(rows)
    male, female, unknown = rows
    # Female: eligible 9 -> eligible and returned withheld; the lone withheld eligible is protected by
    # withholding the next smallest (Unknown: 20), and its returned with it.
    assert (female["people"], female["eligible_1y"], female["returned_1y"]) == (40, None, None)
    assert (unknown["people"], unknown["eligible_1y"], unknown["returned_1y"]) == (20, None, None)
    assert (male["eligible_1y"], male["returned_1y"], male["suppressed"]) == (60, 30, False)
    assert female["suppressed"] and unknown["suppressed"]
    # Two-year counts are all at least 10 and so shown.
    assert [r["returned_2y"] for r in rows] == [50, 20, 10]

    zero = [row("Male", 50, 50, 0), row("Female", 60, 60, 30)]
    suppress(zero)
    assert zero[0]["returned_1y"] is None  # zero is under 10


def test_the_same_code_runs_on_a_synthetic_shaped_release(journeys):
    # Relabelled: new hashes, person ids and cross-justice ids, rows shuffled: the same journeys.
    relabelled = person_journeys(relabelled_release(hand_built_release()), as_of=AS_OF)
    assert relabelled.schema == journeys.schema
    back = relabelled.with_columns(((pl.col(PERSON) - 5) // 13).alias(PERSON)).sort(PERSON)
    assert back.equals(journeys)
    # Independent values (lo-fi synthetic): dates in any order, gaps, unlinked persons: same schema, valid.
    for seed in range(3):
        frame = person_journeys(random_release(people=120, seed=seed))
        assert frame.schema == journeys.schema and frame.height > 50
        PERSON_JOURNEYS.pandera_schema().validate(frame, lazy=True)
        profile = profile_from_journeys(frame)
        REPEAT_OFFENDING_PROFILE.pandera_schema().validate(profile, lazy=True)
        assert profile.schema == profile_from_journeys(journeys).schema


def test_journeys_do_not_depend_on_the_order_of_the_release_rows():
    # Lo-fi synthetic rows tie often (one person, one date, two ages): a tie taken in row order made
    # the synthetic journeys differ between two stores of the same table (19 of 301,977 at 300k).
    for seed in range(4):
        release = random_release(people=300, seed=seed)
        release = {key: pl.concat([frame, frame.sample(fraction=0.5, seed=seed)]) for key, frame in release.items()}
        shuffled = {key: frame.sample(fraction=1.0, shuffle=True, seed=seed + 100) for key, frame in release.items()}
        assert person_journeys(release, as_of=AS_OF).equals(person_journeys(shuffled, as_of=AS_OF))


def test_report_is_labelled_synthetic_only_when_built_from_the_synthetic_release(journeys):
    profile = profile_from_journeys(journeys)
    real = profile_report(profile, variant="deidentified", as_of=AS_OF)
    fake = profile_report(profile, variant="synthetic", as_of=AS_OF)
    assert "SYNTHETIC" not in real.html and "SYNTHETIC" not in real.markdown
    assert fake.html.count("SYNTHETIC") >= 1 + len(fake.charts) and "SYNTHETIC" in fake.markdown.splitlines()[0]
    assert all("SYNTHETIC" in chart["title"]["text"] for chart in fake.charts.values())
    # one self-contained file: the chart runtime is inline, nothing is fetched
    assert "vegaEmbed(" in fake.html and "<script src" not in fake.html and "cdn.jsdelivr" not in fake.html


def test_report_charts_draw_the_overall_rate_as_a_dashed_line():
    profile = profile_from_journeys(person_journeys(random_release(people=300, seed=0)))  # rates not withheld
    total = profile.filter(pl.col("breakdown") == "total").row(0, named=True)
    overall = sorted(round(100 * total[f"rate_{w}"], 1) for w in ("1y", "2y"))
    charts = profile_report(profile, variant="deidentified", as_of=AS_OF).charts
    assert charts
    for chart in charts.values():
        bars, rules = chart["layer"]  # a layered chart: the groups' bars, then the overall rates over them
        assert bars["mark"] == "bar" and rules["mark"]["type"] == "rule" and rules["mark"]["strokeDash"]
        assert sorted(row["rate (%)"] for row in rules["data"]["values"]) == overall
        assert rules["encoding"]["x"]["field"] == bars["encoding"]["x"]["field"] == "rate (%)"
        assert chart["title"]["subtitle"] == "dashed: all people"


def _stub_release(variant: str, tables: dict):
    @multi_asset(
        name=f"stub_{variant}_release",
        outs={f"{s}__{t}": AssetOut(key=AssetKey([variant, s, t]), metadata={"schema": f"{variant}_{s}"})
              for s, t in tables},
    )
    def _stub():
        for (s, t), frame in tables.items():
            yield Output(frame, output_name=f"{s}__{t}")

    return _stub


def test_derived_assets_materialise_for_both_releases(tmp_path):
    deidentified = hand_built_release()
    synthetic = relabelled_release(deidentified, seed=3)
    result = materialize(
        [_stub_release("deidentified", deidentified), _stub_release("synthetic", synthetic),
         *derived_assets(("deidentified", "synthetic"))],
        resources={"io_manager": WarehouseIOManager(database=str(tmp_path / "wh.duckdb")),
                   "warehouse": Warehouse(database=str(tmp_path / "wh.duckdb")),
                   "linkage": LinkageSettings(data_dir=str(tmp_path))},
    )
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 8 and all(c.passed for c in checks)  # schema_valid + no_identifiers on 4 tables
    with warehouse_cursor(tmp_path / "wh.duckdb") as conn:
        for variant in ("deidentified", "synthetic"):
            assert conn.execute(f"select count(*) from derived_{variant}.person_journeys").fetchone()[0] == 5
            total = conn.execute(f"select count(*) from derived_{variant}.repeat_offending_profile "
                                 "where breakdown = 'total'").fetchone()[0]
            assert total == 1
    for variant in ("deidentified", "synthetic"):
        page = (tmp_path / "reports" / f"repeat_offending_{variant}.html").read_text()
        assert ("SYNTHETIC" in page) == (variant == "synthetic")
        assert (tmp_path / "reports" / f"repeat_offending_{variant}.md").exists()
        catalogue = tmp_path / "catalogues" / variant / "derived.md"
        assert all(f"`{c}`" in catalogue.read_text() for t in DERIVED_TABLES for c in t.column_names)
    assert "SYNTHETIC" in (tmp_path / "catalogues" / "synthetic" / "derived.html").read_text()
    metadata = result.asset_materializations_for_node(
        derived_key("synthetic", "repeat_offending_profile").to_python_identifier())[0].metadata
    assert "SYNTHETIC" in metadata["summary"].value and metadata["report"].value.endswith("repeat_offending_synthetic.html")


def test_the_synthetic_variant_is_wired_only_when_the_synthetic_release_exists():
    upstream = deidentify_assets()
    assert available_variants(upstream) == ("deidentified",)
    synthetic = _stub_release("synthetic", {key: pl.DataFrame() for key in release_tables()})
    assert available_variants([*upstream, synthetic]) == ("deidentified", "synthetic")
    keys = {k for a in derived_assets(("deidentified", "synthetic")) for k in a.keys}
    assert keys == {derived_key(v, n) for v in ("deidentified", "synthetic")
                    for n in ("person_journeys", "repeat_offending_profile")} | {
        AssetKey(["catalogue", "derived"]), AssetKey(["catalogue", "synthetic", "derived"])}


def test_the_same_code_runs_on_the_synthetic_generator_output():
    from datafirst_assets.synthetic.fabricate import fabricate_release
    from datafirst_assets.synthetic.generate import synthesise_release
    from datafirst_assets.synthetic.summaries import summarise_release

    real = fabricate_release(1500, seed=3)
    synthetic = synthesise_release(summarise_release(real), seed=0)
    journeys = {kind: person_journeys(tables) for kind, tables in (("real", real), ("synthetic", synthetic))}
    assert journeys["real"].schema == journeys["synthetic"].schema
    for frame in journeys.values():
        PERSON_JOURNEYS.pandera_schema().validate(frame, lazy=True)
        assert frame.height > 500 and (frame["criminal_cases"] > 0).sum() > 100
        REPEAT_OFFENDING_PROFILE.pandera_schema().validate(profile_from_journeys(frame), lazy=True)
