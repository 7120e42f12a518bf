"""Linkage quality across datasets: metrics against truth, by subgroup, as a table and a report."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from datafirst_assets.common.tables import markdown_table
from datafirst_assets.linkage.metrics import evaluate_clusters, subgroup_gaps
from datafirst_assets.reporting import Section, bar_chart, write_report

# B-cubed F1 floors per dataset (issue 3): criminal-justice datasets, then family and civil
# where far more identifiers are missing.
FLOORS = {
    "magistrates": 0.97, "crown_court": 0.97, "prison": 0.97, "probation": 0.97, "oasys": 0.97,
    "family": 0.93, "civil": 0.93,
}
SUBGROUPS = ("sex", "ethnic_group", "age_band")
AGE_BANDS = [18, 25, 35, 50, 65]
AGE_LABELS = ["under 18", "18-24", "25-34", "35-49", "50-64", "65+"]
REFERENCE_DATE = date(2024, 1, 1)
#: Columns of a clusters table other than the per-dataset person id.
NOT_PERSON_ID = ("record_id", "model_version", "match_threshold", "record_hash")


def truth_with_subgroups(truth_dir: Path, source: str) -> pl.DataFrame | None:
    records_path, people_path = truth_dir / "person_records.parquet", truth_dir / "people.parquet"
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


def evaluate_sources(clusters_by_source: dict[str, pl.DataFrame], truth_dir: Path) -> pl.DataFrame:
    """Long table: one row per (source, subgroup, group) with B-cubed and, overall, pairwise metrics."""
    rows = []
    for source, clusters in clusters_by_source.items():
        truth = truth_with_subgroups(truth_dir, source)
        if truth is None:
            continue
        id_col = next(c for c in clusters.columns if c not in NOT_PERSON_ID)
        predicted = clusters.select("record_id", pl.col(id_col).cast(pl.String).alias("cluster_id"))
        result = evaluate_clusters(predicted, truth, subgroups=SUBGROUPS)
        pairwise, bcubed = result["pairwise"], result["bcubed"]
        rows.append({
            "source": source, "subgroup": "all", "group": "all", "n_records": bcubed["n_records"],
            "bcubed_precision": bcubed["precision"], "bcubed_recall": bcubed["recall"], "bcubed_f1": bcubed["f1"],
            "pairwise_precision": pairwise["precision"], "pairwise_recall": pairwise["recall"],
            "pairwise_f1": pairwise["f1"],
        })
        for group in result["by_subgroup"]:
            rows.append({
                "source": source, "subgroup": group["subgroup"], "group": group["group"],
                "n_records": group["n_records"], "bcubed_precision": group["precision"],
                "bcubed_recall": group["recall"], "bcubed_f1": group["f1"],
                "pairwise_precision": None, "pairwise_recall": None, "pairwise_f1": None,
            })
    schema = {
        "source": pl.String, "subgroup": pl.String, "group": pl.String, "n_records": pl.Int64,
        "bcubed_precision": pl.Float64, "bcubed_recall": pl.Float64, "bcubed_f1": pl.Float64,
        "pairwise_precision": pl.Float64, "pairwise_recall": pl.Float64, "pairwise_f1": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


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


def overall_table(table: pl.DataFrame) -> pl.DataFrame:
    """One row per dataset: pairwise and B-cubed figures and the dataset's floor."""
    return table.filter(pl.col("subgroup") == "all").select(
        "source", "n_records", "pairwise_precision", "pairwise_recall", "pairwise_f1",
        "bcubed_precision", "bcubed_recall", "bcubed_f1",
    ).with_columns(pl.col("source").replace_strict(FLOORS, default=None).alias("floor"))


def quality_markdown(table: pl.DataFrame) -> str:
    if table.is_empty():
        return NOT_MEASURED
    return "\n".join([
        "## Accuracy per dataset", "", markdown_table(overall_table(table)), "",
        "## Best-to-worst subgroup gap (B-cubed F1)", "", markdown_table(subgroup_gap_table(table)),
    ])


NOT_MEASURED = "No truth or clerical labels available: accuracy not measured."


def quality_sections(table: pl.DataFrame) -> list[Section]:
    """The report's sections: overall accuracy with a chart, subgroup gaps, every subgroup."""
    if table.is_empty():
        return [Section("Accuracy per dataset", [NOT_MEASURED])]
    overall = overall_table(table)
    chart = bar_chart(
        overall.unpivot(index="source", on=["bcubed_f1", "pairwise_f1"], variable_name="measure",
                        value_name="f1").drop_nulls("f1"),
        "source", "f1", color="measure", title="F1 per dataset", y_title="F1", domain=(0.0, 1.0))
    return [
        Section("Accuracy per dataset", [
            "Pairwise and B-cubed precision, recall and F1 of each dataset's clusters; the floor is the "
            "B-cubed F1 the dataset must reach."], overall, chart),
        Section("Best-to-worst subgroup gap (B-cubed F1)", [
            "For each subgroup (groups of at least 30 records), the best and worst B-cubed F1."],
            subgroup_gap_table(table)),
        Section("By subgroup", [], table.filter(pl.col("subgroup") != "all")),
    ]


def write_quality_report(table: pl.DataFrame, reports_dir: Path) -> dict[str, Path]:
    reports_dir.mkdir(parents=True, exist_ok=True)
    body = quality_markdown(table)
    detail = "\n".join(["## By subgroup", "", markdown_table(table.filter(pl.col("subgroup") != "all"))]) \
        if not table.is_empty() else ""
    paths = {
        "markdown": reports_dir / "linkage_quality.md",
        "html": reports_dir / "linkage_quality.html",
        "parquet": reports_dir / "linkage_quality.parquet",
    }
    paths["markdown"].write_text(f"# Linkage quality\n\n{body}\n\n{detail}\n")
    write_report(paths["html"], "Linkage quality", quality_sections(table))
    table.write_parquet(paths["parquet"])
    return paths
