"""Benchmark: deduplication through the Dagster assets vs a plain Splink script, same records, same run.

    .venv/bin/python benchmarks/bench_dedupe_assets.py --records 1000000

The records (generated as in bench_dedupe.py) are stored in a fresh warehouse as
`linkage/magistrates/person_records`; then, each in its own subprocess so peak memory
(ru_maxrss) is the variant's own:

  plain   bench_dedupe.py's plain Splink 5 script with the settings and training plan our code
          builds for these records (train, predict, cluster at 0.9, write clusters);
  assets  `dagster.materialize` of linkage/magistrates/model and linkage/magistrates/clusters
          (+ scored_pairs) through the warehouse IO manager, threshold configured at 0.9,
          u sampled from the same number of pairs, including Dagster's own start-up.

Prints seconds, CPU seconds and peak RSS for each and the ratios assets / plain (the issue's
floor: <= 1.2 for time and memory). CPU seconds are the steadier figure on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_dedupe  # noqa: E402  (the plain variant and the record generator)

SOURCE = "magistrates"


def run_assets(workdir: Path, u_max_pairs: float) -> dict:
    import duckdb
    import polars as pl
    from dagster import DagsterInstance, SourceAsset, materialize

    from datafirst_assets.defs.linkage import LinkageSettings, build_dedupe_assets
    from datafirst_assets.defs.resources import DataLayout, build_resources
    from datafirst_assets.sources.registry import SOURCES

    started = time.perf_counter()
    layout = DataLayout(workdir / "data")
    _records, model, cluster, _linked = build_dedupe_assets(SOURCES[SOURCE])
    person_records = SourceAsset(key=_records.key, metadata={"schema": f"linkage_{SOURCE}"})
    result = materialize(
        [person_records, model, cluster],
        selection=[*model.keys, *cluster.keys],
        instance=DagsterInstance.ephemeral(),
        resources={
            **build_resources(layout),
            "linkage": LinkageSettings(data_dir=str(layout.root), thresholds={SOURCE: 0.9}, u_max_pairs=u_max_pairs),
        },
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    assert result.success
    from datafirst_assets.warehouse.connection import close_warehouse

    close_warehouse()
    with duckdb.connect(str(layout.warehouse), read_only=True) as conn:
        clusters = pl.from_arrow(conn.sql(f"select * from linkage_{SOURCE}.clusters").to_arrow_table())
    return {"seconds": time.perf_counter() - started, "clusters": clusters.height}


def prepare_warehouse(records_file: Path, workdir: Path) -> None:
    import duckdb
    import polars as pl

    records = pl.read_parquet(records_file).with_columns(
        pl.lit(SOURCE).alias("source_dataset"), pl.lit("2024-01-31").alias("extract_date"))
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(workdir / "data" / "warehouse.duckdb")) as conn:
        conn.execute(f"create schema if not exists linkage_{SOURCE}")
        arrow = records.to_arrow()  # noqa: F841 (read by name below)
        conn.execute(f"create or replace table linkage_{SOURCE}.person_records as select * from arrow")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--assets-child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--u-max-pairs", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.assets_child:
        result = run_assets(args.assets_child, args.u_max_pairs)
        (args.assets_child / "result_assets.json").write_text(json.dumps(result))
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_assets_"))
    workdir.mkdir(parents=True, exist_ok=True)
    records_file, truth_file, plan_file = workdir / "records.parquet", workdir / "truth.parquet", workdir / "plan.json"
    print(f"generating {args.records:,} person records in {workdir}", flush=True)
    bench_dedupe.generate(args.records, args.seed, records_file, truth_file)
    plan = bench_dedupe.write_plan(records_file, plan_file, argparse.Namespace())
    prepare_warehouse(records_file, workdir)

    plain_args = argparse.Namespace(threads=None, memory_limit=None, temp_directory=None)
    plain = bench_dedupe.run_variant("plain", plain_args, workdir, plan_file)

    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--assets-child", str(workdir),
                              "--u-max-pairs", str(plan["u_max_pairs"])], cwd=ROOT)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("assets variant failed")
    assets = {
        "wall_seconds": time.perf_counter() - started,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_gib": usage.ru_maxrss / 2**20,
    }

    print(f"\n{args.records:,} person records, u from {plan['u_max_pairs']:,.0f} pairs, threshold 0.9")
    print(f"{'variant':8} {'wall s':>8} {'cpu s':>8} {'peak GiB':>9}")
    for name, res in (("plain", plain), ("assets", assets)):
        print(f"{name:8} {res['wall_seconds']:8.1f} {res['cpu_seconds']:8.1f} {res['peak_rss_gib']:9.2f}")
    print(
        f"ratios assets/plain: wall {assets['wall_seconds'] / plain['wall_seconds']:.2f}, "
        f"cpu {assets['cpu_seconds'] / plain['cpu_seconds']:.2f}, "
        f"peak memory {assets['peak_rss_gib'] / plain['peak_rss_gib']:.2f}"
    )


if __name__ == "__main__":
    main()
