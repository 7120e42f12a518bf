"""Loading the code location is paid at the start of every run (the code server spawns a fresh
Python per run that imports `datafirst_assets.definitions`): it must not import what only some
steps use, nor walk every object it just created."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

from datafirst_assets.defs import memory

# Imported by the steps that need them, not by loading the definitions. pandas: needed by none of
# them (pandera's Ibis backend imports it when it runs), ~0.3 s for each process loading the location.
LAZY_MODULES = ("ibis", "pandera.ibis", "splink", "sqlglot", "jinja2", "pandas")


def test_loading_the_code_location_does_not_import_the_ibis_backend():
    script = ("import json, sys; import datafirst_assets.definitions; "
              f"print(json.dumps([m for m in {list(LAZY_MODULES)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_contract_check_after_loading_finds_failures_without_importing_pandas():
    """pandera loaded without pandas (`common.pandera_polars`): its check dispatch must not import
    pandas at a run's first contract check either, and the polars checks still find every failure."""
    script = ("import json, sys; import datafirst_assets.definitions; import polars as pl; "
              "from datafirst_assets.common.pandera_polars import pa; "
              "from datafirst_assets.contracts.core import validate_table; "
              "schema = pa.DataFrameSchema({'n': pa.Column(pl.Int64, pa.Check.ge(0)), "
              "'s': pa.Column(pl.String, pa.Check.isin(['a']))}, name='t'); "
              "report = validate_table(pl.DataFrame({'n': [1, -1], 's': ['a', 'b']}), schema); "
              "print(json.dumps([report.passed, len(report.failures), 'pandas' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, 2, False]


def test_pandas_stays_importable_after_pandera_is_loaded_without_it():
    script = ("import datafirst_assets.definitions, sys; assert 'pandas' not in sys.modules; "
              "import pandas; from datafirst_assets.common.pandera_polars import pa; "
              "print(pandas.DataFrame({'a': [1]}).shape, pa.__name__)")
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "(1, 1) pandera.polars"


def test_the_in_database_check_still_imports_it_when_called():
    from datafirst_assets.contracts import wiring

    assert callable(wiring.check_in_database_before_store)
    from datafirst_assets.contracts.in_database import validate_in_duckdb  # the lazy import's target exists

    assert callable(validate_in_duckdb)


def test_freezing_the_loaded_objects_runs_no_full_collection(monkeypatch):
    collections = []
    monkeypatch.setattr(gc, "collect", lambda *a, **k: collections.append(a) or 0)
    try:
        memory.freeze_long_lived_objects()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert collections == []


def test_the_linkage_settings_still_build_splink_objects_when_used():
    from datafirst_assets.linkage import settings

    rule = settings.splink_api.block_on("forename", "surname")
    assert "forename" in rule.get_blocking_rule("duckdb").blocking_rule_sql


def test_contracts_sharing_a_model_are_renamed_copies_not_deep_copies():
    from dagster import AssetKey

    from datafirst_assets.contracts import models
    from datafirst_assets.contracts.registry import contract_for
    from datafirst_assets.sources.registry import SOURCES

    sources = sorted(SOURCES)[:2]
    first, second = (contract_for(AssetKey(["linkage", s, "model"])) for s in sources)
    assert (first.name, second.name) == tuple(f"linkage_{s}_model" for s in sources)
    model = models.ModelVersion.to_schema()
    assert model.name != first.name  # renaming a copy leaves the model's schema alone
    # the columns are shared, not deep-copied (deep copies were most of building the contracts)
    assert first.columns is model.columns and second.columns is model.columns


def test_loading_the_code_location_runs_no_garbage_collection_and_leaves_it_on():
    # ~650 collections (5 full) were ~0.3 s of CPU of every run's start; the load leaves ~1,000
    # unreachable objects, not worth them
    script = ("import gc, json; import dagster; collections = []; "
              "gc.callbacks.append(lambda phase, info: phase == 'start' and collections.append(info['generation'])); "
              "import datafirst_assets.definitions; "
              "print(json.dumps([len(collections), gc.isenabled()]))")
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [0, True]
