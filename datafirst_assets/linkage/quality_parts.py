"""Each dataset's row of the linkage quality table, and its largest clusters, kept for the next run
with the fingerprint of what they were made from: a dataset whose clusters, scored pairs, person
records and clerical labels did not change is not read or assessed again.

The quality asset assessed every dataset on every run (reading every dataset's clusters and
scored pairs, the slowest part being the estimate over all pairs: at 300,000 people about 30 CPU
seconds, most of it for the two datasets with the most pairs), although an extract usually changes
some datasets only. After each assessment the dataset's row and largest clusters are written under
`<reports>/.quality_parts/<dataset>/` with the fingerprint (`warehouse.unchanged.inputs_fingerprint`:
the tables' row counts, types and row hashes in DuckDB, the labels file, whether the threshold is
configured, and the code); the next run takes them when the fingerprint is the same. A full
refresh assesses every dataset.

A dataset that did change is assessed again over all its pairs (its estimates are fits over the
whole dataset: the transitivity curve, the witness's pattern rates, capture-recapture, B-cubed
means), but the transitivity check's per-pair flags, the costliest local step, are kept too
(`support.parquet`, `threshold.SUPPORT_COLUMNS`) and recomputed only around the pairs that changed
(`threshold.transitive_support`). They are kept whatever the fingerprint: the flags are compared
pair by pair with the new pairs, so a stale file only means more is recomputed.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from datafirst_assets.common.folders import replace_folder
from datafirst_assets.linkage.quality import QUALITY_SCHEMA

PARTS = ".quality_parts"
META = "meta.json"
SUPPORT = "support.parquet"


def save_part(reports: Path, source: str, fingerprint: str, row: dict, largest: pl.DataFrame,
              support: pl.DataFrame | None = None) -> None:
    """Store one dataset's quality row, largest clusters and, when the transitivity check ran, its
    per-pair flags (written aside, then swapped in)."""
    def write(staging: Path) -> None:
        pl.DataFrame([row], schema=QUALITY_SCHEMA).write_parquet(staging / "row.parquet")
        largest.write_parquet(staging / "largest.parquet")
        if support is not None:
            support.write_parquet(staging / SUPPORT)
        (staging / META).write_text(json.dumps({"source": source, "fingerprint": fingerprint}), encoding="utf-8")

    replace_folder(Path(reports) / PARTS / source, write)


def load_part(reports: Path, source: str, fingerprint: str) -> tuple[dict, pl.DataFrame] | None:
    """The stored row and largest clusters of `source` when made from inputs with this fingerprint."""
    folder = Path(reports) / PARTS / source
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        if meta.get("fingerprint") != fingerprint or meta.get("source") != source:
            return None
        return pl.read_parquet(folder / "row.parquet").row(0, named=True), pl.read_parquet(folder / "largest.parquet")
    except (OSError, ValueError, pl.exceptions.PolarsError):
        return None


def load_support(reports: Path, source: str) -> pl.DataFrame | None:
    """The transitivity check's per-pair flags from `source`'s last assessment, if any."""
    path = Path(reports) / PARTS / source / SUPPORT
    try:
        return pl.read_parquet(path) if path.exists() else None
    except (OSError, pl.exceptions.PolarsError):
        return None
