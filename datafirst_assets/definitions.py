"""Dagster code location: every asset, check, job and resource of datafirst."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

from datafirst_assets.defs.ingest import ingest_assets
from datafirst_assets.defs.linkage import LinkageSettings, linkage_assets
from datafirst_assets.defs.xjs import xjs_assets
from datafirst_assets.defs.partitions import extract_dates
from datafirst_assets.defs.resources import DataLayout, build_resources, default_data_dir
from datafirst_assets.linkage.backend import backend_config_from_env

INGEST_JOB = "ingest_extract"
INGEST_SELECTION = AssetSelection.groups("raw", "staged", "quarantine")
LINK_JOB = "link_datasets"
LINK_SELECTION = AssetSelection.groups("linkage", "linked")


def build_definitions(data_dir: Path | str | None = None) -> Definitions:
    layout = DataLayout(data_dir if data_dir is not None else default_data_dir())
    ingest_job = define_asset_job(
        INGEST_JOB,
        selection=INGEST_SELECTION,
        partitions_def=extract_dates,
        description="Load and stage one extract date's deliveries (every source that delivered).",
    )
    link_job = define_asset_job(
        LINK_JOB,
        selection=LINK_SELECTION,
        description="Train, score and cluster every dataset on all staged extracts; measure quality.",
    )
    return Definitions(
        assets=[*ingest_assets(), *linkage_assets(), *xjs_assets()],
        jobs=[ingest_job, link_job],
        resources={**build_resources(layout), "linkage": LinkageSettings(data_dir=str(layout.root),
                                                                           **backend_config_from_env())},
        # DuckDB allows one writing process: steps run in the run's own process, one at a time.
        executor=in_process_executor,
    )


defs = build_definitions()
