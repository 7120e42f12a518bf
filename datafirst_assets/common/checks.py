"""Readable check results: pandera's failure message is escaped JSON, so summarise it."""

from __future__ import annotations

from datafirst_assets.common.pandera_polars import pa
import polars as pl


def failure_summary(error: pa.errors.SchemaErrors, sample: int = 5) -> dict:
    """Readable summary of a lazy validation failure: failing checks, failure count, and one
    line per (column, check) with a sample of the failing values."""
    cases = error.failure_cases
    if not isinstance(cases, pl.DataFrame):
        cases = pl.DataFrame(cases)
    summary = (
        cases.group_by("column", "check")
        .agg(pl.len().alias("failures"), pl.col("failure_case").head(sample))
        .sort("failures", descending=True)
    )
    return {
        "failing_checks": summary.height,
        "failures": int(summary["failures"].sum()),
        "detail": [
            f"{row['column']}: {row['check']} failed {row['failures']}x, e.g. {row['failure_case']}"
            for row in summary.iter_rows(named=True)
        ],
    }
