"""A simulated clerical reviewer: labels review-queue pairs from the truth, with mistakes.

Its output is an ordinary clerical labels file (``labels/<source>.csv``: the queue's columns
with ``clerical_match_score`` filled in), the same file a review team fills in, so the pipeline
cannot tell the two apart. Reviewers disagree on a few percent of pairs: ``error_rate`` of the
labels are flipped at random.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from datafirst_assets.linkage.metrics import LABEL, read_labels

DEFAULT_PAIRS = 1_500
DEFAULT_ERROR_RATE = 0.02


def simulated_labels(queue: pl.DataFrame, truth: pl.DataFrame, *, pairs: int = DEFAULT_PAIRS,
                     error_rate: float = DEFAULT_ERROR_RATE, seed: int = 0) -> pl.DataFrame:
    """The first ``pairs`` rows of ``queue`` (record_id_l, record_id_r, ...) with
    ``clerical_match_score`` = 1 when truth puts both records in one person, else 0, and a share
    ``error_rate`` of the labels (chosen at random) flipped. ``truth``: record_id, person_id."""
    if not 0 <= error_rate <= 1:
        raise ValueError(f"error rate must be in [0, 1], not {error_rate}")
    t = truth.select(pl.col("record_id").cast(pl.String), pl.col("person_id").cast(pl.String))
    sample = queue.head(pairs).drop(LABEL, strict=False)
    same = (sample.select(pl.col("record_id_l").cast(pl.String), pl.col("record_id_r").cast(pl.String))
            .join(t.rename({"record_id": "record_id_l", "person_id": "_pl"}), on="record_id_l", how="left",
                  maintain_order="left")
            .join(t.rename({"record_id": "record_id_r", "person_id": "_pr"}), on="record_id_r", how="left",
                  maintain_order="left")
            .select((pl.col("_pl") == pl.col("_pr")).fill_null(False).alias("_same")))
    wrong = pl.Series(pl.int_range(sample.height, eager=True).shuffle(seed=seed)) < round(error_rate * sample.height)
    return sample.with_columns(
        pl.when(same["_same"] ^ wrong).then(1.0).otherwise(0.0).alias(LABEL))


def merge_labels(existing: Path, new: pl.DataFrame) -> pl.DataFrame:
    """Labels already in ``existing`` (kept as reviewed) plus the new pairs not yet labelled."""
    if not existing.exists():
        return new
    old = read_labels(existing)
    fresh = new.join(old.select("record_id_l", "record_id_r"), on=["record_id_l", "record_id_r"], how="anti")
    fresh = fresh.join(old.select(pl.col("record_id_l").alias("record_id_r"), pl.col("record_id_r").alias("record_id_l")),
                       on=["record_id_l", "record_id_r"], how="anti")
    return pl.concat([old, fresh], how="diagonal_relaxed")
