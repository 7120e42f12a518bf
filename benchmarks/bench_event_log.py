"""CPU and wall per event of Dagster's event log on this instance: stores the events of the last two
runs again (under a new run id) and prints the cost per event type and for all of them.

Run on a COPY of an instance (it writes events into it), e.g. after `make demo`:
    cp -r data/.dagster_home /tmp/eventlog_copy
    DAGSTER_HOME=/tmp/eventlog_copy .venv/bin/python benchmarks/bench_event_log.py [events per type]
Put another dagster.yaml into the copy to compare storages (e.g. Dagster's own
ConsolidatedSqliteEventLogStorage against data/config/dagster.yaml's pooled one).
"""

import collections
import sys
import time
import uuid

from dagster import DagsterInstance

from datafirst_assets.defs.event_log import keep_event_log_open, relax_event_log_syncs

RUN_LIFECYCLE = {"RUN_START", "RUN_SUCCESS", "RUN_ENQUEUED", "RUN_STARTING", "PIPELINE_START", "PIPELINE_SUCCESS"}


def main(per_type: int) -> None:
    relax_event_log_syncs()  # as every process that loads the code location
    instance = DagsterInstance.get()
    keep_event_log_open(instance)
    by_type = collections.defaultdict(list)
    for run in instance.get_runs(limit=2):
        for record in instance.all_logs(run.run_id):
            by_type[record.dagster_event.event_type_value if record.dagster_event else "log"].append(record)
    run_id = str(uuid.uuid4())
    total_cpu = total_wall = 0.0
    for kind, records in sorted(by_type.items(), key=lambda item: -len(item[1])):
        if kind in RUN_LIFECYCLE:
            continue
        sample = records[:per_type]
        cpu, wall = time.process_time(), time.perf_counter()
        for record in sample:
            instance.handle_new_event(record._replace(run_id=run_id))
        cpu_ms = 1000 * (time.process_time() - cpu) / len(sample)
        wall_ms = 1000 * (time.perf_counter() - wall) / len(sample)
        total_cpu += cpu_ms * len(records) / 1000
        total_wall += wall_ms * len(records) / 1000
        print(f"{kind:40s} n={len(records):5d} cpu {cpu_ms:6.2f} ms wall {wall_ms:6.2f} ms")
    print(f"all {sum(map(len, by_type.values()))} events of the 2 runs: cpu {total_cpu:.1f} s wall {total_wall:.1f} s "
          f"({type(instance.event_log_storage).__name__})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
