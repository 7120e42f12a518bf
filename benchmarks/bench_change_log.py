"""Benchmark: a change log written through the IO manager, whole (as it was) against appended (as it is).

    .venv/bin/python benchmarks/bench_change_log.py --runs 52

`linkage/xjs/id_changes` grows by about 45,800 rows a 1% extract at 1,000,000 people. Before, each run read the
stored log into polars, added its rows and wrote the whole log again (validated, hashed, checkpointed at close);
now it appends its rows (`AppendedRows`). Prints both, after `--runs` earlier runs' rows, each timed with the
warehouse's close (its checkpoint writes what the run logged). Alternating, twice each: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import polars as pl
from dagster import AssetKey, DagsterInstance, asset, materialize

from datafirst_assets.defs.linkage import stored_table
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.warehouse.connection import close_warehouse
from datafirst_assets.warehouse.content import VALIDATED_CONTENT
from datafirst_assets.warehouse.io_manager import AppendedRows, WarehouseIOManager
from datafirst_assets.warehouse.unchanged import latest_metadata

KEY = AssetKey(["linkage", "xjs", "id_changes"])


def run_rows(run: int, n: int) -> pl.DataFrame:
    """A run's rows of the cross-justice change log (`xjs.XJS_HISTORY_SCHEMA`)."""
    return pl.DataFrame({
        "level": pl.Series(["high", "medium", "low"] * (n // 3 + 1))[:n], "old_id": pl.int_range(n, eager=True),
        "new_id": pl.int_range(n, eager=True) + 1, "kind": ["moved"] * n, "records": [1] * n,
        "changed_at": pl.Series([None] * n, dtype=pl.Datetime("us")), "run_id": [f"r{run}"] * n, "mode": ["full"] * n})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=52, help="earlier runs in the log (52: a year of weekly extracts)")
    ap.add_argument("--rows-per-run", type=int, default=45_800)
    args = ap.parse_args()
    earlier = pl.concat([run_rows(i, args.rows_per_run) for i in range(args.runs)])
    database = os.path.join(tempfile.mkdtemp(prefix="bench_change_log_"), "w.duckdb")
    warehouse = Warehouse(database=database)
    how = {"mode": "whole"}

    @asset(key=KEY, metadata={"schema": "linkage_xjs"}, group_name="linkage")
    def change_log(context):
        new = run_rows(args.runs, args.rows_per_run)
        if how["mode"] == "whole":
            stored = stored_table(warehouse, "xjs", "id_changes")
            return pl.concat([earlier if stored is None else stored, new])
        validated = latest_metadata(context.instance, [KEY])[KEY].get(VALIDATED_CONTENT)
        return AppendedRows(rows=new, replacing=("run_id", context.run_id), rewrite=lambda: pl.concat([earlier, new]),
                            validated_before=getattr(validated, "value", validated))

    resources = {"io_manager": WarehouseIOManager(database=database), "warehouse": warehouse}
    instance = DagsterInstance.ephemeral()
    materialize([change_log], resources=resources, instance=instance)
    close_warehouse(database)
    for mode in ("whole", "append", "whole", "append"):
        how["mode"] = mode
        wall, cpu = time.perf_counter(), time.process_time()
        materialize([change_log], resources=resources, instance=instance)
        close_warehouse(database)
        print(f"{args.runs} earlier runs ({earlier.height:,} rows): {mode:6} {time.perf_counter() - wall:5.2f} s wall "
              f"{time.process_time() - cpu:5.2f} CPU s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
