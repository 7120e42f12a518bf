"""Re-clustering only the components a change touches gives the clustering of every edge."""

from __future__ import annotations

import random

import polars as pl
import pytest

from datafirst_assets.linkage.clusters_sql import nested_clusters_duckdb
from datafirst_assets.linkage.xjs import nested_clusters
from datafirst_assets.linkage.xjs_incremental import CLUSTER_NAMES, cluster_state, clustered_as, recluster_touched

T = (0.99, 0.9, 0.5)
HOW = clustered_as(T, "separate")


def _cluster(nodes: pl.DataFrame, edges: pl.DataFrame):
    return nested_clusters_duckdb(nodes, edges, T, node_col="person_id_dataset", group_col="source_dataset",
                                  left="person_id_dataset_l", right="person_id_dataset_r",
                                  python_clusters=nested_clusters, component_col="component")


def _nodes(keys) -> pl.DataFrame:
    return pl.DataFrame({"person_id_dataset": sorted(keys), "source_dataset": [k.split(":")[0] for k in sorted(keys)]})


def _edges(pairs: dict) -> pl.DataFrame:
    rows = [(min(a, b), max(a, b), p) for (a, b), p in pairs.items()]
    return pl.DataFrame({"person_id_dataset_l": [r[0] for r in rows], "person_id_dataset_r": [r[1] for r in rows],
                         "match_probability": [r[2] for r in rows]},
                        schema={"person_id_dataset_l": pl.String, "person_id_dataset_r": pl.String,
                                "match_probability": pl.Float64})


def _random_pair(rng, keys):
    while True:
        a, b = rng.sample(keys, 2)
        if a.split(":")[0] != b.split(":")[0]:
            return tuple(sorted((a, b)))


@pytest.mark.parametrize("seed", range(6))
def test_reclustering_the_touched_components_equals_clustering_every_edge(seed):
    rng = random.Random(seed)
    scores = [0.995, 0.99, 0.95, 0.9, 0.7, 0.5]  # ties and scores at the thresholds themselves
    before_keys = [f"{d}:{i}" for d in "abc" for i in range(60)]
    pairs = {_random_pair(rng, before_keys): rng.choice(scores) for _ in range(150)}
    first, _ = _cluster(_nodes(before_keys), _edges(pairs))
    stored = cluster_state(first, HOW)
    # the next extract: some persons gone, some changed (their edges scored again), some new
    gone = set(rng.sample(before_keys, 4))
    changed = set(rng.sample([k for k in before_keys if k not in gone], 5))
    new = {f"{d}:{i}" for d in "abc" for i in range(60, 64)}
    after_keys = [k for k in before_keys if k not in gone] + sorted(new)
    kept = {p: s for p, s in pairs.items() if not (set(p) & (gone | changed))}
    fresh = {}
    for key in sorted(changed | new):
        for _ in range(rng.randint(0, 3)):
            other = rng.choice([k for k in after_keys if k.split(":")[0] != key.split(":")[0]])
            fresh[tuple(sorted((key, other)))] = rng.choice(scores)
    edges = _edges({**kept, **fresh})
    seeds = pl.Series([*gone, *changed, *new, *[k for p in fresh for k in p]], dtype=pl.String)
    got, stats = recluster_touched(_nodes(after_keys), edges, stored, seeds, HOW, _cluster)
    want, _ = _cluster(_nodes(after_keys), edges)
    assert got is not None, stats
    assert stats["mode"] == "touched components" and stats["persons_reclustered"] < len(after_keys)
    assert got.drop(CLUSTER_NAMES).equals(want.select(got.drop(CLUSTER_NAMES).columns))
    # the cluster names it carries are those the state would give the clustering of every edge
    assert set(CLUSTER_NAMES) <= set(got.columns)
    assert cluster_state(got, HOW).equals(cluster_state(want, HOW).sort("person_id_dataset"))


def test_a_stored_state_from_other_thresholds_or_without_clusters_is_not_used():
    nodes = _nodes(["a:1", "b:1"])
    edges = _edges({("a:1", "b:1"): 0.95})
    first, _ = _cluster(nodes, edges)
    seeds = pl.Series(["a:1"])
    other = cluster_state(first, clustered_as((0.99, 0.8, 0.5), "separate"))
    assert recluster_touched(nodes, edges, other, seeds, HOW, _cluster)[0] is None
    bare = cluster_state(first, HOW).drop("component")
    assert "no clusters" in recluster_touched(nodes, edges, bare, seeds, HOW, _cluster)[1]["reason"]


def test_clusters_are_numbered_as_the_dense_rank_of_their_names():
    """``_number_clusters`` numbers each level's cluster names by joining them to their leaders (the
    rows that name their own cluster), in key order: the dense rank of the names, also when a name
    has no leader row or the rows are not in key order (then it ranks them)."""
    from datafirst_assets.linkage.xjs_incremental import CLUSTER_LEVELS, _number_clusters

    rng = random.Random(7)
    keys = sorted({f"civil:{rng.randrange(10**6)}" for _ in range(3000)})
    rows = {"person_id_dataset": keys}
    for lv in CLUSTER_LEVELS:  # each key's cluster (of keys spread over the range) named by its smallest member
        cluster = {k: rng.randrange(400) for k in keys}
        smallest: dict[int, str] = {}
        for k in keys:
            smallest.setdefault(cluster[k], k)
        rows[f"cluster_{lv}"] = [smallest[cluster[k]] for k in keys]
    frame = pl.DataFrame(rows)

    def ranked(f: pl.DataFrame) -> pl.DataFrame:
        return f.with_columns(pl.col(f"cluster_{lv}").rank("dense").cast(pl.Int64) for lv in CLUSTER_LEVELS)

    assert _number_clusters(frame).equals(ranked(frame))
    no_leader = frame.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("civil:0"))
                                   .otherwise(pl.col("cluster_high")).alias("cluster_high"))
    assert _number_clusters(no_leader).equals(ranked(no_leader))
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    assert _number_clusters(shuffled).equals(ranked(shuffled))
