"""Where a dataset's clustering threshold comes from, and how accurate linking is estimated to be,
without ground truth. In order of preference:

1. ``configured``: a match probability the team has decided (``LinkageSettings.thresholds``).
2. ``clerical_labels``: reviewers' labels in ``labels/<source>.csv`` (the review queue, filled in by
   people or by ``datafirst simulate-review``). The queue is sampled by match weight, so the labels
   recalibrate the model's probabilities: a logistic curve of "same person" on match weight, fitted
   allowing for a share of wrong labels (reviewers disagree on a few percent of pairs). A sample
   stratified on the weight leaves that fit unbiased, so no sampling weights are needed.
3. ``model_estimate``: the model's own match probabilities.

Either way each pair gets a probability q of being a match, and the threshold is the candidate
(match weights 0 to 16 bits in half-bit steps) whose clusters have the highest *expected* B-cubed
F1 (:func:`expected_bcubed_curve`): clusters, not pairs, because linking is transitive and a chain
of likely pairs can join people no pair says are the same. The expected precision, recall and F1
reported at the threshold are *estimates*: they count only matches among the scored pairs, so
matches that blocking never put side by side (or that scored below the stored cut-off) are
invisible to them and recall is an upper bound. Nothing here reads the simulator's truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from datafirst_assets.common.pairs import ordered_ids
from datafirst_assets.linkage.disjoint_sets import DisjointSets
from datafirst_assets.linkage.metrics import LABEL, read_labels

PROBABILITY = "match_probability"
WEIGHT = "match_weight"
EXPECTED = "expected_match"  # a pair's probability of being a match, after any recalibration


@dataclass(frozen=True)
class Calibration:
    """P(match | match weight) = sigmoid(intercept + slope * weight) inside the labelled weights
    (reviewers say "match" with probability eps + (1 - 2 eps) times that); outside them the model's
    own probability, clamped so the curve stays monotone."""

    intercept: float
    slope: float
    label_error_rate: float
    weight_range: tuple[float, float]
    labels_used: int

    def expected(self, weight: pl.Expr, model_probability: pl.Expr) -> pl.Expr:
        low, high = self.weight_range
        inside = 1 / (1 + (-(self.intercept + self.slope * weight)).exp())
        at_low, at_high = _sigmoid(self.intercept + self.slope * low), _sigmoid(self.intercept + self.slope * high)
        return (pl.when(weight < low).then(pl.min_horizontal(model_probability, pl.lit(at_low)))
                .when(weight > high).then(pl.max_horizontal(model_probability, pl.lit(at_high)))
                .otherwise(inside))


@dataclass(frozen=True)
class ThresholdChoice:
    match_probability: float
    source: str  # configured | clerical_labels | model_estimate
    estimate: dict = field(default_factory=dict)  # estimated precision / recall / F1 at the threshold
    calibration: Calibration | None = None


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-min(max(x, -700.0), 700.0)))


# ---------------------------------------------------------------- labels -> calibration


def labelled_scored_pairs(pairs: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Labels joined to their pairs' match weights (labels the model never scored are left out:
    they sit below the stored cut-off, where the model's own probability stands)."""
    lab = ordered_ids(labels.select("record_id_l", "record_id_r", LABEL)).unique(["record_id_l", "record_id_r"],
                                                                             keep="last")
    return ordered_ids(pairs.select("record_id_l", "record_id_r", WEIGHT)).join(
        lab, on=["record_id_l", "record_id_r"], how="inner")


def _log_likelihood(design: np.ndarray, target: np.ndarray, beta: np.ndarray) -> float:
    z = design @ beta
    return float(np.sum(target * z - np.logaddexp(0, z)))


def _fit_logistic(x: np.ndarray, target: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """Logistic regression on fractional targets (a, b for a + b x): Newton steps from zero,
    halved until the likelihood rises (plain Newton overshoots where p is near 0 or 1)."""
    design = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    current = _log_likelihood(design, target, beta)
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(design @ beta, -35, 35)))
        w = np.maximum(p * (1 - p), 1e-9)
        gradient = design.T @ (target - p) - ridge * beta
        step = np.linalg.solve((design * w[:, None]).T @ design + ridge * np.eye(2), gradient)
        for _ in range(30):
            candidate = _log_likelihood(design, target, beta + step)
            if candidate >= current - 1e-12:
                break
            step = step / 2
        beta, current = beta + step, candidate
        if np.abs(step).max() < 1e-8:
            break
    return beta


def calibrate(labelled: pl.DataFrame, *, max_error_rate: float = 0.2, iterations: int = 100) -> Calibration | None:
    """Fit P(match | weight) to clerical labels, estimating the share of wrong labels by EM.

    Each label is read as "reviewer says match" with probability ``clerical_match_score``; the
    true status is hidden: it agrees with the reviewer except for a share ``eps`` of flips."""
    if labelled.height < 20:
        return None
    x = labelled.get_column(WEIGHT).cast(pl.Float64).to_numpy()
    y = labelled.get_column(LABEL).cast(pl.Float64).clip(0, 1).to_numpy()
    if y.sum() < 5 or (1 - y).sum() < 5:
        return None
    beta, eps = np.array([0.0, math.log(2)]), 0.01
    for _ in range(iterations):
        s = 1 / (1 + np.exp(-np.clip(beta[0] + beta[1] * x, -35, 35)))
        says_match = (1 - eps) * s / ((1 - eps) * s + eps * (1 - s))
        says_non_match = eps * s / (eps * s + (1 - eps) * (1 - s))
        truly_match = y * says_match + (1 - y) * says_non_match
        flipped = y * (1 - says_match) + (1 - y) * says_non_match
        new_eps = float(min(max(flipped.mean(), 1e-4), max_error_rate))
        new_beta = _fit_logistic(x, truly_match)
        done = abs(new_eps - eps) < 1e-6 and np.abs(new_beta - beta).max() < 1e-6
        beta, eps = new_beta, new_eps
        if done:
            break
    if beta[1] <= 0:  # labels that do not rise with the weight cannot calibrate it
        return None
    return Calibration(float(beta[0]), float(beta[1]), eps, (float(x.min()), float(x.max())), labelled.height)


# ---------------------------------------------------------------- expected accuracy


def expected_accuracy_curve(pairs: pl.DataFrame) -> pl.DataFrame:
    """Estimated precision / recall / F1 of calling ``match_probability >= threshold`` a link, for
    every distinct probability, from each pair's ``expected_match`` (else its match_probability)."""
    q = pl.col(EXPECTED) if EXPECTED in pairs.columns else pl.col(PROBABILITY)
    expected_matches = float(pairs.select(q.sum()).item() or 0.0) if pairs.height else 0.0
    curve = (pairs.group_by(PROBABILITY).agg(q.sum().alias("expected_true_links"), pl.len().alias("links"))
             .sort(PROBABILITY, descending=True)
             .with_columns(pl.col("expected_true_links").cum_sum(), pl.col("links").cum_sum()))
    return curve.select(
        pl.col(PROBABILITY).alias("threshold"), "links", "expected_true_links",
        (pl.col("expected_true_links") / pl.col("links")).alias("precision"),
        (pl.col("expected_true_links") / expected_matches if expected_matches else pl.lit(None, pl.Float64))
        .alias("recall"),
        (2 * pl.col("expected_true_links") / (pl.col("links") + expected_matches)).alias("f1"),
        pl.lit(expected_matches).alias("expected_matches"),
    )


def with_expected_matches(pairs: pl.DataFrame, calibration: Calibration | None) -> pl.DataFrame:
    """``pairs`` plus ``expected_match``: recalibrated by the labels, else the model's probability."""
    if calibration is None:
        return pairs.with_columns(pl.col(PROBABILITY).cast(pl.Float64).alias(EXPECTED))
    return pairs.with_columns(calibration.expected(pl.col(WEIGHT).cast(pl.Float64),
                                                   pl.col(PROBABILITY).cast(pl.Float64)).alias(EXPECTED))


def estimate_at(curve: pl.DataFrame, threshold: float) -> dict:
    """The curve's estimate at ``threshold`` (links with probability >= threshold)."""
    at = curve.filter(pl.col("threshold") >= threshold).tail(1)
    if at.height == 0:
        expected = float(curve["expected_matches"][0]) if curve.height else 0.0
        return {"threshold": threshold, "links": 0, "expected_true_links": 0.0, "precision": None,
                "recall": 0.0 if expected else None, "f1": 0.0, "expected_matches": expected}
    return {**at.row(0, named=True), "threshold": threshold}


# ---------------------------------------------------------------- clusters at each candidate


#: Candidate thresholds: match weights 0, 0.5, ..., 16 bits (probabilities 0.5 to 0.99998).
CANDIDATE_WEIGHTS = tuple(w / 2 for w in range(0, 33))


def candidate_thresholds() -> list[float]:
    return [1 / (1 + 2.0 ** -w) for w in CANDIDATE_WEIGHTS]


def components_at(n_records: int, left: np.ndarray, right: np.ndarray, probability: np.ndarray,
                   thresholds: list[float]) -> dict[float, np.ndarray]:
    """Each record's cluster root when pairs with probability >= t are linked, for every t: one
    union-find pass adding pairs from the most probable down (clusters only grow as t falls)."""
    sets = DisjointSets(n_records)
    order = np.argsort(-probability, kind="stable")
    roots: dict[float, np.ndarray] = {}
    position = 0
    for t in sorted(thresholds, reverse=True):
        while position < len(order) and probability[order[position]] >= t:
            sets.union(int(left[order[position]]), int(right[order[position]]))
            position += 1
        roots[t] = sets.roots()
    return roots


def expected_bcubed_curve(pairs: pl.DataFrame, record_ids: pl.Series,
                          thresholds: list[float] | None = None) -> pl.DataFrame:
    """Expected B-cubed precision / recall / F1 of the clusters at each candidate threshold.

    Per record r in predicted cluster P(r): the expected number of records truly with it in P(r)
    is 1 + the sum of ``expected_match`` over its scored pairs inside P(r) (records linked only
    through others and never scored together count as different people: clusters that chain are
    penalised, which pair-level F1 cannot see); the expected size of its true cluster is 1 + the
    sum over all its scored pairs. Precision and recall are the means of the per-record ratios."""
    thresholds = candidate_thresholds() if thresholds is None else thresholds
    ids = record_ids.cast(pl.String).unique().sort()
    index = pl.DataFrame({"record_id": ids, "_i": pl.int_range(ids.len(), eager=True)})
    p = (pairs.select(pl.col("record_id_l").cast(pl.String), pl.col("record_id_r").cast(pl.String),
                      pl.col(PROBABILITY).cast(pl.Float64), pl.col(EXPECTED).cast(pl.Float64))
         .join(index.rename({"record_id": "record_id_l", "_i": "_l"}), on="record_id_l")
         .join(index.rename({"record_id": "record_id_r", "_i": "_r"}), on="record_id_r"))
    left, right = p["_l"].to_numpy(), p["_r"].to_numpy()
    probability, q = p[PROBABILITY].to_numpy(), p[EXPECTED].to_numpy()
    n = ids.len()
    true_size = 1 + np.bincount(left, q, n) + np.bincount(right, q, n)
    rows = []
    for t, root in sorted(components_at(n, left, right, probability, thresholds).items()):
        inside = q * (root[left] == root[right])
        together = 1 + np.bincount(left, inside, n) + np.bincount(right, inside, n)
        size = np.bincount(root, minlength=n)[root]
        precision, recall = float(np.mean(together / size)), float(np.mean(together / true_size))
        rows.append({"threshold": t, "bcubed_precision": precision, "bcubed_recall": recall,
                     "bcubed_f1": 2 * precision * recall / (precision + recall)})
    return pl.DataFrame(rows, schema={"threshold": pl.Float64, "bcubed_precision": pl.Float64,
                                      "bcubed_recall": pl.Float64, "bcubed_f1": pl.Float64})


# ---------------------------------------------------------------- the choice


def read_calibration(pairs: pl.DataFrame, labels_file: Path | None) -> tuple[Calibration | None, int]:
    """Calibration from a labels file, if there is one with enough usable labels; and how many
    reviewed labels it held."""
    if labels_file is None or not Path(labels_file).exists():
        return None, 0
    labels = read_labels(labels_file)
    return calibrate(labelled_scored_pairs(pairs, labels)), labels.height


@dataclass(frozen=True)
class Assessment:
    """Expected accuracy at every candidate threshold, from labels-recalibrated or model probabilities."""

    clusters: pl.DataFrame  # threshold, expected bcubed_precision / recall / f1
    pairs: pl.DataFrame  # expected pair-level curve (see expected_accuracy_curve)
    calibration: Calibration | None
    labels: int  # reviewed labels in the labels file

    @property
    def source(self) -> str:
        return "clerical_labels" if self.calibration is not None else "model_estimate"

    def best_threshold(self) -> float:
        """Highest expected B-cubed F1 (ties to the higher threshold: fewer links)."""
        if self.clusters.height == 0:
            return 0.5
        return float(self.clusters.sort(["bcubed_f1", "threshold"], descending=[True, True]).row(0)[0])

    def estimate_at(self, threshold: float) -> dict:
        """Estimated pairwise and B-cubed precision / recall / F1 at a candidate threshold."""
        at = self.clusters.filter(pl.col("threshold") == threshold)
        cluster_level = at.row(0, named=True) if at.height else {}
        pair_level = estimate_at(self.pairs, threshold) if self.pairs.height else {}
        return {
            **{f"pairwise_{k}": pair_level.get(k) for k in ("precision", "recall", "f1")},
            **{k: cluster_level.get(k) for k in ("bcubed_precision", "bcubed_recall", "bcubed_f1")},
            "expected_matches": pair_level.get("expected_matches"), "labels": self.labels,
            "label_error_rate": self.calibration.label_error_rate if self.calibration else None,
        }


def assess(pairs: pl.DataFrame, *, labels_file: Path | None, record_ids: pl.Series | None = None,
           also: tuple[float, ...] = ()) -> Assessment:
    """Expected accuracy at the candidate thresholds (and at ``also``). ``record_ids``: every
    record clustered (singletons count in B-cubed); default the records in ``pairs``."""
    calibration, labels = read_calibration(pairs, labels_file) if pairs.height else (None, 0)
    if record_ids is None:
        record_ids = pl.concat([pairs["record_id_l"].cast(pl.String), pairs["record_id_r"].cast(pl.String)])
    expected = with_expected_matches(pairs, calibration)
    if pairs.height == 0:
        return Assessment(expected_bcubed_curve(expected, record_ids, []), expected_accuracy_curve(expected),
                          calibration, labels)
    candidates = sorted(set(candidate_thresholds()) | set(also))
    return Assessment(expected_bcubed_curve(expected, record_ids, candidates), expected_accuracy_curve(expected),
                      calibration, labels)


def choose_cluster_threshold(
    pairs: pl.DataFrame,
    *,
    configured: float | None,
    labels_file: Path | None,
    record_ids: pl.Series | None = None,
) -> ThresholdChoice:
    """`pairs`: scored pairs (record_id_l, record_id_r, match_weight, match_probability).
    A configured threshold wins; otherwise the candidate with the highest expected B-cubed F1
    under the labels-recalibrated probabilities, or the model's own without labels."""
    assessment = assess(pairs, labels_file=labels_file, record_ids=record_ids,
                        also=(configured,) if configured is not None else ())
    threshold = configured if configured is not None else assessment.best_threshold()
    source = "configured" if configured is not None else assessment.source
    return ThresholdChoice(threshold, source, assessment.estimate_at(threshold), assessment.calibration)


def threshold_chooser(record_ids: pl.Series, *, configured: float | None = None,
                      labels_file: Path | None = None) -> Callable[[pl.DataFrame], tuple[float, str]]:
    """What a full link (``incremental.link_full(choose=...)``) asks once the pairs are scored:
    the clustering threshold chosen on them, and where it came from."""
    def choose(pairs: pl.DataFrame) -> tuple[float, str]:
        choice = choose_cluster_threshold(pairs, configured=configured, labels_file=labels_file,
                                          record_ids=record_ids)
        return choice.match_probability, choice.source

    return choose
