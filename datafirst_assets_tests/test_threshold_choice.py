"""Where the clustering threshold comes from (configured, clerical labels, the model's estimate),
and the estimates behind it; none of it reads truth."""

import math
from datetime import date

import numpy as np
import polars as pl
import pytest

from datafirst_assets.evaluation.reviewer import merge_labels, simulated_labels
from datafirst_assets.linkage.metrics import review_queue
from datafirst_assets.linkage.threshold import (
    EXPECTED,
    assess,
    blocking_lists,
    calibrate,
    choose_cluster_threshold,
    estimate_at,
    expected_accuracy_curve,
    expected_bcubed_curve,
    labelled_scored_pairs,
    missed_by_blocking,
    transitive_closure,
    transitivity_check,
    with_expected_matches,
    witness_odds,
)
from datafirst_assets.linkage.guard import different_people

# Two people who each appear twice (1-2, 3-4: near-certain pairs) and a doubtful pair (2-3) that
# would chain them into one cluster.
CHAIN = pl.DataFrame({
    "record_id_l": ["1", "3", "2"],
    "record_id_r": ["2", "4", "3"],
    "match_weight": [10.0, 10.0, 0.6],
    "match_probability": [0.999, 0.999, 0.6],
})


def _weights_and_truth(n: int = 4000, seed: int = 0) -> pl.DataFrame:
    """Scored pairs whose true match rate is sigmoid(0.5 w - 1), not the model's sigmoid(w ln 2)."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(-8, 16, n)
    same = rng.random(n) < 1 / (1 + np.exp(-(0.5 * w - 1)))
    ids = np.arange(2 * n).astype(str)
    return pl.DataFrame({"record_id_l": ids[:n], "record_id_r": ids[n:], "match_weight": w,
                         "match_probability": 1 / (1 + 2.0 ** -w), "same": same})


def test_configured_threshold_wins_and_is_still_estimated(tmp_path):
    choice = choose_cluster_threshold(CHAIN, configured=0.5, labels_file=tmp_path / "none.csv")
    assert (choice.match_probability, choice.source) == (0.5, "configured")
    # at 0.5 everything chains into one cluster of 4: expected B-cubed precision is well below 1
    assert choice.estimate["bcubed_precision"] < 0.7


def test_the_model_estimate_refuses_a_link_that_chains_two_people():
    choice = choose_cluster_threshold(CHAIN, configured=None, labels_file=None)
    assert choice.source == "model_estimate"
    assert 0.6 < choice.match_probability <= 0.999


def test_expected_bcubed_by_hand():
    pairs = CHAIN.with_columns(pl.col("match_probability").alias(EXPECTED))
    curve = expected_bcubed_curve(pairs, pl.Series(["1", "2", "3", "4"]), [0.5, 0.99])
    low, high = curve.row(0, named=True), curve.row(1, named=True)
    # at 0.99: {1,2}, {3,4}; each record expects 1.999 together of size 2, and a true cluster of
    # 1.999 (records 1, 4) or 2.599 (records 2, 3)
    assert high["bcubed_precision"] == pytest.approx(1.999 / 2)
    assert high["bcubed_recall"] == pytest.approx((2 * 1 + 2 * 1.999 / 2.599) / 4)
    # at 0.5: one cluster of 4
    assert low["bcubed_precision"] == pytest.approx((1.999 + 2.599 + 2.599 + 1.999) / 4 / 4)
    assert low["bcubed_recall"] == pytest.approx(1.0)


def test_pair_level_expected_accuracy():
    pairs = CHAIN.with_columns(pl.col("match_probability").alias(EXPECTED))
    at_high = expected_accuracy_curve(pairs).filter(pl.col("threshold") == 0.999).row(0, named=True)
    assert at_high["precision"] == pytest.approx(0.999)
    assert at_high["recall"] == pytest.approx(2 * 0.999 / 2.598)


def test_the_expected_accuracy_curve_does_not_depend_on_how_the_pairs_are_chunked_or_ordered():
    """The same pairs read in other batches or another order give the same estimates to the bit
    (polars' grouped float sums did not: the last bit of recall moved between runs)."""
    rng = np.random.default_rng(1)
    n = 300_000
    pairs = pl.DataFrame({"match_probability": np.round(rng.random(n), 2), EXPECTED: rng.random(n)})
    curve = expected_accuracy_curve(pairs, 0.05)
    for parts in (2, 3, 5, 7, 13, 29, 50, 101):  # the old sums differed for about one split in three
        size = n // parts
        chunked = pl.concat([pairs.slice(i * size, size if i < parts - 1 else n) for i in range(parts)], rechunk=False)
        assert chunked.n_chunks() == parts
        assert expected_accuracy_curve(chunked, 0.05).equals(curve), parts
    for seed in range(8):
        assert expected_accuracy_curve(pairs.sample(fraction=1.0, shuffle=True, seed=seed), 0.05).equals(curve), seed


def test_calibration_recovers_the_true_curve_and_the_share_of_wrong_labels():
    pairs = _weights_and_truth()
    rng = np.random.default_rng(1)
    wrong = rng.random(pairs.height) < 0.05
    labelled = pairs.with_columns(pl.Series("clerical_match_score", (pairs["same"].to_numpy() ^ wrong).astype(float)))
    fit = calibrate(labelled)
    assert fit is not None
    assert fit.slope == pytest.approx(0.5, abs=0.08)
    assert fit.intercept == pytest.approx(-1.0, abs=0.3)
    assert fit.label_error_rate == pytest.approx(0.05, abs=0.02)


def test_too_few_or_one_sided_labels_do_not_calibrate():
    pairs = _weights_and_truth(200)
    assert calibrate(pairs.head(10).with_columns(pl.col("same").cast(float).alias("clerical_match_score"))) is None
    assert calibrate(pairs.with_columns(pl.lit(1.0).alias("clerical_match_score"))) is None


def test_clerical_labels_written_in_either_order_set_the_threshold(tmp_path):
    pairs = _weights_and_truth()
    sample = pairs.sample(1500, seed=2)
    labels = sample.select(
        # half the labels name the pair the other way round
        pl.when(pl.int_range(pl.len()) % 2 == 0).then("record_id_l").otherwise("record_id_r").alias("record_id_l"),
        pl.when(pl.int_range(pl.len()) % 2 == 0).then("record_id_r").otherwise("record_id_l").alias("record_id_r"),
        pl.col("same").cast(float).alias("clerical_match_score"))
    path = tmp_path / "labels.csv"
    labels.write_csv(path)
    assert labelled_scored_pairs(pairs, labels).height == 1500
    scored = pairs.drop("same")
    with_labels = choose_cluster_threshold(scored, configured=None, labels_file=path)
    without = choose_cluster_threshold(scored, configured=None, labels_file=None)
    assert with_labels.source == "clerical_labels" and with_labels.estimate["labels"] == 1500
    assert without.source == "model_estimate"
    # the model is overconfident (true odds rise half as fast): labels move the threshold up
    assert with_labels.match_probability > without.match_probability
    true_precision = pairs.filter(pl.col("match_probability") >= with_labels.match_probability)["same"].mean()
    assert with_labels.estimate["pairwise_precision"] == pytest.approx(true_precision, abs=0.03)
    # a 90% interval from resampled labels around the estimate (label sampling only: the realised
    # truth of these 4,000 pairs may fall just outside it)
    low, high = with_labels.estimate["pairwise_precision_low"], with_labels.estimate["pairwise_precision_high"]
    assert low < with_labels.estimate["pairwise_precision"] < high
    assert 0 < high - low < 0.05 and low - 0.03 <= true_precision <= high + 0.03
    assert "pairwise_precision_low" not in without.estimate
    # the clusters' threshold choice skips the resampling: same threshold, no interval
    quick = choose_cluster_threshold(scored, configured=None, labels_file=path, intervals=False)
    assert quick.match_probability == with_labels.match_probability and quick.source == "clerical_labels"
    assert quick.estimate["pairwise_precision"] == with_labels.estimate["pairwise_precision"]
    assert "pairwise_precision_low" not in quick.estimate


def test_labels_that_leave_the_curve_unidentified_stop_early(monkeypatch):
    """An easy dataset's queue: every label "match" but for the reviewers' 2% of wrong ones, all
    at high weights. The curve is then unidentified (any steep enough rise below the labelled
    weights fits as well), and EM crept along that ridge for its whole budget, Newton's steps
    wandering in the likelihood's rounding error: 40 s for the 40 resamples of one dataset."""
    import datafirst_assets.linkage.threshold as threshold

    rng = np.random.default_rng(7)
    weight = rng.uniform(10, 33, 1500)
    labels = (rng.random(1500) >= 0.02).astype(float)
    labelled = pl.DataFrame({"match_weight": weight, "clerical_match_score": labels})
    evaluations = []
    counted = threshold._log_likelihood
    monkeypatch.setattr(threshold, "_log_likelihood", lambda *a: evaluations.append(1) or counted(*a))
    fit = calibrate(labelled)
    assert fit is not None and fit.label_error_rate == pytest.approx(1 - labels.mean(), abs=0.005)
    # every labelled weight is called a match
    assert 1 / (1 + math.exp(-(fit.intercept + fit.slope * weight.min()))) > 0.99
    assert len(evaluations) < 2_000  # 19,165 before


def test_newton_from_a_warm_start_reaches_the_same_optimum():
    from datafirst_assets.linkage.threshold import _fit_logistic

    rng = np.random.default_rng(4)
    x = rng.uniform(-6, 20, 1500)
    target = 1 / (1 + np.exp(-(0.7 * x - 2))) * 0.96 + 0.02
    cold, warm = _fit_logistic(x, target), _fit_logistic(x, target, start=np.array([-1.5, 0.5]))
    assert np.abs(cold - warm).max() < 1e-6



def test_the_bootstrap_resamples_fitted_at_once_are_the_one_at_a_time_fits():
    from datafirst_assets.linkage.threshold import resampled_calibrations

    rng = np.random.default_rng(11)
    # weights in few distinct values (as agreement patterns give), 2% wrong labels; a second,
    # small set where many resamples hold fewer than 5 non-matches (no fit)
    weight = rng.choice(np.linspace(-8, 25, 60), 600)
    same = (rng.random(600) < 1 / (1 + np.exp(-(0.6 * weight - 3)))) ^ (rng.random(600) < 0.02)
    big = pl.DataFrame({"match_weight": weight, "clerical_match_score": same.astype(float)})
    small = pl.DataFrame({"match_weight": np.r_[np.linspace(0, 10, 20), [-5.0] * 6],
                          "clerical_match_score": [1.0] * 20 + [0.0] * 6})
    for labelled in (big, small):
        samples = np.array([rng.integers(0, labelled.height, labelled.height) for _ in range(25)])
        one_at_a_time = [calibrate(labelled[sample]) for sample in samples]
        at_once = resampled_calibrations(labelled, samples)
        assert [fit is None for fit in at_once] == [fit is None for fit in one_at_a_time]
        assert any(fit is not None for fit in at_once)
        for a, b in zip(one_at_a_time, at_once):
            if a is not None:
                assert (a.weight_range, a.labels_used, a.method) == (b.weight_range, b.labels_used, b.method)
                assert np.allclose([a.intercept, a.slope, a.label_error_rate],
                                   [b.intercept, b.slope, b.label_error_rate], rtol=0, atol=1e-9)
    assert any(fit is None for fit in resampled_calibrations(small, samples))


def test_the_labels_intervals_are_the_same_whatever_order_the_pairs_come_in(tmp_path):
    from datafirst_assets.linkage.threshold import read_label_evidence

    rng = np.random.default_rng(8)
    n = 400
    weight = rng.choice(np.linspace(-6, 20, 40), n)
    same = rng.random(n) < 1 / (1 + np.exp(-(0.5 * weight - 2)))
    pairs = pl.DataFrame({"record_id_l": [f"a{i}" for i in range(n)], "record_id_r": [f"b{i}" for i in range(n)],
                          "match_weight": weight, "match_probability": 1 / (1 + 2.0 ** -weight)})
    labels_file = tmp_path / "labels.csv"
    pairs.select("record_id_l", "record_id_r", pl.Series("clerical_match_score", same.astype(float))).write_csv(labels_file)
    first = read_label_evidence(pairs, labels_file, resamples=12)
    again = read_label_evidence(pairs.sample(fraction=1.0, shuffle=True, seed=1), labels_file, resamples=12)
    assert first.calibration is not None and len(first.resampled) == 12
    assert first.resampled == again.resampled

def test_simulated_reviewer_gets_the_stated_share_wrong(tmp_path):
    queue = pl.DataFrame({"record_id_l": [str(i) for i in range(0, 200, 2)],
                          "record_id_r": [str(i) for i in range(1, 200, 2)], "match_weight": 1.0})
    truth = pl.DataFrame({"record_id": [str(i) for i in range(200)],
                          "person_id": [str(i // 2) if i < 100 else str(i) for i in range(200)]})
    labels = simulated_labels(queue, truth, pairs=100, error_rate=0.1, seed=3)
    truly_same = (pl.Series(range(0, 200, 2)) < 100).cast(float)
    assert (labels["clerical_match_score"] != truly_same).sum() == 10
    # labels already given are kept; only new pairs are added
    path = tmp_path / "labels.csv"
    labels.head(30).write_csv(path)
    merged = merge_labels(path, labels.with_columns(pl.lit(0.5).alias("clerical_match_score")))
    assert merged.height == 100 and merged.head(30)["clerical_match_score"].equals(labels.head(30)["clerical_match_score"])


def test_review_queue_skips_labelled_pairs_and_shows_both_records():
    pairs = _weights_and_truth(600).drop("same")
    ids = pl.concat([pairs["record_id_l"], pairs["record_id_r"]])
    records = pl.DataFrame({"record_id": ids, "surname": ids.map_elements(lambda i: f"NAME{i}", return_dtype=pl.String)})
    first = review_queue(pairs, records, threshold_match_probability=0.9, n=100, seed=0)
    assert first.height == 100 and {"surname_l", "surname_r", "clerical_match_score"} <= set(first.columns)
    assert (first["match_weight"] - math.log2(0.9 / 0.1)).abs().max() <= 6
    again = review_queue(pairs, records, threshold_match_probability=0.9, n=100, seed=0,
                         labelled=first.select("record_id_r", "record_id_l").rename(
                             {"record_id_r": "record_id_l", "record_id_l": "record_id_r"}))
    assert again.join(first, on=["record_id_l", "record_id_r"]).height == 0


def _people_with_namesakes(n_people: int = 1500, *, overconfident: bool, seed: int = 4) -> pl.DataFrame:
    """Scored pairs of people with three records each, whose true pairs score 8 to 24 bits (and a few
    weak ones), plus namesakes: different people's records. The namesakes score 10 to 16 bits when
    the model is ``overconfident`` (it thinks them near-certain), else -8 to 0 bits. ``same`` is the truth."""
    rng = np.random.default_rng(seed)
    rows = []
    for person in range(n_people):
        a, b, c = (f"{person}_{k}" for k in range(3))
        for left, right in ((a, b), (b, c), (a, c)):
            rows.append((left, right, float(rng.uniform(8, 24)) if rng.random() > 0.05 else float(rng.uniform(-4, 4)),
                         True))
        other = f"{(person + 1) % n_people}_{int(rng.integers(3))}"
        rows.append((a, other, float(rng.uniform(10, 16) if overconfident else rng.uniform(-8, 0)), False))
    frame = pl.DataFrame(rows, schema=["record_id_l", "record_id_r", "match_weight", "same"], orient="row")
    return frame.with_columns((1 / (1 + 2.0 ** -pl.col("match_weight"))).alias("match_probability"))


def test_transitivity_check_finds_near_certain_links_that_no_third_record_closes():
    honest = transitivity_check(_people_with_namesakes(overconfident=False))
    assert not honest.overconfident and honest.deficit < 0.05
    overconfident = transitivity_check(_people_with_namesakes(overconfident=True))
    assert overconfident.overconfident
    # links at 10-16 bits: about half are namesakes, which no third record closes
    assert overconfident.deficit == pytest.approx(0.6, abs=0.15)
    assert overconfident.calibration.method == "transitivity"


def test_the_model_estimate_recalibrated_by_transitivity_is_close_to_the_truth():
    pairs = _people_with_namesakes(overconfident=True)
    scored = pairs.drop("same")
    choice = choose_cluster_threshold(scored, configured=None, labels_file=None)
    assert choice.source == "model_estimate" and choice.estimate["recalibration"] == "transitivity"
    # the namesakes (10-16 bits) must stay unlinked: the threshold sits above them
    assert choice.match_probability > 1 / (1 + 2.0 ** -12)
    # where the namesakes are, the recalibrated precision follows the truth; the model's own says ~1
    assessment = assess(scored, labels_file=None)
    for bits in (8, 10, 12):
        threshold = 1 / (1 + 2.0 ** -bits)
        true_precision = pairs.filter(pl.col("match_probability") >= threshold)["same"].mean()
        assert true_precision < 0.8
        assert assessment.estimate_at(threshold)["pairwise_precision"] == pytest.approx(true_precision, abs=0.05)
    raw = pairs.with_columns(pl.col("match_probability").alias(EXPECTED))
    assert estimate_at(expected_accuracy_curve(raw), 1 / (1 + 2.0 ** -10))["precision"] > 0.99


def test_an_honest_model_keeps_its_own_probabilities():
    pairs = _people_with_namesakes(overconfident=False).drop("same")
    choice = choose_cluster_threshold(pairs, configured=None, labels_file=None)
    assert choice.source == "model_estimate" and choice.estimate["recalibration"] is None


def test_labels_recalibrate_beyond_the_weights_they_cover(tmp_path):
    # labels only between 0 and 8 bits; the true curve sigmoid(0.5 w - 1) still holds at 16 bits
    pairs = _weights_and_truth(8000)
    sample = pairs.filter(pl.col("match_weight").is_between(0, 8)).sample(1500, seed=5)
    fit = calibrate(sample.with_columns(pl.col("same").cast(float).alias("clerical_match_score")))
    expected = pl.DataFrame({"w": [-6.0, 14.0]}).select(
        fit.expected(pl.col("w"), pl.lit(0.5)).alias("q"))["q"].to_list()
    assert expected[0] == pytest.approx(1 / (1 + math.exp(4)), abs=0.03)
    assert expected[1] == pytest.approx(1 / (1 + math.exp(-6)), abs=0.01)


def test_capture_recapture_estimates_the_matches_blocking_never_compared():
    # 20,000 true pairs; the name rules catch 80%, the date-of-birth rules 70%, independently: 6% are
    # never compared (and so never scored), which the estimate must find from the scored ones alone
    rng = np.random.default_rng(6)
    n = 20_000
    by_names, by_other = rng.random(n) < 0.8, rng.random(n) < 0.7
    caught = by_names | by_other
    ids = np.arange(2 * n).astype(str)
    records = pl.DataFrame({
        "record_id": ids,
        "surname": np.concatenate([np.arange(n).astype(str), np.where(by_names, np.arange(n).astype(str), "X")]),
        "dob": np.concatenate([np.arange(n).astype(str), np.where(by_other, np.arange(n).astype(str), "Y")]),
    })
    pairs = pl.DataFrame({"record_id_l": ids[:n][caught], "record_id_r": ids[n:][caught],
                          "match_weight": 20.0, "match_probability": 1.0})
    lists = blocking_lists(pairs, records, ['l."surname" = r."surname"', 'l."dob" = r."dob"'])
    assert lists["by_names"].sum() == by_names.sum() and lists["by_dob"].sum() == by_other.sum()
    assert missed_by_blocking(pairs.with_columns(pl.lit(1.0).alias(EXPECTED)), lists) == pytest.approx(0.06, abs=0.01)
    # pair-level recall counts them as missed
    assessment = assess(pairs, labels_file=None, blocking=lists)
    assert assessment.estimate_at(0.5)["pairwise_recall"] == pytest.approx(0.94, abs=0.01)
    # rules of one kind only cannot tell
    assert blocking_lists(pairs, records, ['l."surname" = r."surname"']) is None


def test_three_lists_allow_for_two_that_miss_the_same_matches():
    # a poorly recorded person (30%) defeats both the name and the date-of-birth rules more often:
    # the two lists are dependent, so two-list capture-recapture finds too few missed; the log-linear
    # model over three lists (postcode rules independent of both) allows for it
    rng = np.random.default_rng(7)
    n = 40_000
    poor = rng.random(n) < 0.3
    by = {"names": rng.random(n) < np.where(poor, 0.5, 0.95), "dob": rng.random(n) < np.where(poor, 0.4, 0.9),
          "place": rng.random(n) < 0.7}
    caught = by["names"] | by["dob"] | by["place"]
    truly_missed = 1 - caught.mean()
    ids = [f"{i}" for i in range(n)]
    lists = pl.DataFrame({"record_id_l": ids, "record_id_r": [f"{i}b" for i in range(n)],
                          **{f"by_{k}": v for k, v in by.items()}}).filter(pl.Series(caught))
    expected = lists.select("record_id_l", "record_id_r", pl.lit(1.0).alias(EXPECTED))
    assert missed_by_blocking(expected, lists) == pytest.approx(truly_missed, abs=0.002)
    two_lists = lists.select("record_id_l", "record_id_r", "by_names",
                             (pl.col("by_dob") | pl.col("by_place")).alias("by_other"))
    assert missed_by_blocking(expected, two_lists) < truly_missed - 0.005


def test_labels_that_cannot_calibrate_still_confirm_the_model_when_they_agree_with_its_calls(tmp_path):
    from datafirst_assets.linkage.quality import confirmed_by_labels, estimated_quality_row

    # an easy dataset: every scored pair is a clear match, so the reviewer says "match" to all of them
    pairs = pl.DataFrame({"record_id_l": [f"a{i}" for i in range(150)], "record_id_r": [f"b{i}" for i in range(150)],
                          "match_weight": [12.0 + i / 50 for i in range(150)]}).with_columns(
        (1 / (1 + 2 ** -pl.col("match_weight"))).alias("match_probability"))
    labels = tmp_path / "labels.csv"
    pairs.select("record_id_l", "record_id_r").with_columns(pl.lit(1.0).alias("clerical_match_score")).write_csv(labels)
    agreeing = assess(pairs, labels_file=labels, also=(0.9,))
    assert agreeing.calibration is None and agreeing.label_agreement(0.9) == 1.0
    row = estimated_quality_row("prison", records=300, persons=150, threshold=0.9, configured=False, assessment=agreeing)
    assert row["missing_evidence"] is None
    # the same labels against a threshold that leaves every pair unlinked: they contradict the model
    strict = assess(pairs, labels_file=labels, also=(0.99999,))
    assert strict.label_agreement(0.99999) < 0.5 and not confirmed_by_labels(strict, strict.label_agreement(0.99999))
    row = estimated_quality_row("prison", records=300, persons=150, threshold=0.99999, configured=False,
                                assessment=strict)
    assert "could not calibrate" in row["missing_evidence"]


def _probability(weight: float) -> float:
    return 1 / (1 + 2.0 ** -weight)


def test_transitive_closure_follows_likely_links_and_counts_near_certain_groups_as_one():
    pairs = pl.DataFrame([
        ("a", "b", 0.95), ("b", "c", 0.9), ("a", "c", 0.1),  # a-c closed by b: 0.95 x 0.9
        ("d", "e", 0.6), ("e", "f", 0.99), ("d", "f", 0.05),  # d-e too doubtful to follow
        ("g", "h", 0.9999), ("h", "i", 0.9999), ("i", "j", 0.8), ("g", "j", 0.2),  # g, h, i one group
        ("k", "l", 0.8), ("l", "m", 0.8), ("m", "n", 0.8), ("n", "o", 0.8), ("o", "p", 0.8), ("k", "p", 0.3),
    ], schema=["record_id_l", "record_id_r", "match_probability"], orient="row")
    scored = with_expected_matches(pairs.with_columns(pl.lit(0.0).alias("match_weight")), None)
    paths = {(l_, r_): p for l_, r_, p in transitive_closure(scored).rows()}
    assert paths[("a", "c")] == pytest.approx(0.855)
    assert ("d", "f") not in paths and ("d", "e") not in paths and paths[("e", "f")] == pytest.approx(0.99)
    assert paths[("g", "j")] == pytest.approx(0.8)  # through the group g-h-i as if certain
    assert ("k", "p") not in paths  # five links: longer than the closure follows
    assert ("a", "b") in paths and set(paths) <= set(zip(pairs["record_id_l"], pairs["record_id_r"]))


def _people_whose_errors_come_together(seed: int = 8) -> pl.DataFrame:
    """1,000 people with three records: two near-certain pairs (16 bits) and one at -2 bits (a
    stale surname and an old address together); 400 people with two records scored at -2 bits;
    1,600 pairs of different people at -2 bits. The model's 20% at -2 bits is right for the pairs
    no third record closes (400 of 2,000) but the three-record people's weak pairs are all matches:
    47% of the pairs at -2 bits are, as in civil. ``same`` is the truth."""
    rng = np.random.default_rng(seed)
    rows = []
    for person in range(1000):
        a, b, c = (f"p{person}_{k}" for k in range(3))
        rows += [(a, b, 16.0, True), (b, c, 16.0, True), (a, c, -2.0, True)]
    rows += [(f"q{i}_0", f"q{i}_1", -2.0, True) for i in range(400)]
    rows += [(f"s{i}_0", f"s{i}_1", -2.0, False) for i in range(1600)]
    frame = pl.DataFrame(rows, schema=["record_id_l", "record_id_r", "match_weight", "same"], orient="row")
    return frame.sample(fraction=1.0, shuffle=True, seed=int(rng.integers(1000))).with_columns(
        (1 / (1 + 2.0 ** -pl.col("match_weight"))).alias("match_probability"))


def test_the_model_estimate_counts_matches_its_weights_miss_but_other_records_close():
    pairs = _people_whose_errors_come_together()
    threshold = _probability(0)
    linked = pairs.filter(pl.col("match_probability") >= threshold)
    true_recall = linked["same"].sum() / pairs["same"].sum()  # 2,000 of 3,400
    estimate = assess(pairs.drop("same"), labels_file=None).estimate_at(threshold)
    # the model's own probabilities count 2,000 + 0.2 x 3,000 matches: recall 0.77 where it is 0.59
    assert estimate["pairwise_recall"] == pytest.approx(true_recall, abs=0.01)
    assert estimate["pairwise_precision"] == pytest.approx(1.0, abs=0.001)
    # the model's probabilities alone (the estimate before the closure) count 2,000 + 0.2 x 3,000
    raw = pairs.with_columns(pl.col("match_probability").alias(EXPECTED))
    before = estimate_at(expected_accuracy_curve(raw), threshold)["recall"]
    assert before == pytest.approx(2000 / 2600, abs=1e-3)


def test_links_no_third_record_could_close_do_not_make_the_model_look_overconfident():
    # people with three records, surely linked (20-24 bits: every link closed by the third record),
    # and people with two records linked at 10-16 bits: right, but no third record can close them
    rng = np.random.default_rng(11)
    rows = []
    for person in range(600):
        a, b, c = (f"p{person}_{k}" for k in range(3))
        rows += [(left, right, float(rng.uniform(20, 24))) for left, right in ((a, b), (b, c), (a, c))]
        rows.append((a, f"p{(person + 1) % 600}_1", float(rng.uniform(-9, -6))))  # namesakes, unlinked
    for person in range(600):
        rows.append((f"q{person}_0", f"q{person}_1", float(rng.uniform(10, 16))))
    pairs = pl.DataFrame(rows, schema=["record_id_l", "record_id_r", "match_weight"], orient="row").with_columns(
        (1 / (1 + 2.0 ** -pl.col("match_weight"))).alias("match_probability"))
    check = transitivity_check(pairs)
    # checked on every link, no 10-16 bit link is closed (a deficit of 1: "overconfident")
    assert not check.overconfident
    assert check.deficit is None or check.deficit < 0.05


def test_pairs_the_guard_splits_are_left_out_of_the_choice():
    # the namesakes of _people_with_namesakes score 10-16 bits, but their dates of birth are years
    # apart: the guard never joins them, so they neither look like the model's overconfidence nor
    # push the threshold above the true links
    from datetime import date

    pairs = _people_with_namesakes(overconfident=True).drop("same")
    people = pl.int_range(1500, eager=True)
    records = pl.DataFrame({"record_id": [f"{p}_{k}" for p in range(1500) for k in range(3)]}).with_columns(
        pl.col("record_id").str.split("_").list.first().cast(pl.Int64).alias("person"))
    dobs = pl.DataFrame({"person": people, "dob": [date(1950 + p % 50, 1 + p % 12, 1 + p % 28) for p in range(1500)]})
    records = records.join(dobs, on="person").drop("person")
    without = choose_cluster_threshold(pairs, configured=None, labels_file=None)
    assert without.estimate["recalibration"] == "transitivity" and without.match_probability > 1 / (1 + 2.0 ** -12)
    choice = choose_cluster_threshold(pairs, configured=None, labels_file=None, records=records)
    assert choice.estimate["recalibration"] is None
    assert choice.match_probability < 1 / (1 + 2.0 ** -8)
    assert choice.estimate["pairwise_precision"] == pytest.approx(1.0, abs=0.01)


def _relatives_at_one_address(seed: int = 3) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Scored pairs (with ``same``, the truth) and their records: 800 people recorded twice alike
    (20 bits), and 1,000 pairs of relatives (a different forename, the same surname and address)
    that the model, adding surname and address up as independent, scores 3 bits (0.89) when a date
    of birth is missing and -3 bits when both dates are recorded and differ; 10% of such pairs are
    one person with a mistyped forename (same date where recorded)."""
    rng = np.random.default_rng(seed)
    records, rows = [], []
    dob = lambda i: date(1940 + i % 60, 1 + i % 12, 1 + i % 28)  # noqa: E731
    for i in range(800):
        for k in range(2):
            records.append((f"p{i}_{k}", f"F{i}", f"S{i}", f"PC{i}", f"A{i}", dob(i) if rng.random() > 0.3 else None))
        rows.append((f"p{i}_0", f"p{i}_1", 20.0, True))
    for i in range(1000):
        same, dated = rng.random() < 0.1, rng.random() < 0.5
        first, second = dob(i + 7), (dob(i + 7) if same else dob(i + 7 + 17 * 13))
        records += [(f"r{i}_0", f"G{i}", f"T{i}", f"QC{i}", f"B{i}", first),
                    (f"r{i}_1", f"H{i}", f"T{i}", f"QC{i}", f"B{i}", second if dated else None)]
        rows.append((f"r{i}_0", f"r{i}_1", 3.0 if same or not dated else -3.0, same))
    pairs = pl.DataFrame(rows, schema=["record_id_l", "record_id_r", "match_weight", "same"], orient="row")
    pairs = pairs.with_columns((1 / (1 + 2.0 ** -pl.col("match_weight"))).alias("match_probability"))
    return pairs, pl.DataFrame(records, schema=["record_id", "forename", "surname", "postcode", "address", "dob"],
                               orient="row")


def test_the_date_of_birth_witnesses_how_many_undated_relatives_are_one_person():
    pairs, records = _relatives_at_one_address()
    threshold = _probability(2)
    kept = pairs.filter(~different_people(pairs, records))  # the guard splits dated relatives
    linked = kept.filter(pl.col("match_probability") >= threshold)
    true_precision = linked["same"].mean()  # 800 people and 10% of 500 undated relatives out of 1,300
    estimate = assess(pairs.drop("same"), labels_file=None, records=records, also=(threshold,)).estimate_at(threshold)
    assert estimate["pairwise_precision"] == pytest.approx(true_precision, abs=0.03)
    # the model's own probabilities (0.89 for every undated relative) say 0.96
    raw = estimate_at(expected_accuracy_curve(with_expected_matches(kept.drop("same"), None)), threshold)
    assert raw["precision"] > true_precision + 0.2
    # one factor per pattern of the other fields: the people recorded alike keep their probabilities
    odds = witness_odds(pairs, records)
    people = odds.filter(pl.col("record_id_l").str.starts_with("p"))
    assert people.is_empty() or people["witness_odds"].min() == pytest.approx(1.0)


def _people_who_moved(seed: int = 4) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Scored pairs (with ``same``) and records: 300 people recorded alike (20 bits); 600 people who
    moved (same names, another postcode and address) and 1,400 namesakes elsewhere. Half the pairs
    have both dates of birth: a mover's agree (6 bits), a namesake's cannot be one person's (the
    guard splits them). The other half miss a date and score -4 bits (0.06), where 30% are one person."""
    rng = np.random.default_rng(seed)
    records, rows = [], []
    dob = lambda i: date(1940 + i % 60, 1 + i % 12, 1 + i % 28)  # noqa: E731
    for i in range(300):
        records += [(f"a{i}_{k}", f"F{i}", f"S{i}", f"P{i}", f"A{i}", dob(i)) for k in range(2)]
        rows.append((f"a{i}_0", f"a{i}_1", 20.0, True))
    for i in range(2000):
        same, dated = i < 600, rng.random() < 0.5
        second = dob(i) if same else dob(i + 31 * 12 + 5)
        records += [(f"m{i}_0", f"G{i}", f"T{i}", f"P{i}", f"A{i}", dob(i)),
                    (f"m{i}_1", f"G{i}", f"T{i}", f"Q{i}", f"B{i}", second if dated else None)]
        rows.append((f"m{i}_0", f"m{i}_1", 6.0 if same and dated else -4.0, same))
    pairs = pl.DataFrame(rows, schema=["record_id_l", "record_id_r", "match_weight", "same"], orient="row")
    pairs = pairs.with_columns((1 / (1 + 2.0 ** -pl.col("match_weight"))).alias("match_probability"))
    return pairs, pl.DataFrame(records, schema=["record_id", "forename", "surname", "postcode", "address", "dob"],
                               orient="row")


def test_the_date_of_birth_witnesses_movers_the_model_underrates():
    # every pair with the same names is compared, so the witness counts the namesakes' dates too
    # (even those scored too low to be stored) and can raise the model's probabilities
    pairs, records = _people_who_moved()
    threshold = _probability(10)
    kept = pairs.filter(~different_people(pairs, records))
    true_recall = kept.filter(pl.col("match_probability") >= threshold)["same"].sum() / kept["same"].sum()
    estimate = assess(pairs.drop("same"), labels_file=None, records=records, also=(threshold,)).estimate_at(threshold)
    assert estimate["pairwise_recall"] == pytest.approx(true_recall, abs=0.03)
    raw = estimate_at(expected_accuracy_curve(with_expected_matches(kept.drop("same"), None)), threshold)
    assert raw["recall"] > true_recall + 0.1  # the model's 0.06 for an undated mover
    odds = witness_odds(pairs.drop("same"), records)
    movers = odds.filter(pl.col("record_id_l").str.starts_with("m"))
    assert movers["witness_odds"].min() > 1


def test_the_expected_clusters_are_those_the_guard_leaves():
    # CHAIN's doubtful pair 2-3 joins two people whose dates of birth cannot be one person's: the
    # guard splits what it chains, so a threshold below it costs no precision in the published clusters
    records = pl.DataFrame({"record_id": ["1", "2", "3", "4"],
                            "dob": [date(1950, 1, 1), date(1950, 1, 1), date(1980, 6, 6), date(1980, 6, 6)]})
    scored = with_expected_matches(CHAIN, None).with_columns(
        pl.when(pl.col("record_id_l") == "2").then(0.1).otherwise(pl.col(EXPECTED)).alias(EXPECTED))
    ids = pl.Series(["1", "2", "3", "4"])
    plain = expected_bcubed_curve(scored, ids, [0.5, 0.99])
    guarded = expected_bcubed_curve(scored, ids, [0.5, 0.99], records)
    assert plain["bcubed_precision"][0] < plain["bcubed_precision"][1]
    assert guarded["bcubed_precision"][0] == pytest.approx(guarded["bcubed_precision"][1])
    # the same clusters as the guard's own split of the plain clusters
    from datafirst_assets.linkage.guard import guarded_components_at, split_conflicting_clusters

    roots = guarded_components_at(["1", "2", "3", "4"], np.array([0, 2, 1]), np.array([1, 3, 2]),
                                  CHAIN["match_probability"].to_numpy(), [0.5], records)[0.5]
    split = split_conflicting_clusters(pl.DataFrame({"record_id": ["1", "2", "3", "4"], "cluster_id": ["c"] * 4}),
                                       CHAIN, records, 0.5)
    assert (roots[0] == roots[1]) and (roots[2] == roots[3]) and roots[1] != roots[2]
    assert split.clusters["cluster_id"].n_unique() == 2


def test_the_witness_is_the_same_whatever_order_the_pairs_come_in():
    """The warehouse returns scored pairs in no set order; the witness (and so the no-label threshold)
    must not depend on it. It once filtered de-duplicated pairs with a mask computed before the
    de-duplication, which drops random pairs whenever `unique` reorders them."""
    moved, people = _people_who_moved()
    # forty copies: on a small frame `unique` happens to keep the order, on a large one it does not
    copy = lambda frame, i, cols: frame.with_columns(pl.col(c) + f"#{i}" for c in cols)  # noqa: E731
    pairs = pl.concat([copy(moved.drop("same"), i, ["record_id_l", "record_id_r"]) for i in range(40)])
    # every fifth mover's two records are two parties of one case: the guard says two people
    case = pl.when(pl.col("record_id").str.extract(r"^m(\d+)_").cast(pl.Int64) % 5 == 0) \
        .then(pl.col("record_id").str.replace(r"_\d#", "#")).otherwise(pl.col("record_id"))
    records = pl.concat([copy(people, i, ["record_id"]) for i in range(40)]).with_columns(case.alias("case_id"))
    expected = witness_odds(pairs, records).sort("record_id_l", "record_id_r")
    # every pair missing a date is weighed (its pattern has dated pairs enough) but the guard's: none
    # lost on the way, none of the guard's let through
    dated = records.filter(pl.col("dob").is_not_null())["record_id"]
    undated = pairs.filter(~(pl.col("record_id_l").is_in(dated.implode()) & pl.col("record_id_r").is_in(dated.implode())))
    undated = undated.filter(~different_people(undated, records.drop("dob")))
    assert undated.height < pairs.filter(pl.col("match_weight") < 0).height  # the guard has pairs to split
    assert expected.select("record_id_l", "record_id_r").sort("record_id_l", "record_id_r").equals(
        undated.select("record_id_l", "record_id_r").sort("record_id_l", "record_id_r"))
    for seed in range(5):
        shuffled = pairs.sample(fraction=1.0, shuffle=True, seed=seed)
        assert witness_odds(shuffled, records).sort("record_id_l", "record_id_r").equals(expected)


def test_the_assessment_fits_the_transitivity_curve_only_when_it_can_use_it(monkeypatch):
    """`assess` asks the check for its curve only where the model can be called overconfident (the
    fit runs over every checkable pair; most of an incremental assessment's time at 300,000 people,
    thrown away otherwise): the same assessment, without the fit where it would not be used."""
    from datafirst_assets.linkage import threshold

    honest = _people_with_namesakes(overconfident=False).drop("same")
    fitted = assess(honest, labels_file=None)
    assert fitted.transitivity.calibration is None and not fitted.transitivity.overconfident
    assert transitivity_check(honest).calibration is not None  # asked for: fitted as before

    def no_fit(*_, **__):
        raise AssertionError("the transitivity curve was fitted although it cannot be used")

    monkeypatch.setattr(threshold, "_fit_logistic", no_fit)
    again = assess(honest, labels_file=None)
    assert again.clusters.equals(fitted.clusters) and again.pairs.equals(fitted.pairs)
    assert again.estimate_at(0.9) == fitted.estimate_at(0.9)
    monkeypatch.undo()
    overconfident = _people_with_namesakes(overconfident=True).drop("same")
    used = assess(overconfident, labels_file=None)  # can be called overconfident: fitted and used
    assert used.transitivity.overconfident and used.calibration is used.transitivity.calibration
