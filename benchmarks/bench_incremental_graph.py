"""Benchmark: a new extract through the whole asset graph, against the full run before it.

    .venv/bin/python benchmarks/bench_incremental_graph.py --people 50000 --mem-cap-gib 4

As a user runs it: `datafirst simulate` writes ``--extracts`` deliveries per system (the first
holds almost every record; each later one about 1% more). Then, each in its own subprocess
under the memory watchdog of bench_pipeline.py:

  1. full         `datafirst run --date <every date but the last>`: ingest, train, link and
                  publish everything delivered so far (fresh warehouse and DAGSTER_HOME);
  2. incremental  `datafirst run`: the last extract has arrived; the run loads only that date
                  (the earlier ones were loaded from the same manifests) and the linkage stages
                  extend what is stored.

Prints wall and CPU seconds and peak memory of both, the ratio incremental / full (the issue's
floor: <= 0.1x), and seconds per stage and the slowest steps of the incremental run from
Dagster's step events. Results also go to ``<workdir>/result_incremental.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_pipeline import DATAFIRST, prepare, print_steps, run_measured, step_times  # noqa: E402


def extract_dates(landing: Path) -> list[str]:
    return sorted({d.name for source in landing.iterdir() if source.is_dir() for d in source.iterdir() if d.is_dir()})


def staged_rows_by_date(landing: Path) -> dict[str, int]:
    """Rows delivered per extract date, from the manifests."""
    rows: dict[str, int] = {}
    for manifest in landing.glob("*/*/manifest.json"):
        tables = json.loads(manifest.read_text()).get("tables", {}).values()
        rows[manifest.parent.name] = rows.get(manifest.parent.name, 0) + sum(int(t.get("rows", 0)) for t in tables)
    return dict(sorted(rows.items()))


SNAPSHOT_PARTS = ("dagster_home", "data")


def save_snapshot(work: Path, results: dict) -> None:
    """Copy the state the full run left (everything but the landing zone, which is only read)."""
    snap = work / "after_full"
    if snap.exists():
        shutil.rmtree(snap)
    shutil.copytree(work / "dagster_home", snap / "dagster_home")
    shutil.copytree(work / "data", snap / "data", ignore=shutil.ignore_patterns("landing"))
    (snap / "full_result.json").write_text(json.dumps(results, indent=2))
    print(f"snapshot of the full run's state: {snap}", flush=True)


def restore_snapshot(work: Path) -> None:
    snap = work / "after_full"
    if not snap.exists():
        raise SystemExit(f"no snapshot at {snap}: run once with --snapshot")
    shutil.rmtree(work / "dagster_home", ignore_errors=True)
    shutil.copytree(snap / "dagster_home", work / "dagster_home")
    for part in (work / "data").iterdir():
        if part.name != "landing":
            shutil.rmtree(part) if part.is_dir() else part.unlink()
    shutil.copytree(snap / "data", work / "data", dirs_exist_ok=True)
    reseal_restored(work / "data")
    # The copy's pages written out now, not by the extract's first checkpoint: DuckDB syncs the
    # database file there, and flushing the fresh 6 GB copy took 2.4 s of the first step's write at
    # 1M people, a cost of the restore that an extract after a real full run does not pay.
    os.sync()


def reseal_restored(data: Path) -> None:
    """The restored warehouse sealed as the full run's close sealed it. The seal (see
    `warehouse.connection`) names the file's size, modification time and inode; a copy keeps the
    first two (copy2) and gets a new inode, so without this the extract run would hash every stored
    table as for a file written from outside: about 15 s at 1M people that a real extract never
    pays. Resealed only when size and time are the sealed ones: the file the full run closed."""
    for seal in data.glob("*.duckdb.sealed"):
        database = seal.with_name(seal.name.removesuffix(".sealed"))
        recorded = json.loads(seal.read_text())
        now = []
        for path, was in zip((database, Path(f"{database}.wal")), recorded):
            state = path.stat() if path.exists() else None
            if (state is None) != (was is None) or (state is not None and [state.st_size, state.st_mtime_ns] != was[:2]):
                print(f"not resealed: {path} is not the file the full run sealed", flush=True)
                return
            now.append(None if state is None else [state.st_size, state.st_mtime_ns, state.st_ino])
        seal.write_text(json.dumps(now))


def incremental_from_snapshot(work: Path, args: argparse.Namespace) -> int:
    restore_snapshot(work)
    data, home = work / "data", work / "dagster_home"
    saved = json.loads((work / "after_full" / "full_result.json").read_text())
    env = {"DATAFIRST_ALLOW_DEVELOPMENT_KEY": "1", **os.environ, "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("DATAFIRST_TRUTH_DIR", None)
    if args.as_code_of:  # fingerprints as the code that made the snapshot computed them (an A/B of code)
        env["DATAFIRST_CODE_VERSION_OF"] = str(args.as_code_of.resolve())
    incremental = run_measured("incremental", [str(DATAFIRST), "run", "--data-dir", str(data)],
                               env, args.mem_cap_gib, work / "incremental.log")
    steps = step_times(home, incremental.pop("_watch"))[len(saved["full_steps"]):]
    print("\nincremental run (from the snapshot):")
    print_steps(steps, args.top, incremental["wall_seconds"])
    full = saved["full"]
    print(f"\nincremental: {incremental['wall_seconds']:.1f} s wall, {incremental['cpu_seconds']:.1f} CPU s, "
          f"{incremental['peak_gib']:.2f} GiB; the snapshot's full run {full['cpu_seconds']:.1f} CPU s: "
          f"ratio CPU {incremental['cpu_seconds'] / full['cpu_seconds']:.3f}")
    out = work / f"result_from_snapshot_{int(time.time())}.json"
    out.write_text(json.dumps({**saved, "incremental": incremental, "incremental_steps": steps}, indent=2))
    print(f"details: {out}")
    return 0 if incremental["exit_code"] == 0 else 1


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--extracts", type=int, default=3)
    ap.add_argument("--extract-interval-days", type=int, default=90,
                    help="days between deliveries: 90 makes the new extract about 1%% of the rows (issue 14's "
                    "floor is for a 1%% extract); 30 is `datafirst simulate`'s default (about 0.4%%)")
    ap.add_argument("--mem-cap-gib", type=float, default=4.0, help="kill the process tree above this")
    ap.add_argument("--workdir", type=Path, default=None, help="default /tmp/bench_incremental_graph_<people>")
    ap.add_argument("--reuse-landing", action="store_true", help="keep an existing simulated landing zone")
    ap.add_argument("--top", type=int, default=15, help="slowest steps listed")
    ap.add_argument("--snapshot", action="store_true",
                    help="after the full run, keep a copy of the warehouse, models and Dagster home in "
                    "<workdir>/after_full, so that --from-snapshot can time the incremental run again")
    ap.add_argument("--from-snapshot", action="store_true",
                    help="skip simulate and the full run: restore <workdir>/after_full and time only the "
                    "incremental run (A/B of code changes from one state; the full figures are the snapshot's)")
    ap.add_argument("--as-code-of", type=Path, default=None,
                    help="with --from-snapshot: the datafirst_assets folder of the code that made the snapshot; "
                    "its code version is used in fingerprints, so stored tables and kept steps stay valid for "
                    "this code (without it, any code change recomputes every step: not an A/B)")
    ap.add_argument("--series", type=int, default=1,
                    help="time the last N extracts one run each, in date order (`datafirst run --date D`), after "
                    "the full run of the earlier ones (needs --extracts > N): what a run of extracts costs on "
                    "average, not only the first after a full run (e.g. the quality estimates are kept while "
                    "the rows changed since they were made stay under 5%%, about one 1%% extract)")
    return ap.parse_args()


def run_extracts(dates: list[str], data: Path, home: Path, env: dict, mem_cap_gib: float, work: Path,
                 steps_before: int) -> list[dict]:
    """Each of ``dates`` through `datafirst run` in turn (one plain `run` when it is the only one:
    the run finds the new delivery itself, as a sensor's would), measured, with its steps."""
    runs = []
    for date in dates:
        cmd = [str(DATAFIRST), "run", "--data-dir", str(data), *(["--date", date] if len(dates) > 1 else [])]
        log = work / ("incremental.log" if len(dates) == 1 else f"incremental_{date}.log")
        measured = run_measured("incremental" if len(dates) == 1 else f"extract {date}", cmd, env, mem_cap_gib, log)
        # step_times lists every run's steps, oldest run first: this command's come last
        every = step_times(home, measured.pop("_watch"))
        runs.append({"date": date, **measured, "steps": every[steps_before:]})
        steps_before = len(every)
        if measured["exit_code"] != 0:
            break
    return runs


def print_series(runs: list[dict], full: dict) -> None:
    print(f"\n{'extract':12} {'wall s':>8} {'CPU s':>8} {'peak GiB':>9} {'ratio wall':>11} {'ratio CPU':>10}")
    for r in runs:
        print(f"{r['date']:12} {r['wall_seconds']:8.1f} {r['cpu_seconds']:8.1f} {r['peak_gib']:9.2f} "
              f"{r['wall_seconds'] / full['wall_seconds']:11.3f} {r['cpu_seconds'] / full['cpu_seconds']:10.3f}")
    walls, cpus = [r["wall_seconds"] for r in runs], [r["cpu_seconds"] for r in runs]
    print(f"{'mean':12} {sum(walls) / len(walls):8.1f} {sum(cpus) / len(cpus):8.1f} {'':9} "
          f"{sum(walls) / len(walls) / full['wall_seconds']:11.3f} {sum(cpus) / len(cpus) / full['cpu_seconds']:10.3f}")


def main() -> int:
    args = parse_args()

    work = args.workdir or Path(f"/tmp/bench_incremental_graph_{args.people}")
    work.mkdir(parents=True, exist_ok=True)
    if args.from_snapshot:
        return incremental_from_snapshot(work, args)
    data, home = prepare(work, args.reuse_landing)
    env = {"DATAFIRST_ALLOW_DEVELOPMENT_KEY": "1", **os.environ, "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("DATAFIRST_TRUTH_DIR", None)  # production: no truth anywhere
    results: dict = {"people": args.people, "cores": os.cpu_count(), "mem_cap_gib": args.mem_cap_gib}
    if not (args.reuse_landing and (data / "landing").exists()):
        sim = run_measured("simulate", [str(DATAFIRST), "simulate", "--people", str(args.people), "--seed",
                                        str(args.seed), "--extracts", str(args.extracts),
                                        "--extract-interval-days", str(args.extract_interval_days), "--out",
                                        str(data / "landing"), "--truth", str(work / "truth")],
                           env, args.mem_cap_gib, work / "simulate.log")
        sim.pop("_watch")
        if sim["exit_code"] != 0:
            return 1
    dates = extract_dates(data / "landing")
    rows = staged_rows_by_date(data / "landing")
    results["rows_by_date"] = rows
    earlier, later = dates[:-args.series], dates[-args.series:]
    if not earlier:
        print(f"--series {args.series} needs more than {args.series} extract dates; the landing has {dates}")
        return 2
    new = later[0]
    share = rows.get(new, 0) / max(1, sum(rows.get(d, 0) for d in earlier))
    print(f"bench_incremental_graph: {args.people:,} people; rows by date {rows}; the new extract {new} "
          f"adds {share:.2%}", flush=True)

    full = run_measured("full", [str(DATAFIRST), "run", "--data-dir", str(data),
                                 *[a for d in earlier for a in ("--date", d)]],
                        env, args.mem_cap_gib, work / "full.log")
    full_steps = step_times(home, full.pop("_watch"))
    if full["exit_code"] != 0:
        return 1
    if args.snapshot:
        save_snapshot(work, {**results, "full": full, "full_steps": full_steps})
    runs = run_extracts(later, data, home, env, args.mem_cap_gib, work, len(full_steps))
    incremental = {k: v for k, v in runs[0].items() if k not in ("date", "steps")}
    steps = runs[0]["steps"]
    results.update(full=full, incremental=incremental, full_steps=full_steps, incremental_steps=steps)
    if len(later) > 1:
        results["series"] = runs
    print("\nfull run:")
    print_steps(full_steps, args.top, full["wall_seconds"])
    print("\nincremental run:")
    print_steps(steps, args.top, incremental["wall_seconds"])
    ratio_wall = incremental["wall_seconds"] / full["wall_seconds"]
    ratio_cpu = incremental["cpu_seconds"] / full["cpu_seconds"]
    print(f"\n{'run':12} {'wall s':>8} {'CPU s':>8} {'peak GiB':>9}")
    for name, r in (("full", full), ("incremental", incremental)):
        print(f"{name:12} {r['wall_seconds']:8.1f} {r['cpu_seconds']:8.1f} {r['peak_gib']:9.2f}")
    print(f"ratio incremental/full: wall {ratio_wall:.3f}, CPU {ratio_cpu:.3f} (floor <= 0.1)")
    results.update(ratio_wall=ratio_wall, ratio_cpu=ratio_cpu)
    if len(later) > 1:
        print_series(runs, full)
    (work / "result_incremental.json").write_text(json.dumps(results, indent=2))
    print(f"details: {work / 'result_incremental.json'}")
    return 0 if all(r["exit_code"] == 0 for r in runs) and len(runs) == len(later) else 1


if __name__ == "__main__":
    sys.exit(main())
