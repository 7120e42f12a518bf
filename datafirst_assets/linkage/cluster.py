"""Cluster scored pairs into people (connected components at a threshold).

    clusters = cluster_pairs(linker, pairs_sdf, threshold_match_probability=0.9)
    # -> [source_dataset,] record_id, cluster_id   (one row per input record)

Splink's cluster id is the smallest (composite) record id in the cluster; it changes when
clusters merge or split, so stable person ids are carried forward elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:  # Splink is imported by the steps that link (linkage/settings.py)
    from splink import Linker

from datafirst_assets.linkage.disjoint_sets import DisjointSets
from datafirst_assets.linkage.predict import predict_pairs
from datafirst_assets.linkage.settings import SOURCE_DATASET, UNIQUE_ID


def cluster_pairs(
    linker: Linker,
    pairs_sdf,
    *,
    threshold_match_probability: float | None = None,
    threshold_match_weight: float | None = None,
) -> pl.DataFrame:
    """Connected components of pairs at/above the threshold -> ``record_id, cluster_id``
    (preceded by ``source_dataset`` when the records have it, as person records do and
    as linking several inputs requires). Every input record appears, singletons included."""
    if threshold_match_probability is None and threshold_match_weight is None:
        raise ValueError("give threshold_match_probability or threshold_match_weight")
    cc = linker.clustering.cluster_pairwise_predictions_at_threshold(
        pairs_sdf,
        threshold_match_probability=threshold_match_probability,
        threshold_match_weight=threshold_match_weight,
    )
    have = {c.unquote().name for c in cc.columns}
    cols = [c for c in (SOURCE_DATASET, UNIQUE_ID) if c in have] + ["cluster_id"]
    sel = cc.query_sql(f"select {', '.join(cols)} from {{this}}")
    try:
        out = pl.from_arrow(sel.as_pyarrow_table())
    finally:
        sel.drop_table_from_database_and_remove_from_cache()
        cc.drop_table_from_database_and_remove_from_cache()
    return out.with_columns(pl.col("cluster_id").cast(pl.String))  # type: ignore[union-attr]


def predict_and_cluster(
    linker: Linker,
    threshold_match_probability: float,
    *,
    keep_pairs_above: float | None = None,
    num_chunks: int | None = None,
) -> tuple[pl.DataFrame, Any]:
    """Predict (keeping pairs with probability >= ``keep_pairs_above``, default the
    clustering threshold) and cluster. Returns (clusters, pairs SplinkDataFrame)."""
    keep = threshold_match_probability if keep_pairs_above is None else min(keep_pairs_above,
                                                                          threshold_match_probability)
    pairs = predict_pairs(linker, threshold_match_probability=keep, num_chunks=num_chunks)
    clusters = cluster_pairs(linker, pairs, threshold_match_probability=threshold_match_probability)
    return clusters, pairs


def clusters_from_edges(record_ids: Sequence[str] | pl.Series, edges: pl.DataFrame,
                        *, left: str = "record_id_l", right: str = "record_id_r") -> pl.DataFrame:
    """Connected components in polars (for re-clustering stored pairs at another threshold
    without a backend): ``record_id, cluster_id`` with cluster id = smallest record id."""
    ids = pl.Series(UNIQUE_ID, record_ids, dtype=pl.String).unique()
    idx = {v: i for i, v in enumerate(ids.to_list())}
    sets = DisjointSets(len(idx))
    for a, b in zip(edges.get_column(left).cast(pl.String).to_list(),
                    edges.get_column(right).cast(pl.String).to_list()):
        if a in idx and b in idx:
            sets.union(idx[a], idx[b])
    df = pl.DataFrame({UNIQUE_ID: ids, "_root": sets.roots()})
    return df.with_columns(pl.col(UNIQUE_ID).min().over("_root").alias("cluster_id")).drop("_root")
