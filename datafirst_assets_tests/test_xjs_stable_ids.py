"""Cross-justice ids carried forward between runs, with merges and splits logged."""

import polars as pl

from datafirst_assets.linkage.xjs import (
    carry_forward_xjs_ids,
    check_lookup_invariants,
    unchanged_xjs_persons_kept,
    xjs_change_counts,
    xjs_id_change_history,
)


def _lookup(rows):
    """rows: (dataset, record, dataset person, high, medium, low)."""
    return pl.DataFrame(rows, schema={"source_dataset": pl.String, "record_id": pl.String,
                                      "person_id_dataset": pl.String, "person_id_high": pl.Int64,
                                      "person_id_medium": pl.Int64, "person_id_low": pl.Int64}, orient="row")


FIRST = _lookup([
    ("magistrates", "m1", "magistrates:1", 1, 1, 1),
    ("prison", "p1", "prison:1", 1, 1, 1),
    ("magistrates", "m2", "magistrates:2", 2, 2, 2),
    ("family", "f1", "family:1", 3, 3, 2),
    ("civil", "c1", "civil:1", 4, 4, 3),
])


def _ids(lookup, level):
    return dict(zip(lookup["record_id"], lookup[f"person_id_{level}"]))


def test_ids_are_kept_on_a_rerun_whatever_the_clustering_numbering():
    first, _ = carry_forward_xjs_ids(FIRST)
    # the same persons, numbered differently by this run's clustering, plus a new record
    rerun = _lookup([
        ("magistrates", "m1", "magistrates:1", 7, 9, 5),
        ("prison", "p1", "prison:1", 7, 9, 5),
        ("magistrates", "m2", "magistrates:2", 3, 2, 1),
        ("family", "f1", "family:1", 1, 1, 1),
        ("civil", "c1", "civil:1", 2, 3, 2),
        ("civil", "c2", "civil:2", 5, 5, 4),
    ])
    second, changes = carry_forward_xjs_ids(rerun, first)
    for level in ("high", "medium", "low"):
        before, after = _ids(first, level), _ids(second, level)
        assert all(after[r] == before[r] for r in before), level
        assert after["c2"] not in before.values()
    assert set(changes["kind"]) == {"new"}
    assert unchanged_xjs_persons_kept(first, second) == {lv: (n, n) for lv, n in
                                                         (("high", 4), ("medium", 4), ("low", 3))}
    assert check_lookup_invariants(second, second.select("source_dataset", "record_id")) == []


def test_a_merge_keeps_the_larger_persons_id_and_is_logged():
    first, _ = carry_forward_xjs_ids(FIRST)
    merged = FIRST.with_columns(  # magistrates:2 now links to the m1/p1 person at high and medium
        pl.when(pl.col("record_id") == "m2").then(1).otherwise(pl.col(f"person_id_{lv}")).alias(f"person_id_{lv}")
        for lv in ("high", "medium"))
    second, changes = carry_forward_xjs_ids(merged, first)
    high_before, high_after = _ids(first, "high"), _ids(second, "high")
    assert high_after["m2"] == high_after["m1"] == high_before["m1"]  # the two-record person's id survives
    logged = changes.filter((pl.col("level") == "high") & (pl.col("kind") == "merge")).row(0, named=True)
    assert (logged["old_id"], logged["new_id"], logged["records"]) == (high_before["m2"], high_before["m1"], 1)
    # the low level did not change: nothing logged there, ids equal
    assert _ids(second, "low") == _ids(first, "low")
    assert changes.filter(pl.col("level") == "low").is_empty()
    # a later split never reuses the retired id
    split = FIRST.with_columns(pl.when(pl.col("record_id") == "p1").then(99).otherwise(pl.col("person_id_high"))
                               .alias("person_id_high"))
    history = xjs_id_change_history(None, changes, run_id="r2")
    third, later = carry_forward_xjs_ids(split, second, history)
    assert _ids(third, "high")["p1"] not in {*high_before.values(), *high_after.values()}
    assert "split" in later.filter(pl.col("level") == "high")["kind"].to_list()


def test_change_counts_report_every_person_new_on_the_first_run():
    first, changes = carry_forward_xjs_ids(FIRST)
    counts = xjs_change_counts(changes, first, first_run=True)
    assert (counts["high_new"], counts["medium_new"], counts["low_new"]) == (4, 4, 3)
    assert counts["high_merge"] == counts["low_retired"] == 0  # every level and kind is reported
    merged = FIRST.with_columns(pl.when(pl.col("record_id") == "m2").then(1).otherwise(pl.col("person_id_high"))
                                .alias("person_id_high"))
    second, later = carry_forward_xjs_ids(merged, first)
    counts = xjs_change_counts(later, second, first_run=False)
    assert counts["high_merge"] == 1 and counts["high_new"] == 0
