"""Score record pairs with a trained model.

    pairs_sdf = predict_pairs(linker, threshold_match_probability=0.01)
    pairs = pairs_to_polars(pairs_sdf)     # record_id_l, record_id_r, match_weight, ...

Pairs stay in the backend (a SplinkDataFrame) until asked for, so clustering big inputs
never round-trips through Python; ``pairs_to_polars`` goes through arrow, not pandas.

For inputs too big to score in one pass, ``predict_pairs_to_parquet`` scores one chunk of
the left-hand records at a time and writes each chunk's pairs to Parquet, so only one
chunk's blocked pairs are ever held; ``parquet_pairs`` reads them back for clustering.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:  # Splink is imported by the steps that link (linkage/settings.py)
    from splink import Linker

from datafirst_assets.linkage.backend import parquet_table, sql_dialect, write_parquet
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
    return pairs_to_polars(pairs_sdf, pair_columns(pairs_sdf))


#: Blocked pairs scored per pass by :func:`predict_pairs_to_parquet` when the number of
#: chunks is chosen for you (10M person records: 5 passes, within an 8 GB DuckDB limit).
PAIRS_PER_CHUNK = 40_000_000


def chunks_for(spec: ModelSpec, pairs_per_chunk: float = PAIRS_PER_CHUNK) -> int:
    """Chunks needed to keep each pass under ``pairs_per_chunk`` blocked pairs, from the
    pair counts measured when the blocking rules were fitted (an upper bound: pairs
    found by several rules are counted once per rule)."""
    total = sum(spec.blocking_pairs.values())
    return max(1, math.ceil(total / pairs_per_chunk)) if total else 1


class BlockingTooLoose(ValueError):
    """A prediction blocking rule would generate more pairs than the configured cap."""


def check_blocking_pairs(spec: ModelSpec, max_pairs_per_rule: float | None) -> None:
    """Refuse to predict when a blocking rule generates more pairs than ``max_pairs_per_rule``,
    naming the rule, instead of running for hours or filling the disk. Counts are those
    measured when the rules were fitted to the records (``ModelSpec.blocking_pairs``)."""
    if not max_pairs_per_rule:
        return
    over = {rule: n for rule, n in spec.blocking_pairs.items() if n > max_pairs_per_rule}
    if over:
        listed = "; ".join(f"{rule}: {n:,} pairs" for rule, n in sorted(over.items(), key=lambda kv: -kv[1]))
        raise BlockingTooLoose(
            f"blocking rule(s) over the cap of {max_pairs_per_rule:,.0f} pairs per rule: {listed}. "
            "Tighten the rule, or raise LinkageSettings.max_pairs_per_rule if the machine can score them")


def pair_columns(pairs_sdf) -> list[str]:
    """The columns kept from a prediction: ids, weight, probability and comparison levels."""
    have = [c.unquote().name for c in pairs_sdf.columns]
    return [c for c in PAIR_COLUMNS if c in have] + [c for c in have if c.startswith("gamma_")]


def predict_pairs_in_chunks(
    linker: Linker,
    num_chunks: int,
    *,
    threshold_match_probability: float | None = None,
    progress: Callable[[str], None] | None = None,
):
    """Score pairs one chunk of left-hand records at a time (Splink's ``predict_chunk``),
    appending each chunk's kept columns to one table in the backend and dropping the chunk,
    so only one chunk's blocked pairs are ever held besides the (spillable) result. Returns
    a SplinkDataFrame that clustering accepts. One chunk is a plain ``predict``.

    A pair belongs to exactly one chunk (the chunk of its left record), so the table holds
    the same pairs as one ``predict``.
    """
    if num_chunks <= 1 or sql_dialect(linker._db_api) != "duckdb":
        return predict_pairs(linker, threshold_match_probability=threshold_match_probability,
                             num_chunks=num_chunks if num_chunks > 1 else None)
    say = progress or (lambda _m: None)
    con = linker._db_api._con
    table = f"__datafirst_pairs_{secrets.token_hex(4)}"
    for i in range(1, num_chunks + 1):
        t = time.perf_counter()
        sdf = linker.inference.predict_chunk(left_chunk=(i, num_chunks), right_chunk=None,
                                             threshold_match_probability=threshold_match_probability,
                                             warning_mode="never")
        try:
            cols = ", ".join(pair_columns(sdf))
            verb = f"create table {table} as" if i == 1 else f"insert into {table}"
            con.execute(f"{verb} select {cols} from {sdf.physical_name}")
        finally:
            sdf.drop_table_from_database_and_remove_from_cache()
        say(f"scored chunk {i}/{num_chunks} in {time.perf_counter() - t:.0f}s")
    pairs = linker._db_api.table_to_splink_dataframe("__splink__df_predict", table)
    pairs.created_by_splink = True  # ours, made for Splink: dropping it with Splink's call is right
    return pairs


def predict_pairs_to_parquet(
    linker: Linker,
    out_dir: str | Path,
    *,
    num_chunks: int = 1,
    threshold_match_probability: float | None = None,
    threshold_match_weight: float | None = None,
    columns: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Score pairs one chunk of left-hand records at a time (Splink's ``predict_chunk``),
    writing each chunk to ``out_dir/pairs_NNNN.parquet`` and dropping it from the backend.

    A pair belongs to exactly one chunk (the chunk of its left record), so the files hold
    the same pairs as one ``predict``. ``columns`` defaults to ids, weight, probability
    and the comparison levels (as :func:`slim_pairs`). Returns the files written.
    """
    say = progress or (lambda _m: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = max(1, int(num_chunks))
    paths = []
    for i in range(1, n + 1):
        t = time.perf_counter()
        sdf = linker.inference.predict_chunk(
            left_chunk=(i, n) if n > 1 else None, right_chunk=None,
            threshold_match_probability=threshold_match_probability,
            threshold_match_weight=threshold_match_weight, warning_mode="never")
        try:
            have = [c.unquote().name for c in sdf.columns]
            cols = list(columns) if columns is not None else (
                [c for c in PAIR_COLUMNS if c in have] + [c for c in have if c.startswith("gamma_")])
            paths.append(write_parquet(linker._db_api, sdf, out / f"pairs_{i:04d}.parquet", cols))
        finally:
            sdf.drop_table_from_database_and_remove_from_cache()
        say(f"scored chunk {i}/{n} in {time.perf_counter() - t:.0f}s")
    return paths


def parquet_pairs(linker: Linker, paths: Sequence[str | Path]):
    """Pairs written by :func:`predict_pairs_to_parquet` as a SplinkDataFrame (a view over
    the files) that clustering accepts; drop it with ``backend.drop_parquet_table``."""
    return parquet_table(linker._db_api, list(paths))
