"""The ingest's asset keys, the code location's job names, and whether a delivery was loaded from a
given manifest: what the command line shares with the code location and the landing sensor,
importable without building the code location (~1.5 s of CPU the command line spares when its runs
are launched through the code location, which builds it itself). ingest.py builds the assets,
definitions.py the jobs, sensors.py the sensor; each takes these names from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from datafirst_assets.sources.registry import SOURCES

if TYPE_CHECKING:
    from datafirst_assets.raw.arrival import Arrival

INGEST_JOB = "ingest_extract"
LINK_JOB = "link_datasets"
# `datafirst run --review-queues-only` (the demo's first run): a range of extract dates loaded and
# staged, and each dataset linked as far as its clerical review queue, in one run. Run after run,
# the ingest and the queues cost a launch and a run process more (~4 s of the demo's wall).
REVIEW_QUEUES_JOB = "ingest_to_review_queues"

STAGES = ("raw", "staged", "quarantine")


def stage_key(stage: str, source: str, table: str) -> AssetKey:
    return AssetKey([stage, source, table])


def raw_key(source: str, table: str) -> AssetKey:
    return stage_key("raw", source, table)


def staged_key(source: str, table: str) -> AssetKey:
    return stage_key("staged", source, table)


def quarantine_key(source: str, table: str) -> AssetKey:
    return stage_key("quarantine", source, table)


def ingest_keys(sources: list[str]) -> list[AssetKey]:
    """Every raw, staged and quarantine asset of these sources: what loading their deliveries writes."""
    return [
        stage_key(stage, source, table.name)
        for source in sources
        for table in SOURCES[source].tables
        for stage in STAGES
    ]


def _latest(instance: DagsterInstance, key: AssetKey, partition: str):
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1).records
    return records[0] if records else None


def already_loaded(instance: DagsterInstance, arrival: Arrival) -> bool:
    """Loaded from this very manifest outside the sensor (`make demo`, `datafirst backfill`):
    every raw table of the source records the manifest's sha256 for the date, and its staged table
    was written after it."""
    for table in SOURCES[arrival.source].tables:
        raw = _latest(instance, raw_key(arrival.source, table.name), arrival.extract_date)
        if raw is None:
            return False
        deliveries = raw.event_log_entry.asset_materialization.metadata.get("deliveries")
        loaded = (deliveries.value if deliveries is not None else {}).get(arrival.extract_date, {})
        if loaded.get("manifest_sha256") != arrival.manifest_sha256:
            return False
        staged = _latest(instance, staged_key(arrival.source, table.name), arrival.extract_date)
        if staged is None or staged.timestamp < raw.timestamp:
            return False
    return True
