"""Open a release for SQL: one DuckDB schema per dataset, one view per table over its Parquet file.

The views have the same names in a de-identified and a synthetic release (the file names differ,
the manifest says which file is which), so researcher SQL runs unchanged on either.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from datafirst_assets.common.hashing import sha256_file
from datafirst_assets.release.publish import KINDS, MANIFEST, latest_file
from datafirst_assets.common.sql import quote_identifier, quote_literal


def read_manifest(path: Path | str) -> dict:
    manifest = Path(path) / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{path} is not a release folder: no {MANIFEST}")
    return json.loads(manifest.read_text(encoding="utf-8"))


def release_path(root: Path | str, kind: str, release_id: str | None = None) -> Path:
    """Folder of release `release_id`, or of the latest release of `kind` under `root`."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    root = Path(root)
    if release_id is None:
        pointer = latest_file(root, kind)
        if not pointer.is_file():
            raise FileNotFoundError(f"no {kind} release published under {root} (no {pointer.name})")
        release_id = pointer.read_text(encoding="utf-8").strip()
    path = root / release_id
    manifest = read_manifest(path)
    if manifest["kind"] != kind:
        raise ValueError(f"release {release_id} is {manifest['kind']}, not {kind}")
    return path


def open_release(path: Path | str, *, verify: bool = False) -> duckdb.DuckDBPyConnection:
    """In-memory DuckDB connection with a view `<dataset>.<table>` per table of the release at `path`.

    `verify=True` first checks every file's SHA-256 against the manifest (reads every byte).
    """
    path = Path(path).resolve()
    manifest = read_manifest(path)
    if verify:
        problems = verify_release(path)
        if problems:
            raise ValueError(f"release {manifest['release_id']} does not verify: " + "; ".join(problems))
    con = duckdb.connect(":memory:")
    try:
        for source in dict.fromkeys(t["source"] for t in manifest["tables"]):
            con.execute(f"CREATE SCHEMA {quote_identifier(source)}")
        for table in manifest["tables"]:
            con.execute(
                f"CREATE VIEW {quote_identifier(table['source'])}.{quote_identifier(table['table'])} AS "
                f"SELECT * FROM read_parquet({quote_literal(str(path / table['path']))})"
            )
    except BaseException:
        con.close()
        raise
    return con


def verify_release(path: Path | str) -> list[str]:
    """Problems with a release folder: missing files, checksums or row counts differing from the manifest."""
    import pyarrow.parquet as pq

    path = Path(path)
    problems = []
    for table in read_manifest(path)["tables"]:
        file = path / table["path"]
        if not file.is_file():
            problems.append(f"{table['path']}: missing")
            continue
        if sha256_file(file) != table["sha256"]:
            problems.append(f"{table['path']}: checksum differs from the manifest")
            continue  # possibly not readable Parquet any more
        rows = pq.ParquetFile(file).metadata.num_rows
        if rows != table["rows"]:
            problems.append(f"{table['path']}: {rows} rows, manifest says {table['rows']}")
    return problems
