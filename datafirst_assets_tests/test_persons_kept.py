"""The id-stability metric (previous persons whose exact record set is again one person, and how
many kept their id) counted by one join equals counting by comparing sorted member lists."""

from __future__ import annotations

import random

import polars as pl
import pytest

from datafirst_assets.linkage.stable_ids import unchanged_persons_kept


def _by_member_lists(previous: pl.DataFrame, current: pl.DataFrame) -> tuple[int, int]:
    def members(frame: pl.DataFrame) -> pl.DataFrame:
        return (frame.select(pl.col("record_id").cast(pl.String), pl.col("person_id").cast(pl.Int64))
                .group_by("person_id").agg(pl.col("record_id").sort().str.join("\x1f").alias("_members")))
    same = members(previous).join(members(current), on="_members", how="inner", suffix="_now")
    return same.height, same.filter(pl.col("person_id") == pl.col("person_id_now")).height


@pytest.mark.parametrize("seed", range(5))
def test_the_metric_equals_comparing_member_lists(seed):
    rng = random.Random(seed)
    records = [str(i) for i in range(400)]
    previous = pl.DataFrame({"record_id": records, "person_id": [rng.randint(1, 120) for _ in records]})
    # the next run: some records gone, some new, some moved, some persons renumbered
    kept = [r for r in records if rng.random() > 0.05]
    now = {r: p for r, p in zip(previous["record_id"], previous["person_id"]) if r in set(kept)}
    for r in rng.sample(kept, 20):
        now[r] = rng.randint(1, 130)
    for i in range(400, 420):
        now[str(i)] = rng.randint(1, 130)
    swap = {5: 6, 6: 5}
    current = pl.DataFrame({"record_id": list(now), "person_id": [swap.get(p, p) for p in now.values()]})
    got = unchanged_persons_kept(previous, current)
    assert got == _by_member_lists(previous, current)
    assert got[0] > 0
