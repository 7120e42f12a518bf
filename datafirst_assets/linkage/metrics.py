"""Linkage quality: pairwise and B-cubed metrics, subgroups, threshold choice, clerical
labels and review samples. Pure polars; nothing here materialises all record pairs.

Definitions (records r, predicted cluster P(r), true cluster T(r)):

* pairwise: a pair of records is predicted-linked when both are in the same predicted
  cluster. TP = sum over (P, T) cells of C(n_PT, 2), predicted pairs = sum_P C(n_P, 2),
  true pairs = sum_T C(n_T, 2); precision = TP / predicted, recall = TP / true.
* B-cubed: per record, precision_r = |P(r) & T(r)| / |P(r)|, recall_r = |P(r) & T(r)| /
  |T(r)|; precision and recall are the means over records (overall, or over the records
  of a subgroup), F1 their harmonic mean.
* labelled pairs (clerical review or truth): ``clerical_match_score`` in [0, 1] is the
  probability the pair is a match; a predicted match counts score as TP and 1 - score as
  FP, a predicted non-match counts score as FN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from datafirst_assets.common.pairs import ID_L, ID_R, ordered_ids
from datafirst_assets.common.sql import row_text_sql
from datafirst_assets.warehouse.connection import scratch_cursor

ID = "record_id"
PRED = "cluster_id"
TRUE = "person_id"
LABEL = "clerical_match_score"
REVIEW_WINDOW = 6.0  # bits of match weight either side of the threshold's that a review sample draws from


def _f1(p: float | None, r: float | None) -> float | None:
    if p is None or r is None:
        return None
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _div(a: float, b: float) -> float | None:
    return a / b if b else None


def _c2(col: str | pl.Expr) -> pl.Expr:
    e = pl.col(col) if isinstance(col, str) else col
    e = e.cast(pl.Int64)
    return e * (e - 1) // 2


def _join(clusters: pl.DataFrame, truth: pl.DataFrame, id_col: str, pred_col: str, true_col: str,
          extra: Sequence[str] = ()) -> pl.DataFrame:
    t = truth.select([id_col, true_col, *[c for c in extra if c not in (id_col, true_col)]])
    j = clusters.select(id_col, pred_col).join(t, on=id_col, how="inner")
    if j.height != clusters.height or j.height != truth.height:
        missing = clusters.height - j.height
        if missing:
            raise ValueError(f"{missing} clustered records have no truth (join on {id_col!r})")
    return j


# ------------------------------------------------------------------ cluster metrics


def pairwise_metrics(clusters: pl.DataFrame, truth: pl.DataFrame, *, id_col: str = ID,
                     pred_col: str = PRED, true_col: str = TRUE) -> dict[str, Any]:
    """Pairwise precision / recall / F1 of a clustering, counted from group sizes."""
    j = _join(clusters, truth, id_col, pred_col, true_col)
    return _pairwise_from_joined(j, pred_col, true_col)


def _pairwise_from_joined(j: pl.DataFrame, pred_col: str, true_col: str) -> dict[str, Any]:
    tp = j.group_by(pred_col, true_col).len().select(_c2("len").sum()).item() or 0
    pp = j.group_by(pred_col).len().select(_c2("len").sum()).item() or 0
    tt = j.group_by(true_col).len().select(_c2("len").sum()).item() or 0
    p, r = _div(tp, pp), _div(tp, tt)
    # no predicted pairs: precision is vacuously 1; no true pairs: recall vacuously 1
    p = 1.0 if p is None else p
    r = 1.0 if r is None else r
    return {"tp": int(tp), "fp": int(pp - tp), "fn": int(tt - tp), "predicted_pairs": int(pp),
            "true_pairs": int(tt), "precision": p, "recall": r, "f1": _f1(p, r), "n_records": j.height}


def bcubed_per_record(clusters: pl.DataFrame, truth: pl.DataFrame, *, id_col: str = ID,
                      pred_col: str = PRED, true_col: str = TRUE,
                      keep: Sequence[str] = ()) -> pl.DataFrame:
    """Per record B-cubed precision and recall (plus ``keep`` columns from truth)."""
    j = _join(clusters, truth, id_col, pred_col, true_col, keep)
    return j.with_columns(
        (pl.len().over(pred_col, true_col) / pl.len().over(pred_col)).alias("bcubed_precision"),
        (pl.len().over(pred_col, true_col) / pl.len().over(true_col)).alias("bcubed_recall"),
    )


def bcubed_metrics(clusters: pl.DataFrame, truth: pl.DataFrame, *, id_col: str = ID,
                   pred_col: str = PRED, true_col: str = TRUE) -> dict[str, Any]:
    per = bcubed_per_record(clusters, truth, id_col=id_col, pred_col=pred_col, true_col=true_col)
    return _bcubed_summary(per)


def _bcubed_summary(per: pl.DataFrame) -> dict[str, Any]:
    if per.height == 0:
        return {"precision": None, "recall": None, "f1": None, "n_records": 0}
    p = float(per.get_column("bcubed_precision").mean())  # type: ignore[arg-type]
    r = float(per.get_column("bcubed_recall").mean())  # type: ignore[arg-type]
    return {"precision": p, "recall": r, "f1": _f1(p, r), "n_records": per.height}


def subgroup_metrics(clusters: pl.DataFrame, truth: pl.DataFrame, subgroups: Sequence[str], *,
                     id_col: str = ID, pred_col: str = PRED, true_col: str = TRUE) -> pl.DataFrame:
    """B-cubed precision / recall / F1 by subgroup: one row per (subgroup, group).

    Each record's B-cubed precision and recall are computed against the whole
    clustering, then averaged over the records in the group (null groups -> "(missing)").
    """
    subgroups = [s for s in subgroups if s in truth.columns]
    per = bcubed_per_record(clusters, truth, id_col=id_col, pred_col=pred_col, true_col=true_col,
                            keep=subgroups)
    frames = []
    for s in subgroups:
        g = (per.with_columns(pl.col(s).cast(pl.String).fill_null("(missing)").alias("group"))
             .group_by("group")
             .agg(pl.len().alias("n_records"),
                  pl.col("bcubed_precision").mean().alias("precision"),
                  pl.col("bcubed_recall").mean().alias("recall"))
             .with_columns(pl.lit(s).alias("subgroup")))
        frames.append(g)
    if not frames:
        return pl.DataFrame(schema={"subgroup": pl.String, "group": pl.String, "n_records": pl.UInt32,
                                    "precision": pl.Float64, "recall": pl.Float64, "f1": pl.Float64})
    out = pl.concat(frames).with_columns(
        pl.when(pl.col("precision") + pl.col("recall") > 0)
        .then(2 * pl.col("precision") * pl.col("recall") / (pl.col("precision") + pl.col("recall")))
        .otherwise(0.0).alias("f1"))
    return out.select("subgroup", "group", "n_records", "precision", "recall", "f1").sort("subgroup", "group")


def subgroup_gaps(by_group: pl.DataFrame, *, min_records: int = 30) -> dict[str, dict[str, Any]]:
    """Best-to-worst F1 gap per subgroup (groups under ``min_records`` left out, and
    "(missing)" never counted as a group)."""
    out: dict[str, dict[str, Any]] = {}
    for s in by_group.get_column("subgroup").unique(maintain_order=True).to_list():
        g = by_group.filter((pl.col("subgroup") == s) & (pl.col("n_records") >= min_records)
                            & (pl.col("group") != "(missing)")).sort("f1", descending=True)
        if g.height == 0:
            continue
        best, worst = g.row(0, named=True), g.row(-1, named=True)
        out[s] = {"best_group": best["group"], "best_f1": best["f1"], "worst_group": worst["group"],
                  "worst_f1": worst["f1"], "gap": best["f1"] - worst["f1"], "groups": g.height}
    return out


def evaluate_clusters(clusters: pl.DataFrame, truth: pl.DataFrame, *,
                      subgroups: Sequence[str] = ("sex", "ethnic_group", "age_band"),
                      id_col: str = ID, pred_col: str = PRED, true_col: str = TRUE,
                      min_group_records: int = 30) -> dict[str, Any]:
    """Everything about a clustering vs truth: pairwise, B-cubed, by subgroup, gaps."""
    kw = {"id_col": id_col, "pred_col": pred_col, "true_col": true_col}
    j = _join(clusters, truth, id_col, pred_col, true_col)
    by_group = subgroup_metrics(clusters, truth, subgroups, **kw)
    gaps = subgroup_gaps(by_group, min_records=min_group_records)
    return {
        "pairwise": _pairwise_from_joined(j, pred_col, true_col),
        "bcubed": bcubed_metrics(clusters, truth, **kw),
        "n_predicted_clusters": j.get_column(pred_col).n_unique(),
        "n_true_clusters": j.get_column(true_col).n_unique(),
        "by_subgroup": by_group.to_dicts(),
        "subgroup_gaps": gaps,
        "max_subgroup_gap": max((g["gap"] for g in gaps.values()), default=None),
    }


# -------------------------------------------------------------- labelled pairs / threshold


def _ordered_key(df: pl.DataFrame, left: str = ID_L, right: str = ID_R) -> pl.DataFrame:
    """Add ``_a``/``_b``: the pair's ids in sorted order, so (x, y) and (y, x) join."""
    return ordered_ids(df, left, right, into=("_a", "_b"))


def label_pairs_from_truth(pairs: pl.DataFrame, truth: pl.DataFrame, *, id_col: str = ID,
                           true_col: str = TRUE) -> pl.DataFrame:
    """Scored pairs + ``clerical_match_score`` (1.0 / 0.0) from truth."""
    t = truth.select(pl.col(id_col).cast(pl.String), pl.col(true_col))
    out = (pairs.with_columns(pl.col(ID_L).cast(pl.String).alias("_l"), pl.col(ID_R).cast(pl.String).alias("_r"))
           .join(t.rename({id_col: "_l", true_col: "_tl"}), on="_l", how="left")
           .join(t.rename({id_col: "_r", true_col: "_tr"}), on="_r", how="left")
           .with_columns((pl.col("_tl") == pl.col("_tr")).cast(pl.Float64).alias(LABEL))
           .drop("_l", "_r", "_tl", "_tr"))
    return out


def true_pair_count(truth: pl.DataFrame, *, true_col: str = TRUE) -> int:
    return int(truth.group_by(true_col).len().select(_c2("len").sum()).item() or 0)


def threshold_curve(labelled: pl.DataFrame, *, score_col: str = "match_weight", label_col: str = LABEL,
                    total_positives: float | None = None) -> pl.DataFrame:
    """Precision / recall / F1 if pairs with ``score >= threshold`` are called matches,
    for every distinct score. Unscored labelled pairs (null score) are never matched.
    ``total_positives`` (e.g. all true pairs from truth) overrides the labelled positives
    so that pairs missed by blocking count as false negatives."""
    lab = labelled.select(pl.col(score_col).cast(pl.Float64).alias("score"),
                          pl.col(label_col).cast(pl.Float64).clip(0, 1).alias("y")).filter(pl.col("y").is_not_null())
    positives = float(lab.get_column("y").sum()) if total_positives is None else float(total_positives)
    c = (lab.filter(pl.col("score").is_not_null())
         .group_by("score").agg(pl.col("y").sum().alias("tp"), (1 - pl.col("y")).sum().alias("fp"))
         .sort("score", descending=True)
         .with_columns(pl.col("tp").cum_sum(), pl.col("fp").cum_sum())
         .with_columns((positives - pl.col("tp")).alias("fn")))
    return c.with_columns(
        (pl.col("tp") / (pl.col("tp") + pl.col("fp"))).alias("precision"),
        pl.when(positives > 0).then(pl.col("tp") / positives).otherwise(None).alias("recall"),
        (2 * pl.col("tp") / (2 * pl.col("tp") + pl.col("fp") + pl.col("fn"))).alias("f1"),
    ).rename({"score": "threshold"})


def choose_threshold(labelled: pl.DataFrame, *, score_col: str = "match_weight", label_col: str = LABEL,
                     total_positives: float | None = None) -> dict[str, Any]:
    """Threshold (on ``score_col``) that maximises F1 over labelled pairs.

    Ties go to the highest threshold (fewest links). Returned with its precision, recall,
    F1 and, for match weights, the equivalent match probability.
    """
    curve = threshold_curve(labelled, score_col=score_col, label_col=label_col, total_positives=total_positives)
    if curve.height == 0:
        raise ValueError("no labelled pairs with scores: cannot choose a threshold")
    best = curve.sort(["f1", "threshold"], descending=[True, True], nulls_last=True).row(0, named=True)
    out = {"score_col": score_col, "threshold": best["threshold"], "precision": best["precision"],
           "recall": best["recall"], "f1": best["f1"], "n_labelled": labelled.height}
    if score_col == "match_weight":
        out["threshold_match_probability"] = match_weight_to_probability(best["threshold"])
    elif score_col == "match_probability":
        out["threshold_match_probability"] = best["threshold"]
    return out


def choose_threshold_by_clusters(pairs: pl.DataFrame, truth: pl.DataFrame, *,
                             candidates: Sequence[float] = (0.5, 0.8, 0.9, 0.95, 0.99),
                             id_col: str = ID, true_col: str = TRUE) -> dict[str, Any]:
    """Match-probability threshold whose *clusters* score the best B-cubed F1 on truth.

    Pair-level F1 (:func:`choose_threshold`) ignores that connected components link
    transitively, so it tends to pick low thresholds; this re-clusters the stored pairs
    in polars at each candidate (pairs must reach down to the lowest candidate) and
    compares the clusterings. Returns the best threshold and every candidate's scores.
    """
    from datafirst_assets.linkage.cluster import clusters_from_edges

    ids = truth.get_column(id_col).cast(pl.String)
    rows = []
    for t in sorted(candidates):
        cl = clusters_from_edges(ids, pairs.filter(pl.col("match_probability") >= t))
        b3 = bcubed_metrics(cl, truth, id_col=id_col, true_col=true_col)
        rows.append({"threshold_match_probability": t, "precision": b3["precision"], "recall": b3["recall"],
                     "f1": b3["f1"]})
    best = max(rows, key=lambda r: (r["f1"], r["threshold_match_probability"]))
    return {**best, "candidates": rows}


def match_weight_to_probability(w: float) -> float:
    return 1.0 / (1.0 + 2.0 ** (-w)) if w > -1000 else 0.0


def match_probability_to_weight(p: float) -> float:
    if p <= 0:
        return -math.inf
    if p >= 1:
        return math.inf
    return math.log2(p / (1 - p))


# ------------------------------------------------------------------ clerical labels file


def read_labels(path: str | Path) -> pl.DataFrame:
    """A clerical labels file (CSV or parquet): record_id_l, record_id_r,
    clerical_match_score in [0, 1]. Rows with a blank score (not yet reviewed) are dropped;
    out-of-range scores are an error."""
    p = Path(path)
    if p.suffix.lower() in (".parquet", ".pq"):
        df = pl.read_parquet(p)
    else:
        df = pl.read_csv(p, infer_schema=False)
    missing = [c for c in (ID_L, ID_R, LABEL) if c not in df.columns]
    if missing:
        raise ValueError(f"labels file {p} lacks column(s) {missing}")
    df = df.with_columns(pl.col(ID_L).cast(pl.String), pl.col(ID_R).cast(pl.String),
                         pl.col(LABEL).cast(pl.String).str.strip_chars().replace("", None)
                         .cast(pl.Float64, strict=False).alias(LABEL))
    df = df.filter(pl.col(LABEL).is_not_null())
    bad = df.filter((pl.col(LABEL) < 0) | (pl.col(LABEL) > 1))
    if bad.height:
        raise ValueError(f"{bad.height} clerical_match_score value(s) outside [0, 1] in {p}")
    return df


def evaluate_labels(labels: pl.DataFrame, *, pairs: pl.DataFrame | None = None,
                    clusters: pl.DataFrame | None = None, threshold_match_probability: float | None = None,
                    id_col: str = ID, pred_col: str = PRED) -> dict[str, Any]:
    """Evaluate from clerically labelled pairs (no truth needed).

    * with ``pairs`` (scored pairs): threshold chosen to maximise F1 over the labels, and
      precision / recall / F1 of pair scores at ``threshold_match_probability`` if given.
      Labelled pairs the model never scored count as non-matches.
    * with ``clusters``: precision / recall / F1 of "same predicted cluster".
    Scores are fractional: a 0.5 label counts half a match. The labelled sample is
    usually drawn around the threshold, so these figures describe that hard region, not
    the population.
    """
    lab = _ordered_key(labels.select(ID_L, ID_R, LABEL)).unique(["_a", "_b"], keep="last")
    out: dict[str, Any] = {"n_labels": lab.height, "labelled_matches": float(lab.get_column(LABEL).sum())}
    if pairs is not None:
        sc = _ordered_key(pairs.select([c for c in (ID_L, ID_R, "match_weight", "match_probability")
                                        if c in pairs.columns]))
        j = lab.join(sc.drop(ID_L, ID_R), on=["_a", "_b"], how="left")
        out["labels_scored"] = int(j.get_column("match_weight").is_not_null().sum())
        out["chosen_threshold"] = choose_threshold(j, score_col="match_weight")
        if threshold_match_probability is not None:
            w = match_probability_to_weight(threshold_match_probability)
            called = pl.col("match_weight").fill_null(-math.inf) >= w
            out["pairs_at_threshold"] = _fractional_prf(j, called) | {
                "threshold_match_probability": threshold_match_probability}
    if clusters is not None:
        cid = clusters.select(pl.col(id_col).cast(pl.String), pl.col(pred_col).cast(pl.String))
        j = (lab.join(cid.rename({id_col: "_a", pred_col: "_ca"}), on="_a", how="left")
             .join(cid.rename({id_col: "_b", pred_col: "_cb"}), on="_b", how="left"))
        out["labels_clustered"] = int((j.get_column("_ca").is_not_null() & j.get_column("_cb").is_not_null()).sum())
        out["clusters"] = _fractional_prf(j, (pl.col("_ca") == pl.col("_cb")).fill_null(False))
    return out


def _fractional_prf(j: pl.DataFrame, called: pl.Expr) -> dict[str, Any]:
    s = j.select(
        pl.when(called).then(pl.col(LABEL)).otherwise(0.0).sum().alias("tp"),
        pl.when(called).then(1 - pl.col(LABEL)).otherwise(0.0).sum().alias("fp"),
        pl.when(called).then(0.0).otherwise(pl.col(LABEL)).sum().alias("fn"),
    ).row(0, named=True)
    p, r = _div(s["tp"], s["tp"] + s["fp"]), _div(s["tp"], s["tp"] + s["fn"])
    return {"tp": s["tp"], "fp": s["fp"], "fn": s["fn"], "precision": p, "recall": r, "f1": _f1(p, r)}


# ------------------------------------------------------------------------ review sample


def review_sample(pairs: pl.DataFrame, records: pl.DataFrame, *, threshold_match_probability: float,
                  n: int = 200, seed: int = 0, window: float = REVIEW_WINDOW, bins: int = 12,
                  fields: Sequence[str] | None = None, id_col: str = ID) -> pl.DataFrame:
    """Pairs around the threshold, both records side by side, for clerical review.

    Pairs with match weight within ``window`` bits of the threshold's weight are split
    into ``bins`` equal-width weight bands and sampled evenly (seeded, by ``_draw_order``: the
    same pairs give the same sample in whatever order they are stored), so reviewers
    see both sides of the threshold rather than a pile of easy cases. Where fewer than
    ``n`` pairs lie that near, the ``n`` nearest are taken, however far. Columns:
    record_id_l, record_id_r, match_weight, match_probability, then ``<field>_l`` /
    ``<field>_r`` for each field, then an empty ``clerical_match_score`` to fill in
    (1 = same person, 0 = different, fractions for "unsure").
    """
    if "match_weight" not in pairs.columns:
        raise ValueError("pairs need a match_weight column")
    w0 = match_probability_to_weight(threshold_match_probability)
    near = pairs.filter((pl.col("match_weight") - w0).abs() <= window)
    if near.height < n:
        # An easy dataset has few pairs near its threshold; a handful of labels that all agree cannot
        # calibrate the model, so the sample widens to the n pairs nearest the threshold (the outer
        # ones fall in the end bands).
        near = (pairs.with_columns((pl.col("match_weight") - w0).abs().alias("_d"))
                .sort("_d", ID_L, ID_R).head(n).drop("_d"))
    width = 2 * window / bins
    near = near.with_columns(((pl.col("match_weight") - (w0 - window)) / width).floor().clip(0, bins - 1)
                             .cast(pl.Int32).alias("_bin"), _draw_order(near, seed).alias("_draw"))
    per_bin = max(1, math.ceil(n / bins))
    sampled = near.filter(pl.col("_draw").rank("ordinal").over("_bin") <= per_bin)
    if sampled.height < n:  # top up from the rest, nearest the threshold first
        rest = (near.join(sampled.select(ID_L, ID_R), on=[ID_L, ID_R], how="anti")
                .with_columns((pl.col("match_weight") - w0).abs().alias("_d")).sort("_d", "_draw")
                .head(n - sampled.height).drop("_d"))
        sampled = pl.concat([sampled, rest], how="diagonal_relaxed")
    sampled = sampled.sort("_draw").head(n).drop("_draw")
    keep = [c for c in (fields or records.columns) if c != id_col and c in records.columns]
    rec = records.select(pl.col(id_col).cast(pl.String), *keep)
    out = sampled.select(pl.col(ID_L).cast(pl.String), pl.col(ID_R).cast(pl.String),
                         *[c for c in ("match_weight", "match_probability") if c in sampled.columns])
    out = (out.join(rec.rename({id_col: ID_L, **{c: f"{c}_l" for c in keep}}), on=ID_L, how="left")
           .join(rec.rename({id_col: ID_R, **{c: f"{c}_r" for c in keep}}), on=ID_R, how="left"))
    side_by_side = [x for c in keep for x in (f"{c}_l", f"{c}_r")]
    return (out.select(ID_L, ID_R, *[c for c in ("match_weight", "match_probability") if c in out.columns],
                       *side_by_side)
            .sort("match_weight", ID_L, ID_R)
            .with_columns(pl.lit(None, dtype=pl.Float64).alias(LABEL)))


def _draw_order(pairs: pl.DataFrame, seed: int) -> pl.Series:
    """Each pair's place in the seeded draw of ``review_sample``: the first 64 bits of the MD5 of
    the seed and the pair's two ids (either way round), so it depends on the pair alone, not on
    the row order, which differs between a full rebuild and an incremental run of the same pairs
    (a queue half labelled must not be dealt again when nothing changed); a new extract's pairs
    displace a queued pair only where they draw ahead of it in its band. UInt64, in ``pairs``' order."""
    keyed = _ordered_key(pairs).select(pl.int_range(pl.len(), dtype=pl.Int64).alias("_i"),
                                       pl.lit(str(int(seed))).alias("_seed"), "_a", "_b").to_arrow()
    with scratch_cursor() as con:
        con.register("_draw_pairs", keyed)
        drawn = con.sql(f"select (md5_number({row_text_sql(('_seed', '_a', '_b'))}) >> 64)::ubigint as d "
                        "from _draw_pairs order by _i").to_arrow_table()
    return pl.Series("_draw", drawn.column("d"), dtype=pl.UInt64)


def write_review_sample(sample: pl.DataFrame, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sample.write_csv(p)
    return p


def review_queue(pairs: pl.DataFrame, records: pl.DataFrame, *, threshold_match_probability: float,
                 n: int = 1_500, seed: int = 0, labelled: pl.DataFrame | None = None) -> pl.DataFrame:
    """The next pairs for clerical review: :func:`review_sample` over the pairs not yet labelled
    (either way round), stratified by match weight around the threshold (once every pair near
    the threshold is labelled, the nearest of the rest)."""
    return review_sample(unlabelled_pairs(pairs, labelled), records,
                         threshold_match_probability=threshold_match_probability, n=n, seed=seed)


def unlabelled_pairs(pairs: pl.DataFrame, labelled: pl.DataFrame | None) -> pl.DataFrame:
    """``pairs`` but those ``labelled`` (record_id_l, record_id_r) holds, either way round."""
    if labelled is None or not labelled.height:
        return pairs
    done = _ordered_key(labelled.select(ID_L, ID_R)).select("_a", "_b")
    return _ordered_key(pairs).join(done, on=["_a", "_b"], how="anti").drop("_a", "_b")
