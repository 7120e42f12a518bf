"""Benchmark: linkage accuracy where it is hard (issue 15's table), thresholds never from truth.

    .venv/bin/python benchmarks/bench_accuracy.py --people 100000 --difficulty standard
    .venv/bin/python benchmarks/bench_accuracy.py --landing DIR/landing --truth DIR/truth   # already simulated

Simulates ``--people`` people at ``--difficulty`` (unless ``--landing``/``--truth`` are given),
then for every dataset (``--sources``, default all seven) does what the pipeline does, in one
process and without Dagster: raw deliveries -> staging (names folded) -> person records ->
Splink model trained unsupervised -> every pair scored -> threshold chosen with no labels and
no truth (``linkage/threshold.py``'s choice when it has neither: production mode) -> clusters
(with the over-merge guard) -> scored against the simulator's truth. With ``--labels N`` the
threshold is chosen as the demo chooses it on its second run: on N clerical labels of the review
queue, answered by the simulated reviewer (``evaluation/reviewer.py``, 2% wrong on purpose).

Prints per dataset: the threshold and where it came from, B-cubed precision / recall / F1,
pairwise precision / recall, the best-to-worst B-cubed F1 gap by sex, ethnic group, name origin
and age band, B-cubed F1 of records whose true name has a letter outside ASCII against the rest,
the largest cluster and the clusters the guard split; with ``--xjs`` also the cross-justice
lookup's B-cubed F1 at the medium threshold. Then the issue's floors, met or not.
``--out`` writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

SUBGROUPS = ("sex", "ethnic_group", "name_origin", "age_band", "name_ascii")
FLOORS = {"bcubed_f1": 0.97, "pairwise_precision": 0.95, "max_subgroup_gap": 0.02, "non_ascii_gap": 0.01,
          "hard_bcubed_f1": 0.95, "xjs_medium_bcubed_f1": 0.97}


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def truth_for(truth_dir: Path, source: str) -> pl.DataFrame:
    """record -> true person, with the subgroups scored (name_ascii: does the person's true name
    hold a letter outside ASCII)."""
    from datafirst_assets.evaluation.truth import truth_with_subgroups

    people = pl.read_parquet(truth_dir / "people.parquet").select(
        pl.col("person_id").cast(pl.String), "name_origin",
        pl.when(pl.concat_str(["forename", "middle_names", "surname"], ignore_nulls=True)
                .str.contains(r"[^\x00-\x7F]")).then(pl.lit("non_ascii")).otherwise(pl.lit("ascii"))
        .alias("name_ascii"))
    return truth_with_subgroups(truth_dir, source).join(people, on="person_id", how="left")  # type: ignore[union-attr]


def clerical_labels(pairs: pl.DataFrame, records: pl.DataFrame, threshold: float, truth_dir: Path,
                    source_key: str, n: int, out: Path) -> Path:
    """What the demo does between two runs: the review queue around the first run's threshold
    (``linkage.metrics.review_queue``), answered by the simulated clerical reviewer (2% of labels
    wrong on purpose), written as a labels file. The truth answers the reviewer only."""
    from datafirst_assets.evaluation.reviewer import simulated_labels
    from datafirst_assets.evaluation.truth import record_truth
    from datafirst_assets.linkage.metrics import review_queue

    queue = review_queue(pairs, records, threshold_match_probability=threshold, n=n)
    simulated_labels(queue, record_truth(truth_dir, source_key), pairs=n).write_csv(out)
    return out


def link_source(landing: Path, source_key: str, db_options: dict, *, labels: int = 0,
                truth_dir: Path | None = None) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """(person records, clusters record_id -> person_id, details) for one dataset, as the pipeline links it.
    With ``labels``, linked a second time with the threshold chosen on that many simulated clerical
    labels of the first run's review queue (production mode with a review team)."""
    from datafirst_assets.linkage.backend import make_db_api
    from datafirst_assets.linkage.guard import cluster_graph_metrics, graph_summary
    from datafirst_assets.linkage.incremental import link_full
    from datafirst_assets.linkage.records import person_records
    from datafirst_assets.linkage.settings import model_spec_for_records
    from datafirst_assets.linkage.threshold import threshold_chooser
    from datafirst_assets.linkage.train import TrainedModel, TrainingConfig, train_model, u_pairs_for
    from datafirst_assets.sources.registry import SOURCES
    from datafirst_assets_tests.xjs_fixtures import stage_table

    source = SOURCES[source_key]
    t0 = time.perf_counter()
    records = person_records(stage_table(landing, source_key, source.person_table.name), source, source.person_table)
    db_api = make_db_api(**db_options)
    spec = model_spec_for_records(records)
    trained = train_model(records, spec, db_api,
                          TrainingConfig(u_max_pairs=u_pairs_for(records.height)))
    model = TrainedModel.from_json(trained.to_json())

    choose = threshold_chooser(records.get_column("record_id"), records=records)
    result = link_full(records, model, db_api, choose=choose)
    if labels and truth_dir is not None:
        with tempfile.TemporaryDirectory() as tmp:
            scored = result.pairs if isinstance(result.pairs, pl.DataFrame) else result.pairs.collect()
            labels_file = clerical_labels(scored, records, result.threshold, truth_dir, source_key, labels,
                                          Path(tmp) / f"{source_key}.csv")
            result = link_full(records, model, db_api,
                               choose=threshold_chooser(records.get_column("record_id"), labels_file=labels_file,
                                                        records=records))
    graph = graph_summary(cluster_graph_metrics(result.ids, result.pairs, result.threshold, cluster_col="person_id"))
    details = {"records": records.height, "threshold": result.threshold, "threshold_source": result.threshold_source,
               "guard_clusters_split": result.stats.get("guard_clusters_split", 0),
               "largest_cluster": graph["largest_cluster_records"], "chained_clusters": graph["chained_clusters"],
               "blocked_pairs": sum(spec.blocking_pairs.values()),
               "seconds": round(time.perf_counter() - t0, 1)}
    del db_api, trained
    gc.collect()
    return records, result.ids, details


def score(clusters: pl.DataFrame, truth: pl.DataFrame) -> dict:
    from datafirst_assets.linkage.metrics import evaluate_clusters

    predicted = clusters.select(pl.col("record_id").cast(pl.String), pl.col("person_id").cast(pl.String)
                                .alias("cluster_id"))
    ev = evaluate_clusters(predicted, truth, subgroups=SUBGROUPS)
    gaps = {k: round(v["gap"], 4) for k, v in ev["subgroup_gaps"].items()}
    by = {(g["subgroup"], g["group"]): g["f1"] for g in ev["by_subgroup"]}
    non_ascii, ascii_ = by.get(("name_ascii", "non_ascii")), by.get(("name_ascii", "ascii"))
    return {
        "bcubed_precision": ev["bcubed"]["precision"], "bcubed_recall": ev["bcubed"]["recall"],
        "bcubed_f1": ev["bcubed"]["f1"], "pairwise_precision": ev["pairwise"]["precision"],
        "pairwise_recall": ev["pairwise"]["recall"],
        "gap_sex": gaps.get("sex"), "gap_ethnic_group": gaps.get("ethnic_group"),
        "gap_name_origin": gaps.get("name_origin"), "gap_age_band": gaps.get("age_band"),
        "non_ascii_f1": non_ascii, "ascii_f1": ascii_,
        "non_ascii_records": next((g["n_records"] for g in ev["by_subgroup"]
                                   if (g["subgroup"], g["group"]) == ("name_ascii", "non_ascii")), 0),
    }


def xjs_figures(records: dict, clusters: dict, truth_dir: Path, db_options: dict, rerun: bool) -> dict:
    """Cross-justice B-cubed F1 at medium; with ``rerun``, the lookup built a second time from the
    same inputs, its ids carried forward from the first, and how many unchanged persons kept theirs."""
    from datafirst_assets.linkage.backend import make_db_api
    from datafirst_assets.linkage.xjs import build_xjs_lookup, carry_forward_xjs_ids, unchanged_xjs_persons_kept
    from datafirst_assets.evaluation.truth import xjs_truth
    from datafirst_assets.linkage.xjs_metrics import evaluate_xjs, xjs_summary

    result = build_xjs_lookup(records, clusters, db_api=make_db_api(**db_options))
    ev = evaluate_xjs(result.lookup, xjs_truth(truth_dir), thresholds=result.thresholds)
    out: dict = {"xjs_medium_bcubed_f1": xjs_summary(ev, "medium")["bcubed_f1"]}
    if rerun:
        first, _ = carry_forward_xjs_ids(result.lookup)
        again = build_xjs_lookup(records, clusters, db_api=make_db_api(**db_options))
        second, changes = carry_forward_xjs_ids(again.lookup, first)
        out["xjs_unchanged_persons_kept"] = {lv: f"{k} of {n}" for lv, (n, k) in
                                             unchanged_xjs_persons_kept(first, second).items()}
        out["xjs_id_changes"] = dict(changes.group_by("kind").len().iter_rows())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--difficulty", choices=("standard", "hard"), default="standard")
    ap.add_argument("--landing", type=Path, default=None, help="simulated deliveries (skip simulating)")
    ap.add_argument("--truth", type=Path, default=None)
    ap.add_argument("--sources", nargs="*", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--memory-limit", default=None, help="DuckDB memory limit, e.g. 6GB")
    ap.add_argument("--xjs", action="store_true", help="also build and score the cross-justice lookup")
    ap.add_argument("--xjs-rerun", action="store_true",
                    help="with --xjs: build the lookup again and measure how many unchanged persons keep their ids")
    ap.add_argument("--labels", type=int, default=0,
                    help="choose thresholds on this many simulated clerical labels of each dataset's review "
                         "queue (as the demo does), not on the model's estimate")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from datafirst_assets.simulate import simulate
    from datafirst_assets.simulate.config import SimulationConfig
    from datafirst_assets.sources.registry import SOURCES

    if args.landing is None:
        work = Path(tempfile.mkdtemp(prefix="bench_accuracy_"))
        args.landing, args.truth = work / "landing", work / "truth"
        t = time.perf_counter()
        simulate(people=args.people, seed=args.seed, extracts=1, out=args.landing, truth_out=args.truth,
                 config=SimulationConfig.for_difficulty(args.difficulty))
        print(f"simulated {args.people:,} people ({args.difficulty}) in {time.perf_counter() - t:.0f}s", flush=True)
    else:
        people = pl.read_parquet(args.truth / "people.parquet", columns=["is_company"])
        args.people = int((~people["is_company"]).sum())
    db_options = {k: v for k, v in (("threads", args.threads), ("memory_limit", args.memory_limit)) if v}
    rows, records, clusters = [], {}, {}
    for key in args.sources or list(SOURCES):
        recs, ids, details = link_source(args.landing, key, db_options, labels=args.labels, truth_dir=args.truth)
        figures = score(ids, truth_for(args.truth, key))
        rows.append({"dataset": key, **details, **figures})
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}), flush=True)
        if args.xjs:
            records[key] = recs
            clusters[key] = ids.rename({"person_id": SOURCES[key].person_id_name})
    table = pl.DataFrame(rows)
    if args.out:  # the per-dataset figures survive a failure in the cross-justice step
        args.out.write_text(json.dumps({"people": args.people, "difficulty": args.difficulty, "rows": rows},
                                       indent=2, default=str))
    xjs = xjs_figures(records, clusters, args.truth, db_options, args.xjs_rerun) if args.xjs else None

    pl.Config.set_tbl_cols(30)
    pl.Config.set_tbl_width_chars(250)
    pl.Config.set_float_precision(4)
    print(f"\n== bench_accuracy: {args.people:,} people, difficulty {args.difficulty} (as simulated), "
          f"thresholds without truth ({f'{args.labels:,} simulated clerical labels' if args.labels else 'no labels'}) ==")
    print(table.select("dataset", "records", "threshold", "threshold_source", "bcubed_f1", "bcubed_precision",
                       "bcubed_recall", "pairwise_precision", "pairwise_recall", "largest_cluster",
                       "guard_clusters_split", "blocked_pairs"))
    print(table.select("dataset", "gap_sex", "gap_ethnic_group", "gap_name_origin", "gap_age_band",
                       "non_ascii_records", "non_ascii_f1", "ascii_f1"))
    floor_f1 = FLOORS["hard_bcubed_f1"] if args.difficulty == "hard" else FLOORS["bcubed_f1"]
    for row in rows:
        misses = []
        if row["bcubed_f1"] < floor_f1:
            misses.append(f"B-cubed F1 {row['bcubed_f1']:.4f} < {floor_f1}")
        if args.difficulty == "standard" and (row["pairwise_precision"] or 0) < FLOORS["pairwise_precision"]:
            misses.append(f"pairwise precision {row['pairwise_precision']:.4f} < {FLOORS['pairwise_precision']}")
        gap = max((row[g] or 0) for g in ("gap_sex", "gap_ethnic_group", "gap_name_origin", "gap_age_band"))
        if gap > FLOORS["max_subgroup_gap"]:
            misses.append(f"subgroup gap {gap:.4f} > {FLOORS['max_subgroup_gap']}")
        if row["non_ascii_f1"] is not None and row["ascii_f1"] - row["non_ascii_f1"] > FLOORS["non_ascii_gap"]:
            misses.append(f"non-ASCII names {row['non_ascii_f1']:.4f} vs {row['ascii_f1']:.4f}")
        print(f"{row['dataset']}: {'meets the floors' if not misses else 'BELOW: ' + '; '.join(misses)}")
    if xjs is not None:
        print(f"cross-justice B-cubed F1 at medium: {xjs['xjs_medium_bcubed_f1']:.4f} "
              f"(floor {FLOORS['xjs_medium_bcubed_f1']})")
        if "xjs_unchanged_persons_kept" in xjs:
            print(f"cross-justice re-run: unchanged persons keeping their id {xjs['xjs_unchanged_persons_kept']}, "
                  f"changes {xjs['xjs_id_changes']}")
    print(f"peak RSS of this process: {_peak_rss_gib():.2f} GiB")
    if args.out:
        args.out.write_text(json.dumps({"people": args.people, "difficulty": args.difficulty, "rows": rows, "xjs": xjs, "peak_rss_gib": _peak_rss_gib()},
                                       indent=2, default=str))


if __name__ == "__main__":
    main()
