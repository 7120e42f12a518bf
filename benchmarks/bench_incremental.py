"""Benchmark: linking a new extract incrementally vs a full re-link, and id stability.

    flock /tmp/datafirst-heavy.lock .venv/bin/python benchmarks/bench_incremental.py --people 1000000

One large dataset is deduplicated with the same pure functions the `linkage/<source>/model`
and `clusters` assets call (datafirst_assets/linkage/incremental.py), not through the Dagster
graph; the state the assets keep in the warehouse (person records, model, clusters, scored
pairs, id changes) lives in a DuckDB file per variant and is read and written as the assets'
IO manager would (whole tables). Records come from the test-only generator
(datafirst_assets_tests/linkage_fixtures.py); the clustering threshold is fixed at 0.9.

  1. setup        the people's records less a held-out share (`--new-share`, default 1%) are
                  linked in full (train, score, cluster, mint ids): the "already linked" state;
  2. full         the schedule's full refresh on every record: retrain, re-score, re-cluster,
                  carry ids forward;
  3. incremental  the held-out records arrive as a new extract: the saved model is checked and
                  reused, new records are scored against the existing ones and among themselves,
                  the affected persons re-clustered, ids carried forward.

Each step runs in its own process (peak RSS and CPU seconds from os.wait4). Prints wall and CPU
seconds and peak memory of full and incremental and their ratios (the issue's floor: incremental
<= 0.2x the full run), the share of unchanged persons that kept their id across each re-cluster
(floor: 100%), and B-cubed F1 of both against the generator's truth.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

THRESHOLD = 0.9
SOURCE = "bench"
STEPS = ("setup", "full", "incremental")


# ------------------------------------------------------------------------- warehouse state


def _read(con, table: str):
    import polars as pl

    if not con.execute("select count(*) from duckdb_tables() where table_name = ?", [table]).fetchall()[0][0]:
        return None
    return pl.from_arrow(con.sql(f"select * from {table}").to_arrow_table())


def _write(con, table: str, frame) -> None:
    arrow = frame.to_arrow()  # noqa: F841 (read by name in the SQL)
    con.execute(f"create or replace table {table} as select * from arrow")


# ------------------------------------------------------------------------------ children


def run_step(step: str, db_file: Path) -> dict:
    """One variant, in this (child) process, against the state in ``db_file``."""
    import duckdb
    import polars as pl

    from datafirst_assets.linkage.backend import make_db_api
    from datafirst_assets.linkage.incremental import PreviousLink, link_full, link_incremental, model_to_reuse
    from datafirst_assets.linkage.settings import model_spec_for_records
    from datafirst_assets.linkage.stable_ids import id_change_history
    from datafirst_assets.linkage.train import TrainedModel, TrainingConfig, train_model, u_pairs_for

    timings: dict[str, float] = {}
    started = t = time.perf_counter()
    con = duckdb.connect(str(db_file))
    records = _read(con, "person_records")
    saved = _read(con, "model")
    previous = PreviousLink(clusters=_read(con, "clusters"), changes=_read(con, "id_changes"))
    timings["read_state"] = time.perf_counter() - t

    t = time.perf_counter()
    model = None
    if step == "incremental" and saved is not None:
        model, why = model_to_reuse(json.loads(saved["model_json"][0]), int(saved["records"][0]), records)
        if model is None:
            raise SystemExit(f"the saved model does not fit: {why}")
    if model is None:
        spec = model_spec_for_records(records)
        u_pairs = u_pairs_for(records.height)
        trained = train_model(records, spec, make_db_api(), TrainingConfig(u_max_pairs=u_pairs))
        model = TrainedModel.from_json(trained.to_json())  # the clusters asset gets the stored JSON
        del trained
        saved = pl.DataFrame({"version": [model.version], "records": [records.height],
                              "model_json": [json.dumps(model.to_json())]})
    timings["model"] = time.perf_counter() - t

    t = time.perf_counter()
    if step == "incremental":
        t_pairs = time.perf_counter()
        previous.pairs = _read(con, "scored_pairs")
        timings["read_pairs"] = time.perf_counter() - t_pairs
        result = link_incremental(records, model, make_db_api(), previous)
    else:
        result = link_full(records, model, make_db_api(), choose=lambda _p: (THRESHOLD, "configured"),
                           previous=previous)
    timings["link"] = time.perf_counter() - t
    timings.update({f"link.{k}": v for k, v in result.timings.items()})

    t = time.perf_counter()
    _write(con, "model", saved)
    _write(con, "id_changes", id_change_history(previous.changes, result.changes, run_id=step, mode=result.mode))
    _write(con, "clusters", result.clusters_table(model.version))
    _write(con, "scored_pairs", result.pairs)
    con.close()
    timings["write_state"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    return {"timings": timings, "stats": result.stats, "mode": result.mode, "model_version": model.version}


def spawn(step: str, db_file: Path, workdir: Path) -> dict:
    result_file = workdir / f"result_{step}.json"
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", step, "--db", str(db_file),
                             "--result", str(result_file)], cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{step} failed")
    res = json.loads(result_file.read_text())
    res.update(wall_seconds=time.perf_counter() - t, cpu_seconds=usage.ru_utime + usage.ru_stime,
               peak_rss_gib=usage.ru_maxrss / 2**20)
    return res


# -------------------------------------------------------------------------------- parent


def generate(people: int, seed: int, new_share: float, workdir: Path) -> dict:
    import polars as pl

    from datafirst_assets_tests.linkage_fixtures import make_people, make_person_records

    records, truth = make_person_records(make_people(people, seed), seed + 1, source_dataset=SOURCE)
    records = records.with_columns(pl.lit("2024-01-31").alias("extract_date"))
    new = records.sample(fraction=new_share, seed=seed)
    existing = records.join(new.select("record_id"), on="record_id", how="anti")
    new = new.with_columns(pl.lit("2024-02-29").alias("extract_date"))
    existing.write_parquet(workdir / "existing.parquet")
    pl.concat([existing, new]).write_parquet(workdir / "all.parquet")
    truth.select("record_id", "person_id").write_parquet(workdir / "truth.parquet")
    return {"people": people, "existing_records": existing.height, "new_records": new.height,
            "new_people": new.join(truth, on="record_id").join(
                existing.join(truth, on="record_id").select("person_id").unique(), on="person_id",
                how="anti")["person_id"].n_unique()}


def load_records(db_file: Path, parquet: Path) -> None:
    import duckdb
    import polars as pl

    with duckdb.connect(str(db_file)) as con:
        _write(con, "person_records", pl.read_parquet(parquet))


def ids(db_file: Path):
    import duckdb
    import polars as pl

    with duckdb.connect(str(db_file), read_only=True) as con:
        return pl.from_arrow(con.sql("select record_id, person_id from clusters").to_arrow_table())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--new-share", type=float, default=0.01, help="share of records held out as the new extract")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--child", choices=STEPS, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--db", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        args.result.write_text(json.dumps(run_step(args.child, args.db)))
        return

    import polars as pl

    from datafirst_assets.linkage.metrics import bcubed_metrics
    from datafirst_assets.linkage.stable_ids import unchanged_persons_kept

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_incremental_"))
    workdir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    sizes = generate(args.people, args.seed, args.new_share, workdir)
    print(f"generated in {time.perf_counter() - t:.0f}s: {json.dumps(sizes)} -> {workdir}", flush=True)

    state = workdir / "state.duckdb"
    load_records(state, workdir / "existing.parquet")
    results = {}
    print("setup: full link of the existing records ...", flush=True)
    results["setup"] = spawn("setup", state, workdir)
    for step in ("full", "incremental"):
        db = workdir / f"{step}.duckdb"
        shutil.copy(state, db)
        load_records(db, workdir / "all.parquet")  # the new extract has been staged
        print(f"{step}: linking every record with the new extract ...", flush=True)
        results[step] = spawn(step, db, workdir)

    truth = pl.read_parquet(workdir / "truth.parquet")
    before = ids(state)
    print(f"\n== bench_incremental: {args.people:,} people, {sizes['existing_records']:,} records linked, "
          f"new extract {sizes['new_records']:,} records ({args.new_share:.1%}; {sizes['new_people']:,} new people), "
          f"{os.cpu_count()} cores, threshold {THRESHOLD} ==")
    print(f"{'step':12} {'mode':12} {'seconds':>9} {'CPU s':>9} {'peak GiB':>9} {'B3 F1':>7} {'kept ids':>18}")
    for step, r in results.items():
        after = ids(workdir / ("state.duckdb" if step == "setup" else f"{step}.duckdb"))
        r["bcubed_f1"] = bcubed_metrics(after.with_columns(pl.col("person_id").cast(pl.String).alias("cluster_id")),
                                        truth.filter(pl.col("record_id").is_in(after["record_id"].implode())))["f1"]
        kept = ""
        if step != "setup":
            unchanged, same = unchanged_persons_kept(before, after)
            r["unchanged_persons"], r["unchanged_kept"] = unchanged, same
            kept = f"{same:,}/{unchanged:,} ({same / unchanged:.2%})"
        print(f"{step:12} {r['mode']:12} {r['wall_seconds']:9.1f} {r['cpu_seconds']:9.1f} {r['peak_rss_gib']:9.2f} "
              f"{r['bcubed_f1']:7.4f} {kept:>18}")
    for step, r in results.items():
        print(f"  {step}: steps {json.dumps({k: round(v, 1) for k, v in r['timings'].items()})}")
        print(f"  {step}: {json.dumps(r['stats'])}")
    full, incr = results["full"], results["incremental"]
    print(f"ratio incremental/full: wall {incr['wall_seconds'] / full['wall_seconds']:.3f}, "
          f"CPU {incr['cpu_seconds'] / full['cpu_seconds']:.3f} (floor <= 0.2); "
          f"peak memory {incr['peak_rss_gib'] / full['peak_rss_gib']:.3f}")
    agree = ids(workdir / "full.duckdb").join(ids(workdir / "incremental.duckdb"), on="record_id", suffix="_incr")
    same_id = agree.filter(pl.col("person_id") == pl.col("person_id_incr")).height
    print(f"records with the same person id after full and incremental: {same_id:,}/{agree.height:,} "
          f"({same_id / agree.height:.2%}; the full run retrains the model, so some links move)")
    (workdir / "bench_result.json").write_text(json.dumps({"sizes": sizes, **results}, indent=2, default=str))
    print(f"details: {workdir / 'bench_result.json'}")


if __name__ == "__main__":
    main()
