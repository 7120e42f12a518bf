"""The evaluation report's content: small functions returning tables and Markdown sections."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from datafirst_assets.reporting import Section
from datafirst_assets.reporting import write_report as write_html_report

from datafirst_assets.linkage.quality import FLOORS, markdown_table, subgroup_gap_table

#: Largest acceptable gap between an estimated and a measured precision or recall.
ESTIMATE_TOLERANCE = 0.03


def threshold_table(measured: pl.DataFrame) -> pl.DataFrame:
    """Where each threshold came from, and what the truth-optimal one would have given."""
    return measured.select("source", "threshold", "threshold_source", "recalibrated_by", "labels",
                           "truth_optimal_threshold",
                           pl.col("measured_bcubed_f1").alias("bcubed_f1"),
                           pl.col("truth_optimal_bcubed_f1").alias("bcubed_f1_at_optimal"),
                           pl.col("bcubed_f1_below_optimal").alias("below_optimal"))


def accuracy_table(measured: pl.DataFrame) -> pl.DataFrame:
    """Measured accuracy on all records and on those the labels did not see, against the floor."""
    return measured.select(
        "source", "records", "records_unseen_by_labels",
        pl.col("measured_bcubed_precision").alias("bcubed_precision"),
        pl.col("measured_bcubed_recall").alias("bcubed_recall"),
        pl.col("measured_bcubed_f1").alias("bcubed_f1"),
        pl.col("measured_unseen_bcubed_f1").alias("unseen_bcubed_f1"),
        pl.col("measured_pairwise_precision").alias("pairwise_precision"),
        pl.col("measured_pairwise_recall").alias("pairwise_recall"),
        pl.col("source").replace_strict(FLOORS, default=None).alias("floor"),
    )


def estimate_table(measured: pl.DataFrame) -> pl.DataFrame:
    """Estimated next to measured precision and recall (pair level and B-cubed), with the errors."""
    return measured.select(
        "source", "threshold_source", "recalibrated_by",
        pl.col("estimated_pair_precision").alias("est_pair_p"), pl.col("measured_pair_precision").alias("pair_p"),
        pl.col("estimated_pair_recall").alias("est_pair_r"), pl.col("measured_pair_recall").alias("pair_r"),
        pl.col("estimated_bcubed_precision").alias("est_b3_p"), pl.col("measured_bcubed_precision").alias("b3_p"),
        pl.col("estimated_bcubed_recall").alias("est_b3_r"), pl.col("measured_bcubed_recall").alias("b3_r"),
        pl.col("estimated_missed_by_blocking").alias("est_missed"), pl.col("measured_missed_by_blocking").alias("missed"),
        pl.max_horizontal(*[pl.col(c).abs() for c in ("pair_precision_error", "pair_recall_error",
                                                      "bcubed_precision_error", "bcubed_recall_error")])
        .alias("largest_error"),
    )


def floor_failures(measured: pl.DataFrame) -> list[str]:
    return [f"{r['source']}: measured B-cubed F1 {r[c]:.4f} < {FLOORS[r['source']]} ({scope})"
            for r in measured.iter_rows(named=True)
            for c, scope in (("measured_bcubed_f1", "all records"), ("measured_unseen_bcubed_f1", "unseen records"))
            if r[c] is not None and r[c] < FLOORS.get(r["source"], 0)]


def estimate_failures(measured: pl.DataFrame, tolerance: float = ESTIMATE_TOLERANCE) -> list[str]:
    out = []
    for row in measured.iter_rows(named=True):
        for name in ("pair_precision_error", "pair_recall_error", "bcubed_precision_error", "bcubed_recall_error"):
            if row[name] is not None and abs(row[name]) > tolerance:
                out.append(f"{row['source']}: estimated minus measured {name.removesuffix('_error')} "
                           f"{row[name]:+.4f} (tolerance {tolerance})")
    return out


def linkage_evaluation_markdown(measured: pl.DataFrame, subgroups: pl.DataFrame) -> str:
    return "\n".join([
        "# Linkage accuracy measured against the simulator's truth", "",
        "Measured on all records and on the records the clerical labels did not see (the labels chose the "
        "threshold, so they should not grade it; the review queue takes the hardest boundary records, so the "
        "unseen records are the easier ones). Threshold sources: `configured`, `clerical_labels` "
        "(labels/<source>.csv), `model_estimate` (the model's own probabilities, no labels).", "",
        "## Thresholds", "",
        "`bcubed_f1`: the published clusters (after any over-merge guard). `bcubed_f1_at_optimal` and "
        "`below_optimal` compare the clusters the over-merge guard leaves of the stored pairs at the "
        "truth-optimal candidate and at the chosen threshold; pair-level figures leave out the pairs the "
        "guard says are two people (never linked, and left out of the estimates too).", "",
        markdown_table(threshold_table(measured)), "",
        "## Accuracy per dataset", "", markdown_table(accuracy_table(measured)), "",
        "## Estimated vs measured", "",
        "Pair level: scored pairs at or above the threshold. `est_*` are the pipeline's ESTIMATES (no truth), "
        "the others are measured here; `largest_error` is the largest estimated-minus-measured gap (tolerance "
        f"{ESTIMATE_TOLERANCE}). Pairs blocking never compared are invisible to the model: `est_missed` "
        "estimates their share by capture-recapture (pair-level estimated recall counts them as missed; "
        "B-cubed does not), `missed` is the measured share of true pairs never scored.", "",
        markdown_table(estimate_table(measured)), "",
        "## Best-to-worst subgroup gap (B-cubed F1)", "", markdown_table(subgroup_gap_table(subgroups)), "",
        "## By subgroup", "", markdown_table(subgroups),
    ])


def write_report(markdown: str, tables: dict[str, pl.DataFrame], reports_dir: Path, name: str, *,
                 title: str, sections: list[Section] | None = None) -> Path:
    """``<name>.md``, ``<name>.html`` (the shared report style) and one parquet per table under
    ``reports_dir``; returns the HTML file. Without ``sections`` every table is one section."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / f"{name}.md").write_text(markdown + "\n")
    for suffix, frame in tables.items():
        frame.write_parquet(reports_dir / f"{name}{suffix}.parquet")
    if sections is None:
        sections = [Section(suffix.strip("_").replace("_", " ") or "measured", [], frame)
                    for suffix, frame in tables.items()]
    return write_html_report(reports_dir / f"{name}.html", title, sections,
                             label="MEASURED AGAINST THE SIMULATOR'S TRUTH")
