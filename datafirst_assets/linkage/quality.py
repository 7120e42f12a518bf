"""Linkage quality without truth: each dataset's threshold, where it came from, and its estimated
accuracy (see linkage/threshold.py); as a table and a report. Measured accuracy against the
simulator's truth is the evaluation stage's job (datafirst_assets/evaluation)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from datafirst_assets.common.tables import bullet_list, markdown_table
from datafirst_assets.linkage.metrics import subgroup_gaps
from datafirst_assets.linkage.threshold import Assessment
from datafirst_assets.reporting import Section, bar_chart, write_report

# B-cubed F1 floors per dataset (issue 3): criminal-justice datasets, then family and civil
# where far more identifiers are missing.
FLOORS = {
    "magistrates": 0.97, "crown_court": 0.97, "prison": 0.97, "probation": 0.97, "oasys": 0.97,
    "family": 0.93, "civil": 0.93,
}
SUBGROUPS = ("sex", "ethnic_group", "age_band")
#: Columns of a clusters table other than the per-dataset person id.
NOT_PERSON_ID = ("record_id", "model_version", "match_threshold", "record_hash")


def subgroup_gap_table(table: pl.DataFrame, min_records: int = 30) -> pl.DataFrame:
    """Best-to-worst B-cubed F1 per source and subgroup (groups with enough records)."""
    rows = [
        {"source": source, "subgroup": subgroup,
         **{k: gap[k] for k in ("best_group", "best_f1", "worst_group", "worst_f1", "gap")}}
        for (source,), part in table.filter(pl.col("subgroup") != "all").group_by("source", maintain_order=True)
        for subgroup, gap in subgroup_gaps(part.rename({"bcubed_f1": "f1"}), min_records=min_records).items()
    ]
    schema = {"source": pl.String, "subgroup": pl.String, "best_group": pl.String, "best_f1": pl.Float64,
              "worst_group": pl.String, "worst_f1": pl.Float64, "gap": pl.Float64}
    return pl.DataFrame(rows, schema=schema).sort("source", "subgroup")


QUALITY_SCHEMA = {
    "source": pl.String, "records": pl.Int64, "persons": pl.Int64, "threshold": pl.Float64,
    "threshold_source": pl.String, "recalibrated_by": pl.String, "labels": pl.Int64,
    "estimated_label_error_rate": pl.Float64,
    "estimated_pairwise_precision": pl.Float64, "estimated_pairwise_recall": pl.Float64,
    "estimated_pairwise_f1": pl.Float64, "estimated_bcubed_precision": pl.Float64,
    "estimated_bcubed_recall": pl.Float64, "estimated_bcubed_f1": pl.Float64,
    "estimated_pairwise_precision_low": pl.Float64, "estimated_pairwise_precision_high": pl.Float64,
    "estimated_pairwise_recall_low": pl.Float64, "estimated_pairwise_recall_high": pl.Float64,
    "estimated_missed_by_blocking": pl.Float64, "recommended_threshold": pl.Float64, "missing_evidence": pl.String,
}


#: Labels that cannot calibrate (an easy dataset's pairs are nearly all one answer) still confirm
#: the model when this many were reviewed and this share agree with its calls at the threshold.
MIN_CONFIRMING_LABELS, MIN_LABEL_AGREEMENT = 100, 0.95


def confirmed_by_labels(assessment: Assessment, agreement: float | None) -> bool:
    labelled = assessment.labelled.height if assessment.labelled is not None else 0
    return agreement is not None and labelled >= MIN_CONFIRMING_LABELS and agreement >= MIN_LABEL_AGREEMENT


def estimated_quality_row(source: str, *, records: int, persons: int, threshold: float, configured: bool,
                          assessment: Assessment) -> dict:
    """One dataset's row of the quality table: where its threshold came from and the estimated
    accuracy there (estimated from labels-recalibrated or model probabilities, not measured)."""
    estimate = assessment.estimate_at(threshold)
    agreement = assessment.label_agreement(threshold)
    evidence = None if assessment.calibration is not None or confirmed_by_labels(assessment, agreement) else (
        f"no clerical labels for {source}: accuracy is the model's own estimate"
        if not assessment.labels else
        f"{assessment.labels} clerical labels for {source} could not calibrate the model "
        f"(too few, or all one answer; {0 if agreement is None else agreement:.1%} agree with its calls): "
        "accuracy is the model's own estimate")
    return {
        "source": source, "records": records, "persons": persons, "threshold": threshold,
        "threshold_source": "configured" if configured else assessment.source,
        "recalibrated_by": estimate["recalibration"], "labels": assessment.labels,
        "estimated_label_error_rate": estimate["label_error_rate"],
        **{f"estimated_{k}": estimate[k] for k in ("pairwise_precision", "pairwise_recall", "pairwise_f1",
                                                   "bcubed_precision", "bcubed_recall", "bcubed_f1")},
        **{f"estimated_pairwise_{k}_{end}": estimate.get(f"pairwise_{k}_{end}")
           for k in ("precision", "recall") for end in ("low", "high")},
        "estimated_missed_by_blocking": estimate["missed_by_blocking"],
        "recommended_threshold": assessment.best_threshold(), "missing_evidence": evidence,
    }


def quality_table(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=QUALITY_SCHEMA)


def evidence_problems(table: pl.DataFrame) -> list[str]:
    """What the quality check could not confirm: datasets without clerical evidence, and
    estimated B-cubed F1 under a dataset's floor."""
    problems = [row["missing_evidence"] for row in table.iter_rows(named=True) if row["missing_evidence"]]
    problems += [
        f"{row['source']}: estimated B-cubed F1 {row['estimated_bcubed_f1']:.4f} < {FLOORS[row['source']]}"
        for row in table.iter_rows(named=True)
        if row["estimated_bcubed_f1"] is not None and row["estimated_bcubed_f1"] < FLOORS.get(row["source"], 0)
    ]
    return problems


def _interval(measure: str) -> pl.Expr:
    """'low-high' of an estimated pair-level measure (from resampled clerical labels), else null."""
    low, high = pl.col(f"estimated_pairwise_{measure}_low"), pl.col(f"estimated_pairwise_{measure}_high")
    return pl.when(low.is_not_null()).then(pl.format("{}-{}", low.round(3), high.round(3)))


def quality_summary(table: pl.DataFrame) -> pl.DataFrame:
    """The per-dataset table people read: threshold, where it came from, estimated accuracy."""
    return table.select(
        "source", "records", "persons", "threshold", "threshold_source", "recalibrated_by", "labels",
        pl.col("estimated_pairwise_precision").alias("est_pair_precision"),
        pl.col("estimated_pairwise_recall").alias("est_pair_recall"),
        _interval("precision").alias("est_pair_precision_90pct"), _interval("recall").alias("est_pair_recall_90pct"),
        pl.col("estimated_bcubed_precision").alias("est_bcubed_precision"),
        pl.col("estimated_bcubed_recall").alias("est_bcubed_recall"),
        pl.col("estimated_bcubed_f1").alias("est_bcubed_f1"),
        pl.col("estimated_missed_by_blocking").alias("est_missed_by_blocking"),
        pl.col("source").replace_strict(FLOORS, default=None).alias("floor"),
    )


ESTIMATE_NOTE = (
    "All figures are ESTIMATED from the model's match probabilities, not measured against known truth. "
    "`recalibrated_by`: `clerical_labels` (a curve fitted to the labels), `transitivity` (no labels, but the "
    "model's near-certain links are closed by a third record less often than its surest ones, so it is "
    "overconfident and a curve fitted to how often links are closed replaces it) or empty (the model's own). "
    "`*_90pct`: where 90% of the estimates fall when the clerical labels are resampled (label sampling "
    "only, not the model's own errors). `est_missed_by_blocking`: the share of matches no blocking rule compared, by capture-recapture between "
    "the lists of rules (names alone, date of birth, postcode or address, PNC or CRO; a log-linear model "
    "allowing pairwise dependence between lists when there are three or more); pair-level recall counts them as missed. "
    "B-cubed figures see only the scored pairs (most uncompared matches join their person through other "
    "links), so B-cubed recall can be too high where blocking splits people. "
    "Threshold sources: `configured` (set by the team), `clerical_labels` (labels/<source>.csv), "
    "`model_estimate` (no labels)."
)


def quality_markdown(table: pl.DataFrame) -> str:
    if table.is_empty():
        return "No linked datasets: nothing to estimate."
    problems = evidence_problems(table)
    return "\n".join([
        "## Estimated accuracy per dataset", "", ESTIMATE_NOTE, "",
        markdown_table(quality_summary(table)), "",
        "## Missing evidence", "", bullet_list(problems),
    ])


LARGEST_NOTE = (
    "The largest clusters of each dataset, with their links at the threshold, link density and bridges "
    "(links whose removal splits the cluster). One person's records mostly link to each other; a large "
    "cluster with low density and many bridges is people chained together."
)


def quality_sections(table: pl.DataFrame, largest: pl.DataFrame | None = None) -> list[Section]:
    """The HTML report: estimated accuracy per dataset with a chart, what evidence is missing,
    and each dataset's largest clusters."""
    if table.is_empty():
        return [Section("Estimated accuracy per dataset", ["No linked datasets: nothing to estimate."])]
    summary = quality_summary(table)
    chart = bar_chart(
        summary.unpivot(index="source", on=["est_bcubed_precision", "est_bcubed_recall", "est_bcubed_f1"],
                        variable_name="measure", value_name="value").drop_nulls("value"),
        "source", "value", color="measure", title="Estimated B-cubed accuracy per dataset",
        y_title="estimate", domain=(0.0, 1.0))
    problems = evidence_problems(table)
    sections = [
        Section("Estimated accuracy per dataset", [ESTIMATE_NOTE], summary, chart),
        Section("Missing evidence", problems or ["none"]),
    ]
    if largest is not None and not largest.is_empty():
        sections.append(Section("Largest clusters per dataset", [LARGEST_NOTE], largest))
    return sections


FITS_NOTE = (
    "Without clerical labels the estimates rest on fits over each dataset's pairs (the transitivity check, "
    "the date-of-birth witness). A full run fits them; an incremental run applies the stored ones while the "
    "model and the fitting code are unchanged and few pairs changed since (a full run refits)."
)


def fits_table(fits: dict[str, str], run_id: str = "") -> pl.DataFrame:
    """Which run fitted each dataset's no-label estimates (``fits``: dataset -> run id; ``run_id``: this run)."""
    return pl.DataFrame({"source": list(fits), "fitted_in_run": [
        f"{run} (this run)" if run and run == run_id else run or "unknown" for run in fits.values()]},
        schema={"source": pl.String, "fitted_in_run": pl.String})


def fits_markdown(fits: dict[str, str], run_id: str = "") -> str:
    """:func:`fits_table` as the report's markdown section ("" when no dataset used no-label fits)."""
    if not fits:
        return ""
    return f"\n## Where the no-label fits came from\n\n{FITS_NOTE}\n\n{markdown_table(fits_table(fits, run_id))}\n"


REUSED_NOTE = (
    "An incremental run keeps a dataset's last estimates (and its largest clusters as then) while few rows of "
    "its clusters, pairs and records changed since they were made, with the same model, threshold, labels and "
    "code; record and person counts are today's. A full run, or a larger change, assesses it again."
)


def reused_table(reused: dict[str, dict]) -> pl.DataFrame:
    """Datasets whose estimates an incremental run kept: the run that made them, rows changed since."""
    return pl.DataFrame([{"source": source, **info} for source, info in reused.items()],
                        schema={"source": pl.String, "estimates_from_run": pl.String, "rows_changed_since": pl.Int64,
                                "rows_assessed": pl.Int64})


def write_quality_report(table: pl.DataFrame, reports_dir: Path, largest: pl.DataFrame | None = None,
                         fits: dict[str, str] | None = None, run_id: str = "",
                         reused: dict[str, dict] | None = None) -> dict[str, Path]:
    """The quality report (markdown, HTML, parquet); ``fits``: the run each dataset's no-label fits
    came from (``run_id``: this run), so that a reader sees which estimates apply stored fits;
    ``reused``: the datasets whose estimates were kept from an earlier run (`quality_reuse`)."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": reports_dir / "linkage_quality.md",
        "html": reports_dir / "linkage_quality.html",
        "parquet": reports_dir / "linkage_quality.parquet",
    }
    largest_md = ("" if largest is None or largest.is_empty() else
                  f"\n## Largest clusters per dataset\n\n{LARGEST_NOTE}\n\n{markdown_table(largest, '{:.3f}')}\n")
    fits_md = fits_markdown(fits or {}, run_id)
    reused_md = (f"\n## Estimates kept from an earlier run\n\n{REUSED_NOTE}\n\n{markdown_table(reused_table(reused))}\n"
                 if reused else "")
    # said under the table too: a reader of the figures sees which are not this run's
    kept_line = (f"Estimates of {', '.join(reused)} are kept from an earlier run, with today's record and person "
                 "counts (see \"Estimates kept from an earlier run\")." if reused else "")
    kept_md = f"{kept_line}\n" if kept_line else ""
    paths["markdown"].write_text(
        f"# Linkage quality (estimated)\n\n{quality_markdown(table)}\n{kept_md}{largest_md}{fits_md}{reused_md}")
    sections = quality_sections(table, largest)
    if kept_line:
        sections[0].text.append(kept_line)
    if fits:
        sections.append(Section("Where the no-label fits came from", [FITS_NOTE], fits_table(fits, run_id)))
    if reused:
        sections.append(Section("Estimates kept from an earlier run", [REUSED_NOTE], reused_table(reused)))
    write_report(paths["html"], "Linkage quality (estimated)", sections)
    table.write_parquet(paths["parquet"])
    return paths
