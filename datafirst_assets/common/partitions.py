"""Working across extract-date partitions: a record delivered again is its latest version."""

from __future__ import annotations

import polars as pl

#: the column that names each row's extract date (the Dagster partition it was loaded in)
PARTITION_COLUMN = "extract_date"


def latest_versions(staged: pl.DataFrame, id_column: str) -> pl.DataFrame:
    """Each record once, as in the latest delivery that carried it."""
    return staged.sort(PARTITION_COLUMN).unique(subset=[id_column], keep="last", maintain_order=True)
