"""One call from person records to clusters: spec -> train -> predict -> cluster.

    result = deduplicate(records)                   # one frame: dedupe_only
    result = deduplicate([frame_a, frame_b])        # several: link_and_dedupe
    result.clusters   # record_id, [source_dataset,] cluster_id
    result.pairs      # scored pairs (polars) if keep_pairs=True
    result.model      # TrainedModel (settings JSON, version, summary)

    # millions of records: DuckDB capped and spilling, pairs scored in chunks to Parquet
    db_api = make_db_api(memory_limit="6GB", temp_directory="/scratch/duckdb_tmp")
    result = deduplicate(records, db_api=db_api, pairs_dir="/scratch/pairs")

The pieces (settings / train / predict / cluster) stay usable on their own, e.g. for
Dagster assets that store the model and the clusters separately.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from datafirst_assets.linkage.backend import drop_parquet_table, make_db_api, sql_dialect
from datafirst_assets.linkage.cluster import cluster_pairs
from datafirst_assets.linkage.predict import (
    chunks_for,
    parquet_pairs,
    predict_pairs,
    predict_pairs_to_parquet,
    slim_pairs,
)
from datafirst_assets.linkage.settings import ModelSpec, model_spec_for_records
from datafirst_assets.linkage.train import TrainedModel, TrainingConfig, save_charts, train_model

#: Default clustering threshold (match probability) when none is configured or chosen
#: from labels. Pairs at or above it are linked; 0.9 means "at least 9:1 odds of being
#: the same person" under the trained model.
DEFAULT_THRESHOLD = 0.9


def dedupe_u_pairs(records: int) -> float:
    """Random pairs for u when deduplicating a file: as many as records, within [1e6, 1e7]
    (Splink's documented default is 1e6; 1e7 on every input made `datafirst dedupe` twice as
    slow as the documented script at 1M records for no gain in accuracy, and 2e6 at 1M records
    gave the same B-cubed F1 as 1e6)."""
    return float(min(1e7, max(1e6, records)))


@dataclass
class DedupeResult:
    clusters: pl.DataFrame
    model: TrainedModel
    threshold_match_probability: float
    pairs: pl.DataFrame | None = None
    charts: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def deduplicate(
    records: pl.DataFrame | Sequence[pl.DataFrame],
    *,
    db_api=None,
    spec: ModelSpec | None = None,
    extras: Sequence[str] = (),
    threshold_match_probability: float | None = None,
    keep_pairs: bool = False,
    keep_pairs_above: float | None = None,
    training: TrainingConfig | None = None,
    chart_dir: str | Path | None = None,
    num_chunks: int | None = None,
    pairs_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> DedupeResult:
    """Train on ``records`` and cluster them at ``threshold_match_probability``
    (default :data:`DEFAULT_THRESHOLD`).

    ``keep_pairs`` returns the scored pairs (ids, weight, probability, comparison
    levels) with probability >= ``keep_pairs_above`` (default: the threshold).

    ``pairs_dir`` scores pairs in ``num_chunks`` passes (default: enough for
    :data:`~datafirst_assets.linkage.predict.PAIRS_PER_CHUNK` blocked pairs each), writes
    them there as Parquet and clusters from the files: for inputs whose pairs do not fit
    in memory at once. Without it, ``num_chunks`` is Splink's own chunking (all chunks
    are still held until the end).
    """
    say = progress or (lambda _m: None)
    timings: dict[str, float] = {}
    threshold = DEFAULT_THRESHOLD if threshold_match_probability is None else threshold_match_probability
    db_api = db_api or make_db_api()

    t = time.perf_counter()
    if spec is None:
        say("choosing comparisons and blocking rules from the fields present")
        spec = model_spec_for_records(records, extras=extras, sql_dialect=sql_dialect(db_api))
    timings["spec"] = time.perf_counter() - t

    t = time.perf_counter()
    if training is None:
        n = records.height if isinstance(records, pl.DataFrame) else sum(f.height for f in records)
        training = TrainingConfig(u_max_pairs=dedupe_u_pairs(n))
    model = train_model(records, spec, db_api, training, progress=say)
    timings["train"] = time.perf_counter() - t
    charts = save_charts(model.linker, chart_dir) if chart_dir else {}

    t = time.perf_counter()
    keep = threshold if keep_pairs_above is None else min(keep_pairs_above, threshold)
    n_rules = len(spec.settings["blocking_rules_to_generate_predictions"])
    if pairs_dir is not None:
        chunks = num_chunks or chunks_for(spec)
        say(f"scoring pairs from {n_rules} blocking rules in {chunks} chunk(s) to {pairs_dir}")
        files = predict_pairs_to_parquet(model.linker, pairs_dir, num_chunks=chunks,
                                         threshold_match_probability=keep, progress=say)
        pairs_sdf = parquet_pairs(model.linker, files)
    else:
        say(f"scoring pairs from {n_rules} blocking rules")
        pairs_sdf = predict_pairs(model.linker, threshold_match_probability=keep, num_chunks=num_chunks)
    timings["predict"] = time.perf_counter() - t

    t = time.perf_counter()
    say(f"clustering at match probability >= {threshold}")
    clusters = cluster_pairs(model.linker, pairs_sdf, threshold_match_probability=threshold)
    timings["cluster"] = time.perf_counter() - t
    pairs = slim_pairs(pairs_sdf) if keep_pairs else None
    if pairs_dir is not None:
        drop_parquet_table(db_api, pairs_sdf)
    else:
        pairs_sdf.drop_table_from_database_and_remove_from_cache()
    return DedupeResult(clusters=clusters, model=model, threshold_match_probability=threshold,
                        pairs=pairs, charts=charts, timings=timings)
