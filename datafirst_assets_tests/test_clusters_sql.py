"""Nested clustering in DuckDB gives exactly the clusters of the union-find in Python."""

import random

import polars as pl
import pytest

from datafirst_assets.linkage.clusters_sql import nested_clusters_duckdb
from datafirst_assets.linkage.xjs import nested_clusters

T = (0.99, 0.9, 0.5)
COLS = dict(node_col="person_id_dataset", group_col="source_dataset",
            left="person_id_dataset_l", right="person_id_dataset_r")


def _graph(seed: int, datasets=("magistrates", "prison", "probation", "oasys"), max_edges=120):
    rng = random.Random(seed)
    keys = [f"{d}:{i}" for d in datasets for i in range(rng.randint(1, 25))]
    rows = []
    for _ in range(rng.randint(0, max_edges)):
        a, b = rng.sample(keys, 2)
        rows.append((a, b, rng.choice([0.2, 0.5, 0.7, 0.9, 0.95, 0.99, 0.999, rng.random()])))
    nodes = pl.DataFrame({"person_id_dataset": keys, "source_dataset": [k.split(":")[0] for k in keys]})
    edges = pl.DataFrame(rows, schema={"person_id_dataset_l": pl.String, "person_id_dataset_r": pl.String,
                                       "match_probability": pl.Float64}, orient="row")
    return nodes, edges


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("mode", ["separate", "merge"])
def test_same_clusters_as_the_union_find(seed, mode):
    nodes, edges = _graph(seed)
    expected = nested_clusters(nodes, edges, T, same_group=mode, **COLS)
    got, stats = nested_clusters_duckdb(nodes, edges, T, same_group=mode, **COLS)
    assert got.equals(expected), (seed, mode, stats)


def test_only_constrained_components_reach_python():
    # a - b - c is a clean chain over three datasets; m:1 - p:1 - m:2 holds two magistrates persons.
    nodes = pl.DataFrame({"person_id_dataset": ["a:1", "b:1", "c:1", "m:1", "p:1", "m:2"],
                          "source_dataset": ["a", "b", "c", "m", "p", "m"]})
    edges = pl.DataFrame({"person_id_dataset_l": ["a:1", "b:1", "m:1", "m:2"],
                          "person_id_dataset_r": ["b:1", "c:1", "p:1", "p:1"],
                          "match_probability": [0.999, 0.95, 0.999, 0.97]})
    got, stats = nested_clusters_duckdb(nodes, edges, T, **COLS)
    assert stats["constrained_components"] == 1 and stats["nodes_in_python"] == 3
    assert got.equals(nested_clusters(nodes, edges, T, **COLS))
    low = dict(zip(got["person_id_dataset"], got["cluster_low"]))
    assert low["a:1"] == low["b:1"] == low["c:1"] and low["m:1"] == low["p:1"] != low["m:2"]


def test_long_chains_settle():
    keys = [f"d{i}:1" for i in range(300)]  # one path through 300 datasets
    nodes = pl.DataFrame({"person_id_dataset": keys, "source_dataset": [k.split(":")[0] for k in keys]})
    edges = pl.DataFrame({"person_id_dataset_l": keys[:-1], "person_id_dataset_r": keys[1:],
                          "match_probability": [0.995] * 299})
    got, stats = nested_clusters_duckdb(nodes, edges, T, **COLS)
    assert got["cluster_high"].n_unique() == 1 and stats["passes"] < 100


def test_runs_on_a_warehouse_cursor_and_leaves_it_usable(tmp_path):
    from datafirst_assets.warehouse.connection import warehouse_cursor

    nodes, edges = _graph(3)
    with warehouse_cursor(tmp_path / "w.duckdb") as conn:
        got, _ = nested_clusters_duckdb(nodes, edges, T, connection=conn, **COLS)
        assert conn.execute("select 1").fetchall() == [(1,)]
    assert got.equals(nested_clusters(nodes, edges, T, **COLS))
