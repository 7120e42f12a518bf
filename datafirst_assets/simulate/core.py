"""Entry point: simulate a population, its journeys through seven systems, and the extracts."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import numpy as np

from datafirst_assets.simulate import civil, crown_court, family, magistrates, oasys, prison, probation
from datafirst_assets.simulate.config import SimulationConfig
from datafirst_assets.simulate.output import DeliveryWriter
from datafirst_assets.simulate.population import build_population
from datafirst_assets.simulate.steps import Journeys, SourceStep
from datafirst_assets.simulate.util import to_day
from datafirst_assets.simulate.vocab import build_vocab
from datafirst_assets.simulate.world import World, rng_for

# Every source system, in the order its journeys run (each starts from the ones before it).
SOURCE_STEPS: tuple[SourceStep, ...] = (magistrates, crown_court, prison, probation, oasys, family, civil)


class SourceCounts(dict):
    """Rows per table of one source. Adds like its total, so that both
    `summary["records"][source][table]` and `sum(summary["records"].values())` work."""

    @property
    def total(self) -> int:
        return int(sum(self.values()))

    def __add__(self, other):
        return self.total + other

    __radd__ = __add__


def default_truth_dir(out: Path) -> Path:
    """Where truth goes when not given: a `truth` folder beside the landing folder."""
    return Path(out).parent / "truth"


def simulate(
    people: int,
    seed: int,
    extracts: int,
    out: Path,
    truth_out: Path,
    first_extract: date = date(2024, 1, 31),
    extract_interval_days: int = 30,
    config: SimulationConfig | None = None,
    malformed_rate: float = 0.0,
) -> dict:
    """Simulate `people` people (and companies) and write `extracts` deliveries of every source.

    Deliveries go to `out/<source>/<YYYY-MM-DD>/<table>.csv` with a `manifest.json`; the truth
    (never read by linkage) goes to `truth_out`. Deterministic for a given seed and config.
    `malformed_rate`: share of rows of each leaf table written malformed (simulate/malformed.py);
    0 leaves the output exactly as without it.
    Returns a small summary (people, records per source and table, extract dates, seconds).
    """
    t_start = time.perf_counter()
    cfg = config or SimulationConfig()
    cfg.validate()
    if people < 20:
        raise ValueError("people must be at least 20")
    if extracts < 1:
        raise ValueError("extracts must be at least 1")
    if extract_interval_days < 1:
        raise ValueError("extract_interval_days must be at least 1")
    if not 0 <= malformed_rate < 1:
        raise ValueError("malformed_rate must be at least 0 and below 1")
    out, truth_out = Path(out), Path(truth_out)
    extract_days = np.array(
        [to_day(first_extract) + k * extract_interval_days for k in range(extracts)], dtype=np.int64
    )
    vocab = build_vocab()
    population, rosters = build_population(int(people), cfg, vocab, extract_days, rng_for(seed, "population"))
    world = World(
        seed=int(seed), cfg=cfg, vocab=vocab, people=population, rosters=rosters, extract_days=extract_days
    )
    writer = DeliveryWriter(world, out, truth_out, malformed_rate=malformed_rate)
    journeys = Journeys()
    for step in SOURCE_STEPS:  # each source is written as soon as it is built
        writer.write_source(step.SOURCE, step.build(world, journeys))
    written = writer.finish(journeys.case_links)
    records = {source: SourceCounts(tables) for source, tables in written["records"].items()}
    return {
        "people": int(people),
        "seed": int(seed),
        "extracts": int(extracts),
        "extract_dates": written["extract_dates"],
        "records": records,  # rows over all deliveries: records[source][table]
        "total_records": int(sum(records.values())),
        "person_records": int(written["person_records"]),
        "people_appearing": int(written["people_appearing"]),
        "case_links": int(written["case_links"]),
        "malformed_rows": written["malformed_rows"],
        "out": str(out),
        "truth_out": str(truth_out),
        "seconds": round(time.perf_counter() - t_start, 3),
    }
