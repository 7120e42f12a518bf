"""The transitivity check's per-pair flags (threshold.transitive_support): computed only for the
pairs a change can move, reusing the rest from the previous assessment, and always the flags that
computing every pair from scratch gives (here checked against main's two-link-path formulation)."""

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from datafirst_assets.common.pairs import ordered_ids
from datafirst_assets.linkage.threshold import (
    STRONG_WEIGHT,
    SUPPORT_COLUMNS,
    WEIGHT,
    transitive_support,
    transitivity_check,
)


def _every_path(pairs: pl.DataFrame) -> pl.DataFrame:
    """The flags as first written: every two-link path between near-certain links, then a lookup."""
    ordered = ordered_ids(pairs)
    strong = ordered.filter(pl.col(WEIGHT) >= STRONG_WEIGHT).select(pl.col("record_id_l").alias("x"),
                                                                    pl.col("record_id_r").alias("y"))
    edges = pl.concat([strong, strong.select(pl.col("y").alias("x"), pl.col("x").alias("y"))])
    closed = (edges.join(edges.rename({"x": "y", "y": "z"}), on="y").filter(pl.col("x") < pl.col("z"))
              .select(pl.col("x").alias("record_id_l"), pl.col("z").alias("record_id_r")).unique()
              .with_columns(pl.lit(1.0).alias("supported")))
    degree = edges.group_by("x").len("links")
    own = (pl.col(WEIGHT) >= STRONG_WEIGHT).cast(pl.UInt32)
    others = lambda side: (pl.col(f"links_{side}").fill_null(0) - own) > 0  # noqa: E731
    return (ordered.join(closed, on=["record_id_l", "record_id_r"], how="left", maintain_order="left")
            .join(degree.rename({"x": "record_id_l", "links": "links_l"}), on="record_id_l", how="left",
                  maintain_order="left")
            .join(degree.rename({"x": "record_id_r", "links": "links_r"}), on="record_id_r", how="left",
                  maintain_order="left")
            .with_columns(pl.col("supported").fill_null(0.0), (others("l") & others("r")).alias("checkable"))
            .drop("links_l", "links_r"))


def _world(seed: int, people: int = 400) -> pl.DataFrame:
    """People of 1-5 records, their own pairs mostly near-certain, and namesakes between people."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(people):
        size = int(rng.integers(1, 6))
        ids = [f"p{p}_{k}" for k in range(size)]
        rows += [(a, b, float(rng.choice([rng.uniform(10, 24), rng.uniform(-4, 9)], p=[0.8, 0.2])))
                 for i, a in enumerate(ids) for b in ids[i + 1:]]
        if rng.random() < 0.3:
            rows.append((ids[0], f"p{int(rng.integers(people))}_0", float(rng.uniform(-6, 14))))
    frame = pl.DataFrame(rows, schema=["record_id_l", "record_id_r", WEIGHT], orient="row")
    frame = frame.filter(pl.col("record_id_l") != pl.col("record_id_r")).unique(["record_id_l", "record_id_r"],
                                                                                 maintain_order=True)
    return frame.with_columns((1 / (1 + 2.0 ** -pl.col(WEIGHT))).alias("match_probability"))


def _kept(flags: pl.DataFrame) -> pl.DataFrame:
    return flags.select(SUPPORT_COLUMNS)


def test_flags_are_those_of_every_two_link_path():
    pairs = _world(1)
    flags, computed = transitive_support(pairs)
    assert_frame_equal(flags, _every_path(pairs))
    assert computed == pairs.height


def test_an_extract_recomputes_only_the_pairs_it_can_move_and_gives_the_full_flags():
    before = _world(2)
    # the next extract: 1% of the records go, some pairs are re-scored, new records link in
    gone = [f"p{p}_0" for p in range(0, 400, 97)]
    rescored = before.filter(pl.col("record_id_l").str.starts_with("p7_")).with_columns(pl.col(WEIGHT) - 12)
    new = pl.DataFrame({"record_id_l": ["p3_0", "p11_1", "n1"], "record_id_r": ["n1", "n2", "n2"],
                        WEIGHT: [18.0, 12.0, 22.0]})
    after = pl.concat([
        before.filter(~pl.col("record_id_l").is_in(gone) & ~pl.col("record_id_r").is_in(gone)
                      & ~pl.col("record_id_l").str.starts_with("p7_")),
        rescored.drop("match_probability"), new], how="diagonal_relaxed").with_columns(
        (1 / (1 + 2.0 ** -pl.col(WEIGHT))).alias("match_probability"))
    previous, _ = transitive_support(before)
    flags, computed = transitive_support(after, previous=_kept(previous))
    assert_frame_equal(flags, _every_path(after))
    # what can move: pairs not scored before (with these weights), and pairs of a record whose
    # near-certain links changed
    strong = lambda f: set(map(tuple, ordered_ids(f).filter(pl.col(WEIGHT) >= STRONG_WEIGHT)  # noqa: E731
                               .select("record_id_l", "record_id_r").rows()))
    moved = strong(before) ^ strong(after)
    touched = {r for edge in moved for r in edge}
    old = set(map(tuple, ordered_ids(before).select("record_id_l", "record_id_r", WEIGHT).rows()))
    expected = sum(1 for left, right, weight in ordered_ids(after).select("record_id_l", "record_id_r", WEIGHT).rows()
                   if (left, right, weight) not in old or left in touched or right in touched)
    assert computed == expected and 0 < computed < after.height // 5


def test_nothing_changed_recomputes_nothing():
    pairs = _world(3)
    previous, _ = transitive_support(pairs)
    flags, computed = transitive_support(pairs, previous=_kept(previous))
    assert computed == 0
    assert_frame_equal(flags, previous)


def test_a_pair_listed_twice_is_computed_as_before():
    pairs = _world(4)
    twice = pl.concat([pairs, pairs.head(5).select("record_id_r", "record_id_l", WEIGHT, "match_probability")
                       .rename({"record_id_r": "record_id_l", "record_id_l": "record_id_r"})])
    previous, _ = transitive_support(pairs)
    flags, computed = transitive_support(twice, previous=_kept(previous))
    assert computed == twice.height
    assert_frame_equal(flags, _every_path(twice))


def test_the_check_is_the_same_with_and_without_the_previous_flags():
    before, after = _world(5), _world(5).head(-40)
    reused = transitivity_check(after, previous_support=transitivity_check(before).support)
    fresh = transitivity_check(after)
    assert reused.support_computed < fresh.support_computed == after.height
    assert (reused.surest_support, reused.checked_support, reused.checked_links) == (
        fresh.surest_support, fresh.checked_support, fresh.checked_links)
    # the curve is fitted over weight bins that polars groups in no fixed order, so even two fresh
    # checks differ in the last bits: equal to within that
    assert reused.calibration.intercept == pytest.approx(fresh.calibration.intercept, rel=1e-12)
    assert reused.calibration.slope == pytest.approx(fresh.calibration.slope, rel=1e-12)
