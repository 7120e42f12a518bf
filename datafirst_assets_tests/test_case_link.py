"""Magistrates' -> Crown Court case link: corrupted keys, decoys, one-to-one, blocking, accuracy."""

from datetime import date, timedelta

import polars as pl
import pytest

from datafirst_assets.linkage.case_link import OUTPUT_COLUMNS, build_case_link, candidate_pairs
from datafirst_assets.linkage.xjs_metrics import case_link_metrics
from datafirst_assets_tests.xjs_fixtures import simulate_world, stage_table

D0 = date(2023, 3, 1)


def mag(i, *, urn=None, asn=None, pnc=None, court="B01AA00", committal=D0, outcome="SENT_TO_CROWN",
        surname=None, dob=None, sentence=None, hearing=None, case_id=None, extract="2024-01-31"):
    return {
        "extract_date": extract, "defendant_case_id": f"m{i}", "case_id": case_id or f"case{i}",
        "urn": urn if urn is not None else f"01AB{i:05d}23",
        "asn": asn if asn is not None else f"2301AB01{i:07d}X",
        "pnc_id": pnc if pnc is not None else f"2001/{i:07d}A", "court_code": court,
        "committal_date": committal, "first_hearing_date": hearing or (committal or D0) - timedelta(days=20),
        "sentence_date": sentence, "outcome": outcome, "surname": surname or f"SURNAME{i}",
        "dob": dob or date(1980, 1, 1) + timedelta(days=37 * i),
    }


def crown(i, m, *, case_type="SENT_FOR_TRIAL", receipt_lag=3, **over):
    """The Crown Court row that magistrates' row ``m`` became, then ``over`` corrupts it
    (a key set to None is missing)."""
    row = {
        "extract_date": "2024-01-31", "defendant_on_case_id": f"c{i}", "case_number": f"T2023{i:04d}",
        "case_type": case_type, "urn": m["urn"], "asn": m["asn"], "pnc_id": m["pnc_id"],
        "originating_court_code": m["court_code"], "committal_date": m["committal_date"],
        "receipt_date": (m["committal_date"] or m["sentence_date"] or D0) + timedelta(days=receipt_lag),
        "date_of_birth": m["dob"], "surname": m["surname"],
    }
    row.update(over)
    return row


MAG_SCHEMA = {"extract_date": pl.String, "defendant_case_id": pl.String, "case_id": pl.String,
              "urn": pl.String, "asn": pl.String, "pnc_id": pl.String, "court_code": pl.String,
              "committal_date": pl.Date, "first_hearing_date": pl.Date, "sentence_date": pl.Date, "outcome": pl.String,
              "surname": pl.String, "dob": pl.Date}
CROWN_SCHEMA = {"extract_date": pl.String, "defendant_on_case_id": pl.String, "case_number": pl.String,
                "case_type": pl.String, "urn": pl.String, "asn": pl.String, "pnc_id": pl.String,
                "originating_court_code": pl.String, "committal_date": pl.Date, "receipt_date": pl.Date,
                "date_of_birth": pl.Date, "surname": pl.String}


def frames(mags, crowns):
    return pl.DataFrame(mags, schema=MAG_SCHEMA), pl.DataFrame(crowns, schema=CROWN_SCHEMA)


def linked(links):
    return dict(zip(links["defendant_on_case_id"], links["defendant_case_id"]))


@pytest.mark.parametrize("corruption", [
    {},
    {"urn": "01AB0000783"},  # URN typo (one digit slipped)
    {"urn": None},  # URN missing
    {"asn": None},  # ASN missing
    {"asn": "2301AB010000008Y"},  # ASN typo (digit and its check letter)
    {"committal_date": D0 + timedelta(days=5)},  # committal date shifted
    {"committal_date": D0 - timedelta(days=7)},
    {"committal_date": None},  # committal date missing
    {"originating_court_code": "B99ZZ09"},  # wrong originating court
    {"originating_court_code": None},
    {"pnc_id": None},
    # several at once: URN typo, no ASN, no PNC, date shifted, court right
    {"urn": "01AB0000783", "asn": None, "pnc_id": None, "committal_date": D0 + timedelta(days=3)},
    # no URN, no ASN, wrong court: PNC and date still tie it
    {"urn": None, "asn": None, "originating_court_code": "B99ZZ09"},
])
def test_corrupted_keys_still_link(corruption):
    m = [mag(7), mag(8, court="B02BB00", committal=D0 + timedelta(days=40))]
    c = [crown(1, m[0], **corruption), crown(2, m[1])]
    links = build_case_link(*frames(m, c))
    assert linked(links) == {"c1": "m7", "c2": "m8"}
    row = links.filter(pl.col("defendant_on_case_id") == "c1").row(0, named=True)
    assert 0.5 <= row["match_score"] <= 1.0
    if "urn" in corruption and corruption["urn"]:
        assert "urn~" in row["keys_agreed"].split(",")
    if corruption.get("committal_date") and corruption["committal_date"] != D0:
        assert "committal_date~" in row["keys_agreed"].split(",")


def test_decoy_with_same_court_and_date_is_not_linked():
    """Another defendant at the same court, committed the same day: only the court and date
    agree. With the true origin missing from the extract the Crown row stays unlinked; with it
    present, the true origin wins."""
    true_m = mag(1)
    decoy = mag(2, court=true_m["court_code"], committal=true_m["committal_date"])
    c = [crown(1, true_m)]
    assert build_case_link(*frames([decoy], c)).height == 0
    assert linked(build_case_link(*frames([decoy, true_m], c))) == {"c1": "m1"}


def test_corrupted_crown_row_does_not_fall_to_the_decoy():
    true_m = mag(1)
    decoy = mag(2, court=true_m["court_code"], committal=true_m["committal_date"])
    c = [crown(1, true_m, urn="01AB0000193", asn=None, committal_date=D0 + timedelta(days=2))]
    assert linked(build_case_link(*frames([decoy, true_m], c))) == {"c1": "m1"}


def test_co_defendants_share_the_case_keys_and_each_gets_their_own_row():
    a = mag(1, urn="44XY1234523", case_id="caseA")
    b = mag(2, urn="44XY1234523", case_id="caseA")  # same URN, court, committal date
    c = [crown(1, a, asn=None), crown(2, b, pnc_id=None)]
    links = build_case_link(*frames([a, b], c))
    assert linked(links) == {"c1": "m1", "c2": "m2"}
    assert set(links["case_id"]) == {"caseA"}


def test_one_persons_two_cases_go_to_the_right_crown_cases():
    pnc = "1999/1234567Z"
    first = mag(1, pnc=pnc, surname="SMITH", dob=date(1990, 5, 5))
    second = mag(2, pnc=pnc, surname="SMITH", dob=date(1990, 5, 5), committal=D0 + timedelta(days=60))
    c = [crown(1, first, urn=None, asn=None), crown(2, second, asn=None)]
    links = build_case_link(*frames([first, second], c))
    assert linked(links) == {"c1": "m1", "c2": "m2"}


def test_appeal_without_committal_date_links_through_court_and_sentence_date():
    m = mag(1, committal=None, outcome="CONVICTED", sentence=D0, pnc="")
    m["pnc_id"] = None
    c = [crown(1, m, case_type="APPEAL", receipt_lag=20, urn="01AB0000124", asn=None, committal_date=None)]
    links = build_case_link(*frames([m, mag(2, committal=None, outcome="CONVICTED", sentence=D0)], c))
    assert linked(links) == {"c1": "m1"}
    assert links["case_type"].to_list() == ["APPEAL"]


def test_one_to_one_assignment():
    m = [mag(1), mag(2, committal=D0 + timedelta(days=1), court="B01AA00")]
    # two Crown rows that both look like m1 (e.g. a duplicated Crown record)
    c = [crown(1, m[0]), crown(2, m[0], case_number="T20230099"), crown(3, m[1])]
    links = build_case_link(*frames(m, c))
    assert links["defendant_on_case_id"].is_unique().all() and links["defendant_case_id"].is_unique().all()
    assert linked(links)["c3"] == "m2"
    assert sum(v == "m1" for v in linked(links).values()) == 1


def test_person_link_adds_evidence_and_output_columns():
    m = mag(1, urn="", asn="", pnc="")
    for k in ("urn", "asn", "pnc_id"):
        m[k] = None
    c = [crown(1, m, urn=None, asn=None, pnc_id=None, originating_court_code="B99ZZ09",
               committal_date=D0 + timedelta(days=4))]
    person = pl.DataFrame({"source_dataset": ["magistrates", "crown_court"], "record_id": ["m1", "c1"],
                           "person_id_medium": [42, 42]})
    hocas, xhibit = frames([m], c)
    hocas = hocas.with_columns(pl.lit(17, dtype=pl.Int64).alias("estimated_defendant_id"))
    links = build_case_link(hocas, xhibit, person_link=person)
    assert links.columns == list(OUTPUT_COLUMNS)
    row = links.row(0, named=True)
    assert row["defendant_case_id"] == "m1" and row["estimated_defendant_id"] == 17
    assert "person" in row["keys_agreed"].split(",")
    without = build_case_link(hocas, xhibit)
    assert without.height == 0 or without["match_score"][0] < row["match_score"]
    with pytest.raises(ValueError, match="person_link lacks"):
        build_case_link(hocas, xhibit, person_link=person.drop("person_id_medium"))


def test_latest_delivery_of_a_row_is_used():
    old = mag(1, urn="99ZZ9999999", extract="2024-01-31")
    new = mag(1, extract="2024-03-01")
    c = [crown(1, mag(1))]
    links = build_case_link(*frames([old, new], c))
    assert "urn" in links["keys_agreed"][0].split(",")


def test_blocking_never_pairs_rows_without_a_shared_key():
    m = [mag(i, court=f"B{i:02d}AA00", committal=D0 + timedelta(days=30 * i)) for i in range(200)]
    c = [crown(i, mag(1000 + i, court=f"C{i:02d}AA00", committal=D0 + timedelta(days=30 * i + 15)))
         for i in range(200)]
    hocas, xhibit = frames(m, c)
    from datafirst_assets.linkage.case_link import _crown, _magistrates

    assert candidate_pairs(_magistrates(hocas, None), _crown(xhibit, None)).height == 0
    assert build_case_link(hocas, xhibit).height == 0


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    world = simulate_world(tmp_path_factory.mktemp("case_link"), people=3000, seed=5, extracts=2)
    hocas = stage_table(world.landing, "magistrates", "hocas_flatfile")
    xhibit = stage_table(world.landing, "crown_court", "xhibit_flatfile")
    return world, hocas, xhibit


def test_accuracy_floor_on_simulated_data_without_the_person_link(simulated):
    world, hocas, xhibit = simulated
    truth = pl.read_parquet(world.truth_dir / "case_links.parquet")
    assert set(truth["case_type"]) == {"SENT_FOR_TRIAL", "COMMITTED_FOR_SENTENCE", "APPEAL"}
    links = build_case_link(hocas, xhibit)
    m = {r["case_type"]: r for r in case_link_metrics(links, truth).iter_rows(named=True)}
    assert m["all"]["precision"] >= 0.99 and m["all"]["recall"] >= 0.97, m["all"]
    assert links["match_score"].is_between(0.5, 1.0).all()
    assert links["defendant_on_case_id"].is_unique().all() and links["defendant_case_id"].is_unique().all()


def test_the_asset_reads_only_what_the_link_looks_at_and_links_the_same(simulated, tmp_path):
    """`case_lookup` loads the columns `build_case_link` reads and the lookup's rows of its two
    datasets: the links equal those built from the whole tables (every column, every dataset)."""
    from datafirst_assets.defs.xjs import _case_link_inputs
    from datafirst_assets.warehouse.io_manager import StoredTable
    from datafirst_assets_tests.warehouse_tables import write_table

    _, hocas, xhibit = simulated
    hocas = hocas.with_columns((pl.col("defendant_case_id").rank("dense") % 977).cast(pl.Int64)
                               .alias("estimated_defendant_id"))
    # a person per PNC (records without one alone); another dataset's rows share the ids
    people = [frame.select(pl.lit(source).alias("source_dataset"), pl.col(record).cast(pl.String).alias("record_id"),
                           pl.lit("h").alias("record_id_hash"),
                           pl.coalesce("pnc_id", pl.col(record).cast(pl.String)).alias("person_id_medium"),
                           pl.lit(1).alias("person_id_high")).unique("record_id", keep="last", maintain_order=True)
              for source, frame, record in (("magistrates", hocas, "defendant_case_id"),
                                            ("crown_court", xhibit, "defendant_on_case_id"),
                                            ("prison", xhibit, "defendant_on_case_id"))]
    lookup = pl.concat(people).with_columns(
        pl.when(pl.col("source_dataset") == "prison").then(pl.lit("OTHER")).otherwise(pl.col("person_id_medium"))
        .alias("person_id_medium"))
    database = tmp_path / "wh.duckdb"
    for schema, table, frame in (("linked_magistrates", "hocas_flatfile", hocas),
                                 ("linked_crown_court", "xhibit_flatfile", xhibit), ("linkage_xjs", "lookup", lookup)):
        write_table(database, schema, table, frame)
    read = _case_link_inputs(StoredTable(str(database), "linked_magistrates", "hocas_flatfile"),
                             StoredTable(str(database), "linked_crown_court", "xhibit_flatfile"),
                             StoredTable(str(database), "linkage_xjs", "lookup"))
    assert read[0].width < hocas.width and read[2].height < lookup.height
    links = build_case_link(read[0], read[1], person_link=read[2])
    whole = build_case_link(hocas, xhibit, person_link=lookup)
    assert links.height > 100 and "person" in ",".join(links["keys_agreed"].to_list())
    assert links.equals(whole)


def test_the_asset_keeps_its_links_when_neither_court_nor_the_lookup_changed(simulated, tmp_path):
    """Through Dagster: a run whose linked flatfiles and cross-justice lookup are as when the links
    were stored keeps them (its check carried over); a changed Crown Court row links again."""
    from dagster import AssetKey, AssetSpec, DagsterInstance, materialize

    from datafirst_assets.defs import xjs as xjs_defs
    from datafirst_assets.defs.linkage import LinkageSettings
    from datafirst_assets.warehouse.io_manager import WarehouseIOManager
    from datafirst_assets_tests.warehouse_tables import write_table

    _, hocas, xhibit = simulated
    lookup = pl.DataFrame({"source_dataset": ["magistrates"], "record_id": ["0"], "person_id_medium": ["p"]})
    database = tmp_path / "wh.duckdb"
    upstream = {("linked", "magistrates", "hocas_flatfile"): hocas, ("linked", "crown_court", "xhibit_flatfile"): xhibit,
                ("linkage", "xjs", "lookup"): lookup}

    def run(instance, crown_court: pl.DataFrame):
        for path, frame in {**upstream, ("linked", "crown_court", "xhibit_flatfile"): crown_court}.items():
            write_table(database, "_".join(path[:-1]), path[-1], frame)
        placeholders = [AssetSpec(key=AssetKey(list(path)), metadata={"schema": "_".join(path[:-1])})
                        .with_io_manager_key("io_manager") for path in upstream]
        result = materialize([*placeholders, xjs_defs.case_lookup], selection=[xjs_defs.CASE_LOOKUP], instance=instance,
                             resources={"io_manager": WarehouseIOManager(database=str(database)),
                                        "linkage": LinkageSettings(data_dir=str(tmp_path))})
        kept = ["unchanged" in m.materialization.metadata for m in result.get_asset_materialization_events()]
        return kept, [(e.check_name, e.passed) for e in result.get_asset_check_evaluations()]

    changed = xhibit.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("ZZ99"))
                                  .otherwise(pl.col("urn")).alias("urn"))
    with DagsterInstance.ephemeral() as instance:
        runs = [run(instance, frame) for frame in (xhibit, xhibit, changed)]
    assert [kept for kept, _ in runs] == [[False], [True], [False]]
    assert all(checks == [("one_to_one", True)] for _, checks in runs)


def _near_by_slices(a: pl.Series, b: pl.Series, width: int, k: int) -> pl.Series:
    """The comparison as it was written before ``hamming_near``: one-character slices per position."""
    frame = pl.DataFrame({"a": a, "b": b})
    diff = pl.sum_horizontal([(pl.col("a").str.slice(i, 1) != pl.col("b").str.slice(i, 1)).cast(pl.Int32)
                              for i in range(width)])
    both = pl.col("a").is_not_null() & pl.col("b").is_not_null()
    near = (pl.col("a").str.len_chars() == pl.col("b").str.len_chars()) & (diff <= k)
    return frame.select(pl.when(both).then(near).otherwise(None)).to_series()


def test_hamming_near_flags_what_comparing_character_by_character_flags():
    import random

    from datafirst_assets.linkage.case_link import hamming_near

    rng = random.Random(7)
    alphabet = "AB12/"
    keys = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24))) for _ in range(3000)]
    a = pl.Series([None if rng.random() < 0.1 else key for key in keys])
    # the other side: a few characters changed, or another key (another length), or missing
    b = pl.Series([None if rng.random() < 0.1 else
                   "".join(c if rng.random() > 0.1 else rng.choice(alphabet) for c in key) if rng.random() < 0.7
                   else rng.choice(keys) for key in keys])
    for width in (14, 20):
        got = hamming_near(a, b, width, 2)
        assert got.to_list() == _near_by_slices(a, b, width, 2).to_list()
        assert got.sum() > 100 and (~got).sum() > 100 and got.null_count() > 100  # every outcome tried


def test_candidate_rules_name_every_rule_a_pair_satisfies_once_in_name_order():
    from datafirst_assets.linkage.case_link import _RULE_NAMES

    assert _RULE_NAMES[1] == "asn" and _RULE_NAMES[0b100001] == "asn,urn"
    assert _RULE_NAMES[0b111111] == "asn,court_date,court_decision,person,pnc,urn"
    assert all(name.split(",") == sorted(name.split(",")) for name in _RULE_NAMES.values())


def test_hamming_near_refuses_keys_that_are_not_normalised_ascii():
    from datafirst_assets.linkage.case_link import hamming_near

    with pytest.raises(ValueError, match="ASCII"):
        hamming_near(pl.Series(["ÅB12"]), pl.Series(["AB12"]), 14, 2)
