"""Regression: EM on a small prison extract drove an m below Splink's minimum and crashed training."""

import polars as pl

from datafirst_assets.linkage.dedupe import deduplicate
from datafirst_assets.linkage.records import person_records
from datafirst_assets.raw.delivery import delivery_path, list_deliveries, load_raw_table
from datafirst_assets.simulate import simulate
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.staging.standardise import stage_partitions


def test_small_prison_extract_trains_and_clusters(tmp_path):
    simulate(people=1500, seed=1, extracts=2, out=tmp_path / "landing", truth_out=tmp_path / "truth")
    source = SOURCES["prison"]
    table = source.person_table
    raw = pl.concat([
        load_raw_table(source, table, delivery_path(tmp_path / "landing", "prison", extract_date))[0]
        for key, extract_date in list_deliveries(tmp_path / "landing") if key == "prison"
    ])
    records = person_records(stage_partitions(raw, source, table).staged, source, table)
    result = deduplicate(records)
    assert result.clusters.height == records.height
    assert 1 < result.clusters["cluster_id"].n_unique() < records.height
