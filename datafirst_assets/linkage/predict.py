"""Score record pairs with a trained model.

    pairs_sdf = predict_pairs(linker, threshold_match_probability=0.01)
    pairs = pairs_to_polars(pairs_sdf)     # record_id_l, record_id_r, match_weight, ...

Pairs stay in the backend (a SplinkDataFrame) until asked for, so clustering big inputs
never round-trips through Python; ``pairs_to_polars`` goes through arrow, not pandas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from splink import Linker

from datafirst_assets.linkage.settings import ModelSpec
from datafirst_assets.linkage.train import TrainedModel, make_linker

#: Columns of a scored-pairs table, in this order when present.
PAIR_COLUMNS = ("source_dataset_l", "record_id_l", "source_dataset_r", "record_id_r",
                "match_weight", "match_probability")


def linker_for_model(db_api, records: pl.DataFrame | Sequence[pl.DataFrame],
                     model: TrainedModel | dict[str, Any], spec: ModelSpec | None = None) -> Linker:
    """A linker over ``records`` using a stored model (TrainedModel or Splink JSON)."""
    if isinstance(model, TrainedModel):
        return model.linker if model.linker is not None else make_linker(db_api, records, model.settings, model.spec)
    return make_linker(db_api, records, model, spec)


def predict_pairs(
    linker: Linker,
    *,
    threshold_match_probability: float | None = None,
    threshold_match_weight: float | None = None,
    num_chunks: int | None = None,
):
    """Score all pairs from the model's blocking rules; keep those at/above a threshold.

    ``num_chunks`` splits both sides into chunks (num_chunks^2 passes) to cap memory on
    very large inputs. Returns a SplinkDataFrame (stays in the backend).
    """
    kwargs: dict[str, Any] = {}
    if num_chunks and num_chunks > 1:
        kwargs = {"num_chunks_left": num_chunks, "num_chunks_right": num_chunks}
    return linker.inference.predict(
        threshold_match_probability=threshold_match_probability,
        threshold_match_weight=threshold_match_weight,
        warning_mode="never",
        **kwargs,
    )


def pairs_to_polars(pairs_sdf, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """Scored pairs as polars via arrow. ``columns=None`` keeps every column."""
    if columns is None:
        return pl.from_arrow(pairs_sdf.as_pyarrow_table())  # type: ignore[return-value]
    have = {c.unquote().name for c in pairs_sdf.columns}
    cols = [c for c in columns if c in have]
    sel = pairs_sdf.query_sql(f"select {', '.join(cols)} from {{this}}")
    try:
        return pl.from_arrow(sel.as_pyarrow_table())  # type: ignore[return-value]
    finally:
        sel.drop_table_from_database_and_remove_from_cache()


def slim_pairs(pairs_sdf) -> pl.DataFrame:
    """Ids, match weight and probability, plus comparison levels (gamma_*)."""
    have = [c.unquote().name for c in pairs_sdf.columns]
    cols = [c for c in PAIR_COLUMNS if c in have] + [c for c in have if c.startswith("gamma_")]
    return pairs_to_polars(pairs_sdf, cols)
