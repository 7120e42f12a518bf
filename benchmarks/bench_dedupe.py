"""Benchmark: `datafirst dedupe` against the plain Splink script a user writes from Splink's docs.

    .venv/bin/python benchmarks/bench_dedupe.py --records 1000000 --repeat 3

Default variants ``docs,cli``: the docs-style script (comparison library, ``block_on`` rules,
EM with ``max_pairs``, on names, date of birth, postcode and sex) and the ``datafirst dedupe``
command on the same columns, alternating (ABBA...) in the same run, each in its own process
under a memory watchdog (``--mem-cap-gib``); prints the ratios cli/docs and B-cubed F1 of both.
The older pair ``plain,ours`` (plain Splink with our plan vs our function) is still available:

In one run it generates (or reads, ``--input PERSON_RECORDS.parquet``) person records, then
times, each in its own subprocess so peak memory (ru_maxrss from ``os.wait4``) is the
variant's own:

  plain  a plain Splink 5 script: register the arrow table, Linker(settings), prior from
         deterministic rules, u by random sampling, EM sessions, predict, cluster, write
         record_id -> cluster_id. Its settings and training plan are the ones our code
         builds for these records (computed once in the parent and passed as JSON).
  ours   ``datafirst_assets.linkage.dedupe.deduplicate`` from a polars frame: builds the
         spec itself (fields, blocking sizing), trains, saves charts, predicts, clusters.

Both read the same parquet file and write clusters to parquet. Prints seconds and peak
RSS for each and the ratios ours / plain (target <= 1.2), plus B-cubed F1 against the
generated truth for both. ``--repeat N`` runs N rounds in alternating order and reports
medians (use it on a shared machine). ``--variants ours`` runs one variant only (e.g.
``--records 3000000 --variants ours`` for the 3M-in-24-GiB check). Records come from the
test-only generator in ``datafirst_assets_tests/linkage_fixtures.py`` unless ``--input``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_pipeline import TreeWatch  # noqa: E402  (the process-tree memory watchdog)

THRESHOLD = 0.9
RECORDS_PER_PERSON = 1.6  # a little under the generator mean (~1.75), then truncated


# ----------------------------------------------------------------------------- helpers


class RssSampler:
    """Peak resident memory per stage (reads /proc/self/status every 50 ms)."""

    def __init__(self) -> None:
        self.stage = "start"
        self.peaks: dict[str, float] = {}
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    @staticmethod
    def rss_gib() -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2**20
        return 0.0

    def _run(self) -> None:
        while not self._stop:
            r = self.rss_gib()
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), r)
            time.sleep(0.05)

    def set(self, stage: str) -> None:
        self.stage = stage

    def stop(self) -> dict[str, float]:
        self._stop = True
        self._t.join()
        return {k: round(v, 2) for k, v in self.peaks.items()}


def _duckdb_options(args) -> dict:
    opts = {}
    if args.threads:
        opts["threads"] = args.threads
    if args.memory_limit:
        opts["memory_limit"] = args.memory_limit
    if args.temp_directory:
        opts["temp_directory"] = args.temp_directory
    return opts


# ---------------------------------------------------------------------------- variants


def run_plain(args) -> dict:
    """A plain Splink script (no datafirst imports on the timed path)."""
    import duckdb
    import polars as pl
    from splink import DuckDBAPI, Linker

    sampler = RssSampler()
    plan = json.loads(Path(args.plan).read_text())
    t0 = time.perf_counter()
    timings = {}
    sampler.set("read")
    df = pl.read_parquet(args.records_file)
    sampler.set("register")
    con = duckdb.connect()
    for k, v in _duckdb_options(args).items():
        con.execute(f"SET {k} = '{v}'" if isinstance(v, str) else f"SET {k} = {v}")
    db_api = DuckDBAPI(connection=con)
    sdf = db_api.register(df.select(plan["columns"]).to_arrow(), dataset_display_name="person_records")
    linker = Linker(sdf, plan["settings"], log_level=40)
    t = time.perf_counter()
    sampler.set("prior")
    linker.training.estimate_probability_two_random_records_match(plan["deterministic_rules"],
                                                                  recall=plan["recall"])
    sampler.set("u")
    linker.training.estimate_u_using_random_sampling(max_pairs=plan["u_max_pairs"], seed=plan["seed"])
    sampler.set("em")
    for rule in plan["em_rules"]:
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, estimate_without_term_frequencies=True, max_pairs=plan["em_max_pairs"])
    timings["train"] = time.perf_counter() - t
    t = time.perf_counter()
    sampler.set("predict")
    pred = linker.inference.predict(threshold_match_probability=THRESHOLD)
    timings["predict"] = time.perf_counter() - t
    t = time.perf_counter()
    sampler.set("cluster")
    cc = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, threshold_match_probability=THRESHOLD)
    out = pl.from_arrow(cc.query_sql("select record_id, cluster_id from {this}").as_pyarrow_table())
    out.write_parquet(args.out)
    timings["cluster"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return {"timings": timings, "rss_by_stage_gib": sampler.stop(), "clusters": out.get_column("cluster_id").n_unique()}


#: Columns a person file typically has: names, date of birth, postcode, sex.
DOCS_COLUMNS = ["record_id", "forename", "surname", "dob", "postcode", "sex"]


def run_docs(args) -> dict:
    """The script a user writes from Splink's documentation (no datafirst imports): the
    comparison library, ``block_on`` rules, prior from a deterministic rule, u by random
    sampling, EM with ``max_pairs``, predict, cluster, write record_id -> cluster_id."""
    import polars as pl
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    t0 = time.perf_counter()
    cpu = {"start": time.process_time()}
    df = pl.read_parquet(args.records_file, columns=DOCS_COLUMNS)
    db_api = DuckDBAPI()
    settings = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="record_id",
        comparisons=[
            cl.NameComparison("forename").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("dob", input_is_string=False),
            cl.PostcodeComparison("postcode"),
            cl.ExactMatch("sex"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("forename", "surname"),
            block_on("surname", "dob"),
            block_on("forename", "dob"),
            block_on("postcode", "dob"),
        ],
    )
    linker = Linker(db_api.register(df.to_arrow(), dataset_display_name="people"), settings, log_level=40)
    t = time.perf_counter()
    cpu["read"] = time.process_time()
    linker.training.estimate_probability_two_random_records_match(
        [block_on("forename", "surname", "dob")], recall=0.7)
    cpu["prior"] = time.process_time()
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    cpu["u"] = time.process_time()
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("forename", "surname"),
                                                                       max_pairs=1e6)
    cpu["em1"] = time.process_time()
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"), max_pairs=1e6)
    cpu["em2"] = time.process_time()
    timings = {"train": time.perf_counter() - t}
    t = time.perf_counter()
    pred = linker.inference.predict(threshold_match_probability=THRESHOLD)
    timings["predict"] = time.perf_counter() - t
    t = time.perf_counter()
    cc = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, threshold_match_probability=THRESHOLD)
    out = pl.from_arrow(cc.query_sql("select record_id, cluster_id from {this}").as_pyarrow_table())
    out.write_parquet(args.out)
    timings["cluster"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    cpu["predict+cluster"] = time.process_time()
    stages = list(cpu)
    timings.update({f"cpu_{b}": cpu[b] - cpu[a] for a, b in zip(stages, stages[1:])})
    return {"timings": timings, "rss_by_stage_gib": {}, "clusters": out.get_column("cluster_id").n_unique()}


def cli_command(args) -> list[str]:
    """`datafirst dedupe` on the same columns the docs script reads."""
    cmd = [str(ROOT / ".venv" / "bin" / "datafirst"), "dedupe", args.records_file, "--id", "record_id",
           "--out", args.out, "--threshold", str(THRESHOLD), "--quiet"]
    for column in DOCS_COLUMNS[1:]:
        cmd += ["--map", f"{column}={column}"]
    return cmd


def run_ours(args) -> dict:
    import polars as pl

    from datafirst_assets.linkage.backend import make_db_api
    from datafirst_assets.linkage.dedupe import deduplicate

    sampler = RssSampler()
    t0 = time.perf_counter()
    sampler.set("read")
    df = pl.read_parquet(args.records_file)
    sampler.set("dedupe")
    res = deduplicate(df, db_api=make_db_api(**_duckdb_options(args)), threshold_match_probability=THRESHOLD,
                      chart_dir=Path(args.out).parent / "charts", progress=lambda m: sampler.set(m.split(" ")[0]))
    res.clusters.select("record_id", "cluster_id").write_parquet(args.out)
    timings = dict(res.timings)
    timings["total"] = time.perf_counter() - t0
    return {"timings": timings, "rss_by_stage_gib": sampler.stop(), "clusters": res.clusters.get_column(
        "cluster_id").n_unique(), "model_version": res.model.version}


# ----------------------------------------------------------------------------- parent


def generate(n_records: int, seed: int, path: Path, truth_path: Path) -> None:
    from datafirst_assets_tests.linkage_fixtures import make_people, make_person_records

    people = make_people(int(n_records / RECORDS_PER_PERSON) + 1, seed)
    records, truth = make_person_records(people, seed + 1)
    records = records.head(n_records)
    truth = truth.head(n_records)
    records.write_parquet(path)
    truth.write_parquet(truth_path)


def write_plan(records_file: Path, plan_file: Path, args) -> dict:
    import polars as pl

    from datafirst_assets.linkage.settings import model_spec_for_records
    from datafirst_assets.linkage.train import TrainingConfig

    df = pl.read_parquet(records_file)
    spec = model_spec_for_records(df)
    cfg = TrainingConfig()
    plan = {
        "columns": [c for c in spec.columns if c in df.columns],
        "settings": spec.settings,
        "deterministic_rules": list(spec.deterministic_rules),
        "recall": spec.deterministic_recall,
        "em_rules": list(spec.em_blocking_rules),
        "u_max_pairs": cfg.u_max_pairs,
        "seed": cfg.seed,
        "em_max_pairs": cfg.em_max_pairs if df.height >= cfg.em_sample_min_records else None,
        "blocking_pairs": spec.blocking_pairs,
    }
    plan_file.write_text(json.dumps(plan))
    return plan


def run_variant(variant: str, args, workdir: Path, plan_file: Path) -> dict:
    out = workdir / f"clusters_{variant}.parquet"
    result_file = workdir / f"result_{variant}.json"
    cmd = [sys.executable, __file__, "--variant", variant, "--records-file", str(workdir / "records.parquet"),
           "--plan", str(plan_file), "--out", str(out), "--result", str(result_file)]
    for flag, val in (("--threads", args.threads), ("--memory-limit", args.memory_limit),
                      ("--temp-directory", args.temp_directory)):
        if val:
            cmd += [flag, str(val)]
    if variant == "cli":
        cmd = cli_command(argparse.Namespace(records_file=str(workdir / "records.parquet"), out=str(out)))
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    watch = TreeWatch(proc.pid, args.mem_cap_gib)  # kills the variant's process tree over the cap
    _, status, rusage = os.wait4(proc.pid, 0)
    watch.stop()
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        killed = f" (killed over {args.mem_cap_gib} GiB)" if watch.killed_at else ""
        raise SystemExit(f"{variant} failed with exit code {proc.returncode}{killed}")
    res = json.loads(result_file.read_text()) if variant != "cli" else {
        "timings": {}, "rss_by_stage_gib": {},
        "clusters": pl_unique(out, "person_id")}
    res["wall_seconds"] = wall
    res["peak_rss_gib"] = rusage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux
    res["cpu_seconds"] = rusage.ru_utime + rusage.ru_stime  # less sensitive to a busy machine
    res["clusters_file"] = str(out)
    return res


def pl_unique(path: Path, column: str) -> int:
    import polars as pl

    return pl.scan_parquet(path).select(pl.col(column).n_unique()).collect().item()


def bcubed_f1(clusters_file: str, truth_file: Path) -> float:
    import polars as pl

    from datafirst_assets.linkage.metrics import bcubed_metrics

    clusters = pl.read_parquet(clusters_file)
    if "person_id" in clusters.columns:  # the CLI's output: source, record_id, person_id
        clusters = clusters.select("record_id", pl.col("person_id").alias("cluster_id"))
    return bcubed_metrics(clusters.with_columns(pl.col("cluster_id").cast(pl.String)),
                          pl.read_parquet(truth_file))["f1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000, help="records to generate")
    ap.add_argument("--input", type=Path, default=None, help="person records parquet to use instead")
    ap.add_argument("--truth", type=Path, default=None, help="truth parquet (record_id, person_id) for --input")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--variants", default="docs,cli",
                    help="docs: the docs-style plain Splink script; cli: `datafirst dedupe`; plain: plain Splink "
                    "with our plan; ours: our deduplicate() function")
    ap.add_argument("--mem-cap-gib", type=float, default=16.0, help="kill a variant's process tree above this")
    ap.add_argument("--repeat", type=int, default=1, help="rounds (alternating order); medians reported")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--memory-limit", default=None)
    ap.add_argument("--temp-directory", default=None)
    # internal (child process)
    ap.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--records-file", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--plan", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.variant:  # child
        res = {"plain": run_plain, "ours": run_ours, "docs": run_docs}[args.variant](args)
        Path(args.result).write_text(json.dumps(res))
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_dedupe_"))
    workdir.mkdir(parents=True, exist_ok=True)
    records_file, truth_file = workdir / "records.parquet", workdir / "truth.parquet"
    t = time.perf_counter()
    if args.input:
        import shutil

        shutil.copy(args.input, records_file)
        truth_file = args.truth
    else:
        generate(args.records, args.seed, records_file, truth_file)
    print(f"records ready in {time.perf_counter() - t:.1f}s -> {records_file}", flush=True)
    plan_file = workdir / "plan.json"
    plan = write_plan(records_file, plan_file, args)
    print("blocking rules (pairs):", json.dumps(plan["blocking_pairs"]), flush=True)

    variants = [x.strip() for x in args.variants.split(",") if x.strip()]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for i in range(args.repeat):
        # alternate the order (ABBA...) so drift on a shared machine hits both variants
        for v in (variants if i % 2 == 0 else variants[::-1]):
            print(f"running {v} (round {i + 1}/{args.repeat}) ...", flush=True)
            r = run_variant(v, args, workdir, plan_file)
            runs[v].append(r)
            print(f"  {v}: {r['wall_seconds']:.1f}s wall, {r['cpu_seconds']:.1f}s CPU, "
                  f"peak RSS {r['peak_rss_gib']:.2f} GiB, "
                  f"stages {json.dumps({k: round(x, 1) for k, x in r['timings'].items()})}", flush=True)
            print(f"  {v}: RSS by stage (GiB) {json.dumps(r['rss_by_stage_gib'])}", flush=True)
    results = {}
    for v, rs in runs.items():
        r = dict(rs[-1])
        r["wall_seconds"] = statistics.median(x["wall_seconds"] for x in rs)
        r["peak_rss_gib"] = statistics.median(x["peak_rss_gib"] for x in rs)
        r["cpu_seconds"] = statistics.median(x["cpu_seconds"] for x in rs)
        r["all_wall_seconds"] = [x["wall_seconds"] for x in rs]
        r["all_peak_rss_gib"] = [x["peak_rss_gib"] for x in rs]
        r["all_cpu_seconds"] = [x["cpu_seconds"] for x in rs]
        if truth_file and Path(truth_file).exists():
            r["bcubed_f1"] = bcubed_f1(r["clusters_file"], truth_file)
        results[v] = r

    import polars as pl

    n = pl.scan_parquet(records_file).select(pl.len()).collect().item()
    print(f"\n== bench_dedupe: {n:,} records, {os.cpu_count()} cores, threshold {THRESHOLD}, "
          f"{args.repeat} round(s), medians ==")
    print(f"{'variant':8} {'seconds':>9} {'CPU s':>9} {'peak GiB':>9} {'B3 F1':>7}  all seconds / GiB")
    for v, r in results.items():
        print(f"{v:8} {r['wall_seconds']:9.1f} {r['cpu_seconds']:9.1f} {r['peak_rss_gib']:9.2f} "
              f"{r.get('bcubed_f1', float('nan')):7.4f}  "
              f"{[round(x, 1) for x in r['all_wall_seconds']]} / {[round(x, 2) for x in r['all_peak_rss_gib']]}")
    for mine, theirs, target in (("ours", "plain", "time and memory <= 1.2"),
                                 ("cli", "docs", "time <= 1.1, memory <= 1.2, F1 no lower")):
        if {mine, theirs} <= set(results):
            a, b = results[mine], results[theirs]
            print(f"ratio {mine}/{theirs}: time {a['wall_seconds'] / b['wall_seconds']:.3f}, "
                  f"peak memory {a['peak_rss_gib'] / b['peak_rss_gib']:.3f}, "
                  f"CPU time {a['cpu_seconds'] / b['cpu_seconds']:.3f}, "
                  f"B-cubed F1 {a.get('bcubed_f1', float('nan')):.4f} vs {b.get('bcubed_f1', float('nan')):.4f} "
                  f"(target: {target})")
    (workdir / "bench_result.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"details: {workdir / 'bench_result.json'}")


if __name__ == "__main__":
    main()
