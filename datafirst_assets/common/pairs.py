"""Pair ordering: each pair with the smaller record id on the left, as Splink's dedupe
predictions have it, so that (x, y) and (y, x) meet in a join."""

from __future__ import annotations

import polars as pl

ID_L, ID_R = "record_id_l", "record_id_r"


def ordered_ids(
    frame: pl.DataFrame, left: str = ID_L, right: str = ID_R, *, into: tuple[str, str] | None = None
) -> pl.DataFrame:
    """The pair's ids as strings, smaller first: written over ``left``/``right``, or into the two
    columns named by ``into`` (the originals kept)."""
    lo, hi = into or (left, right)
    l_, r_ = pl.col(left).cast(pl.String), pl.col(right).cast(pl.String)
    return frame.with_columns(pl.min_horizontal(l_, r_).alias(lo), pl.max_horizontal(l_, r_).alias(hi))


def ordered_pairs(pairs: pl.DataFrame) -> pl.DataFrame:
    """Each pair with the smaller record id on the left, every ``<column>_l`` / ``<column>_r``
    swapped with it (ids keep their type)."""
    if pairs.is_empty():
        return pairs
    swap = pl.col(ID_L).cast(pl.String) > pl.col(ID_R).cast(pl.String)
    flips = {}
    for left in [c for c in pairs.columns if c.endswith("_l")]:
        right = left[:-2] + "_r"
        if right in pairs.columns:
            flips[left] = pl.when(swap).then(pl.col(right)).otherwise(pl.col(left))
            flips[right] = pl.when(swap).then(pl.col(left)).otherwise(pl.col(right))
    return pairs.with_columns(**flips)
