"""Where the clustering threshold comes from: configured, clerical labels (either pair order), truth, default."""

import polars as pl

from datafirst_assets.linkage.dedupe import DEFAULT_THRESHOLD
from datafirst_assets.linkage.threshold import choose_cluster_threshold

PAIRS = pl.DataFrame({
    "record_id_l": ["1", "1", "2", "3"],
    "record_id_r": ["2", "3", "3", "4"],
    "match_weight": [10.0, 2.0, 1.0, -3.0],
    "match_probability": [0.999, 0.8, 0.67, 0.11],
})


def test_configured_threshold_wins(tmp_path):
    choice = choose_cluster_threshold(PAIRS, configured=0.5, labels_file=tmp_path / "none.csv", truth=None)
    assert (choice.match_probability, choice.source) == (0.5, "configured")


def test_clerical_labels_written_in_either_order_are_used(tmp_path):
    labels = tmp_path / "labels.csv"
    # 1-2 and 1-3 are matches (1-3 written as 3,1), 2-3 is not: best F1 cuts at 0.8.
    pl.DataFrame({"record_id_l": ["1", "3", "3"], "record_id_r": ["2", "1", "2"],
                  "clerical_match_score": [1.0, 1.0, 0.0]}).write_csv(labels)
    choice = choose_cluster_threshold(PAIRS, configured=None, labels_file=labels, truth=None)
    assert choice.source == "clerical_labels"
    assert choice.match_probability == 0.8
    assert choice.detail["f1"] == 1.0


def test_truth_stands_in_for_clerical_review_and_default_otherwise(tmp_path):
    truth = pl.DataFrame({"record_id": ["1", "2", "3", "4"], "person_id": ["a", "a", "b", "b"]})
    choice = choose_cluster_threshold(PAIRS, configured=None, labels_file=None, truth=truth)
    # true pairs 1-2 and 3-4. Cut at 0.999: tp 1, fp 0, fn 1 -> F1 2/3; at 0.8: 1/2; at 0.67: 2/5;
    # at 0.11: tp 2, fp 2 -> 2/3. The tie goes to the higher threshold (fewer links).
    assert choice.source == "simulated_review"
    assert choice.match_probability == 0.999
    assert abs(choice.detail["f1"] - 2 / 3) < 1e-9
    none = choose_cluster_threshold(PAIRS, configured=None, labels_file=None, truth=None)
    assert (none.match_probability, none.source) == (DEFAULT_THRESHOLD, "default")
