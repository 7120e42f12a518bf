"""`datafirst demo` (what `make demo` runs): the demo's four commands in one process, every run
launched through the code location by one code server, started before the simulation, with the
launch mutation run in this process (no `dagster-graphql` subprocess per run)."""

import shutil
import subprocess
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from datafirst_assets import runner
from datafirst_assets.cli import main as cli_main
from datafirst_assets.defs.resources import DataLayout
from datafirst_assets.launch import CODE_LOCATION_MODULE, LAUNCH_ENV, stop_code_servers
from datafirst_assets.warehouse.connection import close_warehouse

REPO = Path(__file__).resolve().parents[1]

# a code location run and its process per run: with test_ui's demo, in one xdist worker at a time
pytestmark = pytest.mark.xdist_group("ui")


def test_the_demo_runs_in_one_process_with_one_code_server_started_before_the_simulation(
        tmp_path, monkeypatch, capsys):
    home, data, truth = tmp_path / "dagster_home", tmp_path / "data", tmp_path / "truth"
    home.mkdir()
    shutil.copy(REPO / "data" / "config" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv(LAUNCH_ENV, "code_location")
    monkeypatch.setenv("DATAFIRST_MAX_MEAN_RISK", "1.0")  # 400 people: most records unique on the risk key
    layout = DataLayout(data)

    started = []  # every process this one starts: (command, whether the simulation had written yet)
    popen = subprocess.Popen

    class Recorded(popen):
        def __init__(self, args, *rest, **options):
            started.append((list(map(str, args)), layout.landing.exists()))
            super().__init__(args, *rest, **options)

    monkeypatch.setattr(subprocess, "Popen", Recorded)

    def no_build(*_args, **_kwargs):
        raise AssertionError("the command built the code location's definitions (the code server builds them)")

    monkeypatch.setattr(runner, "_definitions_for", no_build)
    try:
        status = cli_main(["demo", "--people", "400", "--seed", "5", "--extracts", "2", "--malformed-rate", "0.002",
                           "--data-dir", str(data), "--truth", str(truth)])
        out = capsys.readouterr().out
        assert status == 0, out
        with DagsterInstance.from_config(str(home)) as instance:
            runs = instance.get_runs()
        origins = {r.remote_job_origin.repository_origin.code_location_origin for r in runs}
    finally:
        stop_code_servers()
        close_warehouse()

    # one process started: the code server, before the simulation wrote anything (no graphql subprocess)
    assert len(started) == 1, started
    command, landing_written = started[0]
    assert command[1:3] == ["api", "grpc"], command
    assert not landing_written
    # two runs (the ingest with the review queues, then the link), all from the code location through that one server
    assert sorted(r.job_name for r in runs) == ["ingest_to_review_queues", "link_datasets"]
    assert all(r.status == DagsterRunStatus.SUCCESS for r in runs)
    assert all(r.remote_job_origin.location_name == CODE_LOCATION_MODULE for r in runs)
    assert len(origins) == 1 and getattr(next(iter(origins)), "socket", None), origins
    # the four steps' output, ending with the summary and both releases
    assert [line for line in out.splitlines() if line.startswith("[")] == [
        "[1/4] datafirst simulate", "[2/4] datafirst run --review-queues-only", "[3/4] datafirst simulate-review",
        "[4/4] datafirst run --link-only"]
    assert "built its clerical review queue" in out and "labelled" in out
    assert "staged  quarantined" in out and "Release (deidentified)" in out and "Release (synthetic)" in out
    assert {p.name for p in layout.releases.glob("LATEST_*")} == {"LATEST_deidentified", "LATEST_synthetic"}


def test_the_simulated_reviewer_imports_neither_the_io_manager_nor_pandera(tmp_path):
    """simulate-review runs in the demo's process between its two runs: the warehouse's table
    lookup it needs comes without the IO manager's imports (pandera, pandas: ~0.7 s of CPU)."""
    import sys

    code = ("import sys; from datafirst_assets.cli import main; "
            f"status = main(['simulate-review', '--data-dir', {str(tmp_path)!r}, '--truth-dir', {str(tmp_path / 'none')!r}]); "
            "print(status, sorted(m for m in ('pandera', 'datafirst_assets.warehouse.io_manager') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "1 []", result  # 1: no truth there, after the command's imports


def test_the_demo_starts_its_code_server_before_the_command_lines_heavy_imports(tmp_path):
    """The first run waits for the code server to load the code location: `datafirst demo` starts
    it before building its parser (polars, the simulator, linkage: ~0.5 s)."""
    import os
    import sys

    code = ("import subprocess, sys\n"
            "class Started(Exception): pass\n"
            "class Recorded(subprocess.Popen):\n"
            "    def __init__(self, args, *rest, **options):\n"
            "        print(sorted(m for m in ('polars', 'numpy', 'datafirst_assets.linkage.dedupe_cli') if m in sys.modules))\n"
            "        raise Started()\n"
            "subprocess.Popen = Recorded\n"
            "from datafirst_assets.cli import main\n"
            "try:\n"
            f"    main(['demo', '--data-dir', {str(tmp_path / 'data')!r}])\n"
            "except Started:\n"
            "    pass\n")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), LAUNCH_ENV: "code_location"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]", result
