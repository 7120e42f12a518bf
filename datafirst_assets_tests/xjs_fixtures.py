"""Inputs for the cross-justice lookup and the case link, built without Dagster.

    inputs = build_linkage_inputs(landing)   # after simulate(...)
    inputs.person_records[source], inputs.clusters[source]   # what the pipeline's assets hold
    inputs.staged["magistrates"], inputs.staged["crown_court"] # hocas / xhibit staged frames

Each step calls the same pure functions as the assets: raw delivery -> staging -> person
records -> per-dataset dedupe. The per-dataset clustering threshold is chosen as the pipeline
chooses it with no clerical labels (the model's own estimate, see ``linkage/threshold.py``);
truth never reaches the models, the thresholds or the cross-dataset lookup.
Also used by ``benchmarks/bench_xjs.py``.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from datafirst_assets.defs.linkage import LinkageSettings
from datafirst_assets.linkage.backend import make_db_api
from datafirst_assets.linkage.incremental import link_full
from datafirst_assets.linkage.records import person_records
from datafirst_assets.linkage.settings import model_spec_for_records
from datafirst_assets.linkage.threshold import threshold_chooser
from datafirst_assets.linkage.train import TrainingConfig, train_model
from datafirst_assets.raw.delivery import delivery_path, list_deliveries, load_raw_table
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.staging.standardise import stage_partitions

#: sources whose staged person table the case link reads
CASE_LINK_SOURCES = ("magistrates", "crown_court")


@dataclass
class LinkageInputs:
    person_records: dict[str, pl.DataFrame]
    clusters: dict[str, pl.DataFrame]
    staged: dict[str, pl.DataFrame]  # hocas_flatfile and xhibit_flatfile, all extracts (case link)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step (dedupe_<source>...)

    @property
    def hocas(self) -> pl.DataFrame:
        return self.staged["magistrates"]

    @property
    def xhibit(self) -> pl.DataFrame:
        return self.staged["crown_court"]


def stage_table(landing: Path, source_key: str, table_name: str) -> pl.DataFrame:
    """Every delivery of one table, loaded and staged (quarantined rows left out)."""
    source = SOURCES[source_key]
    table = source.table(table_name)
    raws = [load_raw_table(source, table, delivery_path(landing, s, d))[0]
            for s, d in list_deliveries(landing) if s == source_key]
    return stage_partitions(pl.concat(raws), source, table).staged


def dedupe_source(records: pl.DataFrame, source_key: str,
                  *, db_api=None, u_max_pairs: float | None = None) -> pl.DataFrame:
    """record_id -> per-dataset person id: the pure functions the model and clusters assets
    call on a first (full) link (``u_max_pairs`` overrides the pipeline's u sample, e.g.
    smaller for fast tests)."""
    db_api = db_api or make_db_api()
    spec = model_spec_for_records(records)
    settings = LinkageSettings()
    model = train_model(records, spec, db_api, TrainingConfig(
        u_max_pairs=u_max_pairs or settings.u_pairs_for(records.height), seed=settings.seed))

    choose = threshold_chooser(records.get_column("record_id"))
    result = link_full(records, model, db_api, choose=choose, reason="first release")
    return result.clusters_table(model.version, SOURCES[source_key].person_id_name)


def build_linkage_inputs(landing: Path, *, threads: int | None = None,
                         u_max_pairs: float | None = None, db_options: dict | None = None) -> LinkageInputs:
    """Stage, build person records and deduplicate every source (``db_options`` as for
    ``make_db_api``: threads, memory_limit...; a fresh in-memory DuckDB per source)."""
    options = dict(db_options or {})
    if threads:
        options["threads"] = threads
    recs, clus, staged, timings = {}, {}, {}, {}
    for key, source in SOURCES.items():
        table = source.person_table
        t = time.perf_counter()
        frame = stage_table(landing, key, table.name)
        recs[key] = person_records(frame, source, table)
        if key in CASE_LINK_SOURCES:
            staged[key] = frame
        del frame
        timings[f"stage_{key}"] = time.perf_counter() - t
        t = time.perf_counter()
        db_api = make_db_api(**options)
        clus[key] = dedupe_source(recs[key], key, db_api=db_api, u_max_pairs=u_max_pairs)
        del db_api
        gc.collect()  # release the source's in-memory DuckDB before the next one
        timings[f"dedupe_{key}"] = time.perf_counter() - t
    timings["dedupe_total"] = sum(v for k, v in timings.items() if k.startswith("dedupe_"))
    return LinkageInputs(person_records=recs, clusters=clus, staged=staged, timings=timings)


def save_inputs(inputs: LinkageInputs, folder: Path) -> Path:
    """Cache the inputs as parquet (for experiments and benchmarks)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for kind in ("person_records", "clusters", "staged"):
        for key, frame in getattr(inputs, kind).items():
            frame.write_parquet(folder / f"{kind}__{key}.parquet")
    pl.DataFrame({"step": list(inputs.timings), "seconds": list(inputs.timings.values())}).write_parquet(
        folder / "timings.parquet")
    return folder


def load_inputs(folder: Path) -> LinkageInputs:
    folder = Path(folder)
    out: dict[str, dict[str, pl.DataFrame]] = {"person_records": {}, "clusters": {}, "staged": {}}
    for path in sorted(folder.glob("*__*.parquet")):
        kind, key = path.stem.split("__")
        out[kind][key] = pl.read_parquet(path)
    timings = {}
    if (folder / "timings.parquet").exists():
        t = pl.read_parquet(folder / "timings.parquet")
        timings = dict(zip(t["step"].to_list(), t["seconds"].to_list()))
    return LinkageInputs(**out, timings=timings)


@dataclass
class SimulatedWorld:
    landing: Path
    truth_dir: Path
    summary: dict


def simulate_world(folder: Path, *, people: int = 1500, seed: int = 1, extracts: int = 2) -> SimulatedWorld:
    """A small simulated delivery + truth under ``folder`` (about a second)."""
    from datafirst_assets.simulate import simulate

    folder = Path(folder)
    summary = simulate(people=people, seed=seed, extracts=extracts, out=folder / "landing",
                       truth_out=folder / "truth")
    return SimulatedWorld(landing=folder / "landing", truth_dir=folder / "truth", summary=summary)


def small_linkage_inputs(folder: Path, *, people: int = 1500, seed: int = 1, extracts: int = 2
                         ) -> tuple[SimulatedWorld, LinkageInputs]:
    """Simulate, stage and deduplicate a small population for module-scoped test fixtures
    (a smaller u sample than the pipeline's keeps the seven dedupes to a few seconds each)."""
    world = simulate_world(folder, people=people, seed=seed, extracts=extracts)
    return world, build_linkage_inputs(world.landing, threads=1, u_max_pairs=5e4)


def shared_small_linkage_inputs(tmp_path_factory, *, people: int = 2000, seed: int = 1, extracts: int = 2
                                ) -> tuple[SimulatedWorld, LinkageInputs]:
    """:func:`small_linkage_inputs` built once per test session, even under pytest-xdist:
    the first worker builds under a file lock in the directory all workers share, the others
    load the cached parquet (the pattern pytest-xdist documents for once-only fixtures)."""
    import os

    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder = base / f"xjs_world_p{people}_s{seed}_e{extracts}"
    with FileLock(str(folder) + ".lock"):
        done = folder / "inputs" / "timings.parquet"
        if done.exists():
            world = SimulatedWorld(landing=folder / "landing", truth_dir=folder / "truth", summary={})
            return world, load_inputs(folder / "inputs")
        world, inputs = small_linkage_inputs(folder, people=people, seed=seed, extracts=extracts)
        save_inputs(inputs, folder / "inputs")  # timings.parquet last: marks the cache complete
        return world, inputs
