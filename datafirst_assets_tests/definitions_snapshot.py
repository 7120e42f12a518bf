"""A readable snapshot of the asset graph: every asset's key, group, dependencies, partitions,
checks, kinds and description, and every job, sensor and schedule.

`make snapshot` rewrites `snapshots/definitions.yaml` from the current definitions;
`test_definitions_snapshot.py` fails when the definitions and the committed file disagree, so a
changed key, group, dependency or check is seen in review, not when a user's selection breaks.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from dagster import (
    AssetSelection,
    DailyPartitionsDefinition,
    Definitions,
    DynamicPartitionsDefinition,
    MultiPartitionsDefinition,
    PartitionsDefinition,
    StaticPartitionsDefinition,
)

SNAPSHOT_PATH = Path(__file__).parent / "snapshots" / "definitions.yaml"
# A fixed, relative data folder: descriptions that name a path must not depend on the machine.
SNAPSHOT_DATA_DIR = "data"


def _partitions(p: PartitionsDefinition | None) -> str | None:
    if p is None:
        return None
    if isinstance(p, DynamicPartitionsDefinition):
        return f"dynamic:{p.name}"
    if isinstance(p, StaticPartitionsDefinition):
        return "static:" + ",".join(p.get_partition_keys())
    if isinstance(p, DailyPartitionsDefinition):
        return f"daily:{p.start.date().isoformat()}"
    if isinstance(p, MultiPartitionsDefinition):
        return "multi:" + ",".join(f"{d.name}={_partitions(d.partitions_def)}" for d in p.partitions_defs)
    return type(p).__name__


def _key(key) -> str:
    return key.to_user_string()


def snapshot(defs: Definitions) -> dict[str, Any]:
    """The graph as plain data (sorted, so that the file diffs line by line)."""
    graph = defs.resolve_asset_graph()
    checks: dict[str, list[str]] = {}
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        label = f"{spec.name} (blocking)" if spec.blocking else spec.name
        checks.setdefault(_key(check_key.asset_key), []).append(label)
    assets = {}
    for spec in defs.resolve_all_asset_specs():
        key = _key(spec.key)
        entry: dict[str, Any] = {
            "group": spec.group_name,
            "deps": sorted(_key(d.asset_key) for d in spec.deps),
            "partitions": _partitions(spec.partitions_def),
            "checks": sorted(checks.get(key, [])),
            "kinds": sorted(spec.kinds),
            "description": (spec.description or "").strip(),
        }
        if spec.automation_condition is not None:
            entry["automation_condition"] = spec.automation_condition.get_label() or str(
                spec.automation_condition
            )
        assets[key] = entry
    return {
        "assets": dict(sorted(assets.items())),
        "jobs": _jobs(defs, graph),
        "sensors": _sensors(defs),
        "schedules": _schedules(defs),
    }


def _jobs(defs: Definitions, graph) -> dict[str, Any]:
    jobs = {}
    for job in defs.jobs or []:
        selection = getattr(job, "selection", None)
        keys = AssetSelection.from_coercible(selection).resolve(graph) if selection is not None else set()
        groups: dict[str, int] = {}
        for key in keys:  # assets per group: a selection that gains or loses an asset shows
            group = graph.get(key).group_name
            groups[group] = groups.get(group, 0) + 1
        jobs[job.name] = {
            "description": (job.description or "").strip(),
            "partitions": _partitions(getattr(job, "partitions_def", None)),
            "assets_per_group": dict(sorted(groups.items())),
        }
    return dict(sorted(jobs.items()))


def _sensors(defs: Definitions) -> dict[str, Any]:
    sensors = {}
    for sensor in defs.sensors or []:
        sensors[sensor.name] = {
            "jobs": sorted(t.job_name for t in sensor.targets),
            "default_status": sensor.default_status.value,
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
            "description": (sensor.description or "").strip(),
        }
    return dict(sorted(sensors.items()))


def _schedules(defs: Definitions) -> dict[str, Any]:
    schedules = {}
    for schedule in defs.schedules or []:
        schedules[schedule.name] = {
            "job": schedule.job_name,
            "cron": schedule.cron_schedule,
            "timezone": schedule.execution_timezone,
            "default_status": schedule.default_status.value,
            "description": (schedule.description or "").strip(),
        }
    return dict(sorted(schedules.items()))


def current_definitions() -> Definitions:
    from datafirst_assets.definitions import build_definitions

    return build_definitions(SNAPSHOT_DATA_DIR)


def to_yaml(snap: dict[str, Any]) -> str:
    return yaml.safe_dump(snap, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False)


def differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Readable differences, one line each: what was added, removed or changed, and where."""
    out: list[str] = []
    for section in sorted(set(expected) | set(actual)):
        old, new = expected.get(section, {}), actual.get(section, {})
        for name in sorted(set(old) - set(new)):
            out.append(f"{section}: {name} removed")
        for name in sorted(set(new) - set(old)):
            out.append(f"{section}: {name} added")
        for name in sorted(set(old) & set(new)):
            for field in sorted(set(old[name]) | set(new[name])):
                was, now = old[name].get(field), new[name].get(field)
                if was != now:
                    out.append(f"{section}: {name}: {field} was {was!r}, now {now!r}")
    return out


def main(argv: list[str]) -> int:
    text = to_yaml(snapshot(current_definitions()))
    SNAPSHOT_PATH.parent.mkdir(parents=True, exist_ok=True)
    SNAPSHOT_PATH.write_text(
        "# The asset graph, pinned. Regenerate with `make snapshot` after an intended change.\n" + text
    )
    print(f"wrote {SNAPSHOT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
