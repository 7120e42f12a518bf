"""Benchmark: how far can a model go on the comparison vectors the pipeline blocks and scores?

    .venv/bin/datafirst simulate --people 100000 --seed 7 --extracts 1 --difficulty hard --out W/landing --truth W/truth
    .venv/bin/python benchmarks/bench_civil_ceiling.py --landing W/landing --truth W/truth [--source civil]

For one dataset (default civil) this trains the model as the pipeline does, scores EVERY blocked
pair (no probability cut-off) and then, with the simulator's truth, measures the information
ceiling of those pairs (truth is used here for measuring only; nothing in the pipeline reads it):

* ``blocking``: share of true pairs never blocked, and the B-cubed F1 a perfect pair classifier
  would reach on the blocked pairs (connected components of the blocked TRUE pairs).
* ``model, production threshold``: the model with the threshold the pipeline chooses without
  labels (``linkage/threshold.py``), clustered with the over-merge guard (as bench_accuracy).
* ``model, truth-best threshold``: the same weights, the threshold whose clusters score best.
* ``supervised Fellegi-Sunter``: m and u of every comparison level counted on the truth of the
  blocked pairs (naive Bayes on the same levels, no term frequencies), truth-best threshold.
* ``Bayes-optimal on the vector``: P(match | whole comparison vector, name frequency bands)
  counted from truth (in-sample: an optimistic bound for any model on these comparisons, as it
  sees the interactions naive Bayes cannot), truth-best threshold.

Every clustering is connected components plus the guard (``linkage/guard.py``), scored with
B-cubed precision / recall / F1 and the name-origin gap. If even the Bayes-optimal row is below
a floor, the floor cannot be met by modelling these comparisons: it needs other evidence or blocking.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import polars as pl  # noqa: E402

#: Probability thresholds swept for the truth-best rows.
SWEEP = (0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)


def blocked_pairs(records: pl.DataFrame, db_options: dict) -> tuple[pl.DataFrame, dict, tuple[float, str]]:
    """Every blocked pair scored by the model trained as the pipeline trains it (ids, weight,
    probability, comparison levels), the spec's blocking counts and the production threshold."""
    from datafirst_assets.linkage.backend import make_db_api
    from datafirst_assets.linkage.predict import chunks_for, linker_for_model, predict_pairs_in_chunks, pairs_to_polars
    from datafirst_assets.linkage.settings import model_spec_for_records
    from datafirst_assets.linkage.threshold import threshold_chooser
    from datafirst_assets.linkage.train import TrainedModel, TrainingConfig, train_model, u_pairs_for

    db_api = make_db_api(**db_options)
    spec = model_spec_for_records(records)
    trained = train_model(records, spec, db_api, TrainingConfig(u_max_pairs=u_pairs_for(records.height)))
    model = TrainedModel.from_json(trained.to_json())
    # The comparison levels (gamma_*) of every pair, which the pipeline does not keep.
    settings = {**model.settings, "retain_intermediate_calculation_columns": True}
    linker = linker_for_model(db_api, records, settings, model.spec)
    sdf = predict_pairs_in_chunks(linker, chunks_for(model.spec), threshold_match_probability=None)
    keep = [c.unquote().name for c in sdf.columns]
    pairs = pairs_to_polars(sdf, ["record_id_l", "record_id_r", "match_weight", "match_probability",
                                  *(c for c in keep if c.startswith("mw_"))])
    sdf.drop_table_from_database_and_remove_from_cache()
    production = threshold_chooser(records.get_column("record_id"), records=records)(
        pairs.filter(pl.col("match_probability") >= 0.01).select("record_id_l", "record_id_r", "match_weight",
                                                                   "match_probability"))
    return pairs, spec.blocking_pairs, production


def label(pairs: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    t = truth.select(pl.col("record_id").cast(pl.String), pl.col("person_id").cast(pl.String))
    return (pairs.with_columns(pl.col("record_id_l").cast(pl.String), pl.col("record_id_r").cast(pl.String))
            .join(t.rename({"record_id": "record_id_l", "person_id": "_p_l"}), on="record_id_l", how="left")
            .join(t.rename({"record_id": "record_id_r", "person_id": "_p_r"}), on="record_id_r", how="left")
            .with_columns((pl.col("_p_l") == pl.col("_p_r")).fill_null(False).alias("is_match"))
            .drop("_p_r"))


def true_pair_total(records: pl.DataFrame, truth: pl.DataFrame) -> int:
    per = (records.select(pl.col("record_id").cast(pl.String))
           .join(truth.select(pl.col("record_id").cast(pl.String), "person_id"), on="record_id")
           .group_by("person_id").len())
    return int(per.select((pl.col("len") * (pl.col("len") - 1) // 2).sum()).item())


def clustered(records: pl.DataFrame, edges: pl.DataFrame, score: str, threshold: float) -> pl.DataFrame:
    """Connected components of edges with ``score >= threshold``, then the over-merge guard."""
    from datafirst_assets.linkage.cluster import clusters_from_edges
    from datafirst_assets.linkage.guard import split_conflicting_clusters

    links = edges.filter(pl.col(score) >= threshold).select(
        "record_id_l", "record_id_r", pl.col(score).alias("match_probability"))
    cl = clusters_from_edges(records.get_column("record_id"), links)
    return split_conflicting_clusters(cl, links, records, threshold).clusters


def scored(records: pl.DataFrame, edges: pl.DataFrame, score: str, threshold: float, truth: pl.DataFrame) -> dict:
    from bench_accuracy import score as bench_score

    ids = clustered(records, edges, score, threshold).rename({"cluster_id": "person_id"})
    s = bench_score(ids, truth)
    return {"threshold": threshold, "bcubed_f1": s["bcubed_f1"], "bcubed_precision": s["bcubed_precision"],
            "bcubed_recall": s["bcubed_recall"], "gap_name_origin": s["gap_name_origin"]}


def best_over(records: pl.DataFrame, edges: pl.DataFrame, score: str, truth: pl.DataFrame) -> dict:
    rows = [scored(records, edges, score, t, truth) for t in SWEEP]
    return max(rows, key=lambda r: r["bcubed_f1"])


def gamma_columns(pairs: pl.DataFrame) -> list[str]:
    """Each comparison's level: Splink 5 keeps its weight (``mw_<comparison>``, one value per
    level) rather than the level's number."""
    return [c for c in pairs.columns if c.startswith("gamma_") or (c.startswith("mw_") and
                                                                  not c.startswith("mw_tf_adj_"))]


def name_frequencies(records: pl.DataFrame, col: str) -> pl.DataFrame:
    return (records.drop_nulls(col).group_by(col).len()
            .select(col, (pl.col("len") / pl.col("len").sum()).alias(f"tf_{col}")))


def with_names(pairs: pl.DataFrame, records: pl.DataFrame) -> pl.DataFrame:
    """Pairs with both sides' forename and surname and their term frequencies."""
    cols = [c for c in ("forename", "surname") if c in records.columns]
    side = records.select(pl.col("record_id").cast(pl.String), *cols)
    for c in cols:
        side = side.join(name_frequencies(records, c), on=c, how="left")
    out = pairs
    for s in ("l", "r"):
        out = out.join(side.rename({x: f"{x}_{s}" for x in side.columns}), on=f"record_id_{s}", how="left")
    return out


def supervised_fellegi_sunter(pairs: pl.DataFrame, joint: tuple[str, ...] = ()) -> pl.Series:
    """Match probability from m and u of each comparison level counted on the truth of the
    blocked pairs (naive Bayes on the levels, the blocked pairs' prior; no term frequencies).
    ``joint``: columns counted as ONE comparison (their levels' combinations), e.g. postcode and
    address as "where they live", or a name frequency band with the name comparisons."""
    matches = pairs.filter("is_match")
    non = pairs.filter(~pl.col("is_match"))
    weight = pl.lit(0.0)
    features = [g for g in gamma_columns(pairs) if g not in joint]
    if joint:
        pairs = pairs.with_columns(pl.concat_str([pl.col(c).cast(pl.String) for c in joint], separator="|",
                                                 ignore_nulls=True).alias("_joint"))
        matches, non = pairs.filter("is_match"), pairs.filter(~pl.col("is_match"))
        features.append("_joint")
    for g in features:
        m = matches.group_by(g).len().with_columns((pl.col("len") / matches.height).alias("m")).drop("len")
        u = non.group_by(g).len().with_columns((pl.col("len") / non.height).alias("u")).drop("len")
        levels = m.join(u, on=g, how="full", coalesce=True).fill_null(1e-6)
        w = pl.col(g).replace_strict(levels[g], (levels["m"] / levels["u"]).log(2), default=0.0)
        weight = weight + w
    prior = matches.height / pairs.height
    logit = weight + math.log2(prior / (1 - prior))
    return pairs.select((1 / (1 + (2 ** (-logit)))).alias("p")).get_column("p")


def _band(col: str) -> pl.Expr:
    """How common the rarer side's name is (powers of two of its frequency)."""
    return pl.min_horizontal(f"tf_{col}_l", f"tf_{col}_r").log(2).floor().fill_null(99).alias(f"_band_{col}")


def bayes_optimal(pairs: pl.DataFrame, *, cross_fitted: bool = False) -> pl.Series:
    """P(match | whole comparison vector, forename and surname frequency bands when the pairs
    carry them), counted on truth: in-sample (optimistic: a cell of few pairs learns its own
    answer), or ``cross_fitted``: each half of the people (of the left record) scored on the other
    half's counts, smoothed toward the blocked pairs' match rate (an honest estimate)."""
    bands = [_band(c) for c in ("forename", "surname") if f"tf_{c}_l" in pairs.columns]
    keys = [*gamma_columns(pairs), *(b.meta.output_name() for b in bands)]
    p = pairs.with_columns(bands)
    if not cross_fitted:
        return p.select(pl.col("is_match").cast(pl.Float64).mean().over(keys).alias("p")).get_column("p")
    prior = float(p["is_match"].mean())  # type: ignore[arg-type]
    p = p.with_row_index("_row").with_columns((pl.col("_p_l").hash(7) % 2).alias("_fold"))
    counts = p.group_by([*keys, "_fold"]).agg(pl.col("is_match").sum().alias("_k"), pl.len().alias("_n"))
    other = counts.with_columns((1 - pl.col("_fold")).alias("_fold"))
    return (p.join(other, on=[*keys, "_fold"], how="left", nulls_equal=True).sort("_row")
            .select(((pl.col("_k").fill_null(0) + prior) / (pl.col("_n").fill_null(0) + 1)).alias("p"))
            .get_column("p"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--landing", type=Path, required=True)
    ap.add_argument("--truth", type=Path, required=True)
    ap.add_argument("--source", default="civil")
    ap.add_argument("--memory-limit", default="3GB")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--pairs-cache", type=Path, default=None,
                    help="Parquet file: the scored blocked pairs, written once and read on later runs")
    args = ap.parse_args()

    from bench_accuracy import truth_for
    from datafirst_assets.linkage.records import person_records
    from datafirst_assets.sources.registry import SOURCES
    from datafirst_assets_tests.xjs_fixtures import stage_table

    t0 = time.perf_counter()
    source = SOURCES[args.source]
    records = person_records(stage_table(args.landing, args.source, source.person_table.name), source,
                             source.person_table)
    truth = truth_for(args.truth, args.source)
    db_options = {k: v for k, v in (("threads", args.threads), ("memory_limit", args.memory_limit)) if v}
    cache = args.pairs_cache
    if cache and cache.exists():
        pairs, meta = pl.read_parquet(cache), json.loads(cache.with_suffix(".json").read_text())
        blocking, production_threshold, production_source = meta["blocking"], meta["threshold"], meta["source"]
    else:
        pairs, blocking, (production_threshold, production_source) = blocked_pairs(records, db_options)
        if cache:
            pairs.write_parquet(cache)
            cache.with_suffix(".json").write_text(json.dumps(
                {"blocking": blocking, "threshold": production_threshold, "source": production_source}))
    print(f"pairs {pairs.height:,} columns {pairs.columns}", flush=True)
    pairs = with_names(label(pairs, truth), records)
    n_true = true_pair_total(records, truth)
    blocked_true = int(pairs["is_match"].sum())
    out: dict = {"source": args.source, "records": records.height, "blocked_pairs": pairs.height,
                 "true_pairs": n_true, "true_pairs_blocked": blocked_true,
                 "true_pairs_never_blocked_share": round(1 - blocked_true / n_true, 4) if n_true else None,
                 "blocking_rules": blocking}
    rows = {"perfect classifier on blocked pairs": scored(
        records, pairs.with_columns(pl.col("is_match").cast(pl.Float64).alias("truth")), "truth", 0.5, truth)}
    rows["model, production threshold"] = scored(records, pairs, "match_probability", production_threshold, truth)
    rows["model, production threshold"]["source"] = production_source
    rows["model, truth-best threshold"] = best_over(records, pairs, "match_probability", truth)
    pairs = pairs.with_columns(supervised_fellegi_sunter(pairs).alias("p_fs"))
    rows["supervised Fellegi-Sunter (no tf), truth-best"] = best_over(records, pairs, "p_fs", truth)
    for name, joint in (("postcode x address", ("mw_postcode", "mw_address")),
                        ("names x name bands", ("mw_forename", "mw_surname", "_band_forename", "_band_surname"))):
        with_bands = pairs.with_columns(_band("forename"), _band("surname"))
        p = supervised_fellegi_sunter(with_bands, joint)
        rows[f"supervised F-S, {name} joint, truth-best"] = best_over(
            records, pairs.with_columns(p.alias("p_joint")), "p_joint", truth)
    vector_only = pairs.drop("tf_forename_l", "tf_forename_r", "tf_surname_l", "tf_surname_r")
    rows["Bayes-optimal on the vector alone, truth-best"] = best_over(
        records, pairs.with_columns(bayes_optimal(vector_only).alias("p_vec")), "p_vec", truth)
    rows["same, cross-fitted (out of sample), truth-best"] = best_over(
        records, pairs.with_columns(bayes_optimal(vector_only, cross_fitted=True).alias("p_vec")), "p_vec", truth)
    pairs = pairs.with_columns(bayes_optimal(pairs).alias("p_bayes"))
    rows["Bayes-optimal on vector+name bands, truth-best"] = best_over(records, pairs, "p_bayes", truth)
    pairs = pairs.with_columns(bayes_optimal(pairs, cross_fitted=True).alias("p_cross"))
    rows["same with bands, cross-fitted, truth-best"] = best_over(records, pairs, "p_cross", truth)
    out["rows"] = rows
    out["seconds"] = round(time.perf_counter() - t0, 1)

    print(f"== information ceiling: {args.source}, {records.height:,} records, {pairs.height:,} blocked pairs ==")
    print(f"true pairs {n_true:,}; blocked {blocked_true:,}; never blocked "
          f"{out['true_pairs_never_blocked_share']:.2%}")
    for name, r in rows.items():
        print(f"{name:52s} B-cubed F1 {r['bcubed_f1']:.4f} (P {r['bcubed_precision']:.4f} R {r['bcubed_recall']:.4f})"
              f"  name-origin gap {r['gap_name_origin']:.4f}  at p >= {r['threshold']:.4g}")
    print(f"{out['seconds']}s")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
