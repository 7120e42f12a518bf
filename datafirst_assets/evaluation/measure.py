"""Linkage accuracy measured against truth, and how far the pipeline's own estimates were from it.

Per dataset:
* the threshold the pipeline used and where it came from (configured / clerical_labels / model_estimate);
* measured B-cubed precision / recall / F1 on all records, and on the records the clerical labels
  did NOT see (the labels chose the threshold, so they must not grade it; but the review queue
  picks the hardest, boundary records, so the unseen records are easier than the rest: both are
  shown);
* measured pair-level precision / recall of "scored pair above the threshold" and B-cubed over all
  records (the scope the estimates describe), next to the estimates and their differences;
* the truth-optimal threshold among the same candidates and the B-cubed F1 it would give, so the
  cost of not knowing the truth is visible (both as the clusters the over-merge guard leaves of the
  stored pairs, as published, given the records; pairs the guard says are two people are left
  out of the pair-level figures, as the estimates leave them out).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from datafirst_assets.linkage.metrics import (
    _f1,
    bcubed_metrics,
    evaluate_clusters,
    label_pairs_from_truth,
    pairwise_metrics,
    read_labels,
    true_pair_count,
)
from datafirst_assets.linkage.guard import guarded_components_at
from datafirst_assets.linkage.quality import NOT_PERSON_ID, SUBGROUPS
from datafirst_assets.linkage.threshold import candidate_thresholds, components_at, without_different_people

MEASURED_SCHEMA = {
    "source": pl.String, "threshold": pl.Float64, "threshold_source": pl.String, "recalibrated_by": pl.String,
    "labels": pl.Int64,
    "records": pl.Int64, "records_unseen_by_labels": pl.Int64,
    "measured_bcubed_precision": pl.Float64, "measured_bcubed_recall": pl.Float64, "measured_bcubed_f1": pl.Float64,
    "measured_unseen_bcubed_precision": pl.Float64, "measured_unseen_bcubed_recall": pl.Float64,
    "measured_unseen_bcubed_f1": pl.Float64,
    "measured_pairwise_precision": pl.Float64, "measured_pairwise_recall": pl.Float64,
    "measured_pairwise_f1": pl.Float64,
    "measured_pair_precision": pl.Float64, "measured_pair_recall": pl.Float64,
    "estimated_pair_precision": pl.Float64, "estimated_pair_recall": pl.Float64,
    "estimated_bcubed_precision": pl.Float64, "estimated_bcubed_recall": pl.Float64,
    "estimated_bcubed_f1": pl.Float64,
    "estimated_missed_by_blocking": pl.Float64, "measured_missed_by_blocking": pl.Float64,
    "pair_precision_error": pl.Float64, "pair_recall_error": pl.Float64,
    "bcubed_precision_error": pl.Float64, "bcubed_recall_error": pl.Float64,
    "truth_optimal_threshold": pl.Float64, "truth_optimal_bcubed_f1": pl.Float64,
    "bcubed_f1_below_optimal": pl.Float64,
}


def predicted_clusters(clusters: pl.DataFrame) -> pl.DataFrame:
    """record_id, cluster_id from a stored clusters table (whatever its person id is called)."""
    id_col = next(c for c in clusters.columns if c not in NOT_PERSON_ID)
    return clusters.select(pl.col("record_id").cast(pl.String), pl.col(id_col).cast(pl.String).alias("cluster_id"))


def labelled_records(labels_file: Path | None) -> pl.Series:
    """Every record that appears in a reviewed clerical label."""
    if labels_file is None or not Path(labels_file).exists():
        return pl.Series("record_id", [], dtype=pl.String)
    labels = read_labels(labels_file)
    return pl.concat([labels["record_id_l"], labels["record_id_r"]]).unique().alias("record_id")


def bcubed_of_roots(root: np.ndarray, person: np.ndarray) -> tuple[float | None, float | None]:
    """B-cubed precision and recall (``linkage.metrics.bcubed_metrics``: the means over records of
    the share of a record's cluster that is its person, and of its person in its cluster) of the
    clusters ``root`` (a record's cluster as a position, < the records) against ``person`` (a
    number per record), in whole-array steps: 41 thresholds a dataset, each a polars join and
    three windows, were most of the measurement's time."""
    n = len(root)
    if n == 0:
        return None, None
    root = np.asarray(root, dtype=np.int64)
    _, cell, together = np.unique(root * (int(person.max()) + 1) + person, return_inverse=True, return_counts=True)
    together = together[cell.reshape(-1)]
    cluster_size = np.bincount(root, minlength=n)[root]
    person_size = np.bincount(person)[person]
    return float(np.mean(together / cluster_size)), float(np.mean(together / person_size))


def bcubed_by_threshold(pairs: pl.DataFrame, truth: pl.DataFrame, thresholds: list[float],
                        records: pl.DataFrame | None = None) -> pl.DataFrame:
    """Measured B-cubed precision / recall / F1 of the clusters the stored pairs give at each threshold
    (``records``: as the over-merge guard leaves them, :func:`guard.guarded_components_at`)."""
    ids = truth["record_id"].cast(pl.String).sort()
    index = pl.DataFrame({"record_id": ids, "_i": pl.int_range(ids.len(), eager=True)})
    p = (pairs.select(pl.col("record_id_l").cast(pl.String), pl.col("record_id_r").cast(pl.String),
                      pl.col("match_probability").cast(pl.Float64))
         .join(index.rename({"record_id": "record_id_l", "_i": "_l"}), on="record_id_l")
         .join(index.rename({"record_id": "record_id_r", "_i": "_r"}), on="record_id_r"))
    # each record's person as a number (records in id order, as ``ids``)
    person = truth.sort("record_id").select(pl.col("person_id").cast(pl.String).fill_null("").rank("dense")).to_series()
    person = person.cast(pl.Int64).to_numpy() - 1
    rows = []
    left, right, probability = p["_l"].to_numpy(), p["_r"].to_numpy(), p["match_probability"].to_numpy()
    components = (guarded_components_at(ids.to_list(), left, right, probability, thresholds, records)
                  if records is not None else components_at(ids.len(), left, right, probability, thresholds))
    for t, root in components.items():
        precision, recall = bcubed_of_roots(root, person)
        rows.append({"threshold": t, "bcubed_precision": precision, "bcubed_recall": recall,
                     "bcubed_f1": _f1(precision, recall)})
    return pl.DataFrame(rows, schema={"threshold": pl.Float64, "bcubed_precision": pl.Float64,
                                      "bcubed_recall": pl.Float64, "bcubed_f1": pl.Float64}).sort("threshold")


def pair_level(pairs: pl.DataFrame, truth: pl.DataFrame, threshold: float) -> tuple[float | None, float | None]:
    """Precision and recall of "scored pair >= threshold" among the records in ``truth``."""
    keep = truth.select("record_id")
    inside = (pairs.with_columns(pl.col("record_id_l").cast(pl.String), pl.col("record_id_r").cast(pl.String))
              .join(keep, left_on="record_id_l", right_on="record_id", how="semi")
              .join(keep, left_on="record_id_r", right_on="record_id", how="semi"))
    called = label_pairs_from_truth(inside.filter(pl.col("match_probability") >= threshold), truth)
    true_links, all_true = float(called["clerical_match_score"].sum()), true_pair_count(truth)
    return (true_links / called.height if called.height else None,
            true_links / all_true if all_true else None)


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def measure_source(source: str, clusters: pl.DataFrame, pairs: pl.DataFrame, truth: pl.DataFrame,
                   estimate: dict, labels_file: Path | None, records: pl.DataFrame | None = None) -> dict:
    """One dataset's measured-vs-estimated row. ``estimate``: its row of linkage/quality.

    ``records`` (the guard's columns of person_records): measured as estimated, on what the pipeline
    can link. Pairs the over-merge guard says are two people are never joined whatever the
    threshold, and the estimate leaves them out, so pair precision and recall leave them out too,
    and the truth-optimal threshold is found on the clusters the guard leaves (as published).
    Without them, a family threshold low enough to reach parents and children of the same name
    was graded on links the pipeline never makes (demo: estimated pair precision 0.981, 0.948
    measured with those pairs, 0.98 without)."""
    predicted = predicted_clusters(clusters)
    scored = pairs
    pairs = without_different_people(pairs, records)
    truth = truth.join(predicted.select("record_id"), on="record_id", how="semi")
    seen = labelled_records(labels_file)
    unseen_truth = truth.filter(~pl.col("record_id").is_in(seen.implode()))
    unseen = bcubed_metrics(predicted.join(unseen_truth.select("record_id"), on="record_id", how="semi"),
                            unseen_truth)
    everyone = bcubed_metrics(predicted, truth)
    threshold = float(estimate["threshold"])
    pair_precision, pair_recall = pair_level(pairs, truth, threshold)
    _, scored_recall = pair_level(scored, truth, 0.0)
    pairwise = pairwise_metrics(predicted, truth)
    by_threshold = bcubed_by_threshold(pairs, truth, sorted(set(candidate_thresholds()) | {threshold}), records)
    best = by_threshold.sort(["bcubed_f1", "threshold"], descending=[True, True]).row(0, named=True)
    at_threshold = by_threshold.filter(pl.col("threshold") == threshold)["bcubed_f1"][0]
    return {
        "source": source, "threshold": threshold, "threshold_source": estimate["threshold_source"],
        "recalibrated_by": estimate.get("recalibrated_by"), "labels": estimate["labels"], "records": truth.height, "records_unseen_by_labels": unseen_truth.height,
        "measured_bcubed_precision": everyone["precision"], "measured_bcubed_recall": everyone["recall"],
        "measured_bcubed_f1": everyone["f1"],
        "measured_unseen_bcubed_precision": unseen["precision"], "measured_unseen_bcubed_recall": unseen["recall"],
        "measured_unseen_bcubed_f1": unseen["f1"],
        "measured_pairwise_precision": pairwise["precision"], "measured_pairwise_recall": pairwise["recall"],
        "measured_pairwise_f1": pairwise["f1"],
        "measured_pair_precision": pair_precision, "measured_pair_recall": pair_recall,
        "estimated_pair_precision": estimate["estimated_pairwise_precision"],
        "estimated_pair_recall": estimate["estimated_pairwise_recall"],
        "estimated_bcubed_precision": estimate["estimated_bcubed_precision"],
        "estimated_bcubed_recall": estimate["estimated_bcubed_recall"],
        "estimated_bcubed_f1": estimate["estimated_bcubed_f1"],
        "estimated_missed_by_blocking": estimate.get("estimated_missed_by_blocking"),
        "measured_missed_by_blocking": None if scored_recall is None else 1 - scored_recall,
        "pair_precision_error": _difference(estimate["estimated_pairwise_precision"], pair_precision),
        "pair_recall_error": _difference(estimate["estimated_pairwise_recall"], pair_recall),
        "bcubed_precision_error": _difference(estimate["estimated_bcubed_precision"], everyone["precision"]),
        "bcubed_recall_error": _difference(estimate["estimated_bcubed_recall"], everyone["recall"]),
        "truth_optimal_threshold": best["threshold"], "truth_optimal_bcubed_f1": best["bcubed_f1"],
        "bcubed_f1_below_optimal": best["bcubed_f1"] - at_threshold,
    }


def measured_table(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=MEASURED_SCHEMA)


def subgroup_table(clusters_by_source: dict[str, pl.DataFrame],
                   truth_by_source: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Long table: one row per (source, subgroup, group) with measured B-cubed metrics."""
    rows = []
    for source, clusters in clusters_by_source.items():
        result = evaluate_clusters(predicted_clusters(clusters), truth_by_source[source], subgroups=SUBGROUPS)
        rows += [{"source": source, "subgroup": g["subgroup"], "group": g["group"], "n_records": g["n_records"],
                  "bcubed_precision": g["precision"], "bcubed_recall": g["recall"], "bcubed_f1": g["f1"]}
                 for g in result["by_subgroup"]]
    schema = {"source": pl.String, "subgroup": pl.String, "group": pl.String, "n_records": pl.Int64,
              "bcubed_precision": pl.Float64, "bcubed_recall": pl.Float64, "bcubed_f1": pl.Float64}
    return pl.DataFrame(rows, schema=schema)
