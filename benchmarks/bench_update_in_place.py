"""What an in-place change of a stored table costs in DuckDB: updating its changed rows where they are
against deleting them and appending their new versions, each followed by the checkpoint that writes
it to the database file (`warehouse.io_manager._apply`).

    .venv/bin/python benchmarks/bench_update_in_place.py --rows 1250000 --columns 20 --changed 40 417

A table of `--rows` rows and `--columns` text columns is written to a scratch DuckDB file and
checkpointed; for each `--changed` count, a fresh copy of it has that many rows, spread over the
table, changed in one column, given the way `_apply` gives them (every column set from the change)
or deleted and appended. Prints per way and count: the statements' seconds, the write-ahead log's
size and the checkpoint's seconds. Pure DuckDB, no pipeline: the figures say what DuckDB does, not
what an extract gains (see `bench_incremental_graph.py` for that).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import duckdb


def build_table(path: Path, rows: int, columns: int) -> None:
    text = ", ".join(f"md5((i * {k})::varchar)[:{4 + k % 12}] as c{k}" for k in range(1, columns + 1))
    with duckdb.connect(str(path)) as con:
        con.execute(f"create table t as select i as id, {text} from range({rows}) t(i)")


def timed_change(base: Path, work: Path, every: int, columns: int, moved: bool,
                 threads: int) -> tuple[float, float, float, int]:
    """(statement seconds, WAL MB, checkpoint seconds, rows changed) of changing each `every`-th row
    of a copy of `base`."""
    for stale in (work, Path(f"{work}.wal")):
        stale.unlink(missing_ok=True)
    shutil.copyfile(base, work)
    os.sync()  # the copy's pages are not the checkpoint's to write
    with duckdb.connect(str(work), config={"checkpoint_threshold": "10GB", "threads": threads}) as con:
        con.execute("checkpoint")
        change = con.sql(f"select * replace (c1 || 'x' as c1) from t where id % {every} = 7").to_arrow_table()
        con.register("_c", change)
        started = time.perf_counter()
        if moved:
            con.execute("delete from t using _c where t.id = _c.id")
            con.execute("insert into t select * from _c")
        else:
            assignments = ", ".join(f"c{k} = _c.c{k}" for k in range(1, columns + 1))
            con.execute(f"update t set {assignments} from _c where t.id = _c.id")
        statements = time.perf_counter() - started
        wal = Path(f"{work}.wal").stat().st_size / 1e6 if Path(f"{work}.wal").exists() else 0.0
        started = time.perf_counter()
        con.execute("checkpoint")
        return statements, wal, time.perf_counter() - started, change.num_rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_250_000)
    ap.add_argument("--columns", type=int, default=20)
    ap.add_argument("--changed", type=int, nargs="+", default=[40, 417])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="each way and count, alternating; the median is printed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_update_") as folder:
        base, work = Path(folder) / "base.duckdb", Path(folder) / "work.duckdb"
        build_table(base, args.rows, args.columns)
        print(f"{args.rows:,} rows, {args.columns} text columns, {args.threads} threads; medians of {args.repeats}")
        print(f"{'changed':>8} {'way':<22} {'statements s':>12} {'WAL MB':>7} {'checkpoint s':>12} {'total s':>8}")
        for changed in args.changed:
            every = max(1, args.rows // changed)
            runs: dict[bool, list[tuple[float, float, float, int]]] = {False: [], True: []}
            for _ in range(args.repeats):
                for moved in (False, True):
                    runs[moved].append(timed_change(base, work, every, args.columns, moved, args.threads))
            for moved, timings in runs.items():
                statements, wal, checkpoint, rows = (sorted(values)[len(values) // 2] for values in zip(*timings))
                way = "delete + append" if moved else "update where stored"
                print(f"{rows:>8} {way:<22} {statements:>12.3f} {wal:>7.2f} {checkpoint:>12.3f} "
                      f"{statements + checkpoint:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
