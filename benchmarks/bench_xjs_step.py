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

With ``--dagster-home HOME`` the step runs on that Dagster instance (e.g. the workdir's, after
an incremental run) instead of an ephemeral one, so the writes in place find what the last
writes validated; ``--restore-events-from OLD_HOME`` then also records, as the latest
materialization of the four tables, the metadata OLD_HOME's instance holds for them (the full
run's, as the incremental run found them). ``--as-code-of PACKAGE`` fingerprints as the code of
another checkout (a state stored by main's code is then this code's, as it would be had this code
stored it; every content fingerprint includes the code version). ``--convert-state`` stores the
restored persons and edges as this version stores them (no run on the rows, the state marker),
with their validated content recorded: the steady state of a version that moved the run marker.
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
        if conn.execute("select count(*) from duckdb_tables() where database_name = 'old' "
                        "and schema_name = 'linkage_xjs' and table_name = 'state_marker'").fetchall()[0][0]:
            conn.execute("create table linkage_xjs.state_marker as select * from old.linkage_xjs.state_marker")
        conn.execute("detach old")
    shutil.rmtree(data / "models" / "xjs", ignore_errors=True)
    shutil.copytree(old / "models" / "xjs", data / "models" / "xjs")


def pin_code_version(package: Path) -> str:
    """Every fingerprint of this process made with the code version of ``package``."""
    import hashlib

    from datafirst_assets.deidentify import by_row
    from datafirst_assets.warehouse import content, unchanged

    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    fixed = digest.hexdigest()[:16]
    content.code_version = unchanged.code_version = by_row.code_version = lambda: fixed
    import datafirst_assets.defs.linkage as linkage_defs
    linkage_defs.code_version = content.code_version
    return fixed


def restore_events(instance, old_home: Path) -> None:
    """The latest materialization metadata of the xjs tables in ``old_home``'s instance, recorded
    as their latest in ``instance`` (runless)."""
    from dagster import AssetKey, AssetMaterialization, DagsterInstance

    keys = [AssetKey(["linkage", "xjs", name]) for name in XJS_TABLES]
    home = os.environ["DAGSTER_HOME"]
    os.environ["DAGSTER_HOME"] = str(old_home)  # the instance's storage is found from it
    try:
        with DagsterInstance.from_config(str(old_home)) as old:
            events = old.get_latest_materialization_events(keys)
    finally:
        os.environ["DAGSTER_HOME"] = home
    for key in keys:
        event = events.get(key)
        if event is not None and event.asset_materialization is not None:
            instance.report_runless_asset_event(AssetMaterialization(
                asset_key=key, metadata=dict(event.asset_materialization.metadata)))


def convert_state(instance, data: Path) -> None:
    """The restored persons and edges as a version with the state marker stores them, their
    validated content recorded as their latest materialization's (runless)."""
    import duckdb
    from dagster import AssetKey, AssetMaterialization

    from datafirst_assets.contracts.registry import contract_for
    from datafirst_assets.warehouse.content import VALIDATED_CONTENT, content_of, table_fingerprint
    from datafirst_assets.warehouse.io_manager import StoredTable

    database = str(data / "warehouse.duckdb")
    with duckdb.connect(database) as conn:
        for name in ("persons", "edges"):
            if "written_by_run" in conn.sql(f"select * from linkage_xjs.{name} limit 0").columns:
                conn.execute(f"alter table linkage_xjs.{name} drop column written_by_run")
        counts = conn.execute("select (select count(*) from linkage_xjs.persons), "
                              "(select count(*) from linkage_xjs.edges)").fetchall()[0]
        conn.execute("create or replace table linkage_xjs.state_marker (run_id varchar, persons bigint, edges bigint)")
        conn.execute("insert into linkage_xjs.state_marker values ('converted', ?, ?)", list(counts))
        for name in ("persons", "edges"):
            key = AssetKey(["linkage", "xjs", name])
            fingerprint = table_fingerprint(conn, StoredTable(database, "linkage_xjs", name))
            latest = instance.get_latest_materialization_events([key]).get(key)
            metadata = dict(latest.asset_materialization.metadata) if latest is not None else {}
            metadata[VALIDATED_CONTENT] = content_of(fingerprint, contract_for(key).name)
            instance.report_runless_asset_event(AssetMaterialization(asset_key=key, metadata=metadata))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--restore-xjs-from", type=Path, default=None)
    ap.add_argument("--profile", type=Path, default=None, help="write a cProfile of the run here")
    ap.add_argument("--mode", default="incremental", choices=("incremental", "full"))
    ap.add_argument("--dagster-home", type=Path, default=None)
    ap.add_argument("--restore-events-from", type=Path, default=None)
    ap.add_argument("--as-code-of", type=Path, default=None)
    ap.add_argument("--convert-state", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("DATAFIRST_ALLOW_DEVELOPMENT_KEY", "1")
    os.environ.pop("DATAFIRST_TRUTH_DIR", None)  # production: no truth
    if args.restore_xjs_from is not None:
        restore_xjs_state(args.data_dir, args.restore_xjs_from)
    if args.as_code_of is not None:
        print("code version fixed to", pin_code_version(args.as_code_of), flush=True)

    from dagster import AssetKey, DagsterInstance

    if args.dagster_home is not None:
        os.environ["DAGSTER_HOME"] = str(args.dagster_home.resolve())
        instance = DagsterInstance.get()
        if args.restore_events_from is not None:
            restore_events(instance, args.restore_events_from.resolve())
        if args.convert_state:
            convert_state(instance, args.data_dir)
    else:
        instance = DagsterInstance.ephemeral()

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
    result = job.execute_in_process(instance=instance, asset_selection=keys, run_config=config,
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
