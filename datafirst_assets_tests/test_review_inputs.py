"""The review queue asset reads only the pairs near the threshold and their records, and draws the
same sample as from every pair and record."""

import random

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from datafirst_assets.defs.linkage import _review_inputs, _stored_threshold
from datafirst_assets.linkage.metrics import review_queue, unlabelled_pairs
from datafirst_assets.warehouse.connection import close_warehouse, warehouse_cursor
from datafirst_assets.warehouse.io_manager import StoredTable


def _warehouse(tmp_path, pairs_count: int, spread: float):
    rng = random.Random(3)
    records = pl.DataFrame({"record_id": [str(i) for i in range(2000)],
                            "surname": [rng.choice(["SMITH", "JONES", "KHAN", None]) for _ in range(2000)],
                            "dob": [f"19{rng.randint(40, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
                                    for _ in range(2000)]})
    seen, rows = set(), []
    while len(rows) < pairs_count:
        left, right = sorted(rng.sample(range(2000), 2))
        if (left, right) in seen:
            continue
        seen.add((left, right))
        weight = rng.uniform(-spread, spread)
        rows.append((str(left), str(right), weight, 2 ** weight / (1 + 2 ** weight)))
    pairs = pl.DataFrame(rows, schema=["record_id_l", "record_id_r", "match_weight", "match_probability"],
                         orient="row")
    clusters = pl.DataFrame({"record_id": records["record_id"], "person_id": range(2000),
                             "match_threshold": [0.8] * 2000})
    database = str(tmp_path / "warehouse.duckdb")
    with warehouse_cursor(database) as conn:
        conn.execute("create schema linkage_x")
        for name, frame in (("pairs", pairs), ("records", records), ("clusters", clusters)):
            conn.register("_frame", frame.to_arrow())
            conn.execute(f"create table linkage_x.{name} as select * from _frame")
            conn.unregister("_frame")
    return database, pairs, records


@pytest.fixture(autouse=True)
def _closed():
    yield
    close_warehouse()


@pytest.mark.parametrize("pairs_count, spread, labels", [
    (3000, 30.0, 0),     # many pairs near the threshold: only those read
    (3000, 30.0, 400),   # some of them labelled already
    (600, 30.0, 0),      # fewer than n near it: every pair read, the nearest taken
    (3000, 8.0, 2900),   # nearly all labelled: too few left near it, every pair read
])
def test_review_inputs_draw_the_sample_that_every_pair_and_record_draw(tmp_path, pairs_count, spread, labels):
    database, pairs, records = _warehouse(tmp_path, pairs_count, spread)
    stored = {name: StoredTable(database, "linkage_x", name) for name in ("pairs", "records", "clusters")}
    labelled = (pairs.sample(labels, seed=1).select("record_id_r", "record_id_l")  # either way round
                .rename({"record_id_r": "record_id_l", "record_id_l": "record_id_r"})
                .with_columns(pl.lit(1.0).alias("clerical_match_score"))) if labels else None
    threshold = _stored_threshold(stored["clusters"])
    assert threshold == 0.8
    n = 500
    pairs_in, records_in = _review_inputs(stored["pairs"], stored["records"], threshold, n, labelled)
    expected = review_queue(pairs, records, threshold_match_probability=threshold, n=n, seed=0, labelled=labelled)
    got = review_queue(pairs_in, records_in, threshold_match_probability=threshold, n=n, seed=0, labelled=labelled)
    assert_frame_equal(got, expected)
    assert expected.height == min(n, pairs_count - labels)
    # read no more than it needs: only near pairs when enough are unlabelled, and only their records
    near = unlabelled_pairs(pairs.filter((pl.col("match_weight") - 2.0).abs() <= 6.0), labelled)
    assert pairs_in.height == (near.height if near.height >= n else unlabelled_pairs(pairs, labelled).height)
    ids = pl.concat([pairs_in["record_id_l"], pairs_in["record_id_r"]]).unique()
    assert sorted(records_in["record_id"]) == sorted(ids)


def test_stored_threshold_of_no_clusters_is_a_half(tmp_path):
    database = str(tmp_path / "warehouse.duckdb")
    with warehouse_cursor(database) as conn:
        conn.execute("create schema linkage_x")
        conn.execute("create table linkage_x.clusters (record_id varchar, match_threshold double)")
    assert _stored_threshold(StoredTable(database, "linkage_x", "clusters")) == 0.5


def test_pairs_without_a_match_weight_are_refused_by_the_sample_with_its_own_words(tmp_path):
    database = str(tmp_path / "warehouse.duckdb")
    with warehouse_cursor(database) as conn:
        conn.execute("create schema linkage_x")
        conn.execute("create table linkage_x.pairs as select '1' as record_id_l, '2' as record_id_r")
        conn.execute("create table linkage_x.records as select '1' as record_id union all select '2'")
    pairs_in, records_in = _review_inputs(StoredTable(database, "linkage_x", "pairs"),
                                          StoredTable(database, "linkage_x", "records"), 0.8, 10, None)
    with pytest.raises(ValueError, match="match_weight"):
        review_queue(pairs_in, records_in, threshold_match_probability=0.8, n=10)
