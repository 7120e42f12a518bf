"""A corpus of malformed deliveries, each loaded through `run_pipeline` on top of a loaded extract.

Every case ends one of two ways, and nothing else counts as passing:
- refused: `datafirst run` stops with a message naming the file or folder and the problem, and no
  table of the warehouse changed (neither the earlier extract nor any table of this delivery);
- loaded: every delivered record is a raw row, raw = staged + quarantined per table, every
  quarantined row has a reason, and the fault shows up as the reason expected (no silent
  acceptance). A few valid-but-awkward RFC 4180 files load with their values intact.
"""

import gzip
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from dagster import DagsterInstance

from datafirst_assets.defs.resources import DataLayout
from datafirst_assets.raw.delivery import MANIFEST
from datafirst_assets.runner import PipelineFailed, run_pipeline
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.warehouse.connection import close_warehouse, warehouse_cursor
from datafirst_assets_tests.deliveries import count_records, to_csv, valid_rows, write_delivery

SOURCE = SOURCES["crown_court"]
PERSON, OFFENCE = SOURCE.tables  # xhibit_flatfile, then xhibit_all_off_disp (loaded second)
EARLIER, DATE = "2024-01-31", "2024-02-29"
ROWS = 4


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], None]  # writes the delivery (of DATE unless it says otherwise)
    refused: str | None = None  # regex the error must match; None: the delivery loads
    reason: str | None = None  # regex some quarantine reason must match (a load that flags the fault)
    staged_value: tuple[str, str, str] | None = None  # (table, column, value) a valid load must keep


def csv_of(table, rows=None, columns=None, delimiter=",") -> bytes:
    return to_csv(rows if rows is not None else valid_rows(SOURCE, table, ROWS), columns or table.column_names,
                  delimiter)


def deliver(files: dict | None = None, **kwargs) -> Callable[[Path], None]:
    """A crown_court delivery of DATE with some tables' bytes replaced."""
    return lambda landing: write_delivery(landing, SOURCE.key, DATE, files=files, rows=ROWS, **kwargs)


def with_row(table, column: str, value: str, row: int = 1) -> Callable[[Path], None]:
    rows = valid_rows(SOURCE, table, ROWS)
    rows[row][column] = value
    return deliver({table.name: csv_of(table, rows)})


def raw_line(table, line: bytes, row: int = 2) -> Callable[[Path], None]:
    """Replace one data line of a valid file with `line` as delivered."""
    lines = csv_of(table).split(b"\n")
    lines[row] = line
    return deliver({table.name: b"\n".join(lines)})


def edit_manifest(change: Callable[[dict], object], raw: bytes | None = None) -> Callable[[Path], None]:
    def build(landing: Path) -> None:
        folder = write_delivery(landing, SOURCE.key, DATE, rows=ROWS)
        if raw is not None:
            (folder / MANIFEST).write_bytes(raw)
            return
        manifest = json.loads((folder / MANIFEST).read_text())
        change(manifest)  # edits in place
        (folder / MANIFEST).write_text(json.dumps(manifest))
    return build


def moved(folder_source: str, folder_date: str) -> Callable[[Path], None]:
    """A good delivery under a folder that is not `<source>/<YYYY-MM-DD>`."""
    def build(landing: Path) -> None:
        folder = write_delivery(landing, SOURCE.key, DATE, rows=ROWS)
        target = landing / folder_source / folder_date
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(folder, target)
    return build


def also(build, extra: Callable[[Path], None]) -> Callable[[Path], None]:
    def both(landing: Path) -> None:
        build(landing)
        extra(landing / SOURCE.key / DATE)
    return both


def _zip(content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.csv", content)
    return buffer.getvalue()


def _header_swap(table, old: str, new: str) -> bytes:
    return csv_of(table).replace(old.encode(), new.encode(), 1)


def _ref_line(extra: str) -> bytes:
    row = valid_rows(SOURCE, OFFENCE, ROWS)[1]
    return (",".join(row[c] for c in OFFENCE.column_names) + extra).encode()


MULTILINE = 'Found at "the scene",\nsecond line'
CASES = [
    # the landing zone as a whole
    Case("source folder in the wrong case", moved("Crown_Court", DATE), refused=r"Crown_Court/: not a registered "
         r"source; did you mean crown_court/"),
    Case("source folder in capitals", moved("CROWN_COURT", DATE), refused="did you mean crown_court/"),
    Case("unknown source folder", moved("magistrates_court", DATE), refused="not a registered source"),
    Case("day-first date folder", moved(SOURCE.key, "29-02-2024"), refused="rename it 2024-02-29"),
    Case("impossible date folder", moved(SOURCE.key, "2024-02-30"), refused="'2024-02-30' is not a real date"),
    Case("compact date folder", moved(SOURCE.key, "20240229"), refused="not an extract date folder"),
    # the manifest
    Case("manifest not JSON", edit_manifest(None, b"{not json"), refused=r"malformed manifest, not valid JSON \(line 1"),
    Case("manifest cut short", edit_manifest(None, b'{"source": "crown_court", "tables": '), refused="not valid JSON"),
    Case("manifest a list", edit_manifest(None, b"[]"), refused="malformed manifest"),
    Case("manifest not UTF-8", edit_manifest(None, b'{"source": "crown\xe9"}'), refused="not UTF-8"),
    Case("manifest without tables", edit_manifest(lambda m: m.pop("tables")), refused="missing field 'tables'"),
    Case("manifest rows not a number",
         edit_manifest(lambda m: m["tables"][OFFENCE.name].update(rows="many")), refused="malformed manifest"),
    Case("manifest impossible date", edit_manifest(lambda m: m.update(extract_date="2024-02-30")),
         refused="malformed manifest"),
    Case("delivery copied to a new date folder", edit_manifest(lambda m: m.update(extract_date=EARLIER)),
         refused=f"manifest is for crown_court/{EARLIER}, but the folder is crown_court/{DATE}"),
    Case("manifest of another source", edit_manifest(lambda m: m.update(source="prison")),
         refused="manifest is for prison"),
    Case("manifest names an unknown table",
         edit_manifest(lambda m: m["tables"].update(surprise=m["tables"][OFFENCE.name])),
         refused=r"table\(s\) \['surprise'\] are not tables of crown_court"),
    Case("manifest lacks a table", edit_manifest(lambda m: m["tables"].pop(OFFENCE.name)),
         refused=r"no entry for table\(s\) \['xhibit_all_off_disp'\]"),
    Case("manifest path outside the folder",
         edit_manifest(lambda m: m["tables"][OFFENCE.name].update(file="../../xhibit_all_off_disp.csv")),
         refused="not inside the delivery folder"),
    Case("manifest absolute path",
         edit_manifest(lambda m: m["tables"][OFFENCE.name].update(file="/etc/hostname")),
         refused="not inside the delivery folder"),
    Case("manifest names a file not delivered",
         edit_manifest(lambda m: m["tables"][OFFENCE.name].update(file="missing.csv")),
         refused="missing.csv: listed in the manifest but not delivered"),
    Case("no manifest", also(deliver(), lambda folder: (folder / MANIFEST).unlink()), refused="no manifest.json"),
    # whole files (the second table, so a half-load would show in the first)
    Case("altered file", also(deliver(), lambda f: (f / f"{OFFENCE.name}.csv").write_bytes(
        (f / f"{OFFENCE.name}.csv").read_bytes().replace(b"0000", b"9999", 1))), refused="sha256"),
    Case("row count wrong", deliver(manifest_rows={OFFENCE.name: ROWS + 1}), refused=f"manifest says {ROWS + 1}"),
    Case("gzip named .csv", deliver({OFFENCE.name: gzip.compress(csv_of(OFFENCE))}), refused="gzip-compressed"),
    Case("UTF-16 named .csv", deliver({OFFENCE.name: csv_of(OFFENCE).decode().encode("utf-16")}), refused="UTF-16"),
    Case("UTF-16 without BOM", deliver({OFFENCE.name: csv_of(OFFENCE).decode().encode("utf-16-le")}),
         refused="NUL bytes"),
    Case("zip named .csv", deliver({OFFENCE.name: _zip(csv_of(OFFENCE))}), refused="a zip archive"),
    Case("empty file", deliver({OFFENCE.name: b""}), refused="empty file"),
    Case("missing column", deliver({OFFENCE.name: csv_of(OFFENCE, columns=OFFENCE.column_names[:-1])}),
         refused=r"missing column\(s\) \['sentence_length_days'\]"),
    Case("extra column", deliver({OFFENCE.name: _header_swap(OFFENCE, "verdict", "verdict,notes")}),
         refused="unexpected column"),
    Case("duplicated column", deliver({OFFENCE.name: _header_swap(OFFENCE, "verdict", "plea")}),
         refused="duplicated column"),
    Case("semicolon delimited", deliver({OFFENCE.name: csv_of(OFFENCE, delimiter=";")}), refused="looks delimited by ';'"),
    Case("truncated inside a quote", deliver({OFFENCE.name: csv_of(OFFENCE) + b'OFF9,REF9,"cut off'}),
         refused="unterminated quote"),
    Case("header not UTF-8", deliver({OFFENCE.name: _header_swap(OFFENCE, "plea", "pl\xe9a").replace(
        "pléa".encode(), b"pl\xe9a")}), refused="not valid utf-8"),
    # rows: quarantined or flagged with the reason
    Case("NUL byte in a name", with_row(PERSON, "surname", "Sm\x00ith"), reason="surname: control character 0x00"),
    Case("bell character in text", with_row(OFFENCE, "offence_code", "A\x07B"), reason="control character 0x07"),
    Case("10,000-character field", with_row(OFFENCE, "offence_code", "x" * 10_000),
         reason="offence_code: 10000 characters, over the limit of 200"),
    Case("overlong name", with_row(PERSON, "forename", "A" * 300), reason="forename: 300 characters"),
    Case("negative duration", with_row(OFFENCE, "sentence_length_days", "-365"),
         reason="sentence_length_days: -365 is below the minimum 0"),
    Case("duration not a number", with_row(OFFENCE, "sentence_length_days", "ten"), reason="not a valid int"),
    Case("impossible date", with_row(OFFENCE, "disposal_date", "2024-02-30"), reason="disposal_date: unparseable date"),
    Case("day-first date", with_row(OFFENCE, "disposal_date", "29/02/2024"), reason="unparseable date"),
    Case("junk code", with_row(OFFENCE, "disposal_code", "Z_DUMMY"), reason="disposal_code: unknown code 'Z_DUMMY'"),
    Case("missing id", with_row(OFFENCE, "offence_disposal_id", ""), reason="offence_disposal_id: missing required"),
    Case("duplicate id", with_row(OFFENCE, "offence_disposal_id", valid_rows(SOURCE, OFFENCE, 1)[0][
        "offence_disposal_id"]), reason="duplicate source id"),
    Case("required date missing", with_row(PERSON, "receipt_date", ""), reason="receipt_date: missing required"),
    Case("stray delimiter", raw_line(OFFENCE, _ref_line(",EXTRA")), reason="TOO MANY COLUMNS"),
    Case("trailing delimiter", raw_line(OFFENCE, _ref_line(",")), reason="TOO MANY COLUMNS"),
    Case("too few fields", raw_line(OFFENCE, b"OFF1,REF1"), reason="MISSING COLUMNS"),
    Case("text after a closing quote", raw_line(OFFENCE, _ref_line("").replace(b",", b',"x"y,', 1)),
         reason="unreadable line"),
    Case("undecodable bytes in a row", raw_line(OFFENCE, _ref_line("").replace(b"REF", b"R\xff\xfeF", 1)),
         reason="INVALID ENCODING"),
    # valid RFC 4180 files: nothing quarantined, values kept exactly
    Case("quoted line break, delimiter and quotes", with_row(OFFENCE, "offence_code", MULTILINE),
         staged_value=(OFFENCE.name, "offence_code", MULTILINE)),
    Case("CRLF line endings", deliver({OFFENCE.name: csv_of(OFFENCE).replace(b"\n", b"\r\n")})),
    Case("no final line break", deliver({OFFENCE.name: csv_of(OFFENCE).rstrip(b"\n")})),
    Case("header only", deliver({OFFENCE.name: csv_of(OFFENCE, rows=[])})),
]
MALFORMED = [c for c in CASES if c.refused or c.reason]


def test_the_corpus_is_large_enough():
    assert len(MALFORMED) >= 40 and len({c.name for c in CASES}) == len(CASES)


# On tmpfs where there is one: each case writes a small warehouse, and a busy disk makes that slow.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None


@pytest.fixture(scope="module")
def loaded() -> tuple[Path, dict]:
    """crown_court's EARLIER extract loaded: the landing folder and warehouse each case starts from."""
    with tempfile.TemporaryDirectory(dir=SCRATCH) as root:
        layout = DataLayout(Path(root) / "data")
        write_delivery(layout.landing, SOURCE.key, EARLIER, rows=ROWS)
        run_pipeline(layout, DagsterInstance.ephemeral(), link=False)
        before = counts(layout)
        close_warehouse()
        yield layout.root, before


@pytest.fixture
def scratch() -> Path:
    with tempfile.TemporaryDirectory(dir=SCRATCH) as root:
        yield Path(root)


def counts(layout: DataLayout) -> dict[str, list]:
    """Every row of every crown_court table, per stage (what "nothing changed" compares)."""
    out = {}
    with warehouse_cursor(layout.warehouse) as conn:
        for stage in ("raw", "staged", "quarantine"):
            for table in SOURCE.tables:
                out[f"{stage}.{table.name}"] = sorted(map(repr, conn.execute(
                    f"select * exclude (_source_file) from {stage}_{SOURCE.key}.{table.name}").fetchall()))
    return out


def _delivered(landing: Path) -> dict[str, int]:
    folder = landing / SOURCE.key / DATE
    manifest = json.loads((folder / MANIFEST).read_text())
    return {name: count_records((folder / entry["file"]).read_bytes()) for name, entry in manifest["tables"].items()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_delivery_is_refused_by_name_or_quarantined_with_its_reason(case, loaded, scratch):
    baseline, before = loaded
    layout = DataLayout(scratch / "data")
    shutil.copytree(baseline, layout.root)
    case.build(layout.landing)
    try:
        if case.refused:
            with pytest.raises(PipelineFailed, match=case.refused):
                run_pipeline(layout, DagsterInstance.ephemeral(), link=False)
            assert counts(layout) == before, "a refused delivery changed the warehouse"
            return
        run_pipeline(layout, DagsterInstance.ephemeral(), dates=[DATE], link=False)
        delivered = _delivered(layout.landing)
        with warehouse_cursor(layout.warehouse) as conn:
            def rows(stage, table, what="count(*)"):
                return conn.execute(f"select {what} from {stage}_{SOURCE.key}.{table} "
                                    "where extract_date = ?", [DATE]).fetchall()
            reasons = []
            for table in SOURCE.tables:
                raw, staged = rows("raw", table.name)[0][0], rows("staged", table.name)[0][0]
                quarantined = [r for (r,) in rows("quarantine", table.name, "reason")]
                assert raw == delivered[table.name] == staged + len(quarantined), table.name
                assert all(r and r.strip() for r in quarantined), "a quarantined row without its reason"
                reasons += quarantined
            if case.reason:
                assert any(re.search(case.reason, r) for r in reasons), reasons
            else:
                assert reasons == [], "a valid file had rows quarantined"
            if case.staged_value:
                table, column, value = case.staged_value
                assert value in [v for (v,) in rows("staged", table, column)]
        # the earlier extract is untouched
        assert {k: [r for r in v if DATE not in r] for k, v in counts(layout).items()} == before
    finally:
        close_warehouse()


@pytest.mark.parametrize("case", [c for c in CASES if c.name in (
    "manifest not JSON", "gzip named .csv", "UTF-16 named .csv", "impossible date folder",
    "delivery copied to a new date folder")], ids=lambda c: c.name)
def test_the_command_line_ends_with_the_named_error_not_a_traceback(case, scratch, capsys, monkeypatch):
    from datafirst_assets.cli import main

    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # `make test` exports the demo's
    layout = DataLayout(scratch / "data")
    case.build(layout.landing)
    assert main(["run", "--no-link", "--data-dir", str(layout.root)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("datafirst run failed: ") and re.search(case.refused, err), err
    for inner in ("Traceback", "JSONDecodeError", "UnicodeDecodeError", "ValueError", "DagsterExecution"):
        assert inner not in err, err
    close_warehouse()


def test_an_unexpected_failure_still_ends_with_a_message_and_its_traceback_in_the_log(scratch, capsys, monkeypatch):
    from datafirst_assets import runner
    from datafirst_assets.cli import main

    def broken(*args, **kwargs):
        raise RuntimeError("something nobody foresaw")

    monkeypatch.setattr(runner, "run_pipeline", broken)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    layout = DataLayout(scratch / "data")
    assert main(["run", "--data-dir", str(layout.root)]) == 1
    err = capsys.readouterr().err
    assert "datafirst run failed: RuntimeError: something nobody foresaw (traceback: " in err
    assert "Traceback" not in err
    [log] = layout.logs.glob("datafirst-run-*.log")
    assert "Traceback" in log.read_text() and "something nobody foresaw" in log.read_text()
