"""The evaluation stage measures what the pipeline can link, as the estimates describe it."""

import datetime as dt

import polars as pl

from datafirst_assets.evaluation.measure import measure_source


def _estimate() -> dict:
    keys = ("estimated_pairwise_precision", "estimated_pairwise_recall", "estimated_bcubed_precision",
            "estimated_bcubed_recall", "estimated_bcubed_f1")
    return {"threshold": 0.5, "threshold_source": "model_estimate", "labels": 0, **{k: 1.0 for k in keys}}


def test_pairs_the_guard_splits_are_not_graded_as_links():
    """A parent and child of one name (dates of birth 30 years apart) score above the threshold; the
    guard never joins them, so they are not a wrong link in the measured pair precision, and the
    clusters compared with the truth-optimal ones are the guarded ones."""
    ids = ["a1", "a2", "b1"]
    clusters = pl.DataFrame({"record_id": ids, "person_id": ["1", "1", "2"]})
    pairs = pl.DataFrame({"record_id_l": ["a1", "a1", "a2"], "record_id_r": ["a2", "b1", "b1"],
                          "match_weight": [12.0, 6.0, 6.0], "match_probability": [0.999, 0.98, 0.98]})
    truth = pl.DataFrame({"record_id": ids, "person_id": ["P1", "P1", "P2"]})
    records = pl.DataFrame({"record_id": ids, "dob": [dt.date(1960, 5, 1), dt.date(1960, 5, 1), dt.date(1990, 2, 9)]})

    unguarded = measure_source("family", clusters, pairs, truth, _estimate(), None)
    guarded = measure_source("family", clusters, pairs, truth, _estimate(), None, records=records)

    assert unguarded["measured_pair_precision"] == 1 / 3
    assert guarded["measured_pair_precision"] == 1.0
    assert guarded["pair_precision_error"] == 0.0
    # at the chosen threshold the guard leaves the child apart, as published: nothing lost to the optimum
    assert unguarded["bcubed_f1_below_optimal"] > 0.1
    assert guarded["bcubed_f1_below_optimal"] == 0.0


def test_bcubed_of_cluster_roots_is_the_record_level_bcubed():
    import numpy as np

    from datafirst_assets.evaluation.measure import bcubed_of_roots
    from datafirst_assets.linkage.metrics import bcubed_metrics

    rng = np.random.default_rng(2)
    n = 3000
    root = rng.integers(0, n // 3, n)
    person = rng.integers(0, n // 4, n)
    precision, recall = bcubed_of_roots(root, person)
    ids = [str(i) for i in range(n)]
    expected = bcubed_metrics(pl.DataFrame({"record_id": ids, "cluster_id": root.astype(str)}),
                              pl.DataFrame({"record_id": ids, "person_id": person.astype(str)}))
    assert abs(precision - expected["precision"]) < 1e-12 and abs(recall - expected["recall"]) < 1e-12
    assert 0.1 < precision < 0.9  # the clusters and people cut across each other
    assert bcubed_of_roots(np.array([], dtype=np.int64), np.array([], dtype=np.int64)) == (None, None)
