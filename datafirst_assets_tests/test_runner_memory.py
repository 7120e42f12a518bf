"""`datafirst run`'s in-process runs do not keep the steps' outputs alive until the run ends.

Dagster's `execute_in_process` keeps every step's returned value for its result's
`output_for_node`; a run of the whole graph then holds every asset's frame at once (at 300,000
people: 3.3 GiB after the ingest, 6.7 GiB by the synthetic stage). The runner executes its jobs
with `execute_job` instead; this checks that an upstream output is gone once its step is done.
"""

import gc
import os
import weakref
from types import SimpleNamespace

from dagster import Definitions, DagsterInstance, IOManager, asset, define_asset_job, in_process_executor, materialize

from datafirst_assets import runner
from datafirst_assets.layout import DataLayout


class Big:
    """Stands in for a large frame an asset returns."""


OUTPUTS: list[weakref.ref] = []


class StoresNothing(IOManager):
    def handle_output(self, context, obj) -> None:
        pass

    def load_input(self, context):
        return None


@asset
def produced() -> Big:
    value = Big()
    OUTPUTS.append(weakref.ref(value))
    return value


@asset(deps=[produced])
def after() -> int:
    gc.collect()
    alive = [ref for ref in OUTPUTS if ref() is not None]
    assert not alive, "the upstream step's output is still held after its step ended"
    return 0


def test_a_runners_run_releases_each_steps_output_after_the_step(tmp_path):
    defs = Definitions(assets=[produced, after], jobs=[define_asset_job("both", selection="*")],
                       resources={"io_manager": StoresNothing()}, executor=in_process_executor)
    with DagsterInstance.ephemeral() as instance:
        outcome = runner._run_job(instance, defs, DataLayout(tmp_path), "both")
    assert outcome.success, outcome.errors
    assert OUTPUTS, "the upstream asset did not run"


def test_the_same_job_through_execute_in_process_keeps_the_output(tmp_path):
    """The check above can fail: Dagster's execute_in_process holds the output, so `after` fails."""
    defs = Definitions(assets=[produced, after], jobs=[define_asset_job("both", selection="*")],
                       resources={"io_manager": StoresNothing()}, executor=in_process_executor)
    result = defs.resolve_job_def("both").execute_in_process(raise_on_error=False)
    assert not result.success


def test_the_memory_release_happens_only_in_a_process_that_holds_much():
    from datafirst_assets.defs.memory import RELEASE_ABOVE_BYTES, holds_much_memory

    assert holds_much_memory(threshold=0)
    assert not holds_much_memory(threshold=1 << 50)
    # this test process (Dagster, polars, DuckDB loaded) is far below the release's threshold
    assert not holds_much_memory(RELEASE_ABOVE_BYTES)


def test_the_jobs_have_no_step_hooks():
    """Every hook writes an event per step (HOOK_COMPLETED / HOOK_SKIPPED): memory is released from
    the IO manager instead (below)."""
    from datafirst_assets.definitions import defs

    for job in defs.jobs:
        assert not defs.resolve_job_def(job.name).hook_defs, job.name


def test_the_io_manager_releases_memory_once_per_step_above_the_threshold(tmp_path, monkeypatch):
    import polars as pl
    from dagster import materialize

    from datafirst_assets.defs import memory
    from datafirst_assets.warehouse import io_manager
    from datafirst_assets.warehouse.io_manager import WarehouseIOManager

    released = []
    monkeypatch.setattr(memory, "release_memory", lambda: released.append(memory._LAST_STEP[0]))

    @asset(metadata={"schema": "t"})
    def first() -> pl.DataFrame:
        return pl.DataFrame({"a": [1]})

    @asset(metadata={"schema": "t"})
    def second(first: pl.DataFrame) -> pl.DataFrame:
        return first

    @asset(metadata={"schema": "t"})
    def third(first: pl.DataFrame, second: pl.DataFrame) -> pl.DataFrame:
        return second

    resources = {"io_manager": WarehouseIOManager(database=str(tmp_path / "wh.duckdb"))}
    with DagsterInstance.ephemeral() as instance:
        monkeypatch.setattr(memory, "holds_much_memory", lambda: True)
        assert materialize([first, second, third], resources=resources, instance=instance).success
        assert released == ["first", "second", "third"]  # once per step, however many tables it reads
        released.clear()
        monkeypatch.setattr(memory, "holds_much_memory", lambda: False)
        assert materialize([first, second, third], resources=resources, instance=instance).success
        assert released == []
        events = {e.dagster_event.event_type_value for e in instance.all_logs(instance.get_runs(limit=1)[0].run_id)
                  if e.dagster_event is not None}
        assert not {"HOOK_COMPLETED", "HOOK_SKIPPED"} & events
    held = []
    monkeypatch.setattr(io_manager, "keep_event_log_open", held.append)
    with DagsterInstance.ephemeral() as instance:
        assert materialize([first], resources=resources, instance=instance).success
    # the IO manager's setup, once per run, held the run's SQLite event log open (defs/event_log.py)
    assert held == [instance]


def test_a_load_step_releases_what_the_previous_step_left_before_it_reads_the_deliveries(tmp_path, monkeypatch):
    """A load step has no inputs: without its own call the release would come at its first write,
    after the whole delivery had been read on top of the previous step's leftovers."""
    from datafirst_assets.defs import ingest, memory
    from datafirst_assets.defs.resources import LandingZone
    from datafirst_assets.sources.registry import SOURCES

    order = []
    monkeypatch.setattr(memory, "holds_much_memory", lambda: True)
    monkeypatch.setattr(memory, "release_memory", lambda: order.append("release"))
    monkeypatch.setattr(ingest, "load_deliveries", lambda *a, **k: order.append("read") or {})
    memory._LAST_STEP[0] = ""
    load = ingest.build_raw_assets(SOURCES["family"])
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("extract_date", ["2024-01-31"])
        materialize([load], partition_key="2024-01-31", instance=instance, raise_on_error=False,
                    resources={"landing": LandingZone(path=str(tmp_path))})
    assert order[:2] == ["release", "read"]


def test_memory_is_released_again_only_once_the_process_grew_since_the_last_release(monkeypatch):
    """Above the threshold, a step that left little (a kept step, a check) is not followed by another
    release: only once the process holds RELEASE_GROWTH_BYTES more than right after the last one."""
    from datafirst_assets.defs import memory

    gib = 1 << 20  # in KiB, as /proc reports
    resident = {"RssAnon": 3 * gib}
    released = []
    monkeypatch.setattr(memory, "_status_kib", lambda *fields: dict(resident))
    monkeypatch.setattr(memory, "release_memory", lambda: released.append(memory._LAST_STEP[0]))
    monkeypatch.setattr(memory, "memory_report", lambda: "")
    monkeypatch.setattr(memory, "_AFTER_RELEASE", [0])
    monkeypatch.setattr(memory, "_LAST_STEP", [""])
    log = SimpleNamespace(debug=lambda message: None)
    assert memory.release_between_steps("a", log)  # above 1 GiB, nothing released yet
    resident["RssAnon"] += 100 << 10  # the next steps leave 100 MiB each
    assert not memory.release_between_steps("b", log)
    resident["RssAnon"] += 100 << 10
    assert not memory.release_between_steps("c", log)
    resident["RssAnon"] += 100 << 10  # 300 MiB more than after the release
    assert memory.release_between_steps("d", log)
    assert released == ["a", "d"]
    resident["RssAnon"] = gib // 2  # below the threshold: never
    monkeypatch.setattr(memory, "_AFTER_RELEASE", [0])
    assert not memory.release_between_steps("e", log)


def test_an_in_process_run_uses_the_code_locations_own_build_of_the_definitions(tmp_path):
    """Importing the code location builds its definitions; an in-process `datafirst run` imports it for
    its data directory and runs that build instead of building a second one (in a fresh interpreter:
    this one may have imported the code location already)."""
    import subprocess
    import sys

    script = f"""
import os, sys
from datafirst_assets import runner
from datafirst_assets.layout import DataLayout
assert "datafirst_assets.definitions" not in sys.modules
built = runner._definitions_for(DataLayout({str(tmp_path / 'data')!r}), type("Instance", (), {{"is_persistent": False}})())
from datafirst_assets import definitions
assert built is definitions.defs, "built twice"
assert str(definitions.defs_data_dir) == {str(tmp_path / 'data')!r}
assert "DATAFIRST_DATA_DIR" not in os.environ
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k not in ("DATAFIRST_DATA_DIR", "DATAFIRST_LAUNCH")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
