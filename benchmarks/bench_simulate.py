"""Benchmark the source-systems simulator.

    python benchmarks/bench_simulate.py --people 1000000

Simulates into a temporary directory (removed afterwards unless --keep) and prints people,
total records, seconds, records/s and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--extracts", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the output directory and print its path")
    ap.add_argument(
        "--calibration",
        action="store_true",
        help="also print per-source agreement rates against the truth (slower)",
    )
    ap.add_argument("--json", action="store_true", help="print the full summary as JSON")
    args = ap.parse_args(argv)

    t_import = time.perf_counter()
    from datafirst_assets.simulate import simulate

    import_s = time.perf_counter() - t_import
    tmp = Path(tempfile.mkdtemp(prefix="datafirst-bench-"))
    try:
        t0 = time.perf_counter()
        summary = simulate(
            people=args.people,
            seed=args.seed,
            extracts=args.extracts,
            out=tmp / "landing",
            truth_out=tmp / "truth",
        )
        seconds = time.perf_counter() - t0
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        size = sum(f.stat().st_size for f in (tmp / "landing").rglob("*") if f.is_file())
        total = summary["total_records"]
        print(f"people          {summary['people']:>14,}")
        print(f"extracts        {summary['extracts']:>14}")
        print(f"total records   {total:>14,}")
        print(f"person records  {summary['person_records']:>14,}")
        print(f"landing size    {size / 2**20:>13,.1f} MiB")
        print(f"seconds         {seconds:>14.2f}   (import {import_s:.2f} s)")
        print(f"records/s       {total / seconds:>14,.0f}")
        print(f"peak RSS        {peak_kib / 2**20:>13.2f} GiB")
        if args.json:
            print(json.dumps(summary, indent=2))
        if args.calibration:
            import polars as pl

            from datafirst_assets.simulate.calibration import agreement_report

            pl.Config.set_tbl_cols(30)
            pl.Config.set_tbl_width_chars(250)
            pl.Config.set_float_precision(3)
            print(agreement_report(tmp / "landing", tmp / "truth"))
        if args.keep:
            print(f"output          {tmp}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
