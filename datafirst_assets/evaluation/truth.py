"""Reading the simulator's truth folder (people.parquet, person_records.parquet, case_links.parquet)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import polars as pl

from datafirst_assets.linkage.quality import SUBGROUPS
from datafirst_assets.sources.registry import SOURCES

AGE_BANDS = [18, 25, 35, 50, 65]
AGE_LABELS = ["under 18", "18-24", "25-34", "35-49", "50-64", "65+"]
REFERENCE_DATE = date(2024, 1, 1)
TRUTH_FILES = ("people.parquet", "person_records.parquet", "case_links.parquet")
TRUTH_DIR_ENV = "DATAFIRST_TRUTH_DIR"


def default_truth_dir() -> Path:
    """Where the simulator writes truth unless told: ``$DATAFIRST_TRUTH_DIR``, else
    ``evaluation/truth``, outside the data folder the pipeline reads."""
    return Path(os.environ.get(TRUTH_DIR_ENV) or "evaluation/truth")


def missing_truth(truth_dir: Path | None) -> str | None:
    """Why there is no usable truth (None when every truth file is there)."""
    if truth_dir is None:
        return "no truth folder configured (set DATAFIRST_TRUTH_DIR)"
    missing = [name for name in TRUTH_FILES if not (Path(truth_dir) / name).exists()]
    return f"no {', '.join(missing)} in {truth_dir}" if missing else None


def record_truth(truth_dir: Path, source: str) -> pl.DataFrame:
    """record_id -> true person_id for one source."""
    return (pl.read_parquet(Path(truth_dir) / "person_records.parquet")
            .filter(pl.col("source") == source)
            .select(pl.col("record_id").cast(pl.String), pl.col("person_id").cast(pl.String)))


def truth_with_subgroups(truth_dir: Path, source: str) -> pl.DataFrame | None:
    """record_id, person_id and the person's sex, ethnic group and age band (None without truth)."""
    records_path, people_path = Path(truth_dir) / "person_records.parquet", Path(truth_dir) / "people.parquet"
    if not records_path.exists() or not people_path.exists():
        return None
    people = pl.read_parquet(people_path).select(
        "person_id", "sex", "ethnic_group",
        (pl.lit(REFERENCE_DATE).dt.year() - pl.col("dob").dt.year()).cut(AGE_BANDS, labels=AGE_LABELS,
                                                                          left_closed=True)
        .cast(pl.String).alias("age_band"),
    )
    return (
        pl.read_parquet(records_path).filter(pl.col("source") == source)
        .join(people, on="person_id", how="left")
        .select(pl.col("record_id").cast(pl.String), pl.col("person_id").cast(pl.String), *SUBGROUPS)
    )


def xjs_truth(truth_dir: Path, sources: Sequence[str] | None = None) -> pl.DataFrame | None:
    """Record -> true person over all sources, with subgroups (None without truth files)."""
    frames = []
    for source in sources or list(SOURCES):
        t = truth_with_subgroups(Path(truth_dir), source)
        if t is None:
            return None
        frames.append(t.with_columns(pl.lit(source).alias("source_dataset")))
    return pl.concat(frames).select("source_dataset", "record_id", "person_id", *SUBGROUPS)


def case_link_truth(truth_dir: Path) -> pl.DataFrame:
    return pl.read_parquet(Path(truth_dir) / "case_links.parquet")
