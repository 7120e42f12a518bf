"""Linkage metrics against hand-computed values on a tiny example."""

from __future__ import annotations

import math

import polars as pl
import pytest

from datafirst_assets.linkage.dedupe_cli import run_evaluate, run_review_sample
from datafirst_assets.linkage.metrics import (
    bcubed_metrics,
    choose_threshold,
    evaluate_clusters,
    evaluate_labels,
    label_pairs_from_truth,
    match_probability_to_weight,
    match_weight_to_probability,
    pairwise_metrics,
    read_labels,
    review_sample,
    subgroup_gaps,
    subgroup_metrics,
    threshold_curve,
)

# Six records of three people: A = {a1, a2, a3}, B = {b1, b2}, C = {c1}.
# Predicted clusters: p1 = {a1, a2}, p2 = {a3, b1, b2}, p3 = {c1}.
TRUTH = pl.DataFrame({
    "record_id": ["a1", "a2", "a3", "b1", "b2", "c1"],
    "person_id": ["A", "A", "A", "B", "B", "C"],
    "sex": ["F", "F", "F", "M", "M", "F"],
})
CLUSTERS = pl.DataFrame({
    "record_id": ["a1", "a2", "a3", "b1", "b2", "c1"],
    "cluster_id": ["p1", "p1", "p2", "p2", "p2", "p3"],
})


def test_pairwise_hand_computed():
    # true pairs: C(3,2) + C(2,2) + 0 = 4; predicted: C(2,2) + C(3,2) + 0 = 4
    # TP cells: (p1,A) n=2 -> 1, (p2,A) n=1 -> 0, (p2,B) n=2 -> 1, (p3,C) -> 0: TP = 2
    m = pairwise_metrics(CLUSTERS, TRUTH)
    assert (m["tp"], m["fp"], m["fn"]) == (2, 2, 2)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(0.5)


def test_bcubed_hand_computed():
    # per record (precision, recall) = overlap/|pred|, overlap/|true|:
    # a1 (2/2, 2/3), a2 (2/2, 2/3), a3 (1/3, 1/3), b1 (2/3, 2/2), b2 (2/3, 2/2), c1 (1, 1)
    # precision = (1 + 1 + 1/3 + 2/3 + 2/3 + 1) / 6 = 7/9 ; recall = (2/3+2/3+1/3+1+1+1)/6 = 7/9
    m = bcubed_metrics(CLUSTERS, TRUTH)
    assert m["precision"] == pytest.approx(7 / 9)
    assert m["recall"] == pytest.approx(7 / 9)
    assert m["f1"] == pytest.approx(7 / 9)


def test_perfect_and_singleton_clusterings():
    perfect = TRUTH.select("record_id", pl.col("person_id").alias("cluster_id"))
    assert pairwise_metrics(perfect, TRUTH)["f1"] == 1.0
    assert bcubed_metrics(perfect, TRUTH)["f1"] == 1.0
    singletons = TRUTH.select("record_id", pl.col("record_id").alias("cluster_id"))
    pw = pairwise_metrics(singletons, TRUTH)
    assert pw["precision"] == 1.0 and pw["recall"] == 0.0
    # B-cubed recall of singletons: mean of 1/|true| = (1/3*3 + 1/2*2 + 1)/6 = 1/2
    assert bcubed_metrics(singletons, TRUTH)["recall"] == pytest.approx(0.5)


def test_subgroups_and_gap():
    # F: a1, a2, a3, c1 -> precision (1+1+1/3+1)/4 = 5/6, recall (2/3+2/3+1/3+1)/4 = 2/3,
    #    F1 = 2*(5/6)*(2/3) / (5/6+2/3) = 20/27
    # M: b1, b2 -> precision 2/3, recall 1, F1 = 4/5
    by = subgroup_metrics(CLUSTERS, TRUTH, ["sex"])
    f = by.filter(pl.col("group") == "F").row(0, named=True)
    m = by.filter(pl.col("group") == "M").row(0, named=True)
    assert (f["n_records"], m["n_records"]) == (4, 2)
    assert f["precision"] == pytest.approx(5 / 6) and f["recall"] == pytest.approx(2 / 3)
    assert f["f1"] == pytest.approx(20 / 27)
    assert m["f1"] == pytest.approx(4 / 5)
    gaps = subgroup_gaps(by, min_records=1)
    assert gaps["sex"]["best_group"] == "M" and gaps["sex"]["worst_group"] == "F"
    assert gaps["sex"]["gap"] == pytest.approx(4 / 5 - 20 / 27)
    # groups below min_records are not ranked
    assert subgroup_gaps(by, min_records=3)["sex"]["gap"] == 0.0

    report = evaluate_clusters(CLUSTERS, TRUTH, subgroups=["sex", "not_a_column"], min_group_records=1)
    assert report["bcubed"]["f1"] == pytest.approx(7 / 9)
    assert report["max_subgroup_gap"] == pytest.approx(4 / 5 - 20 / 27)
    assert {r["group"] for r in report["by_subgroup"]} == {"F", "M"}


def test_threshold_choice_maximises_f1():
    # weights / labels: (10,1) (5,1) (2,0) (1,1) (-3,0); 3 positives
    # t=10: TP1 FP0 FN2 F1=2/4 ; t=5: TP2 FN1 F1=4/5 ; t=2: TP2 FP1 FN1 F1=4/6
    # t=1: TP3 FP1 F1=6/7 (best) ; t=-3: TP3 FP2 F1=6/8
    lab = pl.DataFrame({"match_weight": [10.0, 5.0, 2.0, 1.0, -3.0],
                        "clerical_match_score": [1.0, 1.0, 0.0, 1.0, 0.0]})
    best = choose_threshold(lab)
    assert best["threshold"] == 1.0
    assert best["f1"] == pytest.approx(6 / 7)
    assert best["precision"] == pytest.approx(3 / 4) and best["recall"] == 1.0
    assert best["threshold_match_probability"] == pytest.approx(2 / 3)  # 1 / (1 + 2^-1)
    curve = threshold_curve(lab)
    assert curve.get_column("f1").to_list() == pytest.approx([2 / 4, 4 / 5, 4 / 6, 6 / 7, 6 / 8])
    # a labelled match the model never scored is a false negative at every threshold:
    # t=1: 6/(6+1+1) = 3/4 ; t=5: 4/(4+0+2) = 2/3
    lab2 = pl.concat([lab, pl.DataFrame({"match_weight": [None], "clerical_match_score": [1.0]},
                                        schema=lab.schema)])
    best2 = choose_threshold(lab2)
    assert best2["threshold"] == 1.0 and best2["f1"] == pytest.approx(3 / 4)
    # total_positives from truth (e.g. 6 true pairs) shifts recall: t=1 -> 6/(6+1+3) = 0.6
    assert choose_threshold(lab, total_positives=6)["f1"] == pytest.approx(0.6)


def test_weight_probability_round_trip():
    for p in (0.01, 0.5, 0.9, 0.999):
        assert match_weight_to_probability(match_probability_to_weight(p)) == pytest.approx(p)
    assert match_probability_to_weight(1.0) == math.inf


def test_labels_from_truth_on_pairs():
    pairs = pl.DataFrame({"record_id_l": ["a1", "a3", "b2"], "record_id_r": ["a2", "b1", "b1"],
                          "match_weight": [8.0, 1.0, 6.0]})
    lab = label_pairs_from_truth(pairs, TRUTH)
    assert lab.get_column("clerical_match_score").to_list() == [1.0, 0.0, 1.0]


def _labels_csv(tmp_path):
    # fractional and blank scores: (b2, a3) is "unsure" (0.5), (c1, b1) not yet reviewed
    path = tmp_path / "labels.csv"
    path.write_text(
        "record_id_l,record_id_r,clerical_match_score\n"
        "a1,a2,1\na2,a3,1\nb1,b2,1\na3,b1,0\nc1,a1,0\nb2,a3,0.5\nc1,b1,\n"
    )
    return path


def test_evaluate_from_labels_file(tmp_path):
    labels_path = _labels_csv(tmp_path)
    labels = read_labels(labels_path)
    assert labels.height == 6  # the blank row is skipped
    # same predicted cluster? a1a2 yes(1) a2a3 no(1) b1b2 yes(1) a3b1 yes(0) c1a1 no(0) b2a3 yes(0.5)
    # TP = 1 + 1 + 0 + 0.5 = 2.5 ; FP = 1 (a3b1) + 0.5 = 1.5 ; FN = 1 (a2a3)
    rep = evaluate_labels(labels, clusters=CLUSTERS)
    c = rep["clusters"]
    assert (c["tp"], c["fp"], c["fn"]) == (2.5, 1.5, 1.0)
    assert c["precision"] == pytest.approx(2.5 / 4)
    assert c["recall"] == pytest.approx(2.5 / 3.5)
    assert c["f1"] == pytest.approx(5 / 7.5)

    # the same through the command function, with pairs (labels in either orientation)
    pairs = pl.DataFrame({"record_id_l": ["a1", "a2", "b1", "a3", "a3"],
                          "record_id_r": ["a2", "a3", "b2", "b1", "b2"],
                          "match_weight": [9.0, 4.0, 7.0, 5.0, 3.0],
                          "match_probability": [0.998, 0.94, 0.992, 0.97, 0.89]})
    pairs.write_parquet(tmp_path / "pairs.parquet")
    CLUSTERS.write_parquet(tmp_path / "clusters.parquet")
    rep2 = run_evaluate(labels_path, pairs=tmp_path / "pairs.parquet", clusters=tmp_path / "clusters.parquet",
                        threshold=0.95, out=tmp_path / "report.json")
    assert rep2["clusters"]["f1"] == pytest.approx(5 / 7.5)
    assert rep2["labels_scored"] == 5  # (c1, a1) was never scored
    # pairs at p >= 0.95 (w >= 4.25): a1a2 (y1), b1b2 (y1), a3b1 (y0) called; a2a3 (w4, y1),
    # b2a3 (w3, y.5) and unscored c1a1 (y0) not: TP 2, FP 1, FN 1.5
    at = rep2["pairs_at_threshold"]
    assert (at["tp"], at["fp"], at["fn"]) == (2.0, 1.0, 1.5)
    assert (tmp_path / "report.json").exists()


def test_labels_file_rejects_bad_scores(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("record_id_l,record_id_r,clerical_match_score\na1,a2,2\n")
    with pytest.raises(ValueError, match="outside"):
        read_labels(p)
    p.write_text("record_id_l,record_id_r\na1,a2\n")
    with pytest.raises(ValueError, match="lacks"):
        read_labels(p)


def _many_pairs(n: int = 400) -> tuple[pl.DataFrame, pl.DataFrame]:
    ids = [f"r{i}" for i in range(n + 1)]
    pairs = pl.DataFrame({
        "record_id_l": ids[:-1], "record_id_r": ids[1:],
        "match_weight": [-20 + 40 * i / n for i in range(n)],
    }).with_columns((1 / (1 + 2 ** -pl.col("match_weight"))).alias("match_probability"))
    records = pl.DataFrame({"record_id": ids, "forename": [f"N{i}" for i in range(n + 1)],
                            "dob": pl.date_range(pl.date(1950, 1, 1), pl.date(1950, 1, 1) + pl.duration(days=n),
                                                 eager=True)})
    return pairs, records


def test_review_sample_around_threshold(tmp_path):
    pairs, records = _many_pairs()
    s = review_sample(pairs, records, threshold_match_probability=0.9, n=60, seed=1, window=5)
    w0 = match_probability_to_weight(0.9)
    assert s.height == 60
    assert s.get_column("match_weight").is_between(w0 - 5, w0 + 5).all()
    assert (s.get_column("match_weight") < w0).sum() > 10 and (s.get_column("match_weight") >= w0).sum() > 10
    assert s.columns == ["record_id_l", "record_id_r", "match_weight", "match_probability",
                         "forename_l", "forename_r", "dob_l", "dob_r", "clerical_match_score"]
    assert s.get_column("clerical_match_score").null_count() == 60
    row = s.row(0, named=True)
    assert row["forename_l"] == "N" + row["record_id_l"][1:]
    # same seed, same sample
    assert s.equals(review_sample(pairs, records, threshold_match_probability=0.9, n=60, seed=1, window=5))

    # the command writes a CSV that read_labels accepts once filled in
    pairs.write_parquet(tmp_path / "pairs.parquet")
    records.write_parquet(tmp_path / "records.parquet")
    out = tmp_path / "review" / "sample.csv"
    run_review_sample(tmp_path / "pairs.parquet", tmp_path / "records.parquet", out, threshold=0.9, n=20)
    filled = pl.read_csv(out).with_columns(pl.lit(1.0).alias("clerical_match_score"))
    filled.write_csv(tmp_path / "filled.csv")
    assert read_labels(tmp_path / "filled.csv").height == 20


def test_review_sample_is_the_same_whatever_order_the_pairs_are_stored_in_and_keeps_its_pairs_as_pairs_arrive():
    # a full rebuild and an incremental run store the same pairs in different orders (and either
    # way round): a reviewer's queue must not be dealt again when nothing changed
    pairs, records = _many_pairs()
    first = review_sample(pairs, records, threshold_match_probability=0.9, n=60, seed=1, window=5)
    shuffled = pairs.sample(fraction=1.0, shuffle=True, seed=7)
    swapped = shuffled.with_columns(pl.col("record_id_l").alias("record_id_r"), pl.col("record_id_r").alias("record_id_l"))
    def drawn(sample: pl.DataFrame) -> set[tuple[str, ...]]:
        return {tuple(sorted(p)) for p in sample.select("record_id_l", "record_id_r").iter_rows()}

    for stored in (shuffled, swapped):
        assert drawn(review_sample(stored, records, threshold_match_probability=0.9, n=60, seed=1, window=5)) == drawn(first)
    assert review_sample(shuffled, records, threshold_match_probability=0.9, n=60, seed=1, window=5).equals(first)
    # another seed deals another queue
    other = review_sample(pairs, records, threshold_match_probability=0.9, n=60, seed=2, window=5)
    assert set(other.get_column("record_id_l")) != set(first.get_column("record_id_l"))
    # a new extract's pairs (a tenth more) displace only the queued pairs they draw ahead of
    n = pairs.height
    more = pl.DataFrame({"record_id_l": [f"x{i}" for i in range(n // 10)], "record_id_r": [f"y{i}" for i in range(n // 10)],
                         "match_weight": [-20 + 40 * (i + 0.5) / (n // 10) for i in range(n // 10)]}).with_columns(
        (1 / (1 + 2 ** -pl.col("match_weight"))).alias("match_probability"))
    grown = pl.concat([more, shuffled], how="vertical_relaxed")
    after = review_sample(grown, records, threshold_match_probability=0.9, n=60, seed=1, window=5)
    kept = set(after.get_column("record_id_l")) & set(first.get_column("record_id_l"))
    assert len(kept) >= 45, len(kept)


def test_review_sample_widens_when_few_pairs_are_near_the_threshold():
    # an easy dataset: 4 pairs within the window, so labels could never calibrate the model
    pairs, records = _many_pairs()
    w0 = match_probability_to_weight(0.9)
    sparse = pairs.filter(((pl.col("match_weight") - w0).abs() > 5) | (pl.int_range(pl.len()) % 25 == 0))
    assert sparse.filter((pl.col("match_weight") - w0).abs() <= 5).height < 60
    s = review_sample(sparse, records, threshold_match_probability=0.9, n=60, seed=1, window=5)
    assert s.height == 60
    assert (s.get_column("match_weight") < w0).sum() >= 20 and (s.get_column("match_weight") >= w0).sum() >= 20
    nearest = (sparse.with_columns((pl.col("match_weight") - w0).abs().alias("d")).sort("d").head(60))
    assert set(s.get_column("record_id_l")) == set(nearest.get_column("record_id_l"))
