"""Recovering from a killed run: a run recorded as running whose process is gone is marked failed.

A process killed with SIGKILL (or a crashed machine) never records its run's end, so the run stays
STARTED in the instance: it would hold the run queue (`max_concurrent_runs: 1`) and make the next
`datafirst run` wait for it. The next `datafirst run` and the refresh sensor call
`fail_abandoned_runs` first. Dagster's own run monitoring (on in data/config/dagster.yaml) covers
runs stuck starting or cancelling; the default run launcher cannot check a run worker's health, so
dead STARTED runs are found here, by process id.
"""

import os
import socket

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

# Which process runs a headless run: a later run can tell a run still going from one that was killed.
PID_TAG = "datafirst/pid"
HOST_TAG = "datafirst/host"
# Runs that hold the warehouse (queued runs wait behind them; they do not hold it).
RUNNING_STATUSES = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def _pids(instance: DagsterInstance, run) -> set[int]:
    """Processes that ran this run: our own tag, or the pid on the run's engine events."""
    pids = {int(run.tags[PID_TAG])} if PID_TAG in run.tags else set()
    for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT):
        pid = entry.dagster_event.pid if entry.dagster_event else None
        if pid:
            pids.add(int(pid))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed child its parent has not reaped yet is a zombie: gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def fail_abandoned_runs(instance: DagsterInstance, say=print) -> list[str]:
    """Mark failed the runs recorded as running whose processes are all gone (killed, crashed).

    A run killed with SIGKILL never records its end, so without this it would hold the run queue
    (and this command's wait) forever. Runs on another host, or with no process recorded, are
    left alone; the daemon's run monitoring (data/config/dagster.yaml) looks after its own runs.
    """
    failed = []
    for record in instance.get_run_records(RunsFilter(statuses=RUNNING_STATUSES)):
        run = record.dagster_run
        if run.tags.get(HOST_TAG, socket.gethostname()) != socket.gethostname():
            continue
        pids = _pids(instance, run)
        if not pids or any(_alive(pid) for pid in pids):
            continue
        instance.report_run_failed(
            run, message=f"Process {', '.join(map(str, sorted(pids)))} ended without finishing the run "
            "(killed or crashed); marked failed by the next datafirst run.")
        failed.append(run.run_id)
        say(f"Run {run.run_id[:8]} ({run.job_name}) was left running by a process that is gone "
            "(killed?): marked failed; its partitions are loaded again now.")
    return failed
