"""Dagster code location: every asset, check, job and resource of datafirst."""

from __future__ import annotations

import gc

# No cyclic garbage collection while the code location loads (every run's process and the code
# server pay this load): importing pandera, pandas and our stages and building ~200 assets and
# their contracts allocate millions of objects, so the collector ran ~650 times (5 full passes)
# for ~0.3 s of CPU, to find about 1,000 unreachable objects. Re-enabled below, after the load.
_COLLECTING = gc.isenabled()
gc.disable()

from pathlib import Path  # noqa: E402 (the imports below are what the pause is for)

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

from datafirst_assets.contracts.checks import contract_checks
from datafirst_assets.contracts.wiring import with_column_schemas
from datafirst_assets.defs.deidentify import deidentify_assets
from datafirst_assets.defs.release import release_settings_from_env
from datafirst_assets.defs.derived import derived_assets_for
from datafirst_assets.defs.evaluation import TRUTH_RESOURCE, evaluation_assets, truth_from_env
from datafirst_assets.defs.ingest import ingest_assets
# the job names, in a module the command line imports without building this one
from datafirst_assets.defs.keys import INGEST_JOB, LINK_JOB, REVIEW_QUEUES_JOB
from datafirst_assets.defs.release import release_assets
from datafirst_assets.defs.event_log import relax_event_log_syncs
from datafirst_assets.defs.memory import freeze_long_lived_objects
from datafirst_assets.defs.linkage import LinkageSettings, linkage_assets, linkage_key, run_config_for_mode
from datafirst_assets.defs.xjs import xjs_assets
from datafirst_assets.defs.partitions import extract_dates
from datafirst_assets.defs.resources import DataLayout, build_resources, default_data_dir
from datafirst_assets.defs.sensors import (
    build_full_refresh_schedule,
    build_landing_sensor,
    build_refresh_sensor,
)
from datafirst_assets.defs.synthetic import synthetic_assets, synthetic_resources
from datafirst_assets.linkage.backend import backend_config_from_env
from datafirst_assets.sources.registry import SOURCES

INGEST_SELECTION = AssetSelection.groups("raw", "staged", "quarantine")
# Everything after the ingest, by exclusion, so groups added later are refreshed by the CLI,
# the sensor and the schedule without touching these lines.
LINK_SELECTION = AssetSelection.all() - INGEST_SELECTION
REFRESH_JOB = "refresh_downstream"
REFRESH_SELECTION = LINK_SELECTION
SYNTHETIC_JOB = "synthesise_release"
SYNTHETIC_SELECTION = AssetSelection.groups("synthetic")
# Saved selections, in the asset graph's selection syntax (paste into its search box; README "The UI").
RESEARCH_RELEASE_SELECTION = '+key:"release/deidentified"'  # the research release and all it is built from


def review_queues_selection() -> AssetSelection:
    """Each dataset's review queue and what it needs short of the ingest (a multi-asset, such as
    cluster_<source>, runs whole, so its other outputs come along)."""
    queues = AssetSelection.keys(*[linkage_key(source, "review_queue") for source in SOURCES])
    return (queues.upstream() - INGEST_SELECTION).required_multi_asset_neighbors()


def one_source_selection(source: str) -> str:
    """One source end to end: raw, staged, quarantine, linkage, linked, de-identified and synthetic tables."""
    return f'key:"*/{source}/*"'


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
        description="Train, score and cluster every dataset on all staged extracts, measure quality, link across "
        "datasets and build the research release.",
    )
    review_queues_job = define_asset_job(
        REVIEW_QUEUES_JOB,
        # every ingest asset (not only those upstream of a queue): a delivery's tables are loaded whole
        selection=INGEST_SELECTION | review_queues_selection(),
        partitions_def=extract_dates,
        description="Load and stage a range of extract dates' deliveries, then link each dataset (on all "
        "staged extracts) as far as its clerical review queue: `datafirst run --review-queues-only`.",
    )
    refresh_job = define_asset_job(
        REFRESH_JOB,
        selection=REFRESH_SELECTION,
        description="Everything downstream of the ingest on all staged extracts: link (incrementally, or "
        "fully with the weekly schedule's run config), measure quality, de-identify, release, and every "
        "later stage.",
    )
    synthetic_job = define_asset_job(
        SYNTHETIC_JOB,
        selection=SYNTHETIC_SELECTION,
        description="Summaries of the release, synthetic tables from them, and their fidelity / privacy report.",
    )
    linkage = LinkageSettings(data_dir=str(layout.root), warehouse_database=str(layout.warehouse),
                              **backend_config_from_env())
    upstream = [*ingest_assets(), *linkage_assets(), *xjs_assets(), *deidentify_assets()]
    upstream += synthetic_assets(defined={key for a in upstream for key in a.keys})
    # Derived tables for every release variant defined upstream.
    assets = [*upstream, *release_assets("deidentified"), *release_assets("synthetic"), *derived_assets_for(upstream),
              *evaluation_assets()]
    return Definitions(
        # Each asset's contract is its column schema in the UI, enforced before every write and
        # read back by its `contract` check.
        assets=with_column_schemas(assets),
        asset_checks=contract_checks(assets),
        jobs=[ingest_job, link_job, review_queues_job, refresh_job, synthetic_job],
        sensors=[build_landing_sensor(ingest_job),
                 build_refresh_sensor(refresh_job, REFRESH_SELECTION, also_refreshed_by=(LINK_JOB,))],
        # the weekly refresh retrains and re-clusters everything; the sensor's runs link incrementally
        schedules=[build_full_refresh_schedule(refresh_job, run_config_for_mode(linkage, "full"))],
        resources={
            **build_resources(layout),
            "linkage": linkage,
            "release_settings": release_settings_from_env(),
            # read only by the evaluation group (DATAFIRST_TRUTH_DIR; unset: no truth, as in production)
            TRUTH_RESOURCE: truth_from_env(),
            **synthetic_resources(str(layout.root)),
        },
        # DuckDB allows one writing process: steps run in the run's own process, one at a time.
        executor=in_process_executor,
    )


try:
    defs_data_dir = default_data_dir()  # the data directory `defs` is built for (runner._definitions_for)
    defs = build_definitions(defs_data_dir)
    # Every process that loads the code location (the code server, each run's process, `datafirst run`,
    # `dagster dev`) writes run events without a disk sync per event (defs/event_log.py).
    relax_event_log_syncs()
    # Everything loaded so far lives as long as the process: keep the collections between steps
    # (defs/memory.py, from the IO manager) from walking it again and again.
    freeze_long_lived_objects()
finally:
    if _COLLECTING:
        gc.enable()
