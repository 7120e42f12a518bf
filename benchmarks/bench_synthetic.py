"""Benchmark synthesising the full release: disclosure-checked summaries + generation.

    flock /tmp/datafirst-heavy.lock python benchmarks/bench_synthetic.py --people 1000000

The input is FABRICATED, not the de-identified release: `synthetic.fabricate` builds tables with
the release spec's columns, types, hashed keys, person ids and linking tables, sized per person
as the simulator makes them (about 13 rows per simulated person), because running the real
simulate -> stage -> link -> de-identify pipeline at a million people takes far longer than
what is measured here. Timed: `summarise_release` over every table, then `synthesise_release`
from the summaries (as a JSON round trip, as the assets do). Baseline in the same run: the
naive column-shuffle "synthesiser" (every column of every table shuffled on its own: no
disclosure control, no new keys), which is about the least work that makes a table of the same
size. Prints rows, seconds, rows/s, ratios and peak RSS; `--report` also times the report.
The floor is 120 s for summaries + generation at 1M people.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

FLOOR_SECONDS = 120.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--report", action="store_true", help="also time the fidelity / privacy report")
    args = ap.parse_args(argv)

    import polars as pl

    from datafirst_assets.synthetic.fabricate import fabricate_release
    from datafirst_assets.synthetic.generate import synthesise_release
    from datafirst_assets.synthetic.summaries import summaries_json, summarise_release

    t0 = time.perf_counter()
    real = fabricate_release(args.people, seed=args.seed)
    fabricate_s = time.perf_counter() - t0
    rows = sum(f.height for f in real.values())
    print(f"input: FABRICATED release-shaped tables (synthetic.fabricate, not the real release pipeline): "
          f"{args.people:,} people, {len(real)} tables, {rows:,} rows ({rows / args.people:.1f} per person), "
          f"made in {fabricate_s:.1f}s")

    baseline_s = 0.0
    for frame in real.values():  # one table at a time: the baseline should not double peak memory
        t0 = time.perf_counter()
        shuffled = frame.select(pl.all().shuffle(seed=args.seed))
        baseline_s += time.perf_counter() - t0
        del shuffled

    t0 = time.perf_counter()
    doc = summarise_release(real)
    text = summaries_json(doc)
    summarise_s = time.perf_counter() - t0
    real_rows = {tid: frame.height for tid, frame in real.items()}
    if not args.report:
        del real  # generation never reads the real tables; nor need the two share memory here
    t0 = time.perf_counter()
    synthetic = synthesise_release(json.loads(text), seed=args.seed)
    generate_s = time.perf_counter() - t0
    synthetic_rows = sum(f.height for f in synthetic.values())
    total = summarise_s + generate_s

    print(f"summaries:  {summarise_s:7.1f}s  ({rows / summarise_s:,.0f} real rows/s; JSON {len(text) / 1e6:.1f} MB)")
    print(f"generation: {generate_s:7.1f}s  ({synthetic_rows:,} synthetic rows, {synthetic_rows / generate_s:,.0f} rows/s)")
    print(f"total:      {total:7.1f}s  (floor {FLOOR_SECONDS:.0f}s: {'met' if total < FLOOR_SECONDS else 'NOT met'})")
    print(f"baseline (shuffle every column of every table): {baseline_s:.1f}s; "
          f"summaries+generation / baseline = {total / baseline_s:.1f}x")
    for tid in sorted(real_rows, key=lambda t: -real_rows[t])[:8]:
        print(f"  {tid[0]}.{tid[1]}: real {real_rows[tid]:,} rows, synthetic {synthetic[tid].height:,}")
    if args.report:
        from datafirst_assets.synthetic.report import evaluate_synthetic

        t0 = time.perf_counter()
        report = evaluate_synthetic(real, synthetic, doc, seed=args.seed)
        print(f"report:     {time.perf_counter() - t0:7.1f}s  {json.dumps(report.summary)}")
        failures = {k: v for k, v in report.failures().items() if v}
        print(f"floors not met: {failures or 'none'}")
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {peak_kib / 1024**2:.1f} GiB")
    return 0 if total < FLOOR_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
