"""Benchmark: thresholds and accuracy with no ground truth in the pipeline (issue 13's floors).

    .venv/bin/python benchmarks/bench_thresholds.py --people 100000 --workdir /tmp/bench_thresholds_100k

In order: simulate ``--people`` people with the truth in ``<workdir>/truth`` (outside the data
folder); ``datafirst run`` with no truth anywhere the pipeline looks and no labels, under a
resident-memory watchdog (``--rss-cap-gib``), checking both releases were published; then
``datafirst simulate-review`` labels each dataset's review queue (``--labels`` pairs, ``--error-rate``
wrong) into ``<workdir>/data/labels``. Then, per dataset, on the stored scored pairs:

* the model-estimated threshold (no labels) and the labels threshold, chosen by the pipeline's own
  function (``linkage.threshold.choose_cluster_threshold``), which never sees truth;
* the truth-optimal threshold among the same candidates, and the measured B-cubed F1 of each;
* estimated (B-cubed and pair-level) precision and recall next to the measured ones.

Floors: B-cubed F1 within 0.005 of the truth-optimal threshold's, with labels and without;
estimated precision and recall within 0.03 of measured. ``--relink`` also runs
``datafirst run --link-only`` with the truth given to the evaluation stage, as ``make demo`` does.
``--reuse`` skips simulation and the first run when the workdir has them.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from datafirst_assets.evaluation.measure import bcubed_by_threshold, pair_level  # noqa: E402
from datafirst_assets.evaluation.truth import record_truth  # noqa: E402
from datafirst_assets.linkage.threshold import (  # noqa: E402
    blocking_lists_sql,
    candidate_thresholds,
    choose_cluster_threshold,
    prediction_rules,
    without_different_people,
)
from datafirst_assets.sources.registry import SOURCES  # noqa: E402
from datafirst_assets.warehouse.connection import close_warehouse, warehouse_cursor  # noqa: E402

DATAFIRST = str(Path(sys.executable).parent / "datafirst")
GAP_FLOOR, ESTIMATE_FLOOR = 0.005, 0.03


def _tree_rss_gib(pid: int) -> float:
    """Resident memory of a process and its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 2**20


def run_watched(cmd: list[str], env: dict, log: Path, cap_gib: float) -> dict:
    """Run ``cmd`` with its output in ``log``; kill its process group above ``cap_gib`` resident."""
    started, peak, killed = time.perf_counter(), [0.0], []
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.5):
                rss = _tree_rss_gib(proc.pid)
                peak[0] = max(peak[0], rss)
                if rss > cap_gib:
                    killed.append(f"resident {rss:.1f} GiB > cap {cap_gib} GiB")
                    os.killpg(proc.pid, 9)
                    return

        threading.Thread(target=watch, daemon=True).start()
        code = proc.wait()
        done.set()
    return {"command": " ".join(cmd[1:]), "seconds": round(time.perf_counter() - started, 1), "exit_code": code,
            "peak_rss_gib": round(peak[0], 2), "killed": killed[0] if killed else None}


def _table(conn, sql: str) -> pl.DataFrame:
    return pl.from_arrow(conn.sql(sql).to_arrow_table())  # type: ignore[return-value]


def measure(work: Path) -> list[dict]:
    rows = []
    for source in SOURCES:
        with warehouse_cursor(work / "data" / "warehouse.duckdb") as conn:
            pairs = _table(conn, f"select record_id_l, record_id_r, match_weight, match_probability "
                                 f"from linkage_{source}.scored_pairs")
            records = _table(conn, f"select * from linkage_{source}.person_records")
            ids = records["record_id"].cast(pl.String)
            version = conn.sql(f"select any_value(model_version) from linkage_{source}.clusters").fetchall()[0][0]
            model = json.loads((work / "data" / "models" / source / f"{version}.json").read_text())
            sql = blocking_lists_sql(prediction_rules(model["splink_model"]), f"linkage_{source}.scored_pairs",
                                     f"linkage_{source}.person_records")
            blocking = _table(conn, sql) if sql else None
        truth = record_truth(work / "truth", source).join(pl.DataFrame({"record_id": ids}), on="record_id")
        labels = work / "data" / "labels" / f"{source}.csv"
        t = time.perf_counter()
        # all the stored pairs, as the pipeline gives them: the choice leaves out the guard's pairs
        # itself, after the date-of-birth witness has read theirs
        estimate = choose_cluster_threshold(pairs, configured=None, labels_file=None, record_ids=ids, blocking=blocking,
                                            records=records)
        labelled = choose_cluster_threshold(pairs, configured=None, labels_file=labels, record_ids=ids,
                                            blocking=blocking, records=records)
        # the guard never joins a pair its rules call two people: measured, like estimated, without them
        pairs = without_different_people(pairs, records)
        choose_seconds = (time.perf_counter() - t) / 2
        # the clusters as published: the over-merge guard splits those carrying different people
        measured = bcubed_by_threshold(pairs, truth, sorted(set(candidate_thresholds())
                                                            | {estimate.match_probability, labelled.match_probability}),
                                       records=records)
        best = measured.sort(["bcubed_f1", "threshold"], descending=[True, True]).row(0, named=True)
        row = {"source": source, "records": ids.len(), "pairs": pairs.height, "choose_seconds": round(choose_seconds, 2),
               "optimal_threshold": best["threshold"], "optimal_f1": best["bcubed_f1"]}
        for name, choice in (("model", estimate), ("labels", labelled)):
            at = measured.filter(pl.col("threshold") == choice.match_probability).row(0, named=True)
            pair_p, pair_r = pair_level(pairs, truth, choice.match_probability)
            e = choice.estimate
            row |= {f"{name}_source": choice.source, f"{name}_threshold": choice.match_probability,
                    f"{name}_recalibrated_by": e.get("recalibration"), f"{name}_missed": e.get("missed_by_blocking"),
                    f"{name}_f1": at["bcubed_f1"], f"{name}_gap": best["bcubed_f1"] - at["bcubed_f1"],
                    f"{name}_b3_p_err": e["bcubed_precision"] - at["bcubed_precision"],
                    f"{name}_b3_r_err": e["bcubed_recall"] - at["bcubed_recall"],
                    f"{name}_pair_p_err": e["pairwise_precision"] - pair_p if pair_p is not None else None,
                    f"{name}_pair_r_err": e["pairwise_recall"] - pair_r if pair_r is not None else None}
        rows.append(row)
    close_warehouse()  # release the file lock before any later run writes the warehouse
    return rows


def print_table(rows: list[dict]) -> None:
    print("\nB-cubed F1 at each threshold (measured against truth) and estimated-minus-measured errors")
    print(f"{'dataset':<12} {'records':>8} {'optimal':>15} | {'model estimate (no labels)':>52} | "
          f"{'clerical labels':>52}")
    for r in rows:
        parts = [f"{r['source']:<12} {r['records']:>8} {r['optimal_threshold']:.4f} {r['optimal_f1']:.4f} "]
        for name in ("model", "labels"):
            errors = [r[f"{name}_{k}"] for k in ("b3_p_err", "b3_r_err", "pair_p_err", "pair_r_err")]
            ok = r[f"{name}_gap"] <= GAP_FLOOR and all(e is None or abs(e) <= ESTIMATE_FLOOR for e in errors)
            parts.append(f"| {r[f'{name}_threshold']:.4f} F1 {r[f'{name}_f1']:.4f} gap {r[f'{name}_gap']:.4f} "
                         f"err {' '.join('  n/a' if e is None else f'{e:+.3f}' for e in errors)} "
                         f"{'ok ' if ok else 'MISS'}")
        print(" ".join(parts))
    print(f"(err: B-cubed precision, recall, pair-level precision, recall; floors: gap <= {GAP_FLOOR}, "
          f"|err| <= {ESTIMATE_FLOOR})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--extracts", type=int, default=3)
    parser.add_argument("--labels", type=int, default=1_500)
    parser.add_argument("--error-rate", type=float, default=0.02)
    parser.add_argument("--rss-cap-gib", type=float, default=10.0)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--relink", action="store_true")
    args = parser.parse_args()
    work = Path(args.workdir or f"/tmp/bench_thresholds_{args.people}")
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DATAFIRST_TRUTH_DIR", "DAGSTER_HOME")}
    # production mode publishes only under a real key: a fresh secret per benchmark, never the development one
    env.setdefault("DATAFIRST_PSEUDONYMISATION_KEY", secrets.token_hex(32))
    runs = []
    if not (args.reuse and (work / "data" / "warehouse.duckdb").exists()):
        runs.append(run_watched([DATAFIRST, "simulate", "--people", str(args.people), "--seed", str(args.seed),
                                 "--extracts", str(args.extracts), "--out", str(work / "data" / "landing"),
                                 "--truth", str(work / "truth")], env, work / "simulate.log", args.rss_cap_gib))
        runs.append(run_watched([DATAFIRST, "run", "--data-dir", str(work / "data")], env, work / "run.log",
                                args.rss_cap_gib))
        releases = sorted(p.name for p in (work / "data" / "releases").glob("LATEST_*"))
        runs[-1]["releases"] = releases
        print(json.dumps(runs[-1]))
        if runs[-1]["exit_code"] != 0:
            sys.exit(f"datafirst run failed: see {work / 'run.log'}")
    (work / "data" / "labels").mkdir(parents=True, exist_ok=True)
    for stale in (work / "data" / "labels").glob("*.csv"):
        stale.unlink()  # a fresh simulated review each time
    runs.append(run_watched([DATAFIRST, "simulate-review", "--data-dir", str(work / "data"), "--truth-dir",
                             str(work / "truth"), "--pairs", str(args.labels), "--error-rate", str(args.error_rate)],
                            env, work / "review.log", args.rss_cap_gib))
    print((work / "review.log").read_text())
    rows = measure(work)
    print_table(rows)
    (work / "bench_thresholds.json").write_text(json.dumps({"runs": runs, "rows": rows}, indent=1))
    if args.relink:
        runs.append(run_watched([DATAFIRST, "run", "--link-only", "--data-dir", str(work / "data")],
                                {**env, "DATAFIRST_TRUTH_DIR": str(work / "truth")}, work / "relink.log",
                                args.rss_cap_gib))
    for run in runs:
        print(json.dumps(run))
    print_table(rows)
    (work / "bench_thresholds.json").write_text(json.dumps({"runs": runs, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
