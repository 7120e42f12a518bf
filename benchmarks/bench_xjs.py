"""Benchmark: the cross-justice lookup and the case link against the per-dataset dedupe.

    .venv/bin/python benchmarks/bench_xjs.py --people 20000            # the demo's size
    .venv/bin/python benchmarks/bench_xjs.py --people 1000000 --threads 2

One run, one process, in this order: simulate ``--people`` people (``--seed``, ``--extracts``),
stage every source's person table and build person records, deduplicate each of the seven
datasets as the pipeline does with no clerical labels (train, score pairs, choose the threshold
from the model's own estimate, cluster), build the cross-justice lookup from the per-dataset clusters, build the
case link, and evaluate both against the simulator's truth. Prints seconds per step, the
ratio lookup / per-dataset dedupe (both measured in this run, on the same DuckDB settings,
so the ratio is meaningful on a shared machine), peak RSS, and the accuracy figures against
the floors (B-cubed F1 >= 0.95 at medium; case link precision >= 0.99, recall >= 0.97).
``--workdir`` keeps the simulated data and a JSON of the results; ``--reuse`` skips simulation
and dedupe when the workdir already holds them (the ratio then uses the stored dedupe time).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FLOORS = {"xjs_bcubed_f1_medium": 0.95, "case_link_precision": 0.99, "case_link_recall": 0.97}


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--extracts", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    ap.add_argument("--memory-limit", default=None, help="DuckDB memory limit, e.g. 16GB")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--reuse", action="store_true",
                    help="reuse simulated data and dedupe results in --workdir")
    ap.add_argument("--same-dataset", default="separate", choices=("separate", "merge"))
    args = ap.parse_args()

    import polars as pl

    from datafirst_assets.linkage.backend import make_db_api
    from datafirst_assets.linkage.case_link import build_case_link
    from datafirst_assets.evaluation.truth import xjs_truth
    from datafirst_assets.linkage.metrics import bcubed_metrics
    from datafirst_assets.linkage.xjs import XJS_LOOKUP_SCHEMA, build_xjs_lookup, check_lookup_invariants
    from datafirst_assets.linkage.xjs_metrics import case_link_metrics, evaluate_xjs
    from datafirst_assets.simulate import simulate
    from datafirst_assets_tests.xjs_fixtures import build_linkage_inputs, load_inputs, save_inputs

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_xjs_"))
    workdir.mkdir(parents=True, exist_ok=True)
    landing, truth_dir, cache = workdir / "landing", workdir / "truth", workdir / "inputs"
    db_options = {k: v for k, v in (("threads", args.threads), ("memory_limit", args.memory_limit)) if v}
    timings: dict[str, float] = {}

    reused = args.reuse and (cache / "timings.parquet").exists()
    if reused:
        inputs = load_inputs(cache)
        print(f"reusing simulated data and per-dataset clusters from {workdir}", flush=True)
    else:
        t = time.perf_counter()
        summary = simulate(people=args.people, seed=args.seed, extracts=args.extracts, out=landing,
                           truth_out=truth_dir)
        timings["simulate"] = time.perf_counter() - t
        print(f"simulated {args.people:,} people: {summary['person_records']:,} person records "
              f"in {timings['simulate']:.1f}s", flush=True)
        inputs = build_linkage_inputs(landing, db_options=db_options)
        save_inputs(inputs, cache)
    for k, v in inputs.timings.items():
        timings[k] = v
    dedupe_s = inputs.timings["dedupe_total"]
    n_records = sum(f.height for f in inputs.person_records.values())
    print(f"per-dataset dedupe of {n_records:,} records over 7 datasets: {dedupe_s:.1f}s "
          + json.dumps({k.removeprefix("dedupe_"): round(v, 1) for k, v in inputs.timings.items()
                        if k.startswith("dedupe_") and k != "dedupe_total"}), flush=True)

    t = time.perf_counter()
    result = build_xjs_lookup(inputs.person_records, inputs.clusters, db_api=make_db_api(**db_options),
                              same_dataset=args.same_dataset)
    timings["xjs_lookup"] = time.perf_counter() - t
    steps = json.dumps({k: round(v, 2) for k, v in result.timings.items()})
    print(f"xjs lookup: {timings['xjs_lookup']:.1f}s {steps}", flush=True)
    print(f"  {json.dumps(result.stats)}", flush=True)

    t = time.perf_counter()
    problems = check_lookup_invariants(result.lookup, inputs.person_records)
    XJS_LOOKUP_SCHEMA.validate(result.lookup)
    timings["xjs_checks"] = time.perf_counter() - t

    t = time.perf_counter()
    links = build_case_link(inputs.hocas, inputs.xhibit, person_link=result.lookup)
    timings["case_link"] = time.perf_counter() - t
    t = time.perf_counter()
    links_no_person = build_case_link(inputs.hocas, inputs.xhibit)
    timings["case_link_without_person_link"] = time.perf_counter() - t

    truth = xjs_truth(truth_dir)
    ev = evaluate_xjs(result.lookup, truth, thresholds=result.thresholds)
    truth_links = pl.read_parquet(truth_dir / "case_links.parquet")
    cl = case_link_metrics(links, truth_links)
    cl_np = case_link_metrics(links_no_person, truth_links)
    per_dataset = pl.DataFrame([
        {"source": s, "bcubed_f1": bcubed_metrics(
            c.select("record_id", pl.col(c.columns[1]).cast(pl.String).alias("cluster_id")),
            truth.filter(pl.col("source_dataset") == s).select("record_id", "person_id"))["f1"]}
        for s, c in inputs.clusters.items()])

    pl.Config.set_tbl_cols(20)
    pl.Config.set_tbl_width_chars(200)
    pl.Config.set_tbl_rows(40)
    print(f"\n== bench_xjs: {args.people:,} people, {n_records:,} person records, {os.cpu_count()} cores, "
          f"DuckDB threads {args.threads or 'all'} ==")
    print("per-dataset B-cubed F1:", json.dumps(dict(zip(per_dataset["source"].to_list(),
                                                         [round(x, 4) for x in per_dataset["bcubed_f1"]]))))
    print(ev["overall"].drop("predicted_pairs", "true_pairs"))
    print("case link (with person link):")
    print(cl)
    print("case link (without person link):")
    print(cl_np.filter(pl.col("case_type") == "all"))
    medium = ev["overall"].filter((pl.col("level") == "medium") & (pl.col("scope") == "all_pairs"))
    medium = medium.row(0, named=True)
    overall_cl = cl.filter(pl.col("case_type") == "all").row(0, named=True)
    figures = {
        "xjs_bcubed_f1_medium": medium["bcubed_f1"],
        "case_link_precision": overall_cl["precision"],
        "case_link_recall": overall_cl["recall"],
    }
    for k, v in figures.items():
        print(f"{k}: {v:.4f} (floor {FLOORS[k]}) {'OK' if v >= FLOORS[k] else 'BELOW FLOOR'}")
    print(f"invariant problems: {problems or 'none'}")
    print(f"seconds: per-dataset dedupe {dedupe_s:.1f}, xjs lookup {timings['xjs_lookup']:.1f}, "
          f"case link {timings['case_link']:.2f}")
    print(f"ratio xjs lookup / per-dataset dedupe: {timings['xjs_lookup'] / dedupe_s:.3f}"
          + (" (dedupe time from the reused run)" if reused else ""))
    print(f"peak RSS of this process: {_peak_rss_gib():.2f} GiB")
    out = {"people": args.people, "seed": args.seed, "extracts": args.extracts, "threads": args.threads,
           "records": n_records, "timings": timings, "xjs_stats": result.stats, "xjs_timings": result.timings,
           "figures": figures, "ratio_xjs_over_dedupe": timings["xjs_lookup"] / dedupe_s,
           "invariant_problems": problems, "peak_rss_gib": _peak_rss_gib(), "reused": reused}
    (workdir / "bench_xjs_result.json").write_text(json.dumps(out, indent=2, default=str))
    print(f"details: {workdir / 'bench_xjs_result.json'}")


if __name__ == "__main__":
    main()
