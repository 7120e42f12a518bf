"""`datafirst run`'s in-process runs do not keep the steps' outputs alive until the run ends.

Dagster's `execute_in_process` keeps every step's returned value for its result's
`output_for_node`; a run of the whole graph then holds every asset's frame at once (at 300,000
people: 3.3 GiB after the ingest, 6.7 GiB by the synthetic stage). The runner executes its jobs
with `execute_job` instead; this checks that an upstream output is gone once its step is done.
"""

import gc
import weakref

from dagster import Definitions, DagsterInstance, IOManager, asset, define_asset_job, in_process_executor

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


def test_the_step_hook_releases_memory_only_from_a_process_that_holds_much():
    from datafirst_assets.defs.memory import RELEASE_ABOVE_BYTES, holds_much_memory

    assert holds_much_memory(threshold=0)
    assert not holds_much_memory(threshold=1 << 50)
    # this test process (Dagster, polars, DuckDB loaded) is far below the hook's threshold
    assert not holds_much_memory(RELEASE_ABOVE_BYTES)
