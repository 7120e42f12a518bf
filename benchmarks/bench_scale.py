"""Benchmark: deduplication at 1M, 3M and 10M person records on one machine, ours vs plain Splink.

    flock /tmp/datafirst-heavy.lock .venv/bin/python benchmarks/bench_scale.py --sizes 10000000
    flock /tmp/datafirst-heavy.lock .venv/bin/python benchmarks/bench_scale.py --sizes 1000000,3000000
    .venv/bin/python benchmarks/bench_scale.py --report            # table of every size run so far

Per size, in one work folder (``--workdir``, default /tmp/bench_scale), it generates the
records (test-only generator, in 1M-record chunks so generation itself stays small), then
runs each variant in its own child process and reports wall time, CPU time (user + system
of the child: less sensitive to a shared machine), peak resident memory (``ru_maxrss``)
and B-cubed F1 against the generated truth:

  plain  bench_dedupe.py's plain Splink 5 script with DuckDB's defaults (memory limit 80% of
         RAM), the same settings and training plan as ours: predict everything, cluster.
  plain_capped  the same script on a DuckDB capped like ours (``--duckdb-memory``, spilling to
         the work folder): what DuckDB's own spilling achieves without chunking.
  ours   ``deduplicate(..., pairs_dir=...)`` on a DuckDB capped at ``--duckdb-memory``
         (spilling to the work folder): pairs scored in chunks of left-hand records
         (``linkage.predict.PAIRS_PER_CHUNK`` blocked pairs each) straight to Parquet,
         clusters computed from the Parquet files.

Every child runs under two limits so it can fail without taking the machine (24 GiB,
shared) with it: an address-space limit (``--as-limit-gib``, default 24: "within 24 GiB")
set with setrlimit before the child starts, and a watchdog that kills it when its resident
memory passes ``--rss-cap-gib`` (default 20), when the machine's available memory falls
under ``--min-available-gib``, or after ``--timeout-minutes``. A variant stopped by either is reported as "did not complete"
with the limit, the stage it was in and how long it ran; the benchmark carries on.

Results go to ``<workdir>/results_<size>.json``; ``--report`` prints them all side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dedupe import RECORDS_PER_PERSON, THRESHOLD, RssSampler, run_plain  # noqa: E402

GIB = 2**30
CHUNK_RECORDS = 1_000_000


# ----------------------------------------------------------------------------- children


def generate(n_records: int, seed: int, records_file: Path, truth_file: Path, plan_file: Path) -> None:
    """Records in 1M-record chunks (the first chunk is exactly bench_dedupe's 1M records),
    then the training plan both variants use (settings sized on all the records)."""
    import polars as pl

    from bench_dedupe import write_plan
    from datafirst_assets_tests.linkage_fixtures import make_people, make_person_records

    parts_dir = records_file.parent / f"parts_{n_records}"
    parts_dir.mkdir(parents=True, exist_ok=True)
    done = 0
    k = 0
    while done < n_records:
        n = min(CHUNK_RECORDS, n_records - done)
        chunk_seed = seed + 1000 * k
        people = make_people(int(n / RECORDS_PER_PERSON) + 1, chunk_seed)
        if k:  # distinct people and record ids per chunk
            people = people.with_columns(pl.concat_str(pl.lit(f"C{k}-"), "person_id").alias("person_id"))
        records, truth = make_person_records(people, chunk_seed + 1, id_prefix="R" if k == 0 else f"R{k}-")
        records.head(n).write_parquet(parts_dir / f"records_{k:03d}.parquet")
        truth.head(n).write_parquet(parts_dir / f"truth_{k:03d}.parquet")
        del people, records, truth
        done += n
        k += 1
        print(f"  generated {done:,} / {n_records:,} records", flush=True)
    pl.scan_parquet(parts_dir / "records_*.parquet").sink_parquet(records_file)
    pl.scan_parquet(parts_dir / "truth_*.parquet").sink_parquet(truth_file)
    write_plan(records_file, plan_file, None)


def run_ours(args) -> dict:
    import polars as pl

    from datafirst_assets.linkage.backend import make_db_api
    from datafirst_assets.linkage.dedupe import deduplicate

    sampler = RssSampler()
    t0 = time.perf_counter()
    sampler.set("read")
    df = pl.read_parquet(args.records_file)
    sampler.set("spec")
    work = Path(args.out).parent
    db_api = make_db_api(memory_limit=args.duckdb_memory, threads=args.threads,
                         temp_directory=work / f"duckdb_tmp_{os.getpid()}")

    def progress(message: str) -> None:
        sampler.set(message.split(" ")[0])
        Path(args.stage_file).write_text(message)

    res = deduplicate(df, db_api=db_api, threshold_match_probability=THRESHOLD,
                      pairs_dir=work / f"pairs_{os.getpid()}", progress=progress)
    res.clusters.select("record_id", "cluster_id").write_parquet(args.out)
    timings = dict(res.timings)
    timings["total"] = time.perf_counter() - t0
    timings |= {f"train_{k}": v for k, v in res.model.timings.items()}  # register, prior, u, em
    return {"timings": timings, "rss_by_stage_gib": sampler.stop(),
            "clusters": res.clusters.get_column("cluster_id").n_unique(), "model_version": res.model.version}


def child_main(args) -> None:
    if args.variant == "generate":
        generate(args.records, args.seed, Path(args.records_file), Path(args.truth_file), Path(args.plan))
        return
    if args.variant == "bcubed":
        import polars as pl

        from datafirst_assets.linkage.metrics import bcubed_metrics

        clusters = pl.read_parquet(args.out).with_columns(pl.col("cluster_id").cast(pl.String))
        metrics = bcubed_metrics(clusters, pl.read_parquet(args.truth_file, columns=["record_id", "person_id"]))
        Path(args.result).write_text(json.dumps(metrics, default=float))
        return
    if args.variant in ("plain", "plain_capped"):
        import bench_dedupe

        set_stage = bench_dedupe.RssSampler.set

        def set_and_record(self, stage: str) -> None:  # so a stopped run says where it was
            set_stage(self, stage)
            Path(args.stage_file).write_text(stage)

        bench_dedupe.RssSampler.set = set_and_record
        # bench_dedupe's script reads these: DuckDB's defaults, or ours' memory limit and spilling
        args.threads = args.memory_limit = args.temp_directory = None
        if args.variant == "plain_capped":
            args.memory_limit = args.duckdb_memory
            args.temp_directory = str(Path(args.out).parent / f"duckdb_tmp_{os.getpid()}")
        res = run_plain(args)
    else:
        res = run_ours(args)
    Path(args.result).write_text(json.dumps(res))


# ------------------------------------------------------------------------------ parent


def _available_gib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return float("inf")


def _rss_gib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2**20
    except FileNotFoundError:
        pass
    return 0.0


def run_child(variant: str, args, extra: list[str], stage_file: Path, log_file: Path) -> dict:
    """Run one child under the address-space limit and the RSS watchdog; never raises."""
    cmd = [sys.executable, __file__, "--variant", variant, "--stage-file", str(stage_file), *extra]
    as_limit = int(args.as_limit_gib * GIB)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))

    stage_file.write_text("starting")
    killed: dict[str, str] = {}
    t = time.perf_counter()
    with open(log_file, "w") as log:
        # cwd: DuckDB spills an in-memory database to ./.tmp by default
        proc = subprocess.Popen(cmd, cwd=args.workdir, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit)

        finished = threading.Event()

        def watch() -> None:
            # never proc.poll() here: it would reap the child before os.wait4 can read its rusage
            while not finished.wait(0.1):
                if time.perf_counter() - t > args.timeout_minutes * 60:
                    killed["reason"] = f"not finished within {args.timeout_minutes:g} minutes"
                    killed["stage"] = stage_file.read_text() if stage_file.exists() else "?"
                    proc.send_signal(signal.SIGKILL)
                    return
                rss = _rss_gib(proc.pid)
                avail = _available_gib()
                if rss > args.rss_cap_gib or avail < args.min_available_gib:
                    killed["reason"] = (f"resident memory {rss:.1f} GiB > cap {args.rss_cap_gib} GiB"
                                        if rss > args.rss_cap_gib else
                                        f"machine's available memory {avail:.1f} GiB < {args.min_available_gib} GiB "
                                        f"(child at {rss:.1f} GiB)")
                    killed["stage"] = stage_file.read_text() if stage_file.exists() else "?"
                    proc.send_signal(signal.SIGKILL)
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, rusage = os.wait4(proc.pid, 0)
        finished.set()
        proc.returncode = os.waitstatus_to_exitcode(status)
        watcher.join(timeout=1)
    out = {
        "wall_seconds": time.perf_counter() - t,
        "cpu_seconds": rusage.ru_utime + rusage.ru_stime,
        "peak_rss_gib": rusage.ru_maxrss / 2**20,  # KiB on Linux
        "exit_code": proc.returncode,
        "completed": proc.returncode == 0,
        "log": str(log_file),
    }
    if killed:
        out["failure"] = f"stopped by the watchdog: {killed['reason']}, while: {killed['stage']}"
    elif proc.returncode != 0:
        tail = log_file.read_text(errors="replace").strip().splitlines()[-3:]
        stage = stage_file.read_text() if stage_file.exists() else "?"
        out["failure"] = (f"exit code {proc.returncode} under the {args.as_limit_gib:g} GiB address-space limit "
                          f"while: {stage}; " + " | ".join(tail))
    return out


def run_size(n: int, args) -> dict:
    work = args.workdir / f"n{n}"
    work.mkdir(parents=True, exist_ok=True)
    records_file, truth_file, plan_file = work / "records.parquet", work / "truth.parquet", work / "plan.json"
    stage_file = work / "stage.txt"
    if not (records_file.exists() and truth_file.exists() and plan_file.exists()):
        print(f"[{n:,}] generating records ...", flush=True)
        gen = run_child("generate", args, ["--records", str(n), "--seed", str(args.seed),
                                           "--records-file", str(records_file), "--truth-file", str(truth_file),
                                           "--plan", str(plan_file)], stage_file, work / "generate.log")
        if not gen["completed"]:
            raise SystemExit(f"generation failed: {gen.get('failure')} (log {gen['log']})")
        print(f"[{n:,}] records ready in {gen['wall_seconds']:.0f}s", flush=True)
    plan = json.loads(plan_file.read_text())
    results_file = args.workdir / f"results_{n}.json"
    previous = json.loads(results_file.read_text())["variants"] if results_file.exists() else {}
    result = {"records": n, "cores": os.cpu_count(), "duckdb_memory_ours": args.duckdb_memory,
              "as_limit_gib": args.as_limit_gib, "rss_cap_gib": args.rss_cap_gib,
              "timeout_minutes": args.timeout_minutes,
              "blocking_pairs": plan["blocking_pairs"], "variants": previous}
    for variant in args.variants:
        print(f"[{n:,}] running {variant} ...", flush=True)
        out, res_file = work / f"clusters_{variant}.parquet", work / f"result_{variant}.json"
        res_file.unlink(missing_ok=True)
        r = run_child(variant, args, ["--records-file", str(records_file), "--plan", str(plan_file),
                                      "--out", str(out), "--result", str(res_file),
                                      "--duckdb-memory", args.duckdb_memory, "--threads", str(args.threads)],
                      stage_file, work / f"{variant}.log")
        if r["completed"]:
            r.update(json.loads(res_file.read_text()))
            bc_file = work / f"bcubed_{variant}.json"
            bc = run_child("bcubed", args, ["--out", str(out), "--truth-file", str(truth_file),
                                            "--result", str(bc_file)], stage_file, work / "bcubed.log")
            if bc["completed"]:
                r["bcubed"] = json.loads(bc_file.read_text())
        r["duckdb_memory_limit"] = "default (80% of RAM)" if variant == "plain" else args.duckdb_memory
        result["variants"][variant] = r
        for leftover in [*work.glob("duckdb_tmp_*"), *work.glob("pairs_*"), args.workdir / ".tmp"]:
            shutil.rmtree(leftover, ignore_errors=True)  # spill files and pairs (GBs at 10M)
        print(f"[{n:,}] {variant}: " + _line(r), flush=True)
        results_file.write_text(json.dumps(result, indent=2, default=str))
    return result


def _line(r: dict) -> str:
    if not r["completed"]:
        return f"did not complete ({r.get('failure')}) after {r['wall_seconds']:.0f}s, peak {r['peak_rss_gib']:.2f} GiB"
    stages = {k: round(v) for k, v in r.get("timings", {}).items()}
    return (f"{r['wall_seconds']:.0f}s wall, {r['cpu_seconds']:.0f}s CPU, peak {r['peak_rss_gib']:.2f} GiB, "
            f"B3 F1 {r.get('bcubed', {}).get('f1', float('nan')):.4f}, stages {stages}")


def report(workdir: Path) -> None:
    rows = []
    for f in sorted(workdir.glob("results_*.json"), key=lambda p: int(p.stem.split("_")[1])):
        rows.append(json.loads(f.read_text()))
    if not rows:
        print(f"no results under {workdir}")
        return
    print(f"\n== bench_scale ({workdir}): {rows[0]['cores']} cores, threshold {THRESHOLD}, "
          f"limits {rows[0]['as_limit_gib']:g} GiB address space / {rows[0]['rss_cap_gib']:g} GiB resident ==")
    print(f"{'records':>11} {'variant':12} {'wall s':>8} {'CPU s':>8} {'peak GiB':>9} {'B3 F1':>7}  note")
    for row in rows:
        vs = row["variants"]
        for name, r in vs.items():
            if r["completed"]:
                f1 = r.get("bcubed", {}).get("f1")
                print(f"{row['records']:>11,} {name:12} {r['wall_seconds']:8.0f} {r['cpu_seconds']:8.0f} "
                      f"{r['peak_rss_gib']:9.2f} {f1 if f1 is not None else float('nan'):7.4f}  "
                      + "DuckDB memory limit " + r.get("duckdb_memory_limit", "default (80% of RAM)" if name == "plain"
                                                       else row["duckdb_memory_ours"]))
            else:
                print(f"{row['records']:>11,} {name:12} {'-':>8} {'-':>8} {'-':>9} {'-':>7}  did not complete: "
                      f"{r.get('failure')} (ran {r['wall_seconds']:.0f}s, {r['cpu_seconds']:.0f}s CPU, "
                      f"peak {r['peak_rss_gib']:.2f} GiB)")
        if all(v in vs and vs[v]["completed"] for v in ("plain", "ours")):
            o, p = vs["ours"], vs["plain"]
            print(f"{'':>11} ratio ours/plain: wall {o['wall_seconds'] / p['wall_seconds']:.2f}, "
                  f"CPU {o['cpu_seconds'] / p['cpu_seconds']:.2f}, peak memory {o['peak_rss_gib'] / p['peak_rss_gib']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000,3000000,10000000", help="comma-separated record counts")
    ap.add_argument("--variants", default="ours,plain", help="ours, plain, plain_capped")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_scale"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="DuckDB threads (ours)")
    ap.add_argument("--duckdb-memory", default="8GB", help="DuckDB memory_limit for ours")
    ap.add_argument("--as-limit-gib", type=float, default=24.0)
    ap.add_argument("--rss-cap-gib", type=float, default=20.0)
    ap.add_argument("--min-available-gib", type=float, default=1.5)
    ap.add_argument("--timeout-minutes", type=float, default=120.0, help="per variant")
    ap.add_argument("--report", action="store_true", help="only print the results found in --workdir")
    # internal (children)
    ap.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--records", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--records-file", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--truth-file", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--plan", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--stage-file", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.variant:
        child_main(args)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    if not args.report:
        args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        for n in [int(x) for x in args.sizes.split(",") if x.strip()]:
            run_size(n, args)
    report(args.workdir)


if __name__ == "__main__":
    main()
