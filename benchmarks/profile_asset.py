"""Re-materialise a few assets against a finished warehouse (e.g. a benchmark's), under cProfile.

    .venv/bin/python benchmarks/profile_asset.py /tmp/bench/data linkage/quality --copy-to /tmp/me/prof
    .venv/bin/python benchmarks/profile_asset.py /tmp/me/prof/data linkage/magistrates/clusters \
        linkage/magistrates/scored_pairs linkage/magistrates/id_changes --out cluster.prof

The assets run in this process against a throwaway Dagster instance, so no step is kept by its
inputs' fingerprint (`warehouse.unchanged`): each selected asset computes, in the mode its
linkage settings give (incremental by default: it extends what the warehouse stores). They write
into the data folder they are given, so pass `--copy-to` to work on a copy (everything but the
landing zone). To profile an incremental step, change its stored state first (e.g. delete 1% of
a dataset's stored clusters rows: those records are then new to the cluster step; or remove
`data/reports/.quality_parts/<dataset>/meta.json` so that linkage/quality assesses it again).

Prints wall and CPU seconds, the selected outputs' metadata counts, and the profile's top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import time
from pathlib import Path


def copy_data(source: Path, target: Path) -> Path:
    """``source`` (a data folder) copied to ``target/data``, its landing zone left out."""
    data = target / "data"
    if data.exists():
        shutil.rmtree(data)
    shutil.copytree(source, data, ignore=lambda folder, names: ["landing"] if Path(folder) == source else [])
    return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("keys", nargs="+", help="asset keys, parts joined by '/' (linkage/quality)")
    ap.add_argument("--copy-to", type=Path, default=None, help="work on a copy of the data folder under here")
    ap.add_argument("--out", type=Path, default=Path("asset.prof"), help="where the cProfile stats go")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    data = copy_data(args.data_dir.resolve(), args.copy_to) if args.copy_to else args.data_dir
    os.environ.setdefault("DATAFIRST_ALLOW_DEVELOPMENT_KEY", "1")
    from dagster import AssetKey, DagsterInstance

    from datafirst_assets.definitions import build_definitions

    job = build_definitions(data).resolve_implicit_global_asset_job_def()
    profile = cProfile.Profile()
    wall, cpu = time.perf_counter(), time.process_time()
    profile.enable()
    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, asset_selection=[AssetKey(k.split("/")) for k in args.keys])
    profile.disable()
    print(f"success={result.success} wall={time.perf_counter() - wall:.2f}s cpu={time.process_time() - cpu:.2f}s")
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        counts = {k: v.value for k, v in metadata.items()
                  if isinstance(v.value, (int, float, dict)) or (isinstance(v.value, str) and len(v.value) < 80)}
        print(event.asset_key.to_user_string(), counts)
    profile.dump_stats(args.out)
    pstats.Stats(str(args.out)).sort_stats("cumulative").print_stats("datafirst_assets|splink", args.top)
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
