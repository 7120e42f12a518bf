"""Benchmark: the cross-justice lookup step (xjs_lookup) alone, re-materialised against a data dir.

    .venv/bin/python benchmarks/bench_xjs_step.py DATA_DIR [--restore-xjs-from OLD_DATA_DIR]
                                                  [--profile out.prof] [--mode incremental|full]

DATA_DIR holds a warehouse whose upstream tables (every dataset's person_records and clusters) are
current, e.g. a finished `bench_incremental_graph.py` workdir's data dir. With
``--restore-xjs-from`` the cross-justice state (the linkage_xjs tables and models/xjs) is first
copied from another data dir, e.g. a copy of the same workdir taken after its *full* run: the step
then does exactly what the incremental run's xjs_lookup did. DATA_DIR is modified: work on a copy.

Prints wall and CPU seconds (this process, every thread), peak RSS, the step's seconds and the
four outputs' metadata (rows, ids re-carried, records re-hashed, persons re-scored...).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import resource
import shutil
import sys
import time
from pathlib import Path

XJS_TABLES = ("lookup", "edges", "persons", "id_changes")


def restore_xjs_state(data: Path, old: Path) -> None:
    """linkage_xjs.* and models/xjs of ``old`` into ``data``."""
    import duckdb

    with duckdb.connect(str(data / "warehouse.duckdb")) as conn:
        conn.execute(f"attach '{old / 'warehouse.duckdb'}' as old (read_only)")
        for table in XJS_TABLES:
            conn.execute(f"create or replace table linkage_xjs.{table} as select * from old.linkage_xjs.{table}")
        # the state marker (xjs_incremental.STATE_MARKER) goes with the tables; a state written before it has none
        conn.execute("drop table if exists linkage_xjs.state_marker")
        if conn.execute("select count(*) from old.duckdb_tables() where schema_name = 'linkage_xjs' "
                        "and table_name = 'state_marker'").fetchall()[0][0]:
            conn.execute("create table linkage_xjs.state_marker as select * from old.linkage_xjs.state_marker")
        conn.execute("detach old")
    shutil.rmtree(data / "models" / "xjs", ignore_errors=True)
    shutil.copytree(old / "models" / "xjs", data / "models" / "xjs")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--restore-xjs-from", type=Path, default=None)
    ap.add_argument("--profile", type=Path, default=None, help="write a cProfile of the run here")
    ap.add_argument("--mode", default="incremental", choices=("incremental", "full"))
    args = ap.parse_args()
    os.environ.setdefault("DATAFIRST_ALLOW_DEVELOPMENT_KEY", "1")
    os.environ.pop("DATAFIRST_TRUTH_DIR", None)  # production: no truth
    if args.restore_xjs_from is not None:
        restore_xjs_state(args.data_dir, args.restore_xjs_from)

    from dagster import AssetKey, DagsterInstance

    from datafirst_assets.definitions import build_definitions
    from datafirst_assets.defs.linkage import run_config_for_mode

    defs = build_definitions(args.data_dir)
    job = defs.resolve_implicit_global_asset_job_def()
    linkage = (defs.resources or {}).get("linkage")
    config = run_config_for_mode(linkage, args.mode) if linkage is not None else None
    keys = [AssetKey(["linkage", "xjs", name]) for name in XJS_TABLES]
    profile = cProfile.Profile() if args.profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profile:
        profile.enable()
    result = job.execute_in_process(instance=DagsterInstance.ephemeral(), asset_selection=keys, run_config=config,
                                    raise_on_error=False)
    if profile:
        profile.disable()
        profile.dump_stats(args.profile)
    print(f"success {result.success}: wall {time.perf_counter() - wall:.2f} s, CPU {time.process_time() - cpu:.2f} s, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    for event in result.all_events:
        if event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            print(f"step {event.step_key}: {event.event_type_value} {event.event_specific_data.duration_ms / 1000:.2f} s"
                  if event.event_type_value == "STEP_SUCCESS" else f"step {event.step_key}: FAILED")
        if event.event_type_value == "ASSET_MATERIALIZATION":
            materialization = event.event_specific_data.materialization
            shown = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()
                     if k != "dataframe_columns" and not k.startswith("contract_")}
            print(f"  {materialization.asset_key.to_user_string()}: {shown}")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
