"""Reading extract deliveries from the landing zone, as delivered.

A delivery is `<landing>/<source>/<YYYY-MM-DD>/` holding one delimited text file per table and
a `manifest.json` naming each file (inside the folder) with its row count and sha256. Files are
RFC 4180 CSV: a quoted field may hold the delimiter, doubled quotes and line breaks, so a
manifest's `rows` counts records (data rows), not lines. Whole-file problems (no manifest, a
manifest for another source or date or naming an unknown table or a file outside the folder,
checksum or row-count mismatch, empty, compressed or UTF-16 file, wrong delimiter, missing or
extra columns, an unterminated quote) raise `DeliveryError` naming the file and what to do.
Row-level problems (too few or too many fields, undecodable bytes) never drop the row: it is
kept with every field null, the line it starts on, the raw line and a `_parse_error`, so
staging quarantines it and row counts stay conserved.
"""

from __future__ import annotations

import csv
import json
import re
import threading
from array import array
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from datafirst_assets.common.hashing import sha256_file
from datafirst_assets.common.partitions import PARTITION_COLUMN
from datafirst_assets.sources.spec import SourceSpec, TableSpec
from datafirst_assets.warehouse.connection import scratch_cursor

MANIFEST = "manifest.json"
# Load metadata carried on every raw row (the partition column first).
LOAD_COLUMNS = (PARTITION_COLUMN, "_source_file", "_row_number", "_parse_error", "_raw_line")
_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class DeliveryError(Exception):
    """A delivery or file that cannot be loaded at all; the message names file and column."""


# Appended to delivery errors: what the person running the load can do about it.
REDELIVER = "ask the sender for a corrected delivery (or fix the folder), then run again"


@dataclass(frozen=True)
class ManifestEntry:
    file: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    path: Path
    source: str
    extract_date: str
    tables: dict[str, ManifestEntry]

    @property
    def checksum(self) -> str:
        """Content hash of the manifest itself: changes whenever any delivered file changes."""
        return sha256_file(self.path)


def delivery_path(landing: Path, source: str, extract_date: str) -> Path:
    return Path(landing) / source / extract_date


def list_deliveries(landing: Path) -> list[tuple[str, str]]:
    """(source, extract_date) of every folder that looks like a delivery, sorted."""
    landing = Path(landing)
    if not landing.exists():
        return []
    return sorted(
        (source_dir.name, date_dir.name)
        for source_dir in landing.iterdir() if source_dir.is_dir()
        for date_dir in source_dir.iterdir() if date_dir.is_dir() and _date_problem(date_dir.name) is None
    )


@dataclass(frozen=True)
class LandingSurvey:
    """Everything under the landing folder: deliveries, and what is not one (by path, with why)."""

    deliveries: list[tuple[str, str]]
    # Folders holding a manifest that would never be loaded: refused, `datafirst run` stops.
    refused: list[str]
    # Anything else that is not a delivery folder: reported, then left alone.
    ignored: list[str]


def _date_problem(name: str) -> str | None:
    if not _DATE_DIR.match(name):
        return f"{name!r} is not an extract date folder (YYYY-MM-DD)"
    try:
        date.fromisoformat(name)
    except ValueError:
        return f"{name!r} is not a real date"
    return None


def _iso_hint(name: str) -> str:
    """'29-02-2024' -> '; rename it 2024-02-29?' when the folder is a day-first date."""
    match = re.fullmatch(r"(\d{2})[-_./](\d{2})[-_./](\d{4})", name)
    return f"; rename it {match[3]}-{match[2]}-{match[1]}?" if match else ""


def survey_landing(landing: Path, sources) -> LandingSurvey:
    """Walk `<landing>/<source>/<YYYY-MM-DD>/`: `sources` are the registered source keys."""
    landing = Path(landing)
    deliveries, refused, ignored = [], [], []
    if not landing.exists():
        return LandingSurvey([], [], [])
    by_lower = {key.lower(): key for key in sources}
    for entry in sorted(landing.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            ignored.append(f"{entry}: a file at the top of the landing folder (deliveries go in "
                           "<source>/<YYYY-MM-DD>/)")
            continue
        if entry.name not in sources:
            near = by_lower.get(entry.name.lower().replace("-", "_").replace(" ", "_"))
            hint = f"; did you mean {near}/?" if near else f" (registered: {', '.join(sorted(sources))})"
            holds_delivery = any(True for _ in entry.rglob(MANIFEST))
            (refused if holds_delivery else ignored).append(
                f"{entry}/: not a registered source{hint}")
            continue
        for sub in sorted(entry.iterdir()):
            if sub.name.startswith("."):
                continue
            problem = _date_problem(sub.name) if sub.is_dir() else "a file beside the date folders"
            if problem is None:
                deliveries.append((entry.name, sub.name))
            elif sub.is_dir() and (sub / MANIFEST).exists():
                refused.append(f"{sub}/: {problem}{_iso_hint(sub.name)}; its delivery cannot be loaded")
            else:
                ignored.append(f"{sub}: {problem}")
    return LandingSurvey(deliveries, refused, ignored)


def read_manifest(delivery: Path) -> Manifest:
    path = Path(delivery) / MANIFEST
    if not path.exists():
        raise DeliveryError(f"{delivery}: no {MANIFEST}; a delivery is complete only with its manifest")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise DeliveryError(f"{path}: malformed manifest, not UTF-8 text (byte {error.start}); {REDELIVER}") from error
    except json.JSONDecodeError as error:
        raise DeliveryError(
            f"{path}: malformed manifest, not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
            f"{REDELIVER}") from error
    try:
        tables = {
            name: ManifestEntry(file=entry["file"], rows=int(entry["rows"]), sha256=str(entry["sha256"]))
            for name, entry in raw["tables"].items()
        }
        extract_date = str(raw["extract_date"])
        date.fromisoformat(extract_date)
        return Manifest(path=path, source=str(raw["source"]), extract_date=extract_date, tables=tables)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        detail = f"missing field {error}" if isinstance(error, KeyError) else str(error)
        raise DeliveryError(f"{path}: malformed manifest ({detail}); {REDELIVER}") from error


def check_manifest(manifest: Manifest, delivery: Path, source: SourceSpec) -> None:
    """The manifest belongs to this folder: its source and date, known tables, files inside it."""
    delivery = Path(delivery)
    folder = (delivery.parent.name, delivery.name)
    if (manifest.source, manifest.extract_date) != folder:
        raise DeliveryError(
            f"{manifest.path}: manifest is for {manifest.source}/{manifest.extract_date}, but the folder is "
            f"{folder[0]}/{folder[1]}: a delivery copied to the wrong folder? Move it or correct the manifest")
    if manifest.source != source.key:
        raise DeliveryError(f"{manifest.path}: manifest is for source {manifest.source!r}, not {source.key!r}")
    known = set(source.table_names)
    unknown = sorted(set(manifest.tables) - known)
    if unknown:
        raise DeliveryError(
            f"{manifest.path}: table(s) {unknown} are not tables of {source.key} (expected {sorted(known)}); "
            f"{REDELIVER}")
    missing = sorted(known - set(manifest.tables))
    if missing:
        raise DeliveryError(f"{manifest.path}: no entry for table(s) {missing}; {REDELIVER}")
    root = delivery.resolve()
    for name, entry in manifest.tables.items():
        target = (delivery / entry.file).resolve()
        if Path(entry.file).is_absolute() or target.parent != root:
            raise DeliveryError(
                f"{manifest.path}: table {name!r} names file {entry.file!r}, which is not inside the "
                f"delivery folder {delivery}; a manifest may only name files beside it")


def verify_file(path: Path, entry: ManifestEntry) -> None:
    """Checksum check: catches truncated, half-copied and altered files before parsing."""
    if not path.exists():
        raise DeliveryError(f"{path}: listed in the manifest but not delivered")
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise DeliveryError(
            f"{path}: sha256 {actual[:12]}… does not match the manifest's {entry.sha256[:12]}… "
            "(truncated, half-copied or altered file)"
        )


# Leading bytes of files that are not delimited text, whatever their name says.
_NOT_TEXT = {
    b"\x1f\x8b": "gzip-compressed", b"PK\x03\x04": "a zip archive", b"BZh": "bzip2-compressed",
    b"\xfd7zXZ": "xz-compressed", b"\xff\xfe": "UTF-16 (little-endian) text",
    b"\xfe\xff": "UTF-16 (big-endian) text", b"PAR1": "a Parquet file",
}


def sniff_file(path: Path, source: SourceSpec) -> None:
    """Refuse, by name, files that are compressed, UTF-16 or binary under a .csv name."""
    with open(path, "rb") as handle:
        start = handle.read(4096)
    for magic, what in _NOT_TEXT.items():
        if start.startswith(magic):
            raise DeliveryError(
                f"{path}: the file is {what}, not {source.encoding} delimited text, whatever its name says; "
                f"ask for it as plain {source.encoding} CSV, then run again")
    if b"\x00" in start.split(b"\n", 1)[0]:
        raise DeliveryError(
            f"{path}: the header holds NUL bytes (UTF-16 or binary data?); deliver {source.encoding} text")


def read_header(path: Path, source: SourceSpec) -> list[str]:
    sniff_file(path, source)
    with open(path, "rb") as handle:
        first_line = handle.readline()
    if not first_line.strip():
        raise DeliveryError(f"{path}: empty file (no header row)")
    try:
        text = first_line.decode(source.encoding).lstrip("\ufeff")
    except UnicodeDecodeError as error:
        raise DeliveryError(
            f"{path}: header is not valid {source.encoding} (byte {error.start}): wrong encoding?"
        ) from error
    return next(csv.reader([text], delimiter=source.delimiter))


def check_header(path: Path, header: list[str], source: SourceSpec, table: TableSpec) -> None:
    expected = table.column_names
    if header == expected:
        return
    if len(header) == 1 and len(expected) > 1:
        guessed = next((d for d in (",", ";", "\t", "|") if d != source.delimiter and d in header[0]), None)
        hint = f"; it looks delimited by {guessed!r}" if guessed else ""
        raise DeliveryError(
            f"{path}: header has one column {header[0][:60]!r}; expected {len(expected)} columns "
            f"delimited by {source.delimiter!r}{hint}"
        )
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    duplicated = sorted({c for c in header if header.count(c) > 1})
    problems = []
    if missing:
        problems.append(f"missing column(s) {missing}")
    if extra:
        problems.append(f"unexpected column(s) {extra}")
    if duplicated:
        problems.append(f"duplicated column(s) {duplicated}")
    if problems:
        raise DeliveryError(f"{path}: " + "; ".join(problems))
    # Same columns in another order: read by name, nothing to fix.


# one parse at a time: the reject tables are read and emptied after each
_PARSER_LOCK = threading.Lock()


def _read_rows(path: Path, header: list[str], source: SourceSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse the body with DuckDB's CSV reader; rows it rejects come back separately with reasons."""
    # the process's in-memory DuckDB (opening one per file cost more than parsing)
    with _PARSER_LOCK, scratch_cursor() as conn:
        columns = {name: "VARCHAR" for name in header}
        good = pl.from_arrow(conn.sql(
            "select * from read_csv(?, header = true, auto_detect = false, columns = ?, delim = ?, "
            "quote = '\"', escape = '\"', encoding = ?, store_rejects = true, "
            "strict_mode = true, null_padding = false, parallel = false)",
            params=[str(path), columns, source.delimiter, source.encoding],
        ).to_arrow_table())
        rejects = pl.from_arrow(conn.sql(
            "select line, any_value(error_type)::varchar as error_type, "
            "any_value(error_message) as error_message, any_value(csv_line) as csv_line "
            "from reject_errors group by line order by line"
        ).to_arrow_table())
        # The reject tables accumulate across calls on one connection.
        conn.execute("delete from reject_errors")
        conn.execute("delete from reject_scans")
    return good, rejects


@dataclass(frozen=True)
class RecordScan:
    """Where each record of a delimited file starts (RFC 4180: a record may span lines)."""

    start_lines: array  # physical line each record starts on; [0] is the header
    unterminated_quote_line: int | None  # a quote still open at the end of the file starts here
    ends_with_newline: bool
    # Records (numbered as the CSV reader does: header = 1) with another number of fields than the
    # header -> (fields, the record re-joined). DuckDB's reader drops trailing delimiters silently.
    wrong_width: dict[int, tuple[int, str]]

    @property
    def records(self) -> int:
        """Data records after the header."""
        return max(len(self.start_lines) - 1, 0)


def scan_records(path: Path, delimiter: str = ",") -> RecordScan:
    """Count records the way the CSV reader will read them, with the line each one starts on.

    Latin-1 maps every byte to one character, so delimiters, quotes and line breaks are found
    whatever the encoding (all delivered encodings are ASCII-compatible; UTF-16 is refused first).
    """
    starts = array("q")
    unterminated = None
    last = b""
    wrong_width: dict[int, tuple[int, str]] = {}
    width = None
    with open(path, encoding="latin-1", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quotechar='"', doublequote=True, strict=True)
        previous_line = 0
        # The loop runs once per record of files of millions: no per-record generator or try block
        # (a malformed record ends the inner loop, is counted, and the loop resumes after it).
        while True:
            try:
                for row in reader:
                    fields = len(row)
                    # a blank line is no record; a lone field of spaces is none either
                    if fields > 1 or (fields == 1 and row[0].strip()):
                        starts.append(previous_line + 1)
                        if width is None:
                            width = fields
                        elif fields != width:
                            wrong_width[len(starts)] = (fields, delimiter.join(row))
                    previous_line = reader.line_num
                break
            except csv.Error as error:
                if "unexpected end of data" in str(error):
                    unterminated = previous_line + 1
                    break
                # one record the reader rejects row-level (e.g. text after a quote)
                starts.append(previous_line + 1)
                width = 1 if width is None else width
                previous_line = reader.line_num
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        if handle.tell():
            handle.seek(-1, 2)
            last = handle.read(1)
    return RecordScan(starts, unterminated, last in (b"\n", b"\r"), wrong_width)


def count_records(path: Path, delimiter: str = ",") -> int:
    """Data records after the header (not lines: a quoted field may hold line breaks)."""
    return scan_records(path, delimiter).records


def load_raw_table(source: SourceSpec, table: TableSpec, delivery: Path, manifest: Manifest | None = None
                   ) -> tuple[pl.DataFrame, dict]:
    """One table of one delivery as all-text columns plus load metadata, and a metadata dict."""
    delivery = Path(delivery)
    manifest = manifest or read_manifest(delivery)
    check_manifest(manifest, delivery, source)
    entry = manifest.tables[table.name]
    path = delivery / entry.file
    verify_file(path, entry)
    if path.stat().st_size == 0:
        raise DeliveryError(f"{path}: empty file (0 bytes)")
    header = read_header(path, source)
    check_header(path, header, source, table)

    scan = scan_records(path, source.delimiter)
    if scan.unterminated_quote_line is not None:
        raise DeliveryError(
            f"{path}: unterminated quote: a quote opened on line {scan.unterminated_quote_line} is never "
            f"closed (truncated file, or a stray quote character); {REDELIVER}")
    good, rejects = _read_rows(path, header, source)
    total = good.height + rejects.height
    if total != scan.records:
        raise DeliveryError(
            f"{path}: {scan.records} records but only {total} could be read (a stray quote?); {REDELIVER}")
    if total != entry.rows:
        raise DeliveryError(
            f"{path}: {total} data records ({good.height} parsed, {rejects.height} malformed) but the "
            f"manifest says {entry.rows} (rows count records: a quoted line break does not start one); "
            f"{REDELIVER}")
    frame = _with_line_numbers(good, rejects, scan, table).with_columns(
        pl.lit(manifest.extract_date).alias(PARTITION_COLUMN),
        pl.lit(str(path)).alias("_source_file"),
    ).select(*LOAD_COLUMNS[:2], *table.column_names, *LOAD_COLUMNS[2:])
    metadata = {
        "file": str(path),
        "sha256": entry.sha256,
        "rows": frame.height,
        "malformed_rows": int(frame["_parse_error"].is_not_null().sum()),
        "extract_date": manifest.extract_date,
    }
    return frame, metadata


def _with_line_numbers(good: pl.DataFrame, rejects: pl.DataFrame, scan: RecordScan, table: TableSpec
                       ) -> pl.DataFrame:
    """Good and rejected records in file order, each with the physical line it starts on."""
    starts = np.frombuffer(scan.start_lines, dtype=np.int64)
    # The reader numbers records (header = 1); good records are the ones it did not reject.
    rejected = rejects["line"].to_numpy().astype(np.int64) if rejects.height else np.array([], np.int64)
    good_records = np.setdiff1d(np.arange(2, scan.records + 2, dtype=np.int64), rejected, assume_unique=True)
    good_records = good_records[: good.height]
    good = good.select(table.column_names).with_columns(
        pl.Series("_row_number", starts[good_records - 1], dtype=pl.Int64),
        pl.lit(None, dtype=pl.String).alias("_parse_error"),
        pl.lit(None, dtype=pl.String).alias("_raw_line"),
    )
    # Records the reader accepted although their field count is wrong (it drops trailing
    # delimiters): kept like any other unreadable line, never silently.
    # found with numpy, not a Python loop over every record (a million at scale); few are ragged
    positions = np.flatnonzero(np.isin(good_records, np.fromiter(scan.wrong_width, np.int64))) \
        if scan.wrong_width else np.array([], np.int64)
    ragged = [(int(i), int(good_records[i])) for i in positions]
    if ragged:
        expected = len(table.column_names)
        errors = [f"TOO MANY COLUMNS: expected {expected} fields, found {scan.wrong_width[r][0]} "
                  "(a stray or trailing delimiter?)" for _, r in ragged]
        rows = pl.Series([i for i, _ in ragged], dtype=pl.UInt32)
        fixed = good[rows].with_columns(
            *(pl.lit(None, dtype=pl.String).alias(name) for name in table.column_names),
            pl.Series("_parse_error", errors, dtype=pl.String),
            pl.Series("_raw_line", [scan.wrong_width[r][1] for _, r in ragged], dtype=pl.String),
        )
        keep = np.ones(good.height, dtype=bool)
        keep[[i for i, _ in ragged]] = False
        good = pl.concat([good.filter(pl.Series(keep)), fixed])
    bad = pl.DataFrame(
        {name: pl.Series(name, [None] * rejects.height, dtype=pl.String) for name in table.column_names}
    ).with_columns(
        pl.Series("_row_number", starts[rejected - 1], dtype=pl.Int64),
        (rejects["error_type"] + pl.lit(": ") + rejects["error_message"].str.slice(0, 200))
        .alias("_parse_error") if rejects.height else pl.lit(None, dtype=pl.String).alias("_parse_error"),
        rejects["csv_line"].alias("_raw_line") if rejects.height else pl.lit(None, dtype=pl.String).alias("_raw_line"),
    )
    return pl.concat([good, bad], how="vertical").sort("_row_number")
