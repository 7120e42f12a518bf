"""Compare extract runs of two versions of the code, step by step, from the JSON results
``bench_incremental_graph.py`` writes (``result_from_snapshot_*.json`` / ``result_incremental.json``).

    .venv/bin/python benchmarks/compare_extracts.py --a base1.json base2.json --b new1.json new2.json

On this shared machine two extracts of the same code from the same state differ by 5-15 s of ~100,
most of it in steps whose code is the same: run the two versions alternately from one snapshot
(``--from-snapshot``), a few times each, and read the per-step means here. A change shows in the
steps it touched; a difference spread over steps it did not touch is noise. Prints each version's
wall, CPU and summed step seconds per run, then per step the mean seconds of each and the difference,
largest first.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def load(path: Path) -> tuple[dict, dict[str, float]]:
    """(the run's totals, seconds per step: a step run twice, e.g. in the ingest and the link job, summed)."""
    doc = json.loads(path.read_text())
    steps: dict[str, float] = {}
    for step in doc["incremental_steps"]:
        steps[step["step"]] = steps.get(step["step"], 0.0) + float(step["seconds"])
    return doc["incremental"], steps


def mean_steps(runs: list[dict[str, float]]) -> dict[str, float]:
    """Mean seconds per step over the runs (a step missing from a run counts 0 there: it did not run)."""
    names = sorted({name for run in runs for name in run})
    return {name: statistics.fmean(run.get(name, 0.0) for run in runs) for name in names}


def differences(a: dict[str, float], b: dict[str, float]) -> list[tuple[str, float, float, float]]:
    """(step, mean a, mean b, b - a) for every step, the largest change (either way) first."""
    rows = [(name, a.get(name, 0.0), b.get(name, 0.0), b.get(name, 0.0) - a.get(name, 0.0)) for name in set(a) | set(b)]
    return sorted(rows, key=lambda row: (-abs(row[3]), row[0]))


def _totals(label: str, paths: list[Path], runs: list[tuple[dict, dict[str, float]]]) -> None:
    for path, (total, steps) in zip(paths, runs):
        print(f"{label} {path.name}: wall {total['wall_seconds']:.1f} s, CPU {total['cpu_seconds']:.1f} s, "
              f"peak {total['peak_gib']:.2f} GiB, steps {sum(steps.values()):.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", type=Path, nargs="+", required=True, help="results of version A (e.g. the base)")
    parser.add_argument("--b", type=Path, nargs="+", required=True, help="results of version B (e.g. the change)")
    parser.add_argument("--top", type=int, default=15, help="steps to list")
    args = parser.parse_args()
    a_runs, b_runs = [load(p) for p in args.a], [load(p) for p in args.b]
    _totals("A", args.a, a_runs)
    _totals("B", args.b, b_runs)
    for name, key in (("wall", "wall_seconds"), ("CPU", "cpu_seconds")):
        a_mean = statistics.fmean(total[key] for total, _ in a_runs)
        b_mean = statistics.fmean(total[key] for total, _ in b_runs)
        print(f"mean {name}: A {a_mean:.1f} s, B {b_mean:.1f} s, B - A {b_mean - a_mean:+.1f} s")
    a_steps, b_steps = mean_steps([s for _, s in a_runs]), mean_steps([s for _, s in b_runs])
    print(f"mean of summed steps: A {sum(a_steps.values()):.1f} s, B {sum(b_steps.values()):.1f} s")
    print(f"\n{'step':55} {'A s':>7} {'B s':>7} {'B - A':>7}")
    for name, a_s, b_s, diff in differences(a_steps, b_steps)[:args.top]:
        print(f"{name[:55]:55} {a_s:7.2f} {b_s:7.2f} {diff:+7.2f}")


if __name__ == "__main__":
    main()
