"""Reading extract deliveries from the landing zone, as delivered.

A delivery is `<landing>/<source>/<YYYY-MM-DD>/` holding one delimited text file per table and
a `manifest.json` naming each file with its row count and sha256. Whole-file problems (no
manifest, checksum or row-count mismatch, empty file, wrong delimiter, missing or extra
columns, a header in the wrong encoding) raise `DeliveryError` naming the file and column.
Row-level problems (too few or too many fields, undecodable bytes) never drop the row: it is
kept with every field null, its line number, the raw line and a `_parse_error`, so staging
quarantines it and row counts stay conserved.
"""

from __future__ import annotations

import csv
import json
import re
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from datafirst_assets.common.hashing import sha256_file
from datafirst_assets.common.partitions import PARTITION_COLUMN
from datafirst_assets.sources.spec import SourceSpec, TableSpec

MANIFEST = "manifest.json"
# Load metadata carried on every raw row (the partition column first).
LOAD_COLUMNS = (PARTITION_COLUMN, "_source_file", "_row_number", "_parse_error", "_raw_line")
_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class DeliveryError(Exception):
    """A delivery or file that cannot be loaded at all; the message names file and column."""


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
        for date_dir in source_dir.iterdir() if date_dir.is_dir() and _DATE_DIR.match(date_dir.name)
    )


def read_manifest(delivery: Path) -> Manifest:
    path = Path(delivery) / MANIFEST
    if not path.exists():
        raise DeliveryError(f"{delivery}: no {MANIFEST}; a delivery is complete only with its manifest")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        tables = {
            name: ManifestEntry(file=entry["file"], rows=int(entry["rows"]), sha256=str(entry["sha256"]))
            for name, entry in raw["tables"].items()
        }
        extract_date = str(raw["extract_date"])
        date.fromisoformat(extract_date)
        return Manifest(path=path, source=str(raw["source"]), extract_date=extract_date, tables=tables)
    except (ValueError, KeyError, TypeError) as error:
        raise DeliveryError(f"{path}: malformed manifest ({type(error).__name__}: {error})") from error


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


def read_header(path: Path, source: SourceSpec) -> list[str]:
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


_PARSER: duckdb.DuckDBPyConnection | None = None
_PARSER_LOCK = threading.Lock()


def _parser() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB kept for CSV parsing (opening one per file cost more than parsing)."""
    global _PARSER
    if _PARSER is None:
        _PARSER = duckdb.connect()
    return _PARSER


def _read_rows(path: Path, header: list[str], source: SourceSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse the body with DuckDB's CSV reader; rows it rejects come back separately with reasons."""
    with _PARSER_LOCK:
        conn = _parser()
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


def count_data_lines(path: Path) -> int:
    """Non-empty physical lines after the header."""
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip()) - 1


def load_raw_table(source: SourceSpec, table: TableSpec, delivery: Path, manifest: Manifest | None = None
                   ) -> tuple[pl.DataFrame, dict]:
    """One table of one delivery as all-text columns plus load metadata, and a metadata dict."""
    delivery = Path(delivery)
    manifest = manifest or read_manifest(delivery)
    if manifest.source != source.key:
        raise DeliveryError(f"{manifest.path}: manifest is for source {manifest.source!r}, not {source.key!r}")
    entry = manifest.tables.get(table.name)
    if entry is None:
        raise DeliveryError(f"{manifest.path}: table {table.name!r} is not in the manifest")
    path = delivery / entry.file
    verify_file(path, entry)
    if path.stat().st_size == 0:
        raise DeliveryError(f"{path}: empty file (0 bytes)")
    header = read_header(path, source)
    check_header(path, header, source, table)

    good, rejects = _read_rows(path, header, source)
    total = good.height + rejects.height
    physical = count_data_lines(path)
    if total != physical:
        raise DeliveryError(
            f"{path}: {physical} data lines but only {total} rows could be read: an unterminated "
            "quote (truncated file?) or a line break inside a field"
        )
    if total != entry.rows:
        raise DeliveryError(
            f"{path}: {total} data rows ({good.height} parsed, {rejects.height} malformed) but the "
            f"manifest says {entry.rows}"
        )
    # Good rows keep file order; their line numbers are the data lines not rejected.
    rejected_lines = rejects["line"].to_numpy().astype(np.int64) if rejects.height else np.array([], np.int64)
    good_lines = np.setdiff1d(np.arange(2, total + 2, dtype=np.int64), rejected_lines, assume_unique=True)
    good = good.select(table.column_names).with_columns(
        pl.Series("_row_number", good_lines[: good.height], dtype=pl.Int64),
        pl.lit(None, dtype=pl.String).alias("_parse_error"),
        pl.lit(None, dtype=pl.String).alias("_raw_line"),
    )
    bad = pl.DataFrame(
        {name: pl.Series(name, [None] * rejects.height, dtype=pl.String) for name in table.column_names}
    ).with_columns(
        rejects["line"].cast(pl.Int64).alias("_row_number"),
        (rejects["error_type"] + pl.lit(": ") + rejects["error_message"].str.slice(0, 200))
        .alias("_parse_error") if rejects.height else pl.lit(None, dtype=pl.String).alias("_parse_error"),
        rejects["csv_line"].alias("_raw_line") if rejects.height else pl.lit(None, dtype=pl.String).alias("_raw_line"),
    )
    frame = (
        pl.concat([good, bad], how="vertical")
        .sort("_row_number")
        .with_columns(
            pl.lit(manifest.extract_date).alias(PARTITION_COLUMN),
            pl.lit(str(path)).alias("_source_file"),
        )
        .select(*LOAD_COLUMNS[:2], *table.column_names, *LOAD_COLUMNS[2:])
    )
    metadata = {
        "file": str(path),
        "sha256": entry.sha256,
        "rows": frame.height,
        "malformed_rows": rejects.height,
        "extract_date": manifest.extract_date,
    }
    return frame, metadata
