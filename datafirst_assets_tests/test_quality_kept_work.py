"""What an assessment keeps for the next one (threshold.KeptWork): the same-name witness is counted
again only for the names whose records changed, and the assessment is the one made afresh."""

from datetime import date

import polars as pl
from polars.testing import assert_frame_equal

from datafirst_assets.linkage.threshold import assess
from datafirst_assets_tests.test_threshold_choice import _people_who_moved


def _next_extract(pairs: pl.DataFrame, records: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Three records' dates of birth corrected and a new record of an existing name, linked in."""
    corrected = pl.col("record_id").is_in(["m1_1", "m2_1", "m3_1"])
    records = pl.concat([
        records.with_columns(pl.when(corrected).then(pl.lit(date(1999, 1, 1))).otherwise(pl.col("dob")).alias("dob")),
        pl.DataFrame({"record_id": ["m5_2"], "forename": ["G5"], "surname": ["T5"], "postcode": ["P5"],
                      "address": ["A5"], "dob": [date(1945, 6, 6)]})])
    pairs = pl.concat([pairs, pl.DataFrame({"record_id_l": ["m5_0"], "record_id_r": ["m5_2"], "match_weight": [8.0],
                                            "match_probability": [1 / (1 + 2.0 ** -8)]})])
    return pairs, records


def test_the_same_name_witness_counts_again_only_the_names_whose_records_changed():
    pairs, records = _people_who_moved()
    pairs = pairs.drop("same")
    before = assess(pairs, labels_file=None, records=records)
    names = records.filter(pl.col("dob").is_not_null()).select("forename", "surname").n_unique()
    assert before.kept.computed["same_name_groups"] == names  # first time: every name
    after_pairs, after_records = _next_extract(pairs, records)
    reused = assess(after_pairs, labels_file=None, records=after_records, previous=before.kept)
    fresh = assess(after_pairs, labels_file=None, records=after_records)
    # G1 T1, G2 T2, G3 T3 (a corrected date) and G5 T5 (a new record)
    assert reused.kept.computed["same_name_groups"] == 4
    assert reused.kept.computed["support_pairs"] < fresh.kept.computed["support_pairs"]
    assert_frame_equal(reused.clusters, fresh.clusters, check_exact=True)
    assert_frame_equal(reused.pairs.sort("threshold"), fresh.pairs.sort("threshold"), check_exact=True)
    assert reused.estimate_at(0.9) == fresh.estimate_at(0.9)
    # and what it keeps in turn serves the extract after
    again = assess(after_pairs, labels_file=None, records=after_records, previous=reused.kept)
    assert again.kept.computed == {"pair_facts": 0, "support_pairs": 0, "same_name_groups": 0}
    assert again.estimate_at(0.9) == fresh.estimate_at(0.9)


def test_a_changed_sample_size_counts_every_name_again():
    pairs, records = _people_who_moved()
    before = assess(pairs.drop("same"), labels_file=None, records=records)
    stale = before.kept
    stale.same_name_sums = stale.same_name_sums.with_columns(pl.lit(7, dtype=pl.Int64).alias("sample"))
    again = assess(pairs.drop("same"), labels_file=None, records=records, previous=stale)
    assert again.kept.computed["same_name_groups"] == before.kept.computed["same_name_groups"]
    assert again.estimate_at(0.9) == before.estimate_at(0.9)
