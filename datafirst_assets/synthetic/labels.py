"""How a synthetic table says it is synthetic: on disk, in asset metadata and in Parquet metadata."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

SYNTHETIC_LABEL = "SYNTHETIC DATA: generated from disclosure-checked summaries; no row is a real record"
PARQUET_FLAG = "datafirst.synthetic"
PARQUET_LABEL = "datafirst.label"
SYNTHETIC_SUFFIX = ".synthetic.parquet"


def synthetic_file_name(table: str) -> str:
    return f"{table}{SYNTHETIC_SUFFIX}"


def parquet_metadata(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Key-value metadata for a synthetic table's Parquet file (the flag plus a readable label)."""
    return {PARQUET_FLAG: "true", PARQUET_LABEL: SYNTHETIC_LABEL, **(extra or {})}


def write_synthetic_parquet(frame: pl.DataFrame, folder: Path, table: str,
                            extra: dict[str, str] | None = None) -> Path:
    """`<folder>/<table>.synthetic.parquet`, flagged synthetic in its Parquet metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / synthetic_file_name(table)
    arrow = frame.to_arrow()
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}),
                                          **{k.encode(): v.encode() for k, v in parquet_metadata(extra).items()}})
    pq.write_table(arrow, path)
    return path


def is_synthetic_parquet(path: Path) -> bool:
    metadata = pq.read_schema(path).metadata or {}
    return metadata.get(PARQUET_FLAG.encode()) == b"true"
