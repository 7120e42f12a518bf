"""What an assessment keeps for the next one (threshold.KeptWork): the same-name witness is counted
again only for the names whose records changed, and the assessment is the one made afresh."""

from datetime import date

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from datafirst_assets.linkage.threshold import assess, missed_by_blocking, with_expected_matches, witness_odds
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
    assert again.kept.computed == {"pair_facts": 0, "support_pairs": 0, "same_name_groups": 0, "guard_links": 0}
    assert again.estimate_at(0.9) == fresh.estimate_at(0.9)


def test_a_changed_sample_size_counts_every_name_again():
    pairs, records = _people_who_moved()
    before = assess(pairs.drop("same"), labels_file=None, records=records)
    stale = before.kept
    stale.same_name_sums = stale.same_name_sums.with_columns(pl.lit(7, dtype=pl.Int64).alias("sample"))
    again = assess(pairs.drop("same"), labels_file=None, records=records, previous=stale)
    assert again.kept.computed["same_name_groups"] == before.kept.computed["same_name_groups"]
    assert again.estimate_at(0.9) == before.estimate_at(0.9)


def test_each_pairs_facts_are_computed_again_only_where_its_records_changed():
    # the guard's rules and the agreement pattern of a pair read only its two records: kept from the
    # last assessment unless a record of the pair came, went or changed
    pairs, records = _people_who_moved()
    pairs = pairs.drop("same")
    before = assess(pairs, labels_file=None, records=records)
    assert before.kept.computed["pair_facts"] == pairs.height  # first time: every pair
    after_pairs, after_records = _next_extract(pairs, records)
    # what the last assessment kept for the pairs of the corrected records is stale: not taken
    stale = before.kept
    changed = pl.col("record_id_r").is_in(["m1_1", "m2_1", "m3_1"])
    stale.pair_facts = stale.pair_facts.with_columns(
        pl.when(changed).then(~pl.col("different")).otherwise(pl.col("different")).alias("different"),
        pl.when(changed).then(pl.lit("xxxxxx")).otherwise(pl.col("pattern")).alias("pattern"))
    reused = assess(after_pairs, labels_file=None, records=after_records, previous=stale)
    fresh = assess(after_pairs, labels_file=None, records=after_records)
    assert reused.kept.computed["pair_facts"] == 4  # the three corrected records' pairs and the new one
    assert_frame_equal(reused.kept.pair_facts, fresh.kept.pair_facts, check_exact=True)
    assert_frame_equal(reused.clusters, fresh.clusters, check_exact=True)
    assert_frame_equal(reused.pairs.sort("threshold"), fresh.pairs.sort("threshold"), check_exact=True)
    assert reused.estimate_at(0.9) == fresh.estimate_at(0.9)


def _jittered_pairs() -> tuple[pl.DataFrame, pl.DataFrame]:
    """``_people_who_moved`` with match weights spread (+-1 bit), so that sums depend on their order."""
    pairs, records = _people_who_moved()
    rng = np.random.default_rng(7)
    pairs = pairs.drop("same").with_columns(
        (pl.col("match_weight") + pl.Series(rng.uniform(-1.0, 1.0, pairs.height))).alias("match_weight"))
    return pairs.with_columns((1 / (1 + 2.0 ** -pl.col("match_weight"))).alias("match_probability")), records


# float sums depend on their order: the same pairs in another order gave estimates differing in the
# last bits, so an incremental run's (pairs stored in another order) could differ from a full one's


def test_the_witness_factors_are_summed_in_one_order_whatever_order_the_pairs_come_in():
    pairs, records = _jittered_pairs()
    keys = ["record_id_l", "record_id_r"]
    odds = witness_odds(pairs, records)
    for seed in range(3):
        again = witness_odds(pairs.sample(fraction=1.0, shuffle=True, seed=seed), records)
        assert_frame_equal(odds.sort(keys), again.sort(keys), check_exact=True)


def test_capture_recapture_sums_in_one_order_whatever_order_the_pairs_come_in():
    pairs, _ = _jittered_pairs()
    rng = np.random.default_rng(8)
    expected = with_expected_matches(pairs, None)
    lists = pairs.select("record_id_l", "record_id_r",
                         *[pl.Series(f"by_{name}", rng.random(pairs.height) < share)
                           for name, share in (("names", 0.8), ("dob", 0.5), ("place", 0.4))])
    missed = missed_by_blocking(expected, lists)
    assert missed is not None
    for seed in range(5):
        assert missed_by_blocking(expected.sample(fraction=1.0, shuffle=True, seed=seed), lists) == missed


def test_the_guarded_clusters_go_through_the_guard_again_only_where_their_links_or_records_changed():
    # the expected B-cubed curve's clusters are the guard's: its one-by-one pass is kept per cluster
    # carrying two people and taken again only for clusters whose links or records changed
    from datafirst_assets_tests.test_guard import _guarded_world

    ids, records, left, right, probability = _guarded_world(seed=11)
    weight = np.log2(probability / (1 - probability))
    pairs = pl.DataFrame({"record_id_l": [ids[i] for i in left], "record_id_r": [ids[i] for i in right],
                          "match_weight": weight, "match_probability": probability}).filter(
        pl.col("record_id_l") != pl.col("record_id_r"))
    before = assess(pairs, labels_file=None, records=records)
    assert before.kept.computed["guard_links"] > 0
    moved = before.kept.guard_joins.drop_nulls("record_id_l")["record_id_l"][0]
    after_records = records.with_columns(pl.when(pl.col("record_id") == moved).then(pl.lit(date(1901, 1, 1)))
                                         .otherwise(pl.col("dob")).alias("dob"))
    after_pairs = pairs.slice(1)
    reused = assess(after_pairs, labels_file=None, records=after_records, previous=before.kept)
    fresh = assess(after_pairs, labels_file=None, records=after_records)
    assert 0 < reused.kept.computed["guard_links"] < fresh.kept.computed["guard_links"] / 4
    assert_frame_equal(reused.clusters, fresh.clusters, check_exact=True)
    assert reused.estimate_at(0.9) == fresh.estimate_at(0.9)


# the capture-recapture lists (which blocking rules compared each pair) read only the pair's two
# records: kept from the last assessment, read again only for pairs whose records came or changed

_RULES = ('l."surname" = r."surname"', 'l."dob" = r."dob"', 'l.postcode = r.postcode',
          'SUBSTRING(l."forename", 1, 1) = SUBSTRING(r."forename", 1, 1) AND l.address = r.address')


def _counting_source(records: pl.DataFrame, pairs: pl.DataFrame, asked: list[int]):
    """A BlockingSource over frames in memory that counts the pairs it is asked for."""
    from datafirst_assets.linkage.threshold import BlockingSource, blocking_lists

    def compute(given: pl.DataFrame | None) -> pl.DataFrame | None:
        given = pairs if given is None else given
        asked.append(given.height)
        return blocking_lists(given, records, list(_RULES))

    return BlockingSource(_RULES, compute)


def test_the_blocking_lists_are_read_again_only_for_pairs_whose_records_changed():
    from datafirst_assets.linkage.threshold import blocking_lists

    pairs, records = _people_who_moved()
    pairs = pairs.drop("same")
    asked: list[int] = []
    before = assess(pairs, labels_file=None, records=records, blocking=_counting_source(records, pairs, asked))
    assert asked == [pairs.height] and before.kept.computed["blocking_pairs"] == pairs.height
    assert before.kept.blocking.height == before.kept.pair_facts.height
    after_pairs, after_records = _next_extract(pairs, records)
    # what was kept for the corrected records' pairs is stale: not taken
    stale = before.kept
    changed = stale.pair_facts["record_id_r"].is_in(["m1_1", "m2_1", "m3_1"])
    stale.blocking = stale.blocking.with_columns(pl.when(changed).then(~pl.col("by_dob")).otherwise(pl.col("by_dob"))
                                                 .alias("by_dob"))
    asked.clear()
    reused = assess(after_pairs, labels_file=None, records=after_records, previous=stale,
                    blocking=_counting_source(after_records, after_pairs, asked))
    assert asked == [4] and reused.kept.computed["blocking_pairs"] == 4  # three corrected, one new
    fresh = assess(after_pairs, labels_file=None, records=after_records,
                   blocking=blocking_lists(after_pairs, after_records, list(_RULES)))
    assert fresh.missed is not None
    assert reused.missed == fresh.missed
    assert reused.estimate_at(0.9) == fresh.estimate_at(0.9)
    assert_frame_equal(reused.pairs.sort("threshold"), fresh.pairs.sort("threshold"), check_exact=True)
    # and what it keeps serves the next one: nothing read when nothing changed
    asked.clear()
    again = assess(after_pairs, labels_file=None, records=after_records, previous=reused.kept,
                   blocking=_counting_source(after_records, after_pairs, asked))
    assert asked == [] and again.kept.computed["blocking_pairs"] == 0
    assert again.missed == fresh.missed


def test_blocking_lists_read_with_other_rules_or_on_other_columns_are_read_again():
    from dataclasses import replace

    pairs, records = _people_who_moved()
    pairs = pairs.drop("same")
    asked: list[int] = []
    before = assess(pairs, labels_file=None, records=records, blocking=_counting_source(records, pairs, asked))
    other = replace(_counting_source(records, pairs, asked), rules=(*_RULES, 'l."sex" = r."sex"'))
    asked.clear()
    again = assess(pairs, labels_file=None, records=records, previous=before.kept, blocking=other)
    # other rules (and a column the record content does not cover): every pair read again
    assert asked == [pairs.height] and again.kept.computed["blocking_pairs"] == pairs.height


def test_the_pair_facts_join_on_a_hash_of_the_ids_gives_the_join_on_the_ids():
    # the kept facts are joined to today's pairs on one 64-bit hash of the two ids, rows whose ids
    # differ dropped: the same rows as the join on the ids, duplicates and ids in one side only included
    from datafirst_assets.linkage.threshold import _join_on_ids

    rng = np.random.default_rng(3)
    ids = [f"r{i}" for i in range(300)]

    def frame(size, name):
        return pl.DataFrame({"record_id_l": rng.choice(ids, size), "record_id_r": rng.choice(ids, size),
                             name: np.arange(size)})
    left, right = frame(2000, "_row"), frame(2500, "_before")
    expected = left.join(right, on=["record_id_l", "record_id_r"], how="inner")
    got = _join_on_ids(left, right)
    assert got.columns == expected.columns and got.height == expected.height > 0
    assert_frame_equal(got.sort("_row", "_before"), expected.sort("_row", "_before"))
    # collisions (every row hashed alike): only the rows whose ids are the same are joined
    collided = _join_on_ids(left.head(200), right.head(300), hashed=pl.lit(0, pl.UInt64))
    assert_frame_equal(collided.sort("_row", "_before"),
                       left.head(200).join(right.head(300), on=["record_id_l", "record_id_r"]).sort("_row", "_before"))
