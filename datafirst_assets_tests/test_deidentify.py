"""De-identification: hashing, ages, areas, the PII gate and disclosure control on built examples."""

from datetime import date

import polars as pl
import pytest

from datafirst_assets.deidentify.disclosure import DisclosureRule, apply_policy, assess
from datafirst_assets.deidentify.pii_gate import IDENTIFIER_PATTERNS, raw_identifiers, scan_table
from datafirst_assets.deidentify.release import deidentify_source
from datafirst_assets.deidentify.release_spec import ReleaseColumn, ReleaseTable, release_tables
from datafirst_assets.deidentify.schemas import release_schema
from datafirst_assets.deidentify.transform import age_in_years, postcode_area
from datafirst_assets.sources.registry import SOURCES

KIND_DTYPES = {"date": pl.Date, "dob": pl.Date, "int": pl.Int64, "float": pl.Float64, "flag": pl.Boolean}
MAGISTRATES = SOURCES["magistrates"]


def staged_frame(source_key: str, table_name: str, rows: list[dict], extract_date: date = date(2024, 1, 31)):
    table = SOURCES[source_key].table(table_name)
    schema = {"extract_date": pl.Date, **{c.name: KIND_DTYPES.get(c.kind, pl.String) for c in table.columns}}
    if table.is_person_table:
        schema[SOURCES[source_key].person_id_name] = pl.Int64
    full = [{name: row.get(name) for name in schema} | {"extract_date": row.get("extract_date", extract_date)}
            for row in rows]
    return pl.DataFrame(full, schema=schema)


def magistrates_extract() -> dict[str, pl.DataFrame]:
    people = [
        dict(defendant_case_id="DC0001", case_id="CASE00001", defendant_id="DEF00001", forename1="AMELIA",
             surname="WHITFORD", dob=date(1990, 6, 15), sex="F", ethnicity="W1", postcode="LS6 2AB",
             address_line1="12 HIGH STREET", pnc_id="1990/0012345Z", cro_number="123456/90K", asn="1101AB0000012345",
             urn="13XY1234511", court_code="B01", first_hearing_date=date(2020, 6, 14), offence_group="THEFT",
             outcome="CONVICTED", estimated_defendant_id=1),
        dict(defendant_case_id="DC0002", case_id="CASE00002", defendant_id="DEF00002", forename1="AMELIA",
             surname="WHITFORD", dob=date(1990, 6, 15), sex="F", ethnicity="W1", postcode="LS6 2AB",
             court_code="B01", first_hearing_date=date(2021, 6, 15), offence_group="DRUGS", outcome="CONVICTED",
             estimated_defendant_id=1),
        dict(defendant_case_id="DC0003", case_id="CASE00003", defendant_id="DEF00003", forename1="OLUWASEUN",
             surname="ADEYEMI", dob=date(2000, 2, 29), sex="M", ethnicity="B2", postcode="SW1A 1AA",
             court_code="B02", first_hearing_date=date(2021, 2, 28), offence_group="VIOLENCE", outcome="ACQUITTED",
             estimated_defendant_id=2),
    ]
    offences = [dict(offence_id=f"OFF{i:05d}", defendant_case_id=dc, offence_group="THEFT", offence_date=date(2020, 1, i))
                for i, dc in enumerate(["DC0001", "DC0001", "DC0002", "DC0003"], start=1)]
    return {"hocas_flatfile": staged_frame("magistrates", "hocas_flatfile", people),
            "hocas_all_offence": staged_frame("magistrates", "hocas_all_offence", offences)}


@pytest.fixture(scope="module")
def release():
    return deidentify_source(MAGISTRATES, magistrates_extract(), key=b"test-key-1")


def test_release_tables_have_exactly_the_spec_columns_and_pass_the_schema(release):
    for name, frame in release.tables.items():
        spec = release_tables()[("magistrates", name)]
        assert frame.schema == pl.Schema(spec.schema())
        release_schema(spec).validate(frame)
    flat = release.tables["hocas_flatfile"]
    assert not {"surname", "forename1", "dob", "postcode", "address_line1", "pnc_id", "case_id"} & set(flat.columns)
    assert flat["estimated_defendant_id"].to_list() == [1, 1, 2]


def test_hashes_are_stable_for_a_key_differ_for_another_and_children_join_their_parents(release):
    again = deidentify_source(MAGISTRATES, magistrates_extract(), key=b"test-key-1")
    other = deidentify_source(MAGISTRATES, magistrates_extract(), key=b"test-key-2")
    hashed = ["defendant_case_id_hash", "case_id_hash", "pnc_id_hash"]
    flat = release.tables["hocas_flatfile"]
    assert flat.select(hashed).equals(again.tables["hocas_flatfile"].select(hashed))
    first = flat["defendant_case_id_hash"].to_list()
    assert set(first).isdisjoint(other.tables["hocas_flatfile"]["defendant_case_id_hash"].to_list())
    assert all(len(h) == 64 for h in first)
    joined = release.tables["hocas_all_offence"].join(flat, on="defendant_case_id_hash")
    assert joined.height == 4
    assert release.orphans == {"hocas_all_offence.defendant_case_id_hash -> hocas_flatfile.defendant_case_id_hash": 0}


def test_ages_are_whole_years_at_the_event_and_postcodes_become_areas(release):
    flat = release.tables["hocas_flatfile"]
    # a day before the 30th birthday, on the 31st birthday, and a leap-day birthday not yet reached
    assert flat["age_at_first_hearing"].to_list() == [29, 31, 20]
    assert flat["postcode_area"].to_list() == ["LS", "LS", "SW"]
    frame = pl.DataFrame({"dob": [date(2000, 1, 1), None, date(2030, 1, 1)], "at": [date(2000, 12, 31)] * 3})
    assert frame.select(age_in_years(pl.col("dob"), pl.col("at")).alias("age"))["age"].to_list() == [0, None, None]
    areas = pl.Series(["B1 1AA", "ec1a 1bb", "not a postcode", None]).to_frame("p")
    assert areas.select(postcode_area(pl.col("p")))["p"].to_list() == ["B", "EC", None, None]


def test_parties_are_aged_at_their_case_issue_date():
    cases = staged_frame("family", "family_cases", [dict(case_id="FC1", case_type="PRIVATE_LAW", issue_date=date(2015, 3, 1))])
    people = staged_frame("family", "family_people", [
        dict(party_id="P1", case_id="FC1", role="APPLICANT", forename="JO", surname="BLOGGS", dob=date(1985, 3, 2),
             sex="F", estimated_party_id=5)])
    out = deidentify_source(SOURCES["family"], {"family_cases": cases, "family_people": people})
    assert out.tables["family_people"]["age_at_issue"].to_list() == [29]
    assert out.tables["family_people"]["case_id_hash"].to_list() == out.tables["family_cases"]["case_id_hash"].to_list()


def test_the_gate_passes_a_clean_release(release):
    assert release.findings == {"hocas_flatfile": [], "hocas_all_offence": []}


PLANTS = {
    "name": lambda raw: pl.lit("WHITFORD"),
    "address": lambda raw: pl.lit("12 HIGH STREET"),
    "system_id": lambda raw: pl.lit("CASE00002"),
    "pnc": lambda raw: pl.lit("2001/0099999X"),
    "cro": lambda raw: pl.lit("654321/01B"),
    "postcode": lambda raw: pl.lit("M1 1AE"),
    "prison_number": lambda raw: pl.lit("A1234BC"),
    "crn": lambda raw: pl.lit("X123456"),
}


@pytest.mark.parametrize("identifier", sorted(PLANTS))
def test_the_gate_fails_on_a_planted_identifier_naming_table_and_column(release, identifier):
    staged = magistrates_extract()
    known = raw_identifiers(MAGISTRATES, staged)
    flat = release.tables["hocas_flatfile"]
    planted = flat.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(PLANTS[identifier](staged))
                                .otherwise(pl.col("court_code")).alias("court_code"))
    findings = scan_table("magistrates.hocas_flatfile", planted, known)
    assert {(f.table, f.column, f.identifier) for f in findings} >= {
        ("magistrates.hocas_flatfile", "court_code", identifier)}
    assert all(f.column == "court_code" for f in findings)
    assert "WHITFORD" not in str(findings)  # findings are masked


def test_known_values_are_found_whichever_side_is_larger():
    from datafirst_assets.deidentify.pii_gate import _members

    known = pl.Series("k", [f"ID{i:05d}" for i in range(1000)])
    few = pl.Series("v", ["ID00007", "NOPE", "ID00999", "ID00007X"])
    many = pl.Series("v", [f"ID{i:05d}" for i in range(990, 3000)])
    assert _members(few, known).to_list() == ["ID00007", "ID00999"]  # order of the scanned values
    assert _members(many, known).to_list() == [f"ID{i:05d}" for i in range(990, 1000)]
    assert _members(few, known.head(0)).len() == 0


def test_the_gate_finds_a_date_of_birth_in_a_date_column_and_withheld_column_names(release):
    staged = magistrates_extract()
    known = raw_identifiers(MAGISTRATES, staged)
    flat = release.tables["hocas_flatfile"]
    dobs = staged["hocas_flatfile"]["dob"]
    planted = flat.with_columns(pl.Series("sentence_date", [None, date(1990, 6, 15), None]))
    findings = scan_table("magistrates.hocas_flatfile", planted, known, dates_of_birth=dobs)
    assert [(f.column, f.identifier, f.rows) for f in findings] == [("sentence_date", "date_of_birth", 1)]
    renamed = flat.with_columns(pl.col("court_code").alias("surname"))
    assert any(f.identifier == "withheld column name" and f.column == "surname"
               for f in scan_table("t", renamed, known))
    assert set(IDENTIFIER_PATTERNS) <= set(PLANTS)


# --- disclosure control -------------------------------------------------------------------

def _people_table() -> ReleaseTable:
    return ReleaseTable(
        source="test", name="people", grain="one row per person event",
        columns=(
            ReleaseColumn("person", "person_key", pl.Int64, "person"),
            ReleaseColumn("age", "age", pl.Int32, "age"),
            ReleaseColumn("sex", "categorical", pl.String, "sex"),
            ReleaseColumn("ethnicity", "categorical", pl.String, "ethnicity"),
            ReleaseColumn("event_date", "date", pl.Date, "event"),
            ReleaseColumn("outcome", "categorical", pl.String, "outcome"),
        ),
        event_date="event_date",
    )


def _people() -> pl.DataFrame:
    # 40 people aged 20-24 (white, one outcome each of two), 12 aged 31-34, 3 aged 61 (a small cell)
    rows = [(i, 20 + i % 5, "M", "W1", date(2020, 1, 1 + i % 20), ["A", "B"][i % 2]) for i in range(40)]
    rows += [(100 + i, 31 + i % 4, "F", "W2" if i % 2 else "W1", date(2020, 2, 3), "A") for i in range(12)]
    rows += [(200 + i, 61, "F", "B1", date(2020, 3, 1), "B") for i in range(3)]
    return pl.DataFrame(rows, schema=_people_table().schema(), orient="row")


def test_k_anonymity_reports_small_cells_and_l_diversity():
    spec, frame = _people_table(), _people()
    rule = DisclosureRule(k=5, l=2, quasi_identifiers=("age", "sex", "ethnicity", "event_date"))
    result = assess(frame, spec, rule)
    # age in 5-year bands and event month: 20-24/M/W1/Jan (40), 30-34/F/W1/Feb (6), 30-34/F/W2/Feb (6), 60-64/F/B1/Mar (3)
    assert result.classes == 4
    assert result.small_cells.height == 1 and result.small_cells["size"].to_list() == [3]
    assert result.rows_in_small_cells == 3 and result.smallest_class == 3
    assert result.not_l_diverse_classes == 3  # only the first class has both outcomes
    warned, warned_result = apply_policy(frame, spec, DisclosureRule(**{**rule.__dict__, "policy": "warn"}))
    assert warned.equals(frame) and not warned_result.k_anonymous


def test_coarsening_generalises_then_suppresses_until_k_holds():
    spec, frame = _people_table(), _people()
    rule = DisclosureRule(k=7, policy="coarsen", max_suppressed_share=0.0,
                          quasi_identifiers=("age", "sex", "ethnicity", "event_date"))
    released, result = apply_policy(frame, spec, rule)
    assert result.k_anonymous
    assert result.rungs["ethnicity"] == "group"  # W1 + W2 -> W makes the 30-34 class 12 people
    assert released.schema == frame.schema and released.height == frame.height
    assert set(released["ethnicity"].drop_nulls()) <= {"W", "B", "W1", "B1"}
    assert result.suppressed_rows == 3  # the three 61-year-olds cannot reach 7 and are suppressed
    assert released.filter(pl.col("age").is_null()).height == 3
    assert assess(released, spec, DisclosureRule(k=7, quasi_identifiers=rule.quasi_identifiers)).smallest_class >= 3


def test_a_declared_code_spelt_like_a_name_is_a_code_in_tables_and_catalogues():
    # at a million people someone is called High: the risk level HIGH is still a code, but HIGH in
    # a column with no declared codes is a name
    from datafirst_assets.deidentify.pii_gate import RawIdentifiers
    from datafirst_assets.deidentify.release_spec import release_tables
    from datafirst_assets.release.gates import _undeclared_values

    spec = release_tables()[("oasys", "oasys_assessments_details_core_risk")]
    assert "HIGH" in spec.code_lists["risk_level"]
    known = RawIdentifiers(names={"HIGH", "WHITFORD"})
    released = pl.DataFrame({"risk_level": ["HIGH", "LOW", "WHITFORD"], "assessor_note": ["HIGH", None, None]})
    findings = scan_table("oasys.oasys_assessment", released, known, codes=spec.code_lists)
    assert sorted((f.column, f.rows) for f in findings) == [("assessor_note", 1), ("risk_level", 1)]
    assert len(scan_table("oasys.oasys_assessment", released, known)) == 2  # without the lists, HIGH is a name
    values = pl.DataFrame({"dataset": "oasys", "table": "oasys_assessments_details_core_risk", "column": ["risk_level", "risk_level",
                                                                                      "assessor_note"],
                           "value": ["High", "WHITFORD", "HIGH"], "count": [20, 15, 12]})
    assert _undeclared_values(values)[["column", "value"]].rows() == [("risk_level", "WHITFORD"), ("assessor_note", "HIGH")]


def _column_by_column(table, released, raw, dates_of_birth=None, codes=None, shapes=True):
    """scan_table as it was: every column through the shapes and the raw values on its own."""
    from datafirst_assets.deidentify.pii_gate import Finding, _members, mask

    findings = [Finding(table, c, "withheld column name", released.height, c)
                for c in released.columns if c.lower() in raw.column_names]
    for column in released.columns:
        series = released[column]
        if series.dtype == pl.String:
            normalised = series.drop_nulls().unique().str.strip_chars().str.to_uppercase()
            unhashed = normalised.filter(~normalised.str.contains(r"^[0-9A-F]{64}$")) if shapes else normalised.head(0)
            for identifier, pattern in IDENTIFIER_PATTERNS.items():
                hits = unhashed.filter(unhashed.str.contains(pattern))
                if hits.len():
                    findings.append(Finding(table, column, identifier, hits.len(), mask(hits[0])))
            declared = [str(c).upper() for c in (codes or {}).get(column, ())]
            normalised = normalised.filter(~normalised.is_in(declared)) if declared else normalised
            for identifier in ("name", "address", "system_id"):
                hits = _members(normalised, raw.series(identifier))
                if raw.series(identifier).len() and hits.len():
                    findings.append(Finding(table, column, identifier, hits.len(), mask(hits[0])))
        elif series.dtype == pl.Date and dates_of_birth is not None:
            same = (series == dates_of_birth).fill_null(False)
            if same.any():
                findings.append(Finding(table, column, "date_of_birth", int(same.sum()), mask(series.filter(same)[0])))
    return findings


def test_one_pass_per_kind_over_every_column_finds_what_the_column_by_column_scan_finds():
    from datafirst_assets.deidentify.pii_gate import RawIdentifiers

    raw = RawIdentifiers(names={"WHITFORD", "ALIBHAI", "HIGH"}, addresses={"12 MILL LANE"},
                         system_ids={"CASE0001", "CASE0002"}, column_names={"surname"})
    released = pl.DataFrame({
        "court_code": ["B01", " whitford", "CASE0001", "SW1A 1AA", None],
        "surname": ["x", "y", "z", "w", "v"],
        "risk": ["HIGH", "LOW", "alibhai", "HIGH", "12 mill lane"],
        "case_hash": ["A" * 64, "CASE0002", "CASE0001", "b" * 64, None],
        "sentence_date": [date(1990, 6, 15), None, date(2020, 1, 1), None, None],
        "age": [30, 31, 32, 33, None],
    })
    dobs = pl.Series([date(1990, 6, 15), None, None, None, None])
    # (the example shown is the first of the column's distinct values found: `unique` leaves
    # their order open, so it is not compared)
    seen = lambda findings: [(f.table, f.column, f.identifier, f.rows) for f in findings]  # noqa: E731
    for shapes in (True, False):
        got = scan_table("t", released, raw, dates_of_birth=dobs, codes={"risk": ["HIGH", "LOW"]}, shapes=shapes)
        assert seen(got) == seen(_column_by_column("t", released, raw, dobs, {"risk": ["HIGH", "LOW"]}, shapes))
        assert not any("CASE000" in f.example or "WHITFORD" in f.example for f in got)
    assert [(f.column, f.identifier, f.rows) for f in scan_table("t", released, raw, dates_of_birth=dobs,
                                                                 codes={"risk": ["HIGH", "LOW"]})] == [
        ("surname", "withheld column name", 5), ("court_code", "postcode", 1), ("court_code", "name", 1),
        ("court_code", "system_id", 1), ("risk", "name", 1), ("risk", "address", 1), ("case_hash", "system_id", 2),
        ("sentence_date", "date_of_birth", 1)]


def test_the_raw_value_comparison_in_bounded_batches_finds_the_same(monkeypatch):
    import datafirst_assets.deidentify.pii_gate as pii_gate

    raw = pii_gate.RawIdentifiers(names={"WHITFORD"}, system_ids={"CASE0001", "CASE0002"})
    released = pl.DataFrame({"a": ["whitford", "x", "CASE0002"], "b": ["CASE0001", "y", None], "c": ["z", "z", "z"]})
    whole = scan_table("t", released, raw)
    monkeypatch.setattr(pii_gate, "SCAN_BATCH_VALUES", 2)  # a batch per column or two
    assert scan_table("t", released, raw) == whole
    assert [(f.column, f.identifier, f.rows) for f in whole] == [("a", "name", 1), ("a", "system_id", 1),
                                                                ("b", "system_id", 1)]


def test_the_linking_gate_compares_with_the_lookups_raw_ids_held_as_one_series(tmp_path):
    """`deidentify_linking` scans both lookups against their raw ids (values of 5 characters or more
    of their id columns), now held as one polars Series instead of a Python set of every record id: a
    released value equal to one is found, shorter ids are not compared; the case ids are hashed from
    the keyed-hash cache their datasets filled (the same namespaces), to the same digests."""
    from datafirst_assets.deidentify.hash_cache import KeyedHashCache
    from datafirst_assets.deidentify.release import deidentify_linking, linking_raw_ids
    from datafirst_assets.deidentify.transform import release_case_lookup

    lookup = pl.DataFrame({"source_dataset": ["magistrates", "magistrates", "prison"],
                           "record_id": ["DC00001", "DC00002", "1234"], "person_id_dataset": ["magistrates:1",
                                                                                          "magistrates:1", "prison:2"],
                           **{f"person_id_{level}": [1, 1, 2] for level in ("high", "medium", "low")}})
    cases = pl.DataFrame({"defendant_case_id": ["DC00001"], "defendant_on_case_id": ["DOC000009"],
                          "case_type": ["TRIAL"], "match_score": [0.99], "keys_agreed": ["urn"]})
    known = linking_raw_ids(lookup, cases)
    assert sorted(known.series("system_id").to_list()) == ["DC00001", "DC00002", "DOC000009"]
    assert known.column_names >= {"record_id", "defendant_case_id"}
    planted = lookup.with_columns(pl.when(pl.col("record_id") == "1234").then(pl.lit("DC00002"))
                                  .otherwise(pl.col("source_dataset")).alias("source_dataset"))
    findings = scan_table("linking.xjs_lookup", planted.select("source_dataset"), known)
    assert [(f.column, f.identifier, f.rows) for f in findings] == [("source_dataset", "system_id", 1)]

    cache = KeyedHashCache(tmp_path / "warehouse.duckdb")
    with cache.batched():
        hashed = release_case_lookup(cases, cache=cache)
    assert cache.hashed == 2 and hashed.equals(release_case_lookup(cases))
    again = KeyedHashCache(tmp_path / "warehouse.duckdb")
    release = deidentify_linking(lookup, cases, cache=again)
    assert again.found == 2 and again.hashed == 0 and release.tables["case_lookup"].equals(hashed)
    assert release.findings == {"xjs_lookup": [], "case_lookup": []}


def test_the_linking_step_reads_the_lookup_without_its_record_hashes():
    """The lookup's widest column (each record's keyed hash) is not read: the released lookup and the
    gate's raw ids come from the columns asked for (`lookup_columns`)."""
    from datafirst_assets.defs.deidentify import deidentify_linking_tables
    from datafirst_assets.deidentify.release import linking_raw_ids, lookup_columns
    from datafirst_assets.deidentify.transform import release_xjs_lookup

    lookup = pl.DataFrame({"source_dataset": ["prison", "magistrates", "magistrates"],
                           "record_id": ["PR00007", "DC00001", "DC00002"], "record_id_hash": ["a" * 64, "b" * 64, "c" * 64],
                           "person_id_dataset": ["prison:2", "magistrates:1", "magistrates:1"],
                           **{f"person_id_{level}": [2, 1, 1] for level in ("high", "medium", "low")}})
    asked = deidentify_linking_tables.node_def.input_dict["lookup"].metadata["columns"]
    assert asked == list(lookup_columns()) and "record_id_hash" not in asked
    narrow = lookup.select(asked)
    assert release_xjs_lookup(narrow).equals(release_xjs_lookup(lookup))
    assert linking_raw_ids(narrow).series("system_id").sort().equals(linking_raw_ids(lookup).series("system_id").sort())
