"""The asset graph is pinned: keys, groups, dependencies, partitions, checks, kinds, descriptions,
jobs, sensors and schedules match the committed snapshot (`make snapshot` regenerates it), and
`dagster definitions validate` accepts the code location."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey

from datafirst_assets_tests.definitions_snapshot import (
    SNAPSHOT_PATH,
    current_definitions,
    differences,
    snapshot,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def defs():
    return current_definitions()


@pytest.fixture(scope="module")
def actual(defs):
    return snapshot(defs)


def test_definitions_match_the_committed_snapshot(actual):
    expected = yaml.safe_load(SNAPSHOT_PATH.read_text())
    diff = differences(expected, actual)
    assert not diff, "the asset graph changed; if intended, run `make snapshot` and commit:\n" + "\n".join(
        diff
    )


def test_snapshot_covers_every_part_of_the_graph(actual):
    staged = actual["assets"]["staged/magistrates/hocas_flatfile"]
    assert staged["group"] == "staged"
    assert staged["partitions"] == "dynamic:extract_date"
    assert "raw/magistrates/hocas_flatfile" in staged["deps"]
    assert staged["checks"] and staged["kinds"] and staged["description"]
    assert {"ingest_extract", "link_datasets", "refresh_downstream"} <= set(actual["jobs"])
    assert {"landing_sensor", "refresh_after_ingest"} <= set(actual["sensors"])
    assert "weekly_full_refresh" in actual["schedules"]


@pytest.mark.parametrize(
    "tamper, expected_line",
    [
        (lambda s: s["assets"].pop("staged/magistrates/hocas_flatfile"), "hocas_flatfile removed"),
        (lambda s: s["assets"]["staged/magistrates/hocas_flatfile"].update(group="raw"), ": group was"),
        (lambda s: s["assets"]["staged/magistrates/hocas_flatfile"]["checks"].pop(), ": checks was"),
        (lambda s: s["assets"]["staged/magistrates/hocas_flatfile"]["deps"].clear(), ": deps was"),
        (lambda s: s["sensors"]["landing_sensor"].update(default_status="STOPPED"), "default_status"),
    ],
)
def test_a_tampered_snapshot_is_reported(actual, tamper, expected_line):
    tampered = copy.deepcopy(actual)
    tamper(tampered)
    diff = differences(actual, tampered)  # the committed file against a graph that changed
    assert any(expected_line in line for line in diff), diff


def test_a_changed_group_in_the_definitions_is_caught(defs, actual):
    key = AssetKey(["staged", "magistrates", "hocas_flatfile"])
    moved = defs.map_resolved_asset_specs(
        func=lambda spec: spec.replace_attributes(group_name="elsewhere"), selection=[key]
    )
    diff = differences(actual, snapshot(moved))
    assert any("staged/magistrates/hocas_flatfile: group was 'staged', now 'elsewhere'" in d for d in diff), (
        diff
    )


def test_dagster_definitions_validate(tmp_path):
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr
