"""Where a dataset's clustering threshold comes from, in order of preference.

1. A configured match probability (the team has decided).
2. A clerical labels file `labels/<source>.csv` (pairs with a 0-1 `clerical_match_score`).
3. A simulated clerical review: the scored pairs labelled from the simulator's truth, which
   plays the role of clerical reviewers on synthetic data (an exhaustive reviewer, so no
   sampling weights are needed). The model and the scores never see truth; only the choice of
   cut-off on scores does, as with real clerical review.
4. The default match probability.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from datafirst_assets.linkage.dedupe import DEFAULT_THRESHOLD
from datafirst_assets.linkage.metrics import (
    LABEL,
    choose_threshold,
    label_pairs_from_truth,
    read_labels,
    true_pair_count,
)

def _ordered(pairs: pl.DataFrame) -> pl.DataFrame:
    """Each pair with the smaller id on the left, so labels written either way round match."""
    left, right = pl.col("record_id_l").cast(pl.String), pl.col("record_id_r").cast(pl.String)
    return pairs.with_columns(
        pl.min_horizontal(left, right).alias("record_id_l"), pl.max_horizontal(left, right).alias("record_id_r"))


@dataclass(frozen=True)
class ThresholdChoice:
    match_probability: float
    source: str  # configured | clerical_labels | simulated_review | default
    detail: dict


def choose_cluster_threshold(
    pairs: pl.DataFrame,
    *,
    configured: float | None,
    labels_file: Path | None,
    truth: pl.DataFrame | None,
) -> ThresholdChoice:
    """`pairs`: scored pairs (record_id_l, record_id_r, match_weight, match_probability)."""
    if configured is not None:
        return ThresholdChoice(configured, "configured", {})
    labelled = None
    source = "default"
    total_positives = None
    if labels_file is not None and labels_file.exists():
        labels = _ordered(read_labels(labels_file).select("record_id_l", "record_id_r", LABEL))
        labelled = _ordered(pairs).join(labels, on=["record_id_l", "record_id_r"], how="inner")
        source = "clerical_labels"
    elif truth is not None and pairs.height:
        labelled = label_pairs_from_truth(pairs, truth)
        source = "simulated_review"
        # Pairs that blocking never scored still count as missed links.
        total_positives = true_pair_count(truth)
    if labelled is None or labelled.filter(pl.col(LABEL) > 0.5).height == 0:
        return ThresholdChoice(DEFAULT_THRESHOLD, "default", {})
    best = choose_threshold(labelled, score_col="match_probability", total_positives=total_positives)
    return ThresholdChoice(float(best["threshold"]), source, best)
