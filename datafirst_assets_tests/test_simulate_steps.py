"""The simulator's step API: one module per source system, each building exactly its own tables."""

from __future__ import annotations

from datetime import date

import numpy as np

from datafirst_assets.simulate.config import SimulationConfig
from datafirst_assets.simulate.core import SOURCE_STEPS
from datafirst_assets.simulate.population import build_population
from datafirst_assets.simulate.steps import Journeys
from datafirst_assets.simulate.util import to_day
from datafirst_assets.simulate.vocab import build_vocab
from datafirst_assets.simulate.world import World, rng_for
from datafirst_assets.sources.registry import SOURCES


def test_every_registry_source_has_one_step():
    names = [step.SOURCE for step in SOURCE_STEPS]
    assert sorted(names) == sorted(SOURCES) and len(names) == len(set(names))


def test_each_step_builds_its_own_tables_and_hands_on_its_journeys():
    cfg = SimulationConfig()
    extract_days = np.array([to_day(date(2024, 1, 31)), to_day(date(2024, 3, 1))], dtype=np.int64)
    vocab = build_vocab()
    people, rosters = build_population(400, cfg, vocab, extract_days, rng_for(3, "population"))
    world = World(seed=3, cfg=cfg, vocab=vocab, people=people, rosters=rosters, extract_days=extract_days)
    journeys = Journeys()
    for step in SOURCE_STEPS:
        tables = step.build(world, journeys)
        expected = {f"{step.SOURCE}/{t.name}" for t in SOURCES[step.SOURCE].tables}
        assert set(tables) == expected, step.SOURCE
        assert all(td.source == step.SOURCE for td in tables.values())
    # what later systems start from was left on the journeys
    assert journeys.magistrates is not None and journeys.crown_court is not None
    assert journeys.prison is not None and journeys.probation is not None
    links = journeys.case_links
    assert links is not None and len(links.mag_rows) == len(links.crown_rows) == journeys.crown_court.n
    assert (journeys.magistrates.person[links.mag_rows] == journeys.crown_court.person).all()
