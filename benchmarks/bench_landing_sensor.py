"""Benchmark: what a landing-sensor tick costs, against just reading the landing zone once.

    .venv/bin/python benchmarks/bench_landing_sensor.py --people 10000

Simulates PEOPLE people (3 extracts, 21 deliveries) into a temporary landing folder, then times,
on the same files:

  read     sha256 + line count of every delivered file, once (the floor: the sensor must read
           each new delivery in full to know it is complete)
  first    the first sensor tick: inspects every delivery and requests 21 runs
  steady   a later tick with the cursor: nothing new, nothing re-hashed but the manifests
  one_new  a tick after one small new delivery arrived

Prints seconds and the ratios first / read (target about 1: classifying adds little to
reading) and steady / first (target far below 1: an idle sensor does not re-read the data).
Ticks run in a daemon's code server and time out after 60 s by default, so `first` is also
the figure to watch as deliveries grow.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def best_of(repeat: int, fn) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N for each timing")
    args = parser.parse_args()

    from dagster import DagsterInstance, build_sensor_context

    from datafirst_assets.definitions import build_definitions
    from datafirst_assets.defs.resources import DataLayout, LandingZone
    from datafirst_assets.defs.sensors import LANDING_SENSOR
    from datafirst_assets.common.hashing import sha256_file
    from datafirst_assets.raw.delivery import count_records
    from datafirst_assets.simulate import simulate
    from datafirst_assets_tests.deliveries import write_delivery

    with tempfile.TemporaryDirectory() as tmp:
        layout = DataLayout(Path(tmp) / "data")
        simulate(people=args.people, seed=42, extracts=3, out=layout.landing, truth_out=layout.truth)
        files = [p for p in layout.landing.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        print(f"{args.people:,} people: {len(files)} files, {size / 1e6:.1f} MB under {layout.landing}")

        sensor = build_definitions(layout.root).resolve_sensor_def(LANDING_SENSOR)
        instance = DagsterInstance.ephemeral()
        resources = {"landing": LandingZone(path=str(layout.landing))}

        def tick(cursor=None):
            return sensor(build_sensor_context(instance=instance, cursor=cursor, resources=resources))

        read, _ = best_of(args.repeat, lambda: [(sha256_file(p), count_records(p)) for p in files])
        first, result = best_of(args.repeat, tick)
        assert len(result.run_requests) == 21, len(result.run_requests)
        steady, idle = best_of(args.repeat, lambda: tick(result.cursor))
        assert not idle.run_requests
        write_delivery(layout.landing, "prison", "2000-01-01", rows=50)

        one_new, changed = best_of(args.repeat, lambda: tick(result.cursor))
        assert len(changed.run_requests) == 1
        print(f"read     {read:8.3f} s")
        print(f"first    {first:8.3f} s   first / read   = {first / read:.2f}")
        print(f"steady   {steady:8.3f} s   steady / first = {steady / first:.3f}")
        print(f"one_new  {one_new:8.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
