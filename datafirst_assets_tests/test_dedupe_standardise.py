"""`datafirst dedupe` cleans each distinct value once: the same result as cleaning every row."""

import polars as pl

from datafirst_assets.linkage.dedupe_cli import on_distinct
from datafirst_assets.sources.identifiers import clean_name, normalise_postcode


def test_cleaning_distinct_values_equals_cleaning_every_row():
    names = pl.Series("forename", ["Zoë", "zoe", None, "O'Brien", "  ", "Zoë", "Nguyễn", None, "o brien"])
    postcodes = pl.Series("postcode", ["sw1a1aa", "SW1A  1AA", None, "nonsense", "sw1a1aa", ""])
    for values, clean in ((names, clean_name), (postcodes, normalise_postcode)):
        frame = values.to_frame()
        direct = frame.select(clean(pl.col(values.name)).alias("v"))
        once = frame.select(on_distinct(clean)(pl.col(values.name)).alias("v"))
        assert once.equals(direct), (once, direct)
        assert once.height == values.len()  # order and row count kept
