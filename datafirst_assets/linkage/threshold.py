"""Where a dataset's clustering threshold comes from, and how accurate linking is estimated to be,
without ground truth. In order of preference:

1. ``configured``: a match probability the team has decided (``LinkageSettings.thresholds``).
2. ``clerical_labels``: reviewers' labels in ``labels/<source>.csv`` (the review queue, filled in by
   people or by ``datafirst simulate-review``). The queue is sampled by match weight, so the labels
   recalibrate the model's probabilities: a logistic curve of "same person" on match weight, fitted
   allowing for a share of wrong labels (reviewers disagree on a few percent of pairs), used at every
   weight (also beyond the labelled ones: the model's own probability there is what the labels showed
   to be wrong). A sample stratified on the weight leaves a fit of P(match | weight) unbiased, so no
   sampling weights are needed.
3. ``model_estimate``: the model's own match probabilities, unless a transitivity check shows them to
   be overconfident (:func:`transitivity_check`), in which case a curve fitted to that check replaces
   them; then the pairs missing a date of birth are brought, pattern of agreement by pattern, to the
   share of the pattern's dated pairs whose dates agree (:func:`witness_odds`: the model adds up
   fields that are not independent, a shared surname and address for relatives, a new address for
   a person who moved); then each pair's probability is raised to that of its likeliest path of
   likely links through other records (:func:`transitive_closure`), which a model comparing two
   records at a time cannot see (it underrates pairs whose recording errors come together). No
   labels and no truth are needed.

Given the records, pairs the over-merge guard's rules say are two people (two parties of one case,
dates of birth that cannot be one person's) are left out first (:func:`without_different_people`):
the guard never joins them, so they are known non-matches, not evidence about the model.

Either way each pair gets a probability q of being a match, and the threshold is the candidate
(match weights -4 to 16 bits in half-bit steps) whose clusters (as the over-merge guard leaves them,
given the records) have the highest *expected* B-cubed F1 (:func:`expected_bcubed_curve`): clusters, not pairs, because linking is transitive and a chain
of likely pairs can join people no pair says are the same. The expected precision, recall and F1
reported at the threshold are *estimates*: they count only matches among the scored pairs, so
matches that blocking never put side by side (or that scored below the stored cut-off) are
invisible to them and recall is an upper bound. Nothing here reads the simulator's truth.
"""

from __future__ import annotations

import itertools

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

from datafirst_assets.common.pairs import ordered_ids
from datafirst_assets.linkage.disjoint_sets import component_minimum, roots_at_thresholds
from datafirst_assets.linkage.guard import dates_compatible, different_people, guarded_roots_keeping
from datafirst_assets.linkage.metrics import LABEL, match_probability_to_weight, read_labels

PROBABILITY = "match_probability"
WEIGHT = "match_weight"
EXPECTED = "expected_match"  # a pair's probability of being a match, after any recalibration


@dataclass(frozen=True)
class Calibration:
    """P(match | match weight) = sigmoid(intercept + slope * weight), at every weight (reviewers say
    "match" with probability eps + (1 - 2 eps) times that). ``method``: what it was fitted to
    (``clerical_labels``, or ``transitivity`` when the model's own links were the only evidence)."""

    intercept: float
    slope: float
    label_error_rate: float | None
    weight_range: tuple[float, float]
    labels_used: int
    method: str = "clerical_labels"

    def expected(self, weight: pl.Expr, model_probability: pl.Expr) -> pl.Expr:
        curve = 1 / (1 + (-(self.intercept + self.slope * weight)).exp())
        if self.method == "transitivity":  # it can only show the model overconfident, never less
            return pl.min_horizontal(curve, model_probability)
        return curve


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
    they sit below the stored cut-off, where the model's own probability stands), in record id
    order: the bootstrap draws rows by position, and the join's order followed the order the
    warehouse returned the pairs in, so two runs on the same labels printed different 90% intervals
    (demo: prison's pair precision 0.996-1.0 in one run, 0.987-1.0 in the next)."""
    lab = ordered_ids(labels.select("record_id_l", "record_id_r", LABEL)).unique(["record_id_l", "record_id_r"],
                                                                             keep="last")
    return ordered_ids(pairs.select("record_id_l", "record_id_r", WEIGHT)).join(
        lab, on=["record_id_l", "record_id_r"], how="inner").sort("record_id_l", "record_id_r")


#: Newton stops when the log-likelihood is within this of its maximum (the Newton decrement).
NEWTON_TOLERANCE = 1e-10
#: The labels' EM stops when an iteration raises their log-likelihood by less than this: two
#: calibrations closer than that are equally supported by the labels. (Labels that leave the curve
#: unidentified, e.g. nearly all "match" with the rest no more than the reviewers' error rate, let
#: EM creep along a flat ridge, ~1e-8 per iteration, for its whole budget.)
EM_TOLERANCE = 1e-7


def _log_likelihood(design: np.ndarray, target: np.ndarray, beta: np.ndarray) -> float:
    z = design @ beta
    return float(np.sum(target * z - np.logaddexp(0, z)))


def _fit_logistic(x: np.ndarray, target: np.ndarray, ridge: float = 1e-6,
                  start: np.ndarray | None = None) -> np.ndarray:
    """Logistic regression on fractional targets (a, b for a + b x): Newton steps from ``start``
    (default zero), halved until the likelihood rises (plain Newton overshoots where p is near 0 or 1).

    Stops once the Newton decrement says the likelihood is within ``NEWTON_TOLERANCE`` of its
    maximum, or when no step along Newton's direction raises it: there the likelihood's own
    rounding error (a sum over every label) decides whether a step "rises", and near-certain labels
    (fitted odds beyond the clipped e^35, where the gradient is approximate) made the steps wander
    there for the whole iteration budget."""
    design = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2) if start is None else np.array(start, dtype=float)
    current = _log_likelihood(design, target, beta)
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(design @ beta, -35, 35)))
        w = np.maximum(p * (1 - p), 1e-9)
        gradient = design.T @ (target - p) - ridge * beta
        step = np.linalg.solve((design * w[:, None]).T @ design + ridge * np.eye(2), gradient)
        if gradient @ step < NEWTON_TOLERANCE:
            break
        for _ in range(30):
            candidate = _log_likelihood(design, target, beta + step)
            if candidate >= current - 1e-12:
                break
            step = step / 2
        if candidate <= current:  # no rise left above the likelihood's rounding error
            break
        beta, current = beta + step, candidate
        if np.abs(step).max() < 1e-8:
            break
    return beta


def _labels_log_likelihood(x: np.ndarray, y: np.ndarray, beta: np.ndarray, eps: float) -> float:
    """Log-likelihood of labels ``y`` (P(says match)) under the curve ``beta`` and error rate ``eps``."""
    s = 1 / (1 + np.exp(-np.clip(beta[0] + beta[1] * x, -35, 35)))
    says = (1 - eps) * s + eps * (1 - s)  # within [eps, 1 - eps]: eps is at least 1e-4
    return float(np.sum(y * np.log(says) + (1 - y) * np.log1p(-says)))


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
    likelihood = -math.inf
    for _ in range(iterations):
        s = 1 / (1 + np.exp(-np.clip(beta[0] + beta[1] * x, -35, 35)))
        says_match = (1 - eps) * s / ((1 - eps) * s + eps * (1 - s))
        says_non_match = eps * s / (eps * s + (1 - eps) * (1 - s))
        truly_match = y * says_match + (1 - y) * says_non_match
        flipped = y * (1 - says_match) + (1 - y) * says_non_match
        new_eps = float(min(max(flipped.mean(), 1e-4), max_error_rate))
        # warm start: the last M-step's optimum is close to this one's
        new_beta = _fit_logistic(x, truly_match, start=beta if likelihood > -math.inf else None)
        done = abs(new_eps - eps) < 1e-6 and np.abs(new_beta - beta).max() < 1e-6
        beta, eps = new_beta, new_eps
        new_likelihood = _labels_log_likelihood(x, y, beta, eps)
        if done or new_likelihood - likelihood < EM_TOLERANCE:
            break
        likelihood = new_likelihood
    if beta[1] <= 0:  # labels that do not rise with the weight cannot calibrate it
        return None
    return Calibration(float(beta[0]), float(beta[1]), eps, (float(x.min()), float(x.max())), labelled.height)


# ---------------------------------------------------------------- many resamples at once
#
# The bootstrap behind the estimates' intervals fits 40 resamples of ~1,500 labels, each by ~30 EM
# iterations of a few Newton steps, and the time goes on the exponentials over every label. A
# resample is a count of each label drawn, and the labels are fewer distinct (weight, label)
# values (300 to 1,000 of 1,500: a weight per agreement pattern), so the functions below fit every
# resample at once as weighted sums over the distinct values (``count``: one row per resample),
# each row stopping by the rules of `calibrate` and `_fit_logistic`. Only the sums' rounding
# differs from fitting the resamples one at a time (4e-12 at most in the demo's fits).


def _weighted_log_likelihood(x: np.ndarray, target: np.ndarray, count: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """:func:`_log_likelihood` of each row (``beta``: one (intercept, slope) per row of ``count``)."""
    z = beta[:, :1] + beta[:, 1:] * x
    return np.sum(count * (target * z - np.logaddexp(0, z)), axis=1)


def _newton_steps(x: np.ndarray, target: np.ndarray, count: np.ndarray, beta: np.ndarray,
                  ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Each row's Newton step and decrement (as :func:`_fit_logistic` computes them)."""
    p = 1 / (1 + np.exp(-np.clip(beta[:, :1] + beta[:, 1:] * x, -35, 35)))
    w = count * np.maximum(p * (1 - p), 1e-9)
    residual = count * (target - p)
    gradient = np.column_stack([residual.sum(axis=1), (residual * x).sum(axis=1)]) - ridge * beta
    wx = w * x
    hessian = np.empty((len(count), 2, 2))
    hessian[:, 0, 0] = w.sum(axis=1) + ridge
    hessian[:, 0, 1] = hessian[:, 1, 0] = wx.sum(axis=1)
    hessian[:, 1, 1] = (wx * x).sum(axis=1) + ridge
    step = np.linalg.solve(hessian, gradient[:, :, None])[:, :, 0]
    return step, np.sum(gradient * step, axis=1)


def _fit_logistic_rows(x: np.ndarray, target: np.ndarray, count: np.ndarray, start: np.ndarray,
                       ridge: float = 1e-6) -> np.ndarray:
    """:func:`_fit_logistic` of every row at once (``target`` and ``count`` a row each, ``x`` shared),
    from ``start``: the same steps, halvings and stopping rules, row by row."""
    beta = np.array(start, dtype=float)
    current = _weighted_log_likelihood(x, target, count, beta)
    running = np.arange(len(count))
    for _ in range(100):
        if not running.size:
            break
        rt, rn, rb, rc = target[running], count[running], beta[running], current[running]
        step, decrement = _newton_steps(x, rt, rn, rb, ridge)
        moving = decrement >= NEWTON_TOLERANCE
        candidate = np.full(len(running), -np.inf)
        pending = np.flatnonzero(moving)
        for _ in range(30):  # halve each row's step until its likelihood rises
            if not pending.size:
                break
            candidate[pending] = _weighted_log_likelihood(x, rt[pending], rn[pending], rb[pending] + step[pending])
            short = candidate[pending] < rc[pending] - 1e-12
            step[pending[short]] /= 2
            pending = pending[short]
        moving &= candidate > rc  # no rise left above the likelihood's rounding error: done
        moved = running[moving]
        beta[moved] += step[moving]
        current[moved] = candidate[moving]
        running = moved[np.abs(step[moving]).max(axis=1) >= 1e-8] if moved.size else moved
    return beta


def _calibrate_rows(x: np.ndarray, y: np.ndarray, count: np.ndarray, max_error_rate: float = 0.2,
                    iterations: int = 100) -> list[Calibration | None]:
    """:func:`calibrate` of every row of ``count`` at once: how many times each distinct (weight
    ``x``, label ``y``) a resample drew. None for a row whose labels cannot calibrate."""
    rows, n = len(count), int(count[0].sum()) if len(count) else 0
    if n < 20:
        return [None] * rows
    beta = np.tile([0.0, math.log(2)], (rows, 1))
    eps, likelihood = np.full(rows, 0.01), np.full(rows, -math.inf)
    usable = active = np.flatnonzero((count @ y >= 5) & (count @ (1 - y) >= 5))
    for iteration in range(iterations):
        if not active.size:
            break
        an, ab, ae = count[active], beta[active], eps[active][:, None]
        s = 1 / (1 + np.exp(-np.clip(ab[:, :1] + ab[:, 1:] * x, -35, 35)))
        says_match = (1 - ae) * s / ((1 - ae) * s + ae * (1 - s))
        says_non_match = ae * s / (ae * s + (1 - ae) * (1 - s))
        truly_match = y * says_match + (1 - y) * says_non_match
        flipped = y * (1 - says_match) + (1 - y) * says_non_match
        new_eps = np.minimum(np.maximum(np.sum(an * flipped, axis=1) / n, 1e-4), max_error_rate)
        # warm start (as calibrate): the last M-step's optimum is close to this one's
        new_beta = _fit_logistic_rows(x, truly_match, an, ab if iteration else np.zeros_like(ab))
        done = (np.abs(new_eps - ae[:, 0]) < 1e-6) & (np.abs(new_beta - ab).max(axis=1) < 1e-6)
        beta[active], eps[active] = new_beta, new_eps
        s = 1 / (1 + np.exp(-np.clip(new_beta[:, :1] + new_beta[:, 1:] * x, -35, 35)))
        says = (1 - new_eps[:, None]) * s + new_eps[:, None] * (1 - s)
        new_likelihood = np.sum(an * (y * np.log(says) + (1 - y) * np.log1p(-says)), axis=1)
        stop = done | (new_likelihood - likelihood[active] < EM_TOLERANCE)
        likelihood[active[~stop]] = new_likelihood[~stop]
        active = active[~stop]
    fits: list[Calibration | None] = [None] * rows
    for row in usable:
        if beta[row, 1] > 0:  # labels that do not rise with the weight cannot calibrate it
            drawn = x[count[row] > 0]
            fits[row] = Calibration(float(beta[row, 0]), float(beta[row, 1]), float(eps[row]),
                                    (float(drawn.min()), float(drawn.max())), n)
    return fits


def resampled_calibrations(labelled: pl.DataFrame, samples: np.ndarray) -> list[Calibration | None]:
    """:func:`calibrate` of ``labelled[sample]`` for every row of ``samples`` (row positions), all at once."""
    x = labelled.get_column(WEIGHT).cast(pl.Float64).to_numpy()
    y = labelled.get_column(LABEL).cast(pl.Float64).clip(0, 1).to_numpy()
    distinct, group = np.unique(np.column_stack([x, y]), axis=0, return_inverse=True)
    group = group.reshape(-1)
    count = np.zeros((len(samples), len(distinct)))
    np.add.at(count, (np.repeat(np.arange(len(samples)), samples.shape[1]), group[samples].reshape(-1)), 1.0)
    return _calibrate_rows(distinct[:, 0], distinct[:, 1], count)

# ---------------------------------------------------------------- kept between assessments


@dataclass
class KeptWork:
    """The local parts of a dataset's assessment, kept for its next one (``linkage/quality_parts.py``
    stores them): each is recomputed only where the pairs or records under it changed, the rest taken
    from here. ``computed`` says how much was computed (pairs, name groups) by the assessment that
    made it. Passed to :func:`assess` as what the last assessment kept; returned as what this one keeps."""

    support: pl.DataFrame | None = None  # the transitivity check's flags per pair (SUPPORT_COLUMNS)
    same_name_records: pl.DataFrame | None = None  # dated named records and their content (SAME_NAME_RECORDS)
    same_name_sums: pl.DataFrame | None = None  # same-name witness counts per name and pattern (SAME_NAME_SUMS)
    pair_facts: pl.DataFrame | None = None  # each scored pair's guard rules and agreement pattern (PAIR_FACTS)
    record_content: pl.DataFrame | None = None  # every record's content hash, as the facts read it (RECORD_CONTENT)
    guard_joins: pl.DataFrame | None = None  # the guarded pass's joins per conflicted cluster (guard.GUARD_JOINS)
    blocking: pl.DataFrame | None = None  # per row of ``pair_facts``: which lists of rules compared it (by_<list>)
    blocking_rules: str | None = None  # the digest of the rules ``blocking`` was read with (BlockingSource.key)
    # not stored: per pair whose facts were kept (``_row``), the row of the last ``pair_facts`` they came from
    facts_from: pl.DataFrame | None = field(default=None, repr=False, compare=False)
    computed: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------- no labels: a transitivity check

#: Links the model calls near-certain (p >= 0.999): the ones whose chains the check follows.
STRONG_WEIGHT = 10.0
#: The surest links (p >= 0.999999): how often a true match is closed by a third record.
SUREST_WEIGHT = 20.0
#: Links the model calls near-certain but less sure than the surest, where overconfidence shows.
CHECK_WEIGHTS = (10.0, 16.0)
#: Overconfident when the checked links are closed this much less often than the surest ones.
OVERCONFIDENCE_DEFICIT = 0.05


def _strong_edges(pairs: pl.DataFrame, strong_weight: float) -> pl.DataFrame:
    """``x``, ``y``: the near-certain links of ``pairs`` (ordered ids), both ways round."""
    strong = pairs.filter(pl.col(WEIGHT) >= strong_weight).select(pl.col("record_id_l").alias("x"),
                                                                   pl.col("record_id_r").alias("y"))
    return pl.concat([strong, strong.select(pl.col("y").alias("x"), pl.col("x").alias("y"))])


def _support_flags(rows: pl.DataFrame, edges: pl.DataFrame, strong_weight: float) -> pl.DataFrame:
    """``rows`` (ordered ids, match weight) plus ``supported`` and ``checkable`` (see
    :func:`with_transitive_support`), from the near-certain links ``edges`` (:func:`_strong_edges`).

    Only the links of the rows' own records are read, and a pair is closed when a neighbour of its
    left record is a neighbour of its right one (a semi-join per pair, not every two-link path in
    the graph), so the cost follows the rows asked about, not the whole dataset."""
    ends = pl.concat([rows["record_id_l"], rows["record_id_r"]]).unique().to_frame("x")
    near = edges.join(ends, on="x", how="semi")
    closed = (rows.select("record_id_l", "record_id_r").unique()
              .join(near.rename({"x": "record_id_l"}), on="record_id_l")
              .join(near.rename({"x": "record_id_r"}), on=["record_id_r", "y"], how="semi")
              .select("record_id_l", "record_id_r").unique().with_columns(pl.lit(1.0).alias("supported")))
    degree = near.group_by("x").len("links")
    own = (pl.col(WEIGHT) >= strong_weight).cast(pl.UInt32)
    others = lambda side: (pl.col(f"links_{side}").fill_null(0) - own) > 0  # noqa: E731
    return (rows.join(closed, on=["record_id_l", "record_id_r"], how="left", maintain_order="left")
            .join(degree.rename({"x": "record_id_l", "links": "links_l"}), on="record_id_l", how="left",
                  maintain_order="left")
            .join(degree.rename({"x": "record_id_r", "links": "links_r"}), on="record_id_r", how="left",
                  maintain_order="left")
            .with_columns(pl.col("supported").fill_null(0.0), (others("l") & others("r")).alias("checkable"))
            .drop("links_l", "links_r"))


#: What is kept of the transitivity check for the next run (:func:`transitive_support`).
SUPPORT_COLUMNS = ("record_id_l", "record_id_r", WEIGHT, "supported", "checkable")


def transitive_support(pairs: pl.DataFrame, strong_weight: float = STRONG_WEIGHT,
                       previous: pl.DataFrame | None = None) -> tuple[pl.DataFrame, int]:
    """:func:`with_transitive_support`, reusing ``previous`` (the ``SUPPORT_COLUMNS`` this function
    returned for an earlier set of pairs, ids ordered): a pair's flags read only the near-certain
    links of its two records, so they are recomputed only for pairs that are new or re-scored and
    pairs with a record whose near-certain links changed; the rest are taken from ``previous``. The
    result is the one computing every pair gives. Returns it and how many pairs were computed."""
    ordered = ordered_ids(pairs)
    edges = _strong_edges(ordered, strong_weight)
    keys = ["record_id_l", "record_id_r"]
    listed_twice = lambda frame: frame.select(pl.struct(keys).is_duplicated().any()).item()  # noqa: E731
    if previous is None or listed_twice(ordered) or listed_twice(previous):
        # first time, or a pair listed twice (its flags would not be one row's): every pair
        return _support_flags(ordered, edges, strong_weight), ordered.height
    # as this function returned them (ids already ordered), weights compared at today's type
    previous = previous.select(SUPPORT_COLUMNS).with_columns(pl.col(WEIGHT).cast(ordered.schema[WEIGHT]))
    # one join brings each pair's last weight and flags (no pair is listed twice on either side)
    rows = (ordered.select(*keys, pl.col(WEIGHT)).with_row_index("_row")
            .join(previous.rename({WEIGHT: "_before"}), on=keys, how="left"))
    strong, was_strong = pl.col(WEIGHT) >= strong_weight, pl.col("_before") >= strong_weight
    # the near-certain links that came or went: a pair's weight crossed the line, or a strong pair
    # of the last assessment is gone
    moved = pl.concat([rows.filter(strong.fill_null(False) != was_strong.fill_null(False)).select(keys),
                       previous.filter(pl.col(WEIGHT) >= strong_weight).select(keys)
                       .join(ordered.select(keys), on=keys, how="anti")])
    touched = pl.concat([moved["record_id_l"], moved["record_id_r"]]).unique().implode()
    same_weight = (pl.col(WEIGHT) == pl.col("_before")) | (pl.col(WEIGHT).is_null() & pl.col("_before").is_null()
                                                          & pl.col("supported").is_not_null())
    keep = same_weight.fill_null(False) & ~pl.col("record_id_l").is_in(touched) & ~pl.col("record_id_r").is_in(touched)
    rows = rows.with_columns(keep.alias("_kept"))
    redo = rows.filter(~pl.col("_kept")).select("_row", *keys, WEIGHT)
    flags = pl.concat([rows.filter(pl.col("_kept")).select("_row", "supported", "checkable"),
                       _support_flags(redo, edges, strong_weight).select("_row", "supported", "checkable")],
                      how="vertical_relaxed").sort("_row")
    return ordered.with_columns(flags.select("supported", "checkable")), redo.height


def with_transitive_support(pairs: pl.DataFrame, strong_weight: float = STRONG_WEIGHT) -> pl.DataFrame:
    """``pairs`` plus ``supported`` (1.0 / 0.0): whether some third record is linked to both of the
    pair's records by near-certain links, and ``checkable`` (bool): whether each of its records has
    a near-certain link to some record other than the other. Same person is transitive, so a
    checkable true match is nearly always supported and a non-match only through a wrong link."""
    return transitive_support(pairs, strong_weight)[0]


@dataclass(frozen=True)
class TransitivityCheck:
    """How often the model's links are closed by a third record, by match weight."""

    surest_support: float | None  # share of the surest links that are supported
    checked_support: float | None  # the same for links of CHECK_WEIGHTS
    checked_links: int
    calibration: Calibration | None  # the curve fitted to the support rates (see transitivity_check)
    # each pair's flags (SUPPORT_COLUMNS), kept for the next run, and how many were computed this time
    support: pl.DataFrame | None = field(default=None, repr=False, compare=False)
    support_computed: int = 0

    @property
    def deficit(self) -> float | None:
        if not self.surest_support or self.checked_support is None:
            return None
        return 1 - self.checked_support / self.surest_support

    @property
    def overconfident(self) -> bool:
        return (self.calibration is not None and self.checked_links >= 200
                and self.deficit is not None and self.deficit > OVERCONFIDENCE_DEFICIT)


def transitivity_check(pairs: pl.DataFrame, previous_support: pl.DataFrame | None = None, *,
                       fit_unless_used: bool = True) -> TransitivityCheck:
    """The model's probabilities checked against its own links, without labels or truth.

    A true match is supported (see :func:`with_transitive_support`) about as often at any weight
    where links are sure; so if links the model calls near-certain are supported clearly less
    often than its surest links, some of them are not matches: the model is overconfident. Then
    P(match | weight) ~ (support rate - floor) / (surest support rate - floor) (floor: the support
    rate of the weakest pairs, which are almost all non-matches), fitted as a logistic curve in the
    weight. That curve is only used where it is lower than the model's (people with few records
    make the support rate understate matches at low weights). Only checkable pairs are counted
    (:func:`with_transitive_support`): a link between records with no other sure link can never
    be closed, and such links are commoner at middle weights (a person with two records, a record
    too poorly recorded to be surely linked), which read as overconfidence (family at 100,000 hard:
    a 7% deficit over all links, 1.8% over checkable ones, where 98.5% of the links are right).
    ``previous_support``: the flags of an earlier check (``TransitivityCheck.support``), reused where
    the pairs around them did not change (:func:`transitive_support`). ``fit_unless_used=False``: the
    curve is fitted only when the check can call the model overconfident (enough checked links, a
    deficit over ``OVERCONFIDENCE_DEFICIT``: what :attr:`TransitivityCheck.overconfident` asks besides
    the curve), the only case where it is used; else ``calibration`` is None and ``overconfident``
    False, as it would be with the curve."""
    flagged, computed = transitive_support(pairs, previous=previous_support)
    # only pairs whose records each have another near-certain link: the rest cannot be supported,
    # and they are not a random sample (a person with two records, a poorly recorded record)
    supported = flagged.filter(pl.col("checkable"))
    rate = lambda frame: float(frame["supported"].mean()) if frame.height else None  # noqa: E731
    surest = rate(supported.filter(pl.col(WEIGHT) >= SUREST_WEIGHT))
    checked = supported.filter(pl.col(WEIGHT).is_between(*CHECK_WEIGHTS, closed="left"))
    floor = rate(supported.filter(pl.col(WEIGHT) <= -6)) or 0.0
    calibration, checked_support = None, rate(checked)
    # the fit is a Newton iteration over every checkable pair: most of the check's time at scale
    unfitted = TransitivityCheck(surest, checked_support, checked.height, None)
    usable = unfitted.checked_links >= 200 and (unfitted.deficit or 0.0) > OVERCONFIDENCE_DEFICIT
    if surest and surest > floor + 0.1 and (fit_unless_used or usable):
        bins = (supported.group_by((pl.col(WEIGHT) * 2).floor().alias("bin"))
                .agg(pl.col(WEIGHT).mean().alias("weight"), pl.col("supported").mean().alias("rate"), pl.len()))
        share = np.clip((bins["rate"].to_numpy() - floor) / (surest - floor), 0, 1)
        weight = np.repeat(bins["weight"].to_numpy(), bins["len"].to_numpy())
        beta = _fit_logistic(weight, np.repeat(share, bins["len"].to_numpy()))
        if beta[1] > 0:
            calibration = Calibration(float(beta[0]), float(beta[1]), None,
                                      (float(weight.min()), float(weight.max())), 0, method="transitivity")
    return TransitivityCheck(surest, checked_support, checked.height, calibration,
                             support=flagged.select(SUPPORT_COLUMNS), support_computed=computed)


# ---------------------------------------------------------------- no labels: the date of birth as a witness

#: The fields whose agreement pattern (each agrees, differs or is missing) groups pairs for the
#: witness; the date of birth is left out of it: it is the witness.
WITNESS_PATTERN_FIELDS = ("forename", "surname", "postcode", "address", "pnc", "cro")
WITNESS_FIELD = "dob"
#: The records' columns the witness reads (besides the record id).
WITNESS_COLUMNS = (WITNESS_FIELD, *WITNESS_PATTERN_FIELDS)
#: A pattern's witness counts only with this many pairs whose dates of birth are both recorded.
WITNESS_MIN_OBSERVED = 30
#: The model's mean probability in a pattern stands when it is this close to the witness's.
WITNESS_TOLERANCE = 0.005


def witness_odds(pairs: pl.DataFrame, records: pl.DataFrame | None, previous: KeptWork | None = None,
                 keep: KeptWork | None = None, facts: pl.DataFrame | None = None,
                 content: pl.DataFrame | None = None) -> pl.DataFrame | None:
    """:func:`witness_factors`' odds per pair (``record_id_l``, ``record_id_r``, ``witness_odds``)."""
    undated = witness_factors(pairs, records, previous, keep, facts, content)
    return None if undated is None else undated.select("record_id_l", "record_id_r", "witness_odds")


def witness_factors(pairs: pl.DataFrame, records: pl.DataFrame | None, previous: KeptWork | None = None,
                    keep: KeptWork | None = None, facts: pl.DataFrame | None = None,
                    content: pl.DataFrame | None = None) -> pl.DataFrame | None:
    """``record_id_l``, ``record_id_r``, ``pattern``, ``witness_odds`` for the scored pairs missing a date
    of birth on either side: the factor their match odds are multiplied by so that, within each agreement
    pattern of the other fields (:data:`WITNESS_PATTERN_FIELDS`: each agrees, differs or is missing),
    their mean probability is what the dates of birth witness.

    The model's weights assume the fields are independent given match status, and they are not:
    a parent and a child, or two siblings, share a surname and an address, and the model adds the
    two up (family at 100,000: 1,500 pairs with different forenames, the same surname and address
    and no date of birth score 0.65 on average, where 7% are one person); a person who moved
    shares nothing but a name with their old record, and the model counts the new address against
    them (civil: 9,900 such pairs with a date missing score 0.30, where 45% are one person). Where
    the date of birth is recorded on both sides it settles the question, so among pairs with the
    same pattern the share whose dates agree (as the guard reads them: a typo is still one person's
    date), over that share among pairs agreeing on every field, witnesses how many are one person,
    a date being missing at random. One factor per pattern keeps the model's order within it (a
    near-miss forename still scores above a different one).

    Pairs with the same forename and surname are all compared (a blocking rule on the names), so
    their witnesses are counted over every such pair of records (:func:`_same_name_witnesses`),
    those whose dates disagree and that scored too low to be stored included: there the dates
    can raise the model's probabilities as well as lower them. Other patterns are counted on the
    stored pairs (``pairs``, with those the guard splits for incompatible dates: they are the
    witness's disagreements), where pairs whose dates disagree scored lower and some were not
    stored, so the share overstates the matches: there it only lowers. None without dates of birth
    or pattern fields. ``previous``: what an earlier assessment kept (the same-name counts of names
    whose records did not change are taken from it); ``keep``: filled with what this one keeps.
    ``facts``, ``content``: :func:`pair_facts` of ``pairs`` (row by row) and the records' content
    (:func:`_record_content`) it read (computed here when not given)."""
    fields = _pattern_fields(records)
    if records is None or WITNESS_FIELD not in records.columns or not fields or pairs.is_empty():
        return None
    rec = _witness_records(records, fields)
    others = records.drop(WITNESS_FIELD)
    content = content if content is not None else _record_content(records)
    facts = facts if facts is not None else pair_facts(pairs, records, content)
    scored = (ordered_ids(pairs.select("record_id_l", "record_id_r", pl.col(PROBABILITY).cast(pl.Float64)))
              .with_columns(facts.select("different_but_dates", "pattern", "witness")))
    # pairs the guard splits for a reason other than their dates (two parties of one case: a parent
    # and a child) are gone whether or not dates are recorded: they witness nothing
    patterns = (scored.unique(["record_id_l", "record_id_r"], maintain_order=True)
                .filter(~pl.col("different_but_dates")).drop("different_but_dates"))
    rates = _witness_rates(patterns).with_columns(pl.lit(False).alias("two_sided"))
    same_name = _same_name_witnesses(rec, others, fields, content, previous, keep)
    if same_name is not None:
        rates = pl.concat([rates.filter(~pl.col("pattern").is_in(same_name["pattern"].implode())),
                           same_name.with_columns(pl.lit(True).alias("two_sided"))])
    alike = rates.filter((pl.col("pattern") == "e" * len(fields)) & (pl.col("observed") >= WITNESS_MIN_OBSERVED))
    same_person_agree = float(alike["agree"][0]) if alike.height and alike["agree"][0] > 0 else 1.0
    targets = rates.filter(pl.col("observed") >= WITNESS_MIN_OBSERVED).select(
        "pattern", "two_sided", (pl.col("agree") / same_person_agree).clip(0.0, 1.0).alias("target"))
    undated = patterns.filter(pl.col("witness") == "n").join(targets, on="pattern")
    if undated.is_empty():
        return None
    index = targets.filter(pl.col("pattern").is_in(undated["pattern"].unique().implode())).with_row_index("group")
    # in one order whatever order the pairs came in (the factors' means are float sums): runs on the
    # same pairs gave factors differing in the last bits
    undated = undated.join(index.select("pattern", "group"), on="pattern").sort("group", PROBABILITY)
    group = undated["group"].to_numpy().astype(np.int64)
    factor = _odds_factors(undated[PROBABILITY].to_numpy(), group, index["target"].to_numpy(),
                           index["two_sided"].to_numpy())
    # with each pair's pattern: one factor per pattern is what a later run can apply (`NoLabelFits`)
    return undated.select("record_id_l", "record_id_r", "pattern").with_columns(pl.Series("witness_odds", factor[group]))


def _pattern_fields(records: pl.DataFrame | None) -> list[str]:
    """The witness's pattern fields ``records`` has."""
    return [c for c in WITNESS_PATTERN_FIELDS if records is not None and c in records.columns]


def _witness_records(records: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """The record id, pattern ``fields`` (as text) and date of birth (as a date) the witness reads."""
    return records.select(pl.col("record_id").cast(pl.String), *[pl.col(c).cast(pl.String) for c in fields],
                          pl.col(WITNESS_FIELD).cast(pl.Date))


#: What each scored pair's facts are (:func:`pair_facts`): whether the guard's rules say its records are
#: two people (``different``: every rule; ``different_but_dates``: the rules other than the dates of
#: birth) and its agreement ``pattern`` and ``witness`` (:func:`_agreement_patterns`; null without
#: dates of birth or pattern fields), by its ids (ordered). Kept for the next assessment with the
#: records' content they were read from (``RECORD_CONTENT``, :func:`_record_content`).
PAIR_FACTS = ("record_id_l", "record_id_r", "different", "different_but_dates", "pattern", "witness")
RECORD_CONTENT = ("record_id", "content")


def _facts_of(rows: pl.DataFrame, records: pl.DataFrame) -> pl.DataFrame:
    """``rows`` (``_row`` and ordered ids) with their facts (``PAIR_FACTS``) read from ``records``."""
    keys = ["record_id_l", "record_id_r"]
    pairs = rows.select(keys)
    others = records.drop(WITNESS_FIELD) if WITNESS_FIELD in records.columns else records
    out = rows.select("_row", *keys).with_columns(different_people(pairs, records).alias("different"),
                                                  different_people(pairs, others).alias("different_but_dates"))
    fields = _pattern_fields(records)
    if not fields or WITNESS_FIELD not in records.columns or out.is_empty():
        return out.with_columns(pl.lit(None, pl.String).alias("pattern"), pl.lit(None, pl.String).alias("witness"))
    patterns = _agreement_patterns(_sides(out.select("_row", *keys), _witness_records(records, fields)), fields)
    return out.join(patterns.select("_row", "pattern", "witness"), on="_row", how="left")


def _join_on_ids(left: pl.DataFrame, right: pl.DataFrame, hashed: pl.Expr | None = None) -> pl.DataFrame:
    """``left.join(right, on=[record_id_l, record_id_r], how="inner")`` (rows in no set order): joined
    on one 64-bit hash of the two ids, then the rows whose ids differ (a collision) dropped, which
    leaves the same rows. Joining on the two text columns was most of the pair facts' time (every
    scored pair against every kept one); a join on one integer column takes about half as long.
    ``hashed``: another hash (a test's, to make every row collide)."""
    keys = ["record_id_l", "record_id_r"]
    if hashed is None:
        hashed = pl.struct(pl.col(k).cast(pl.String) for k in keys).hash(seed=53)
    hashed = hashed.alias("_ids")
    joined = left.with_columns(hashed).join(right.with_columns(hashed), on="_ids", how="inner", suffix="_other")
    same = (pl.col("record_id_l") == pl.col("record_id_l_other")) & (pl.col("record_id_r") == pl.col("record_id_r_other"))
    return joined.filter(same).drop("_ids", "record_id_l_other", "record_id_r_other")


def changed_records(content: pl.DataFrame, previous: KeptWork | None) -> pl.Series | None:
    """The ids of the records that came, went or changed content (:func:`_record_content`) since
    ``previous`` was kept, as one list (for ``is_in``); None when it kept no record content."""
    if previous is None or previous.record_content is None:
        return None
    before = previous.record_content.select(RECORD_CONTENT)
    return pl.concat([content.join(before, on=list(RECORD_CONTENT), how="anti"),
                      before.join(content, on=list(RECORD_CONTENT), how="anti")]
                     ).get_column("record_id").unique().implode()


def pair_facts(pairs: pl.DataFrame, records: pl.DataFrame, content: pl.DataFrame,
               previous: KeptWork | None = None, keep: KeptWork | None = None) -> pl.DataFrame:
    """Per row of ``pairs``, in its order: the pair's ids (ordered) and the facts its two records give
    (``PAIR_FACTS``): read by the guard's filter (:func:`without_different_people`) and the witness
    (:func:`witness_odds`) from ``records``, whose ``content`` (:func:`_record_content`) tells which changed.

    They read only the pair's own two records, so with ``previous`` (what an earlier assessment kept)
    only the pairs that are new, or have a record that came, went or changed content, are computed:
    joining every pair to its two records for each of the guard's rules and the witness's fields was
    most of the no-label assessment's per-pair work, redone over every pair on every run. ``keep``:
    filled with what this one keeps, and ``computed["pair_facts"]``: how many pairs it computed."""
    keys = ["record_id_l", "record_id_r"]
    ordered = ordered_ids(pairs.select(keys)).with_row_index("_row")
    kept = None
    changed = changed_records(content, previous)
    if previous is not None and previous.pair_facts is not None and changed is not None:
        # ``_before``: the kept row's position in ``previous.pair_facts`` (for what is kept aligned with it)
        kept = (_join_on_ids(ordered, previous.pair_facts.select(PAIR_FACTS).with_row_index("_before"))
                .filter(~pl.col("record_id_l").is_in(changed) & ~pl.col("record_id_r").is_in(changed))
                .unique("_row", keep="any")  # a pair listed twice last time: its facts are one pair's
                .select("_row", "_before", *PAIR_FACTS))
    todo = ordered if kept is None else ordered.join(kept.select("_row"), on="_row", how="anti")
    computed = _facts_of(todo, records)
    facts = computed if kept is None else pl.concat([kept.drop("_before"), computed.select(kept.drop("_before").columns)],
                                                    how="vertical_relaxed")
    facts = facts.sort("_row").drop("_row")
    if keep is not None:
        keep.pair_facts, keep.record_content = facts, content.select(RECORD_CONTENT)
        keep.facts_from = None if kept is None else kept.select("_row", "_before")
        keep.computed["pair_facts"] = todo.height
    return facts


def _sides(pairs: pl.DataFrame, rec: pl.DataFrame) -> pl.DataFrame:
    """``pairs`` with each record's fields as ``<field>_l`` / ``<field>_r``."""
    side = lambda s: rec.rename({c: f"{c}_{s}" for c in rec.columns})  # noqa: E731
    return pairs.join(side("l"), on="record_id_l", how="left").join(side("r"), on="record_id_r", how="left")


def _agreement_patterns(sides: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """Per pair: ``pattern`` (per field e = agrees, d = differs, n = missing) and ``witness`` (the
    dates of birth: e = one person's, as the guard reads them; d = not; n = missing)."""
    missing = lambda c: pl.col(f"{c}_l").is_null() | pl.col(f"{c}_r").is_null()  # noqa: E731
    level = lambda c, same: pl.when(missing(c)).then(pl.lit("n")).when(same).then(pl.lit("e")).otherwise(pl.lit("d"))  # noqa: E731
    keep = [c for c in ("_row", "record_id_l", "record_id_r", PROBABILITY) if c in sides.columns]
    return sides.select(*keep, pl.concat_str([level(c, pl.col(f"{c}_l") == pl.col(f"{c}_r")) for c in fields])
                        .alias("pattern"),
                        level(WITNESS_FIELD, dates_compatible(f"{WITNESS_FIELD}_l", f"{WITNESS_FIELD}_r"))
                        .alias("witness"))


def _witness_rates(patterns: pl.DataFrame) -> pl.DataFrame:
    """Per pattern: how many pairs have both dates (``observed``) and the share that agree (each pair
    counting ``weight`` times where the frame has one)."""
    if "weight" not in patterns.columns:
        patterns = patterns.with_columns(pl.lit(1.0).alias("weight"))
    weight = pl.col("weight")
    return (patterns.filter(pl.col("witness") != "n").group_by("pattern")
            .agg(weight.sum().alias("observed"),
                 ((pl.col("witness") == "e").cast(pl.Float64) * weight).sum().alias("agreeing"))
            .select("pattern", "observed", (pl.col("agreeing") / pl.col("observed")).alias("agree")))


#: Records of one name the same-name witness pairs at most (a seeded sample of a commoner name,
#: each of its pairs counting for the pairs left out): pairs grow with the square of a name's records.
SAME_NAME_SAMPLE = 60
#: At most this many same-name pairs in all: a smaller sample per name where there would be more.
SAME_NAME_PAIRS = 1_000_000


#: What is kept of the same-name witness (:func:`_same_name_witnesses`): its records and its counts.
SAME_NAME_RECORDS = ("forename", "surname", "record_id", "content")
SAME_NAME_SUMS = ("forename", "surname", "pattern", "observed", "agreeing", "sample")


def _record_content(records: pl.DataFrame) -> pl.DataFrame:
    """``record_id`` (text) and ``content``: a hash of every column the witness and the guard read, so
    that a record whose content changed is told from one that did not (polars' hash: stable within
    a polars version; after an upgrade every name is counted again)."""
    return records.select(pl.col("record_id").cast(pl.String),
                          pl.struct(records.columns).hash(seed=17).alias("content"))


def _same_name_witnesses(rec: pl.DataFrame, others: pl.DataFrame, fields: list[str],
                         content: pl.DataFrame | None = None, previous: KeptWork | None = None,
                         keep: KeptWork | None = None) -> pl.DataFrame | None:
    """:func:`_witness_rates` over every pair of dated records with the same forename and surname
    (less those the guard splits for other reasons than dates): every one is compared, so this
    counts the pairs whose dates disagree and that scored too low to be stored. A name with more
    than :data:`SAME_NAME_SAMPLE` dated records is sampled, its pairs weighted up.

    A name's pairs are counted per pattern (:func:`_same_name_counts`) and those counts summed over
    names; a name's counts read only its own records, so with ``previous`` (and the same sample size)
    only the names whose records came, went or changed ``content`` are counted again."""
    if not {"forename", "surname"} <= set(fields):
        return None
    names = ["forename", "surname"]
    dated = rec.filter(pl.col("forename").is_not_null() & pl.col("surname").is_not_null()
                       & pl.col(WITNESS_FIELD).is_not_null())
    sizes = dated.group_by(names).len()["len"]
    pairs_at = lambda k: float((sizes.clip(upper_bound=k) * (sizes.clip(upper_bound=k) - 1) / 2).sum())  # noqa: E731
    sample = next((k for k in range(SAME_NAME_SAMPLE, 2, -1) if pairs_at(k) <= SAME_NAME_PAIRS), 2)
    content = content if content is not None else _record_content(rec)
    now = dated.select(*names, "record_id").join(content, on="record_id", how="left")
    sums, todo = None, dated
    if (previous is not None and previous.same_name_sums is not None and previous.same_name_records is not None
            and previous.same_name_sums.height and previous.same_name_sums["sample"][0] == sample):
        before = previous.same_name_records.select(SAME_NAME_RECORDS)
        changed = pl.concat([now.join(before, on=list(SAME_NAME_RECORDS), how="anti", nulls_equal=True),
                             before.join(now, on=list(SAME_NAME_RECORDS), how="anti", nulls_equal=True)]
                            ).select(names).unique()
        sums = previous.same_name_sums.select(SAME_NAME_SUMS).join(changed, on=names, how="anti", nulls_equal=True)
        todo = dated.join(changed, on=names, how="semi", nulls_equal=True)
    counted = _same_name_counts(todo, others, fields, sample)
    sums = counted if sums is None else pl.concat([sums, counted], how="vertical_relaxed")
    if keep is not None:
        keep.same_name_records, keep.same_name_sums = now, sums
        keep.computed["same_name_groups"] = todo.select(names).n_unique()
    if sums.is_empty():
        return None
    # summed in one order whichever names were counted now (the same rates counted afresh or kept)
    return (sums.sort("pattern", *names).group_by("pattern", maintain_order=True)
            .agg(pl.col("observed").sum(), pl.col("agreeing").sum())
            .select("pattern", "observed", (pl.col("agreeing") / pl.col("observed")).alias("agree")))


def _same_name_counts(dated: pl.DataFrame, others: pl.DataFrame, fields: list[str], sample: int) -> pl.DataFrame:
    """Per name and pattern, the same-name pairs of ``dated`` (sampled to ``sample`` records a name,
    weighted up): ``observed`` (pairs with both dates, all of them here) and ``agreeing`` (whose dates
    are one person's), as :func:`_witness_rates` counts them, and the ``sample`` size."""
    names = ["forename", "surname"]
    schema = {"forename": pl.String, "surname": pl.String, "pattern": pl.String, "observed": pl.Float64,
              "agreeing": pl.Float64, "sample": pl.Int64}
    if dated.is_empty():
        return pl.DataFrame(schema=schema)
    dated = (dated.with_columns(pl.len().over(names).alias("_n"),
                                pl.col("record_id").hash(seed=13).rank("ordinal").over(names).alias("_rank"))
             .filter(pl.col("_rank") <= sample)
             .with_columns(pl.col("_n").clip(upper_bound=sample).alias("_k")))
    left = dated.rename({c: f"{c}_l" for c in dated.columns})
    right = dated.drop("_n", "_rank", "_k").rename({c: f"{c}_r" for c in dated.columns if c not in ("_n", "_rank", "_k")})
    pairs = (left.join(right, left_on=["forename_l", "surname_l"], right_on=["forename_r", "surname_r"])
             .filter(pl.col("record_id_l") < pl.col("record_id_r"))
             .with_columns(pl.col("forename_l").alias("forename_r"), pl.col("surname_l").alias("surname_r"),
                           (pl.col("_n_l") * (pl.col("_n_l") - 1) / (pl.col("_k_l") * (pl.col("_k_l") - 1)))
                           .cast(pl.Float64).alias("weight")))
    if pairs.is_empty():
        return pl.DataFrame(schema=schema)
    pairs = pairs.filter(~different_people(pairs.select("record_id_l", "record_id_r"), others))
    patterns = _agreement_patterns(pairs, fields).with_columns(
        pairs["weight"], pairs["forename_l"].alias("forename"), pairs["surname_l"].alias("surname"))
    # a name's pairs all weigh the same: counts times that weight, in any order the same number
    observed = patterns.filter(pl.col("witness") != "n")
    return (observed.group_by(*names, "pattern")
            .agg((pl.len() * pl.col("weight").first()).cast(pl.Float64).alias("observed"),
                 ((pl.col("witness") == "e").sum() * pl.col("weight").first()).cast(pl.Float64).alias("agreeing"))
            .with_columns(pl.lit(sample, dtype=pl.Int64).alias("sample")).select(list(schema)))


def _odds_factors(probability: np.ndarray, group: np.ndarray, target: np.ndarray,
                  can_raise: np.ndarray) -> np.ndarray:
    """Per group, the factor k on the odds p / (1 - p) that brings the group's mean probability to
    ``target``: k <= 1 where the mean is higher, k >= 1 where it is lower and ``can_raise``, else 1
    (bisection on log k)."""
    n = len(target)
    size = np.bincount(group, minlength=n)
    odds = np.clip(probability, 1e-12, 1 - 1e-12) / np.clip(1 - probability, 1e-12, None)

    def mean(log_k: np.ndarray) -> np.ndarray:
        scaled = np.exp(log_k)[group] * odds
        return np.bincount(group, scaled / (1 + scaled), minlength=n) / np.maximum(size, 1)

    low, high = np.full(n, -60.0), np.where(can_raise, 60.0, 0.0)
    for _ in range(80):
        middle = (low + high) / 2
        above = mean(middle) > target
        high, low = np.where(above, middle, high), np.where(above, low, middle)
    unchanged = mean(np.zeros(n))
    # within half a point the model stands (a witness counted over a few dozen pairs is no sharper)
    moves = (unchanged > target + WITNESS_TOLERANCE) | (can_raise & (unchanged < target - WITNESS_TOLERANCE))
    return np.where(moves, np.exp((low + high) / 2), 1.0)


def with_witness(expected: pl.DataFrame, odds: pl.DataFrame | None) -> pl.DataFrame:
    """``expected`` with each pair's ``expected_match`` odds multiplied by its ``witness_odds``."""
    if odds is None or odds.is_empty() or expected.is_empty():
        return expected
    keys = ["record_id_l", "record_id_r"]
    q, k = pl.col(EXPECTED), pl.col("witness_odds").fill_null(1.0)
    lowered = k * q / (k * q + (1 - q))
    return (ordered_ids(expected).join(odds, on=keys, how="left")
            .with_columns(pl.when(q >= 1.0).then(q).otherwise(lowered).alias(EXPECTED)).drop("witness_odds"))


# ---------------------------------------------------------------- no labels: matches through other records

#: Links the closure follows: expected_match >= 0.7 (odds above 2:1). Any floor from 0.6 to 0.8
#: keeps every dataset's estimates within 0.03 of measured at 100,000 people; 0.5 follows enough
#: doubtful family links (relatives) to overstate family's matches, 0.9 too few to see civil's.
CLOSURE_FLOOR = 0.7
#: Links the closure treats as certain: records they join count as one (p >= 0.999, 10 bits).
SURE_LINK = 0.999
#: Rounds of closure: each doubles the longest path followed (two rounds: up to four links).
CLOSURE_ROUNDS = 2


def _record_codes(ordered: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, int]:
    """Each pair's two records as integers 0..n-1 (one per distinct record id, in no particular
    order) and n: the closure's joins on them instead of on the ids' text."""
    ids = pl.concat([ordered["record_id_l"], ordered["record_id_r"]]).cast(pl.String)
    codes = ids.cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    # the categories may be shared with other columns the process cast: made dense
    present = np.zeros(int(codes.max()) + 1 if codes.size else 0, dtype=bool)
    present[codes] = True
    dense = np.cumsum(present) - 1
    codes = dense[codes]
    return codes[:ordered.height], codes[ordered.height:], int(present.sum())


def _path_matches(ordered: pl.DataFrame, floor: float, rounds: int) -> pl.Series:
    """Per row of ``ordered`` (ids ordered), its ``path_match`` (see :func:`transitive_closure`), null
    where no path of links joins its records. The records joined by near-certain links form a group
    (named by a record of it: which one does not change a path's product, each link's probability
    being multiplied in with one other at a time); a record of no followed link is in no group."""
    left, right, n = _record_codes(ordered)
    q = ordered[EXPECTED].cast(pl.Float64).to_numpy()
    followed = q >= floor
    if not followed.any():
        return pl.Series("path_match", [None] * ordered.height, dtype=pl.Float64)
    grouped = np.zeros(n, dtype=bool)
    grouped[left[followed]] = grouped[right[followed]] = True
    sure = followed & (q >= SURE_LINK)
    group = component_minimum(n, left[sure], right[sure])
    a = np.minimum(group[left], group[right])
    b = np.maximum(group[left], group[right])
    link = followed & (a != b)
    between = (pl.DataFrame({"a": a[link], "b": b[link], "path_match": q[link]})
               .group_by("a", "b").agg(pl.col("path_match").max()))
    for _ in range(rounds):
        both = pl.concat([between, between.select(pl.col("b").alias("a"), pl.col("a").alias("b"), "path_match")])
        longer = (both.join(both.rename({"a": "c", "path_match": "second"}), on="b")
                  .filter(pl.col("a") < pl.col("c"))
                  .select("a", pl.col("c").alias("b"),
                          (pl.col("path_match") * pl.col("second")).alias("path_match"))
                  .filter(pl.col("path_match") >= floor ** 4))
        between = pl.concat([between, longer]).group_by("a", "b").agg(pl.col("path_match").max())
    ends = pl.DataFrame({"a": a, "b": b, "both": grouped[left] & grouped[right]})
    path = pl.when(~pl.col("both")).then(None).when(pl.col("a") == pl.col("b")).then(1.0).otherwise(pl.col("path_match"))
    return (ends.join(between, on=["a", "b"], how="left", maintain_order="left")
            .select(path.cast(pl.Float64).alias("path_match")).to_series())


def transitive_closure(expected: pl.DataFrame, floor: float = CLOSURE_FLOOR,
                       rounds: int = CLOSURE_ROUNDS) -> pl.DataFrame:
    """``record_id_l``, ``record_id_r``, ``path_match`` for every scored pair of ``expected`` that a
    path of links with ``expected_match`` >= ``floor`` joins: the product of ``expected_match`` along
    the likeliest such path (the pair's own link is a path of one link).

    Same person is transitive: if every link on a path is a match, so is the pair at its ends. So the
    product is the probability that the path's links are all matches (were their errors
    independent), a lower bound on the pair being a match, whatever its own match weight says. That is
    the evidence a pair's own weight cannot see: a person recorded with a stale surname and an old
    address scores low against their other records one by one (the errors come together, which the
    model's independent comparisons read as strong evidence against), yet each is closed to the
    rest by a third record. Records joined by near-certain links (``SURE_LINK``) count as one
    (a path through them as certain), so that people with many records do not multiply the paths;
    between those groups, paths of up to 2 ** ``rounds`` links, products below ``floor`` ** 4 dropped."""
    ordered = ordered_ids(expected)
    keys = ["record_id_l", "record_id_r"]
    if ordered.is_empty():
        return pl.DataFrame(schema={"record_id_l": pl.String, "record_id_r": pl.String, "path_match": pl.Float64})
    return (ordered.select(keys).with_columns(_path_matches(ordered, floor, rounds))
            .filter(pl.col("path_match").is_not_null()).unique(keys))


def with_indirect_matches(expected: pl.DataFrame, floor: float = CLOSURE_FLOOR) -> pl.DataFrame:
    """``expected`` with each pair's ``expected_match`` raised to its path probability
    (:func:`transitive_closure`) where that is higher: the model's own probabilities only (see
    :func:`assess`). Pairs no path joins keep theirs. Computed row by row on the pairs' records as
    integers (the closure joined on the ids' text, and its result was joined back to every pair)."""
    if expected.is_empty():
        return expected
    ordered = ordered_ids(expected)
    path = _path_matches(ordered, floor, CLOSURE_ROUNDS).fill_null(0.0)
    return ordered.with_columns(pl.max_horizontal(pl.col(EXPECTED), path).alias(EXPECTED))


# ---------------------------------------------------------------- matches blocking never compared

#: The "lists" of capture-recapture: blocking rules grouped by the identifiers they use beyond
#: names (a rule on names alone is in the "names" list). Each list catches matches with its own
#: errors: a typo in a name, a missing date of birth, a move of house.
BLOCKING_LIST_FIELDS = {"dob": ("dob",), "place": ("postcode", "address"), "ids": ("pnc", "cro")}


def prediction_rules(model_settings: dict) -> list[str]:
    """The blocking rules (SQL on ``l.`` / ``r.``) a trained Splink model scored pairs with."""
    return [b["blocking_rule"] if isinstance(b, dict) else str(b)
            for b in model_settings.get("blocking_rules_to_generate_predictions") or ()]


def blocking_list_rules(rules: list[str]) -> dict[str, list[str]]:
    """The prediction rules by list: ``names`` (rules on names alone), then every list of
    :data:`BLOCKING_LIST_FIELDS` that has rules (a rule on two of them counts in each)."""
    names = [r for r in rules if not any(f in r for fields in BLOCKING_LIST_FIELDS.values() for f in fields)]
    lists = {"names": names} | {name: [r for r in rules if any(f in r for f in fields)]
                                for name, fields in BLOCKING_LIST_FIELDS.items()}
    return {name: group for name, group in lists.items() if group}


def blocking_lists_sql(rules: list[str], pairs_table: str = "pairs", records_table: str = "records") -> str | None:
    """SQL giving record_id_l, record_id_r and, per list of :func:`blocking_list_rules`, ``by_<list>``:
    whether a rule of that list would have compared the pair. The lists each catch matches, for
    :func:`missed_by_blocking`. None when the rules form fewer than two lists."""
    lists = blocking_list_rules(rules)
    if len(lists) < 2:
        return None
    either = lambda group: " OR ".join(f"coalesce(({r}), false)" for r in group)  # noqa: E731
    columns = ", ".join(f"({either(group)}) AS by_{name}" for name, group in lists.items())
    return (f"SELECT CAST(p.record_id_l AS VARCHAR) AS record_id_l, CAST(p.record_id_r AS VARCHAR) AS record_id_r, "
            f"{columns} FROM {pairs_table} p "
            f"JOIN {records_table} l ON CAST(l.record_id AS VARCHAR) = CAST(p.record_id_l AS VARCHAR) "
            f"JOIN {records_table} r ON CAST(r.record_id AS VARCHAR) = CAST(p.record_id_r AS VARCHAR)")


def blocking_lists(pairs: pl.DataFrame, records: pl.DataFrame, rules: list[str]) -> pl.DataFrame | None:
    """:func:`blocking_lists_sql` on frames in memory (the rules are Splink's SQL: run as written)."""
    sql = blocking_lists_sql(rules)
    if sql is None or pairs.is_empty():
        return None
    from datafirst_assets.warehouse.connection import scratch_cursor

    with scratch_cursor() as con:
        con.register("pairs", pairs.select("record_id_l", "record_id_r").to_arrow())
        con.register("records", records.to_arrow())
        return pl.from_arrow(con.sql(sql).to_arrow_table())  # type: ignore[return-value]


#: A column a blocking rule reads on either side (``l."dob"``, ``r.surname``).
_RULE_COLUMN = r'\b[lr]\."?([A-Za-z_][A-Za-z0-9_]*)"?'


@dataclass(frozen=True)
class BlockingSource:
    """Where a dataset's capture-recapture lists (:func:`blocking_lists`) come from: the model's
    prediction ``rules`` and ``compute``, the lists of the pairs it is given (record_id_l, record_id_r,
    as stored) or, given None, of every stored pair. :func:`assess` asks it only for the pairs whose
    lists it did not keep (:func:`kept_blocking_lists`)."""

    rules: tuple[str, ...]
    compute: Callable[[pl.DataFrame | None], pl.DataFrame | None] = field(compare=False)

    @property
    def key(self) -> str:
        """What the lists were read with: the rules' SQL (other rules, other lists)."""
        import hashlib

        return hashlib.sha256((blocking_lists_sql(list(self.rules)) or "").encode()).hexdigest()[:16]

    def columns(self) -> set[str]:
        """The record columns the rules read."""
        import re

        return {m for rule in self.rules for m in re.findall(_RULE_COLUMN, rule)}


def kept_blocking_lists(pairs: pl.DataFrame, facts: pl.DataFrame | None, records: pl.DataFrame | None,
                        source: BlockingSource, previous: KeptWork | None,
                        keep: KeptWork | None = None) -> pl.DataFrame | None:
    """The lists of the pairs of ``pairs`` (the scored pairs; ``facts``: their :func:`pair_facts`,
    row for row), those of ``previous`` taken for the pairs whose facts were (``keep.facts_from``:
    pairs it listed whose two records did not come, go or change since), the rest from ``source``.

    A pair's lists read only its own two records (each rule compares the two), so, like its facts,
    they need not be read again where those did not change: reading them was a join of every stored
    pair to its two records in the warehouse on every run, and the whole frame's trip into polars.
    What is kept is aligned with the facts (one row per row of ``pair_facts``, null where a record
    was missing), so taking it is a gather by the rows the facts came from, not a join on the ids.
    Taken only when the record content the facts compared covers every column the rules read
    (``records``' columns) and the rules are those the lists were read with. The rows returned (ids
    ordered; pairs missing a record left out, as the warehouse's join leaves them out) are in no
    particular order (:func:`missed_by_blocking` reads them in one order). ``keep``: filled with what
    this one keeps; ``computed["blocking_pairs"]``: how many pairs were read from ``source``."""
    keys = ["record_id_l", "record_id_r"]
    rules_key = source.key
    from_rows = keep.facts_from if keep is not None else None
    usable = (previous is not None and previous.blocking is not None and previous.pair_facts is not None
              and from_rows is not None and facts is not None and records is not None
              and previous.blocking.height == previous.pair_facts.height
              and previous.blocking_rules == rules_key and source.columns() <= set(records.columns))
    if not usable:
        found = source.compute(None)
        if found is not None and keep is not None and facts is not None:
            # aligned with the facts for the next assessment: the one join of every pair, in a full run
            aligned = (facts.select(keys).with_row_index("_row").join(ordered_ids(found), on=keys, how="left")
                       .unique("_row", keep="any").sort("_row"))
            keep.blocking, keep.blocking_rules = aligned.drop("_row", *keys), rules_key
            keep.computed["blocking_pairs"] = pairs.height
        return found
    names = previous.blocking.columns
    rows, before = from_rows["_row"].to_numpy(), from_rows["_before"].to_numpy()
    todo = np.ones(pairs.height, dtype=bool)
    todo[rows] = False
    todo_rows = np.flatnonzero(todo)
    found = None
    if todo_rows.size:
        found = source.compute(pairs.select(keys)[todo_rows])  # as stored: the rules read l. and r.
        if found is None or set(names) != {c for c in found.columns if c.startswith("by_")}:
            keep.facts_from = None  # other lists than those kept: every pair read again
            return kept_blocking_lists(pairs, facts, records, source, None, keep)
        found = (facts.select(keys)[todo_rows].with_columns(pl.Series("_row", todo_rows))
                 .join(ordered_ids(found), on=keys, how="inner"))
    # one gather from the kept rows, the rows read now and a null row (a pair missing a record)
    pool = pl.concat([previous.blocking.select(names), *([found.select(names)] if found is not None else []),
                      pl.DataFrame([pl.Series(n, [None], dtype=pl.Boolean) for n in names])], how="vertical_relaxed")
    source_row = np.full(pairs.height, pool.height - 1, dtype=np.int64)
    source_row[rows] = before
    if found is not None:
        source_row[found["_row"].to_numpy()] = previous.blocking.height + np.arange(found.height)
    aligned = pool[source_row]
    keep.blocking, keep.blocking_rules = aligned, rules_key
    keep.computed["blocking_pairs"] = int(todo_rows.size)
    return facts.select(keys).hstack(aligned).drop_nulls(names)


def _uncaught_by_lincoln_petersen(counts: dict[tuple[bool, ...], float]) -> float | None:
    """Matches no list caught, from the first list against all the others (independence)."""
    first = sum(n for cell, n in counts.items() if cell[0])
    rest = sum(n for cell, n in counts.items() if any(cell[1:]))
    both = sum(n for cell, n in counts.items() if cell[0] and any(cell[1:]))
    if both < 10:
        return None
    return max(first * rest / both - sum(counts.values()), 0.0)


def _uncaught_by_log_linear(counts: dict[tuple[bool, ...], float], lists: int) -> float | None:
    """Matches no list caught, from a Poisson log-linear model of the caught cells with every list's
    effect and every pairwise dependence between lists (Fienberg's multiple-recapture model): the
    uncaught cell is exp(intercept). Two lists that tend to miss the same matches (both fail on a
    poorly recorded person) are allowed for, which Lincoln-Petersen cannot. None if it cannot fit."""
    cells = [c for c in itertools.product((False, True), repeat=lists) if any(c)]
    observed = np.array([counts.get(c, 0.0) for c in cells])
    if (observed < 5).sum() > 1:
        return None
    pairs_of_lists = list(itertools.combinations(range(lists), 2))
    design = np.array([[1.0, *map(float, c), *(float(c[i] and c[j]) for i, j in pairs_of_lists)] for c in cells])
    beta = np.zeros(design.shape[1])
    beta[0] = np.log(max(observed.mean(), 1.0))
    for _ in range(100):
        mean = np.exp(np.clip(design @ beta, -50, 50))
        step = np.linalg.lstsq(design.T @ (design * mean[:, None]), design.T @ (observed - mean), rcond=None)[0]
        beta += step
        if np.abs(step).max() < 1e-9:
            return float(np.exp(beta[0])) if np.isfinite(beta).all() else None
    return None


def missed_by_blocking(expected: pl.DataFrame, lists: pl.DataFrame | None) -> float | None:
    """The share of true matches no blocking rule compared, by capture-recapture: each list of rules
    (:func:`blocking_lists`) catches some matches, counted as expected matches (``expected_match``)
    among the scored pairs, and how the lists overlap tells how many no list caught. Three or more
    lists: a log-linear model allowing pairwise dependence; two: Lincoln-Petersen, n1 n2 / n12. The
    model's own estimate of what blocking missed: no labels or truth read."""
    if lists is None:
        return None
    names = [c for c in lists.columns if c.startswith("by_")]
    q = ordered_ids(expected).select("record_id_l", "record_id_r", pl.col(EXPECTED)).join(
        ordered_ids(lists), on=["record_id_l", "record_id_r"], how="inner")
    # each cell's sum in one order, and the cells in one order, whatever order the pairs came in: the
    # estimate varied in the last bits between runs on the same pairs
    cells = q.group_by(names).agg(pl.col(EXPECTED).sort().sum()).sort(names)
    counts = {tuple(bool(x) for x in row[:-1]): float(row[-1] or 0.0) for row in cells.rows() if any(row[:-1])}
    caught = sum(counts.values())
    if caught <= 0:
        return None
    uncaught = _uncaught_by_log_linear(counts, len(names)) if len(names) >= 3 else None
    if uncaught is None:
        uncaught = _uncaught_by_lincoln_petersen(counts)
    if uncaught is None:
        return None
    return float(min(max(uncaught / (caught + uncaught), 0.0), 0.5))


# ---------------------------------------------------------------- expected accuracy


def expected_accuracy_curve(pairs: pl.DataFrame, missed: float | None = None) -> pl.DataFrame:
    """Estimated precision / recall / F1 of calling ``match_probability >= threshold`` a link, for
    every distinct probability, from each pair's ``expected_match`` (else its match_probability).
    ``missed``: the share of matches blocking never compared (:func:`missed_by_blocking`)."""
    q = pl.col(EXPECTED) if EXPECTED in pairs.columns else pl.col(PROBABILITY)
    # One running sum over the pairs in an order their values fix: a grouped or whole-column float sum
    # in polars depends on how the frame is chunked (its threads' partial sums), so the same pairs read
    # in other batches gave estimates that differed in the last bit from run to run.
    running = (pairs.select(PROBABILITY, q.fill_null(0.0).alias("_q")).sort([PROBABILITY, "_q"], descending=[True, False])
               .rechunk().with_columns(pl.col("_q").cum_sum().alias("expected_true_links"),
                                       pl.int_range(1, pl.len() + 1, dtype=pl.UInt32).alias("links")))
    curve = running.unique(subset=PROBABILITY, keep="last", maintain_order=True)
    expected_matches = float(running["expected_true_links"][-1] or 0.0) if pairs.height else 0.0
    expected_matches /= 1 - (missed or 0.0)
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


#: Candidate thresholds: match weights -4, -3.5, ..., 16 bits (probabilities 0.06 to 0.99998). Below
#: 0 bits because a link can be right more often than the model's weight says: a person's other
#: records close it (civil's best threshold with labels is -1 bit, p = 0.33).
CANDIDATE_WEIGHTS = tuple(w / 2 for w in range(-8, 33))


def candidate_thresholds() -> list[float]:
    return [1 / (1 + 2.0 ** -w) for w in CANDIDATE_WEIGHTS]


def components_at(n_records: int, left: np.ndarray, right: np.ndarray, probability: np.ndarray,
                   thresholds: list[float]) -> dict[float, np.ndarray]:
    """Each record's cluster root (its cluster's smallest position) when pairs with probability
    >= t are linked, for every t: clusters only grow as t falls, so each threshold joins only the
    pairs it adds (:func:`disjoint_sets.roots_at_thresholds`, whole-array steps)."""
    return roots_at_thresholds(n_records, left, right, probability, thresholds)


def expected_bcubed_curve(pairs: pl.DataFrame, record_ids: pl.Series,
                          thresholds: list[float] | None = None,
                          records: pl.DataFrame | None = None, previous: KeptWork | None = None,
                          keep: KeptWork | None = None) -> pl.DataFrame:
    """Expected B-cubed precision / recall / F1 of the clusters at each candidate threshold.

    Per record r in predicted cluster P(r): the expected number of records truly with it in P(r)
    is 1 + the sum of ``expected_match`` over its scored pairs inside P(r) (records linked only
    through others and never scored together count as different people: clusters that chain are
    penalised, which pair-level F1 cannot see); the expected size of its true cluster is 1 + the
    sum over all its scored pairs. Precision and recall are the means of the per-record ratios.
    Matches blocking never compared are left out on purpose: most of them join their person's
    cluster through other links anyway (which the pair-level recall cannot see, so it counts them).
    ``records``: the clusters are those the over-merge guard leaves (:func:`guard.guarded_components_at`),
    as published: the guard splits clusters carrying different people, which rescues the precision of
    lower thresholds (family at 100,000 hard: measured B-cubed F1 0.9722 at 0.8 after the guard, 0.9684
    at 0.92; without the guard 0.9540 and 0.9561). ``previous`` / ``keep``: what the last assessment kept
    of the guard's pass and what this one keeps (:func:`guard.guarded_roots_keeping`: only the clusters
    whose links or records changed go through it again; the same clusters)."""
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
    if records is not None:
        guarded = guarded_roots_keeping(ids, left, right, probability, thresholds, records,
                                        previous.guard_joins if previous is not None else None)
        components = guarded.roots
        if keep is not None:
            keep.guard_joins, keep.computed["guard_links"] = guarded.joins, guarded.computed
    else:
        components = components_at(n, left, right, probability, thresholds)
    return pl.DataFrame(bcubed_sweep(left, right, q, n, components),
                        schema={"threshold": pl.Float64, "bcubed_precision": pl.Float64,
                                "bcubed_recall": pl.Float64, "bcubed_f1": pl.Float64})


def _pairs_of(records: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The positions of the pairs of ``records`` on one side: ``order`` lists the pairs by that side's
    record (a stable sort: each record's pairs in pair order), ``starts[r]`` where record r's begin."""
    low, high = starts[records], starts[records + 1]
    counts = high - low
    total = int(counts.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    return order[np.repeat(low - (np.cumsum(counts) - counts), counts) + np.arange(total)]


def bcubed_sweep(left: np.ndarray, right: np.ndarray, q: np.ndarray, n: int,
                 components: dict[float, np.ndarray]) -> list[dict]:
    """:func:`expected_bcubed_curve`'s rows (ascending threshold) from each pair's records (positions
    0..n-1), ``q`` (its expected match) and each record's cluster root at every threshold.

    Per record, ``together`` (1 + the q of its pairs inside its cluster) and its cluster's size
    change only where its cluster changed. Clusters only grow as the threshold falls (a root is its
    cluster's smallest position), so from one threshold to the next lower one the records to
    compute again are those of the clusters that took in another: computing every record's sums at
    each of the 42 thresholds was the largest part of the quality step at 300,000 people (~5 of its
    16 CPU seconds, every dataset's pairs gathered and binned 42 times). Each record's sums are
    computed as the whole-array version computes them (its pairs' values added in pair order, from
    0), and the means are taken over every record's ratio as before, so the figures are the same
    to the last bit."""
    true_size = 1 + np.bincount(left, q, n) + np.bincount(right, q, n)
    by_left, by_right = np.argsort(left, kind="stable"), np.argsort(right, kind="stable")
    left_starts = np.concatenate([[0], np.cumsum(np.bincount(left, minlength=n))])
    right_starts = np.concatenate([[0], np.cumsum(np.bincount(right, minlength=n))])
    rows, before, precision_ratio, recall_ratio = [], None, None, None
    for t in sorted(components, reverse=True):
        root = components[t]
        if before is None:  # the highest threshold: every record
            inside = q * (root[left] == root[right])
            together = 1 + np.bincount(left, inside, n) + np.bincount(right, inside, n)
            size = np.bincount(root, minlength=n)[root]
            precision_ratio, recall_ratio = together / size, together / true_size
        elif root is not before:
            # a merged cluster's root is the smallest of those it joined: some of its records moved
            merged = np.zeros(n, dtype=bool)
            merged[root[root != before]] = True
            changed = np.flatnonzero(merged[root])
            if changed.size:
                local = np.full(n, -1, dtype=np.int64)
                local[changed] = np.arange(changed.size)
                sums = []
                for side, order, starts in ((left, by_left, left_starts), (right, by_right, right_starts)):
                    at = _pairs_of(changed, order, starts)
                    inside = q[at] * (root[left[at]] == root[right[at]])
                    sums.append(np.bincount(local[side[at]], inside, changed.size))
                together = 1 + sums[0] + sums[1]
                _, which, counts = np.unique(root[changed], return_inverse=True, return_counts=True)
                precision_ratio[changed] = together / counts[which.reshape(-1)]
                recall_ratio[changed] = together / true_size[changed]
        before = root
        precision, recall = float(np.mean(precision_ratio)), float(np.mean(recall_ratio))
        rows.append({"threshold": t, "bcubed_precision": precision, "bcubed_recall": recall,
                     "bcubed_f1": 2 * precision * recall / (precision + recall)})
    return rows[::-1]


# ---------------------------------------------------------------- the choice


def without_different_people(pairs: pl.DataFrame, records: pl.DataFrame | None) -> pl.DataFrame:
    """``pairs`` less those the over-merge guard's rules say are two people (``guard.different_people``:
    two parties of one case, dates of birth that cannot be one person's, a company and a person).
    The guard splits them whatever the threshold, so they are known non-matches: left in, they
    count against every threshold that links them (family's parties of one case are relatives,
    scored up to 20 bits), and the transitivity check reads them as the model's overconfidence."""
    if records is None or pairs.is_empty():
        return pairs
    return pairs.filter(~different_people(pairs, records))


#: Resamples of the clerical labels behind the estimates' 90% intervals.
BOOTSTRAP_RESAMPLES = 40


@dataclass(frozen=True)
class LabelEvidence:
    """What a labels file gives: the calibration fitted to it (None if the labels cannot fit one),
    how many reviewed labels it held, the reviewed scored pairs with their labels, and the
    calibrations of bootstrap resamples (how much the estimates could move with another sample)."""

    calibration: Calibration | None = None
    labels: int = 0
    labelled: pl.DataFrame | None = None
    resampled: tuple[Calibration, ...] = ()


def read_label_evidence(pairs: pl.DataFrame, labels_file: Path | None,
                     resamples: int = BOOTSTRAP_RESAMPLES) -> LabelEvidence:
    """The labels file's evidence on ``pairs`` (empty without a labels file)."""
    if labels_file is None or not Path(labels_file).exists():
        return LabelEvidence()
    labels = read_labels(labels_file)
    labelled = labelled_scored_pairs(pairs, labels)
    calibration = calibrate(labelled)
    if calibration is None:
        return LabelEvidence(None, labels.height, labelled)
    rng = np.random.default_rng(0)
    samples = np.array([rng.integers(0, labelled.height, labelled.height) for _ in range(resamples)],
                       dtype=np.int64).reshape(resamples, labelled.height)
    refits = resampled_calibrations(labelled, samples)  # every resample at once
    return LabelEvidence(calibration, labels.height, labelled, tuple(fit for fit in refits if fit is not None))


def pair_level_interval(pairs: pl.DataFrame, calibrations: tuple[Calibration, ...], threshold: float,
                        missed: float | None, level: float = 0.9) -> dict:
    """The ``level`` interval of the estimated pair-level precision and recall at ``threshold``
    over resampled calibrations (empty without them)."""
    if len(calibrations) < 10 or pairs.is_empty():
        return {}
    weight, probability = pl.col(WEIGHT).cast(pl.Float64), pl.col(PROBABILITY).cast(pl.Float64)
    linked = probability >= threshold
    sums = pairs.select(*[pl.struct(c.expected(weight, probability).filter(linked).sum().alias("tp"),
                                    c.expected(weight, probability).sum().alias("all")).alias(f"c{i}")
                          for i, c in enumerate(calibrations)]).row(0)
    links = pairs.select(linked.sum()).item()
    precision = [s["tp"] / links for s in sums] if links else []
    recall = [s["tp"] * (1 - (missed or 0.0)) / s["all"] for s in sums if s["all"]]
    tail = (1 - level) / 2
    band = lambda xs: (float(np.quantile(xs, tail)), float(np.quantile(xs, 1 - tail))) if xs else (None, None)  # noqa: E731
    (p_low, p_high), (r_low, r_high) = band(precision), band(recall)
    return {"pairwise_precision_low": p_low, "pairwise_precision_high": p_high,
            "pairwise_recall_low": r_low, "pairwise_recall_high": r_high}


#: Stored no-label fits are reused while the pairs new, re-read or gone since they were fitted
#: (summed over the runs that reused them) stay under this share of the pairs they were fitted on.
FITS_REUSE_SHARE = 0.05


@dataclass(frozen=True)
class NoLabelFits:
    """The fits over a whole dataset's pairs behind its no-label estimates: the transitivity check
    (its support rates, and the curve that replaces the model's probabilities when it calls them
    overconfident) and the date-of-birth witness's odds factor per agreement pattern (:func:`witness_factors`).

    Without clerical labels every pair's expected match depends on them, and refitting them on every
    run (the transitivity flags joined over every pair, the witness's rates over every pair and every
    same-name group) was about half the CPU of assessing the changed datasets in a 1% incremental run
    at 300,000 people (five datasets: 9.6 CPU s refitting, 5.1 applying stored fits, measured outside
    Dagster), where applying the full run's fits instead moved no estimate by more than 3e-4 (family's
    pair-level recall; B-cubed F1 by 8e-6 at most). So, like the Splink model, a full run fits them and
    incremental runs reuse them (:func:`assess`, ``fits``) while the model version and the fitting code
    are those they were fitted with and the pairs changed since stay under ``FITS_REUSE_SHARE``; the
    weekly full rebuild and a larger change refit. ``run``: the run that fitted them (the report says
    so); ``pairs``: how many scored pairs they were fitted on; ``changed``: pairs new, re-read or gone since."""

    run: str
    model_version: str
    code: str
    pairs: int
    changed: int = 0
    surest_support: float | None = None
    checked_support: float | None = None
    checked_links: int = 0
    curve: Calibration | None = None  # the transitivity curve (used only when `check` says overconfident)
    witness: tuple[tuple[str, float], ...] | None = None  # (pattern, odds factor), None: no witness

    def check(self) -> TransitivityCheck:
        """The transitivity check as fitted (its flags are not kept here)."""
        return TransitivityCheck(self.surest_support, self.checked_support, self.checked_links, self.curve)

    def odds(self, facts: pl.DataFrame) -> pl.DataFrame | None:
        """:func:`witness_odds` of today's pairs from the stored factors: the pairs missing a date of
        birth (``facts``: :func:`pair_facts` of the scored pairs) whose pattern had a factor, as
        :func:`witness_factors` picks them (pairs the guard splits for other reasons than dates left out)."""
        if self.witness is None:
            return None
        keys = ["record_id_l", "record_id_r"]
        table = pl.DataFrame(list(self.witness), schema={"pattern": pl.String, "witness_odds": pl.Float64},
                             orient="row")
        return (facts.filter((pl.col("witness") == "n") & ~pl.col("different_but_dates"))
                .unique(keys, maintain_order=True).join(table, on="pattern").select(*keys, "witness_odds"))

    def to_json(self) -> dict:
        curve = self.curve
        return {**{k: getattr(self, k) for k in ("run", "model_version", "code", "pairs", "changed",
                                                 "surest_support", "checked_support", "checked_links")},
                "curve": None if curve is None else [curve.intercept, curve.slope, list(curve.weight_range)],
                "witness": None if self.witness is None else [list(w) for w in self.witness]}

    @classmethod
    def from_json(cls, data: dict) -> NoLabelFits:
        curve = data.get("curve")
        return cls(**{k: data[k] for k in ("run", "model_version", "code", "pairs", "changed", "surest_support",
                                           "checked_support", "checked_links")},
                   curve=None if curve is None else Calibration(curve[0], curve[1], None, tuple(curve[2]), 0,
                                                                method="transitivity"),
                   witness=None if data.get("witness") is None else tuple((p, f) for p, f in data["witness"]))


def _pairs_changed(previous: KeptWork | None, kept: KeptWork, scored: int) -> int | None:
    """Scored pairs new or re-read (a record of theirs changed) since ``previous``, from :func:`pair_facts`'
    count of what it computed, plus how many fewer pairs there are (pairs gone: a pair gone and another
    new count once). None when nothing was kept to compare with."""
    if previous is None or previous.pair_facts is None or "pair_facts" not in kept.computed:
        return None
    return kept.computed["pair_facts"] + max(previous.pair_facts.height - scored, 0)


def _no_label_fits(pairs: pl.DataFrame, scored: pl.DataFrame, records: pl.DataFrame | None,
                   previous: KeptWork | None, kept: KeptWork, facts: pl.DataFrame | None,
                   content: pl.DataFrame | None, stored: NoLabelFits | None,
                   fit_as: tuple[str, str, str]) -> tuple[NoLabelFits, pl.DataFrame | None]:
    """The no-label fits for ``pairs`` (the guard's known non-matches left out of ``scored``) and each
    undated pair's witness odds: ``stored`` when the change since it was fitted is small enough
    (see :class:`NoLabelFits`), else fitted again, stamped ``fit_as`` (run, model version, code)."""
    changed = _pairs_changed(previous, kept, scored.height)
    if (stored is not None and facts is not None and changed is not None
            and stored.changed + changed <= FITS_REUSE_SHARE * stored.pairs):
        # what the fits read is left as it was kept: the next refit compares with it pair by pair
        kept.support = previous.support
        kept.same_name_records, kept.same_name_sums = previous.same_name_records, previous.same_name_sums
        kept.computed["fits_reused_from"] = stored.run
        return replace(stored, changed=stored.changed + changed), stored.odds(facts)
    check = (transitivity_check(pairs, previous.support if previous is not None else None, fit_unless_used=False)
             if pairs.height else None)
    if check is not None:
        kept.support, kept.computed["support_pairs"] = check.support, check.support_computed
    # the witness first, so that the closure does not follow links it shows to be relatives; it
    # reads the guard's pairs too (`scored`): their dates are its disagreements
    undated = witness_factors(scored, records, previous, kept, facts=facts, content=content)
    witness = None if undated is None else tuple(
        undated.select("pattern", "witness_odds").unique("pattern").sort("pattern").iter_rows())
    run, model_version, code = fit_as
    fits = NoLabelFits(run, model_version, code, scored.height, 0,
                       *((check.surest_support, check.checked_support, check.checked_links, check.calibration)
                         if check is not None else (None, None, 0, None)), witness=witness)
    return fits, None if undated is None else undated.select("record_id_l", "record_id_r", "witness_odds")


@dataclass(frozen=True)
class Assessment:
    """Expected accuracy at every candidate threshold, from labels-recalibrated or model probabilities."""

    clusters: pl.DataFrame  # threshold, expected bcubed_precision / recall / f1
    pairs: pl.DataFrame  # expected pair-level curve (see expected_accuracy_curve)
    calibration: Calibration | None
    labels: int  # reviewed labels in the labels file
    transitivity: TransitivityCheck | None = None  # the no-label check of the model's probabilities
    missed: float | None = None  # estimated share of matches blocking never compared
    scored: pl.DataFrame | None = None  # the scored pairs (for the intervals)
    resampled: tuple[Calibration, ...] = ()  # calibrations of resampled labels (for the intervals)
    labelled: pl.DataFrame | None = None  # the reviewed scored pairs (match_weight, clerical_match_score)
    kept: KeptWork = field(default_factory=KeptWork, repr=False, compare=False)  # for the next assessment
    fits: NoLabelFits | None = field(default=None, repr=False, compare=False)  # the no-label fits it used

    def label_agreement(self, threshold: float) -> float | None:
        """Share of reviewed pairs whose label agrees with the model's call at ``threshold``: the
        evidence left when labels cannot calibrate because they are (nearly) all one answer."""
        if self.labelled is None or self.labelled.height == 0:
            return None
        linked = pl.col(WEIGHT) >= match_probability_to_weight(threshold)
        agree = pl.when(linked).then(pl.col(LABEL)).otherwise(1 - pl.col(LABEL))
        return float(self.labelled.select(agree.clip(0, 1).mean()).item())

    @property
    def source(self) -> str:
        labelled = self.calibration is not None and self.calibration.method == "clerical_labels"
        return "clerical_labels" if labelled else "model_estimate"

    @property
    def recalibration(self) -> str | None:
        """What recalibrated the model's probabilities: clerical_labels, transitivity, or nothing."""
        return self.calibration.method if self.calibration is not None else None

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
            "recalibration": self.recalibration,
            "transitivity_deficit": self.transitivity.deficit if self.transitivity else None,
            "missed_by_blocking": self.missed,
            **(pair_level_interval(self.scored, self.resampled, threshold, self.missed)
               if self.scored is not None else {}),
        }


def assess(pairs: pl.DataFrame, *, labels_file: Path | None, record_ids: pl.Series | None = None,
           also: tuple[float, ...] = (), blocking: pl.DataFrame | BlockingSource | None = None,
           intervals: bool = True, records: pl.DataFrame | None = None,
           previous: KeptWork | None = None, fits: NoLabelFits | None = None,
           fit_as: tuple[str, str, str] = ("", "", "")) -> Assessment:
    """Expected accuracy at the candidate thresholds (and at ``also``). ``record_ids``: every
    record clustered (singletons count in B-cubed); default the records in ``pairs``. ``blocking``:
    which rules compared each pair (:func:`blocking_lists`), to estimate the matches never compared, or
    a :class:`BlockingSource` to read them from (only for the pairs ``previous`` did not list).
    ``intervals``: also resample the labels for the estimates' 90% intervals (they do not move
    the best threshold). ``records``: the records linked; pairs the over-merge guard's rules say
    are different people (:func:`without_different_people`) are left out. ``previous``: what the last
    assessment of the same dataset kept (``Assessment.kept``), reused where nothing under it changed.
    ``fits``: the no-label fits of an earlier assessment with this model and fitting code, applied
    instead of fitting again while the pairs changed since are few (:class:`NoLabelFits`); new ones
    are stamped ``fit_as`` (run, model version, fitting code). ``Assessment.fits``: those used."""
    if record_ids is None:
        record_ids = pl.concat([pairs["record_id_l"].cast(pl.String), pairs["record_id_r"].cast(pl.String)])
    kept = KeptWork()
    # each pair's facts from its own two records, kept from the last assessment where they did not change
    content = _record_content(records) if records is not None and pairs.height else None
    facts = pair_facts(pairs, records, content, previous, kept) if content is not None else None
    scored = pairs
    if isinstance(blocking, BlockingSource):
        # each pair's lists from its own two records: kept where they did not change, as its facts are
        blocking = kept_blocking_lists(scored, facts, records, blocking, previous, kept) if scored.height else None
    pairs = pairs.filter(~facts["different"]) if facts is not None else without_different_people(pairs, records)
    evidence = (read_label_evidence(pairs, labels_file, resamples=BOOTSTRAP_RESAMPLES if intervals else 0)
                if pairs.height else LabelEvidence())
    calibration, check, used = evidence.calibration, None, None
    if calibration is None:
        # without labels, the model's probabilities (after any transitivity recalibration) are raised
        # by the paths through other records; labels are not: they measured P(match | weight) over all
        # pairs, the ones such paths close included, and raising those would count them twice
        used, odds = _no_label_fits(pairs, scored, records, previous, kept, facts, content, fits, fit_as)
        check = used.check() if pairs.height else None
        if check is not None and check.overconfident:
            calibration = check.calibration
        expected = with_indirect_matches(with_witness(with_expected_matches(pairs, calibration), odds))
    else:
        expected = with_expected_matches(pairs, calibration)
    missed = missed_by_blocking(expected, blocking) if pairs.height else None
    candidates = sorted(set(candidate_thresholds()) | set(also)) if pairs.height else []
    return Assessment(expected_bcubed_curve(expected, record_ids, candidates, records, previous, kept),
                      expected_accuracy_curve(expected, missed), calibration, evidence.labels, check, missed,
                      pairs.select(WEIGHT, PROBABILITY), evidence.resampled,
                      evidence.labelled if evidence.calibration is None else None, kept, used)


def choose_cluster_threshold(
    pairs: pl.DataFrame,
    *,
    configured: float | None,
    labels_file: Path | None,
    record_ids: pl.Series | None = None,
    blocking: pl.DataFrame | None = None,
    intervals: bool = True,
    records: pl.DataFrame | None = None,
) -> ThresholdChoice:
    """`pairs`: scored pairs (record_id_l, record_id_r, match_weight, match_probability).
    A configured threshold wins; otherwise the candidate with the highest expected B-cubed F1
    under the labels-recalibrated probabilities, or the model's own without labels.
    ``intervals=False``: the estimate at the threshold without its 90% intervals (see `assess`)."""
    assessment = assess(pairs, labels_file=labels_file, record_ids=record_ids,
                        also=(configured,) if configured is not None else (), blocking=blocking,
                        intervals=intervals, records=records)
    threshold = configured if configured is not None else assessment.best_threshold()
    source = "configured" if configured is not None else assessment.source
    return ThresholdChoice(threshold, source, assessment.estimate_at(threshold), assessment.calibration)


def threshold_chooser(record_ids: pl.Series, *, configured: float | None = None,
                      labels_file: Path | None = None,
                      records: pl.DataFrame | None = None) -> Callable[[pl.DataFrame], tuple[float, str]]:
    """What a full link (``incremental.link_full(choose=...)``) asks once the pairs are scored:
    the clustering threshold chosen on them, and where it came from (the estimates' intervals are
    the quality asset's: not computed here). ``records``: see :func:`assess`."""
    def choose(pairs: pl.DataFrame) -> tuple[float, str]:
        choice = choose_cluster_threshold(pairs, configured=configured, labels_file=labels_file,
                                          record_ids=record_ids, intervals=False, records=records)
        return choice.match_probability, choice.source

    return choose
