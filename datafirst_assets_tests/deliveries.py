"""Hand-built deliveries for tests: valid rows from the registry, then broken on purpose."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import date
from pathlib import Path

from datafirst_assets.sources.identifiers import pnc_check_letter
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.sources.spec import ColumnSpec, SourceSpec, TableSpec


def valid_value(column: ColumnSpec, source: SourceSpec, i: int) -> str:
    kind = column.kind
    if kind in ("id", "ref", "text"):
        return f"{column.name.upper()[:3]}{i:05d}" if kind != "ref" else f"REF{i:05d}"
    if kind == "name":
        return ["Smith", "Jones", "Patel", "O'Brien"][i % 4]
    if kind in ("date", "dob"):
        return date(1980 + i % 20, 1 + i % 12, 2 + i % 27).strftime(source.date_format)
    if kind == "sex":
        return list(source.sex_codes)[i % len(source.sex_codes)]
    if kind == "ethnicity":
        return "W1"
    if kind == "postcode":
        return "sw1a1aa"
    if kind == "pnc":
        serial = 1000 + i
        return f"2001/{serial:07d}{pnc_check_letter(2001, serial)}"
    if kind == "cro":
        return f"{i:06d}/01A"
    if kind == "code":
        return column.codes[i % len(column.codes)]
    if kind == "int":
        return str(i)
    if kind == "float":
        return f"{i}.5"
    if kind == "flag":
        return "Y"
    raise ValueError(kind)


def valid_rows(source: SourceSpec, table: TableSpec, n: int) -> list[dict[str, str]]:
    return [{c.name: valid_value(c, source, i) for c in table.columns} for i in range(n)]


def to_csv(rows: list[dict[str, str]], columns: list[str], delimiter: str = ",") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    return buffer.getvalue().encode("utf-8")


def count_records(content: bytes) -> int:
    """Data records of a CSV (RFC 4180: a quoted field may span lines), as a manifest counts them."""
    rows = csv.reader(io.StringIO(content.decode("latin-1"), newline=""))
    try:
        return max(sum(1 for row in rows if any(field.strip() for field in row)) - 1, 0)
    except csv.Error:  # not CSV at all (compressed, binary): whatever it holds, as lines
        return max(content.count(b"\n") - 1, 0)


def write_delivery(landing: Path, source_key: str, extract_date: str,
                   files: dict[str, bytes] | None = None, rows: int = 5,
                   manifest_rows: dict[str, int] | None = None) -> Path:
    """A complete delivery of every table of a source; `files` overrides table contents (bytes)."""
    source = SOURCES[source_key]
    folder = Path(landing) / source_key / extract_date
    folder.mkdir(parents=True, exist_ok=True)
    entries = {}
    for table in source.tables:
        content = (files or {}).get(table.name)
        if content is None:
            content = to_csv(valid_rows(source, table, rows), table.column_names)
        (folder / f"{table.name}.csv").write_bytes(content)
        count = count_records(content)
        entries[table.name] = {
            "file": f"{table.name}.csv",
            "rows": (manifest_rows or {}).get(table.name, count),
            "sha256": hashlib.sha256(content).hexdigest(),
        }
    manifest = {"source": source_key, "system": source.system, "extract_date": extract_date, "tables": entries}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return folder
