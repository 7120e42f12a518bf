"""Shared state of one simulation run (config, vocabulary, population, extract dates, RNG streams)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import polars as pl

from datafirst_assets.simulate.config import SimulationConfig
from datafirst_assets.simulate.population import People, Rosters
from datafirst_assets.simulate.recording import Recorder
from datafirst_assets.simulate.util import to_day
from datafirst_assets.simulate.vocab import Vocab
from datafirst_assets.sources.registry import SOURCES


@dataclass
class World:
    seed: int
    cfg: SimulationConfig
    vocab: Vocab
    people: People
    rosters: Rosters
    extract_days: np.ndarray

    @property
    def horizon(self) -> int:
        return int(self.extract_days[-1])

    def rng(self, stage: str) -> np.random.Generator:
        """Independent, reproducible random stream per stage."""
        ss = np.random.SeedSequence(entropy=self.seed, spawn_key=(zlib.crc32(stage.encode()),))
        return np.random.Generator(np.random.PCG64(ss))

    def window(self, source: str) -> tuple[int, int]:
        start, end = self.cfg.coverage[source]
        hi = min(self.horizon, to_day(end)) if end else self.horizon
        return to_day(start), hi

    def recorder(self, source: str) -> Recorder:
        return Recorder(self.people, self.cfg, self.vocab, source)

    def codes(self, source: str, table: str, column: str) -> tuple[str, ...]:
        return SOURCES[source].table(table).column(column).codes

    @property
    def company_series(self) -> pl.Series:
        return pl.Series("company", self.people.company_names, dtype=pl.Utf8)


def rng_for(seed: int, stage: str) -> np.random.Generator:
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(zlib.crc32(stage.encode()),))
    return np.random.Generator(np.random.PCG64(ss))
