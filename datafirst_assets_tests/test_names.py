"""Names as people write them: accents folded (never deleted), the spelling as written kept,
and apostrophes, hyphens and spaces compared the way a person reads them."""

import polars as pl

from datafirst_assets.linkage.records import person_records
from datafirst_assets.simulate.vocab import build_vocab
from datafirst_assets.sources.identifiers import clean_name, fold_to_ascii, name_key
from datafirst_assets_tests.test_staging import _stage


def _apply(expr_fn, values):
    return pl.DataFrame({"v": values}, schema={"v": pl.String}).select(expr_fn(pl.col("v")).alias("v"))["v"].to_list()


def test_accents_are_folded_not_deleted():
    assert _apply(clean_name, ["Siobhán O'Brien", "Nguyễn", "Zoë", "Łukasz", "Wiśniewski", "Đặng", "Ærø"]) == [
        "SIOBHAN O'BRIEN", "NGUYEN", "ZOE", "LUKASZ", "WISNIEWSKI", "DANG", "AERO"]
    # ASCII names are untouched; nulls stay null
    assert fold_to_ascii(pl.Series(["Smith", None, "O'Neill"])).to_list() == ["Smith", None, "O'Neill"]


def test_apostrophes_hyphens_and_spaces_compare_as_read():
    keys = _apply(lambda e: name_key(clean_name(e)), ["O'Brien", "OBRIEN", "O BRIEN", "o’brien", "O-Brien"])
    assert set(keys) == {"OBRIEN"}
    assert _apply(lambda e: name_key(clean_name(e)), ["Mary-Ann", "Mary Ann", "MARYANN", "'-", None]) == [
        "MARYANN", "MARYANN", "MARYANN", None, None]


def test_staging_keeps_the_spelling_as_written_next_to_the_folded_one():
    rows = [{"party_id": "P1", "case_id": "C1", "role": "APPLICANT", "forename": " Siobhán ",
             "surname": "O'Brien", "dob": "01/02/1990", "sex": "F"},
            {"party_id": "P2", "case_id": "C1", "role": "RESPONDENT", "forename": "Zoë",
             "surname": "Nguyễn", "dob": "", "sex": "F"}]
    result, source, table = _stage("family", "family_people", rows)
    staged = result.staged.sort("party_id")
    assert staged["forename"].to_list() == ["SIOBHAN", "ZOE"]
    assert staged["forename_original"].to_list() == ["Siobhán", "Zoë"]
    assert staged["surname"].to_list() == ["O'BRIEN", "NGUYEN"]
    assert staged["surname_original"].to_list() == ["O'Brien", "Nguyễn"]
    records = person_records(staged, source, table).sort("record_id")
    # linkage compares the key; the spelling as written travels with it
    assert records["surname"].to_list() == ["OBRIEN", "NGUYEN"]
    assert records["surname_original"].to_list() == ["O'Brien", "Nguyễn"]
    assert records["forename_original"].to_list() == ["Siobhán", "Zoë"]


def test_simulated_people_include_names_written_with_accents():
    vocab = build_vocab()
    written = [name for pools in (vocab.forename_pools, vocab.surname_pools) for ids, _ in pools.values()
               for name in (vocab.strings[i] for i in ids) if not name.isascii()]
    assert {"Siobhán", "Zoë", "Nguyễn", "Łukasz"} <= set(written)
    # a system that stores ASCII only drops the accent, keeping every letter
    for name, plain in (("Zoë", "Zoe"), ("Nguyễn", "Nguyen"), ("Wiśniewski", "Wisniewski")):
        assert vocab.strings[vocab.ascii_of[vocab.index(name)]] == plain


def test_companies_recorded_as_people_are_detected():
    import polars as pl

    from datafirst_assets.sources.identifiers import looks_like_company

    names = pl.Series(["SOVEREIGN HOUSING ASSOCIATION LTD", "ATLAS ASSET MANAGEMENT L L P", "CASTLE LETTINGS",
                       "SMITH", "BANKS", "VAN DER BERG", "O'BRIEN", None])
    assert pl.select(looks_like_company(pl.lit(names))).to_series().to_list() == [
        True, True, True, False, False, False, False, False]


def test_civil_person_records_carry_case_role_and_company_detection():
    import datetime

    import polars as pl

    from datafirst_assets.linkage.records import person_records
    from datafirst_assets.sources.registry import SOURCES

    civil = SOURCES["civil"]
    staged = pl.DataFrame({
        "extract_date": ["2024-01-31"] * 3, "party_id": ["1", "2", "3"], "case_id": ["10", "10", "11"],
        "role": ["CLAIMANT", "DEFENDANT", "CLAIMANT"], "party_type": ["INDIVIDUAL", "INDIVIDUAL", "COMPANY"],
        "forename": [None, "JANE", None], "surname": ["MERSEY SERVICES LIMITED", "O'BRIEN", None],
        "company_name": [None, None, "MERSEY SERVICES LTD"], "dob": [None, datetime.date(1980, 1, 2), None],
        "postcode": ["L1 1AA", "L1 2BB", "L1 1AA"], "address_line1": ["1 DOCK ROAD", "2 ELM LANE", "1 DOCK ROAD"],
    })
    records = person_records(staged, civil, civil.person_table)
    assert records["record_id"].to_list() == ["1", "2"]  # the company recorded as a company is no person
    assert records["case_id"].to_list() == ["10", "10"]
    assert records["party_role"].to_list() == ["CLAIMANT", "DEFENDANT"]
    assert records["party_kind"].to_list() == ["COMPANY", "PERSON"]  # ... nor is one recorded as a person
    assert records["surname"].to_list() == ["MERSEYSERVICES", "OBRIEN"]  # a company's name without "LIMITED"
