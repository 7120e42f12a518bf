"""A run that scores with the saved cross-justice model numbers the variants as they come (no sort
of every variant): the lookup, edges and persons state are those of variants numbered in their
fields' order. A saved model that no longer fits is retrained on variants numbered in order, as a
first run's are (training samples rows)."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from datafirst_assets.defs.xjs import lookup_inputs_for
from datafirst_assets.linkage.xjs import build_xjs_lookup, link_variants
from datafirst_assets.linkage.xjs_incremental import WRITTEN_BY, PreviousXjs
from datafirst_assets.linkage.settings import UNIQUE_ID
from datafirst_assets.linkage.xjs_inputs import lookup_inputs
from datafirst_assets_tests.test_xjs_incremental import _before
from datafirst_assets_tests.xjs_fixtures import shared_small_linkage_inputs


def _registered(conn, records: dict, clusters: dict, tag: str) -> dict[str, tuple[str, str]]:
    for source in records:
        conn.register(f"records_{tag}_{source}", records[source].to_arrow())
        conn.register(f"clusters_{tag}_{source}", clusters[source].to_arrow())
    return {s: (f"records_{tag}_{s}", f"clusters_{tag}_{s}") for s in records}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    _, inputs = shared_small_linkage_inputs(tmp_path_factory, people=2000, seed=1, extracts=2)
    trained = build_xjs_lookup(inputs.person_records, inputs.clusters)
    saved = (trained.model.to_json(), trained.stats["variants"])  # with its term-frequency adjustments
    before, clusters_after = _before(inputs.person_records, inputs.clusters)
    return inputs, saved, before, clusters_after


def _state_of(result) -> PreviousXjs:
    return PreviousXjs(persons=result.state.with_columns(pl.lit("run-1").alias(WRITTEN_BY)),
                       edges=result.edges.with_columns(pl.lit("run-1").alias(WRITTEN_BY)))


@pytest.mark.parametrize("extend", [True, False], ids=["stored edges extended", "every pair scored"])
def test_a_lookup_scored_with_the_saved_model_does_not_depend_on_the_variants_numbering(world, extend):
    inputs, saved, before, clusters_after = world
    with duckdb.connect() as conn:
        earlier = _registered(conn, before["records"], before["clusters"], "before")
        now = _registered(conn, inputs.person_records, clusters_after, "now")
        first = link_variants(*lookup_inputs(conn, earlier)[:3], saved_model=saved)
        previous = _state_of(first) if extend else None
        ordered = lookup_inputs(conn, now, with_hashes=True, ordered=True)
        as_they_come = lookup_inputs(conn, now, with_hashes=True, ordered=False)
        results = [link_variants(*inputs_[:3], variants_hashes=inputs_[3], saved_model=saved, previous=previous)
                   for inputs_ in (ordered, as_they_come)]
    # the numbering differs (else this test would show nothing) ...
    assert not ordered[2].equals(as_they_come[2])
    # ... and nothing the lookup stores depends on it
    want, got = results
    assert want.stats["lookup_mode"] == ("incremental" if extend else "full")
    assert "reused" in got.model.timings and "reused" in want.model.timings
    assert got.lookup.equals(want.lookup)
    assert got.edges.equals(want.edges)
    assert got.state.equals(want.state)
    assert {k: v for k, v in got.stats.items() if k != "reason"} == \
        {k: v for k, v in want.stats.items() if k != "reason"}


def test_variants_are_numbered_in_order_unless_the_saved_model_fits(world, monkeypatch):
    import datafirst_assets.defs.xjs as xjs_defs

    inputs, saved, _, clusters_after = world
    asked: list[bool] = []

    def recording(conn, tables, **kwargs):
        asked.append(kwargs["ordered"])
        return lookup_inputs(conn, tables, **kwargs)

    # which numbering each run asks for (numbered as they come, the order varies with DuckDB's threads)
    monkeypatch.setattr(xjs_defs, "lookup_inputs", recording)
    with duckdb.connect() as conn:
        now = _registered(conn, inputs.person_records, clusters_after, "now")
        ordered = lookup_inputs(conn, now, with_hashes=True, ordered=True)
        calls = {}
        for name, model in (("fits", saved), ("first run", None), ("outgrown", (saved[0], 10))):
            asked.clear()
            got = lookup_inputs_for(conn, now, model, retrain_growth=2.0)
            calls[name] = list(asked)
            # the same variants whichever the numbering; in order, the very frames a first run builds
            assert got[1].drop(UNIQUE_ID).sort(pl.all()).equals(ordered[1].drop(UNIQUE_ID).sort(pl.all()))
            if calls[name][-1]:
                assert all(a.equals(b) for a, b in zip(got, ordered))
    # a saved model that fits only scores: no sort; a first run trains, and an outgrown model (trained
    # on far fewer variants than there are now) is retrained: both on variants in order
    assert calls == {"fits": [False], "first run": [True], "outgrown": [False, True]}
