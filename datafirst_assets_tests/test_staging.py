"""Standardisation rules and quarantine reasons, on hand-built raw frames."""

from datetime import date

import polars as pl
import pytest

from datafirst_assets.raw.delivery import load_raw_table
from datafirst_assets.sources.identifiers import (
    clean_name,
    normalise_cro,
    normalise_pnc,
    normalise_postcode,
    pnc_check_letter,
)
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.common.checks import failure_summary
from datafirst_assets.staging.schemas import staged_schema
from datafirst_assets.staging.standardise import stage_table
from datafirst_assets_tests.deliveries import valid_rows, write_delivery

import pandera.polars as pa


def _apply(expr_fn, values):
    return pl.DataFrame({"v": values}, schema={"v": pl.String}).select(expr_fn(pl.col("v")).alias("v"))["v"].to_list()


def test_postcodes_normalised_and_invalid_nulled():
    assert _apply(normalise_postcode, ["sw1a1aa", " M1  1AE ", "EC1A-1BB", "123", "SW1A", None]) == [
        "SW1A 1AA", "M1 1AE", "EC1A 1BB", None, None, None]


def test_pnc_check_letter_and_normalisation():
    # (2000 -> "00") + "1234567" = 1234567; 1234567 mod 23 = 19 -> letters[19] = "V"
    assert 1234567 % 23 == 19 and pnc_check_letter(2000, 1234567) == "V"
    assert _apply(normalise_pnc, ["00/1234567V", "99/0000123" + pnc_check_letter(1999, 123)]) == [
        "2000/1234567V", "1999/0000123" + pnc_check_letter(1999, 123)]
    assert _apply(normalise_pnc, ["2000/1234567V", "20001234567v", "2000/1234567A", "2000/123" + pnc_check_letter(2000, 123),
                                  "junk", None]) == ["2000/1234567V", "2000/1234567V", None, "2000/0000123" +
                                                     pnc_check_letter(2000, 123), None, None]


def test_cro_and_names():
    assert _apply(normalise_cro, ["12345/00A", "123456/99z", "x"]) == ["012345/00A", "123456/99Z", None]
    assert _apply(clean_name, ["o'brien-  smith ", "  ", "J0HN", "Mary.Ann"]) == [
        "O'BRIEN-SMITH", None, "JHN", "MARY ANN"]


def _stage(source_key, table_name, rows):
    source = SOURCES[source_key]
    table = source.table(table_name)
    raw = pl.DataFrame(
        [{"extract_date": "2024-01-31", **r, "_source_file": "f.csv", "_row_number": i + 2,
          "_parse_error": None, "_raw_line": None} for i, r in enumerate(rows)],
        schema={"extract_date": pl.String, **{c: pl.String for c in table.column_names},
                "_source_file": pl.String, "_row_number": pl.Int64, "_parse_error": pl.String, "_raw_line": pl.String},
    )
    return stage_table(raw, source, table), source, table


def test_each_source_parses_its_own_date_format():
    for source in SOURCES.values():
        table = source.person_table
        rows = valid_rows(source, table, 3)
        result, _, _ = _stage(source.key, table.name, rows)
        assert result.quarantine.height == 0, source.key
        dob_col = next(c.name for c in table.columns if c.kind == "dob")
        assert result.staged[dob_col].to_list()[0] == date(1980, 1, 2)


def test_row_problems_are_quarantined_with_reasons():
    rows = valid_rows(SOURCES["magistrates"], SOURCES["magistrates"].table("hocas_flatfile"), 6)
    rows[1]["first_hearing_date"] = "31/02/2020"
    rows[2]["plea"] = "MAYBE"
    rows[3]["court_code"] = ""
    rows[4]["defendant_case_id"] = rows[0]["defendant_case_id"]
    result, _, _ = _stage("magistrates", "hocas_flatfile", rows)
    reasons = dict(zip(result.quarantine["_row_number"].to_list(), result.quarantine["reason"].to_list()))
    assert reasons == {
        3: "first_hearing_date: unparseable date '31/02/2020' (expected %d/%m/%Y)",
        4: "plea: unknown code 'MAYBE'",
        5: "court_code: missing required value",
        6: f"defendant_case_id: duplicate source id '{rows[0]['defendant_case_id']}'",
    }
    assert result.staged.height == 2
    assert '"plea":"MAYBE"' in result.quarantine.filter(pl.col("_row_number") == 4)["raw_record"][0]


def test_several_reasons_of_one_row_are_joined_in_order():
    source = SOURCES["magistrates"]
    rows = valid_rows(source, source.table("hocas_flatfile"), 4)
    rows[1]["plea"] = "MAYBE"
    rows[1]["court_code"] = ""
    rows[1]["first_hearing_date"] = "31/02/2020"
    rows[2]["surname"] = "Smi\x00th"
    result, _, _ = _stage("magistrates", "hocas_flatfile", rows)
    reasons = dict(zip(result.quarantine["_row_number"].to_list(), result.quarantine["reason"].to_list()))
    assert reasons[4] == "surname: control character 0x00 in the value"
    parts = reasons[3].split("; ")
    assert sorted(parts) == sorted(["plea: unknown code 'MAYBE'", "court_code: missing required value",
                                    "first_hearing_date: unparseable date '31/02/2020' (expected %d/%m/%Y)"])
    order = [c.name for c in source.table("hocas_flatfile").columns]
    assert parts == sorted(parts, key=lambda p: order.index(p.split(":")[0]))  # in column order
    assert result.staged.height == 2 and "__bad" not in result.staged.columns


def test_reasons_are_written_for_the_quarantined_rows_only():
    """A reason's text is formatted on the bad rows alone (formatting every reason for every row
    was most of staging's time): a message that cannot be formatted on a good row is never tried."""
    from datafirst_assets.staging.standardise import _flag_problems, _with_reasons

    frame = pl.DataFrame({"n": ["1", "x", "2"], "_parse_error": [None, None, "TOO MANY COLUMNS"]})
    # strict: raises if evaluated on "x" (the good row)
    problems = [(pl.col("n") != "x", pl.format("n is {}", pl.col("n").cast(pl.Int64, strict=True)))]
    flagged = _flag_problems(frame, problems)
    assert flagged["__bad"].to_list() == [True, False, True]
    bad = _with_reasons(flagged.filter(pl.col("__bad")), problems)
    assert bad["__reason"].to_list() == ["n is 1", "unreadable line: TOO MANY COLUMNS"]


def test_identifier_noise_is_cleaned_not_quarantined():
    source = SOURCES["magistrates"]
    rows = valid_rows(source, source.table("hocas_flatfile"), 8)
    rows[0]["dob"] = "01/01/1985"  # placeholder
    rows[1]["dob"] = "32/13/1985"  # unreadable
    rows[2]["dob"] = "05/05/2030"  # after the extract
    rows[3]["sex"] = "U"
    rows[4]["ethnicity"] = "Z_Dummy"
    junk = "2010/0000000" + pnc_check_letter(2010, 0)
    for i in (5, 6, 7):
        rows[i]["pnc_id"] = junk
    result, _, _ = _stage("magistrates", "hocas_flatfile", rows)
    staged = result.staged.sort("_row_number")
    assert result.quarantine.height == 0
    assert staged["dob"].to_list()[:3] == [None, None, None]
    assert staged["dob_issue"].to_list()[:4] == ["placeholder", "unparseable", "out_of_range", None]
    assert staged["sex"][3] is None and staged["sex"][0] in ("M", "F")
    assert staged["ethnicity"][4] is None and staged["ethnic_group"][4] == "Unknown"
    assert staged["ethnic_group"][0] == "White"
    assert staged["pnc_id"].to_list()[5:] == [None, None, None]
    assert staged["pnc_id"][0] is not None


def test_pnc_shared_by_many_dates_of_birth_is_junk():
    source = SOURCES["probation"]
    rows = valid_rows(source, source.table("delius_flatfile"), 6)
    shared = rows[0]["pnc_id"]
    for r in rows:
        r["pnc_id"] = shared  # six different dobs, one PNC
    result, _, _ = _stage("probation", "delius_flatfile", rows)
    assert result.staged["pnc_id"].null_count() == 6
    rows = valid_rows(source, source.table("delius_flatfile"), 6)
    rows[1]["pnc_id"] = rows[0]["pnc_id"]  # same PNC twice: a real repeat, kept
    result, _, _ = _stage("probation", "delius_flatfile", rows)
    assert result.staged["pnc_id"].null_count() == 0


def test_sex_codes_are_per_system():
    result, _, _ = _stage("crown_court", "xhibit_flatfile", [
        dict(r, gender=g) for r, g in zip(valid_rows(SOURCES["crown_court"], SOURCES["crown_court"].table("xhibit_flatfile"), 3),
                                         ["Male", "Female", "M"])])
    assert result.staged.sort("_row_number")["gender"].to_list() == ["M", "F", None]


def test_schema_catches_bad_staged_frames():
    rows = valid_rows(SOURCES["family"], SOURCES["family"].table("family_people"), 3)
    result, _, _ = _stage("family", "family_people", rows)
    schema = staged_schema("family", "family_people")
    schema.validate(result.staged, lazy=True)
    broken = result.staged.with_columns(pl.lit("X").alias("sex"), pl.lit("bad postcode").alias("postcode"))
    with pytest.raises(pa.errors.SchemaErrors) as info:
        schema.validate(broken, lazy=True)
    summary = failure_summary(info.value)
    assert summary["failures"] == 6
    assert any(line.startswith("sex: isin") for line in summary["detail"])


def test_every_table_stages_cleanly_from_a_valid_delivery(tmp_path):
    for source in SOURCES.values():
        folder = write_delivery(tmp_path, source.key, "2024-01-31")
        for table in source.tables:
            raw, _ = load_raw_table(source, table, folder)
            result = stage_table(raw, source, table)
            staged_schema(source.key, table.name).validate(result.staged, lazy=True)
            assert (result.staged.height, result.quarantine.height) == (5, 0), (source.key, table.name)


def test_every_staged_and_released_column_is_described():
    """The UI's Columns tab shows these: a description, not only the constraints in brackets."""
    from datafirst_assets.deidentify.release_spec import release_tables
    from datafirst_assets.deidentify.schemas import release_schema

    schemas = [staged_schema(s.key, t.name) for s in SOURCES.values() for t in s.tables]
    schemas += [release_schema(spec) for spec in release_tables().values()]
    undescribed = [f"{schema.name}.{name}" for schema in schemas for name, column in schema.columns.items()
                   if not (column.description or "").strip()]
    assert undescribed == []
    prison = staged_schema("prison", "nomis_movements").columns
    assert prison["extract_date"].description.startswith("Extract date")


@pytest.mark.parametrize("text, starts, wrong_width, unterminated", [
    ('a,b,c\n1,2,3\n\n4,5,6\n   \n', [1, 2, 4], {}, None),  # blank and all-space lines are no records
    ('a,b,c\n1,"x\ny",3\n4,"5 ""q""",6\n', [1, 2, 4], {}, None),  # a quoted line break stays in its record
    ('a,b,c\n1,2,3\n4,5\n7,8,9,10\n', [1, 2, 3, 4], {3: (2, "4,5"), 4: (4, "7,8,9,10")}, None),
    ('a,b,c\n1,"x"y,3\n4,5,6\n', [1, 2, 3], {}, None),  # text after a closing quote: one rejected record
    ('a,b,c\n1,"x,3\n4,5,6\n', [1], {}, 2),  # a quote never closed
    ('a\n1\n \n2\n', [1, 2, 4], {}, None),
])
def test_records_are_found_where_the_csv_reader_finds_them(tmp_path, text, starts, wrong_width, unterminated):
    """The record scan (once per record of files of millions, so kept to the bare loop) counts what the
    CSV reader reads: blank lines are none, a quoted line break is inside one, a rejected one counts."""
    from datafirst_assets.raw.delivery import scan_records

    path = tmp_path / "t.csv"
    path.write_text(text, encoding="latin-1")
    scan = scan_records(path)
    assert (list(scan.start_lines), scan.wrong_width, scan.unterminated_quote_line) == (
        starts, wrong_width, unterminated)
