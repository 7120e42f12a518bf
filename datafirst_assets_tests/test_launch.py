"""What the CLI sends to launch a run from the code location (the browser test launches them for real)."""

import pytest
from dagster import AssetKey

from datafirst_assets.launch import CODE_LOCATION_MODULE, REPOSITORY, _launched_run_id, launch_params


def test_a_subset_is_launched_by_its_asset_keys_with_tags_and_config():
    params = launch_params("link_datasets", asset_selection=[AssetKey(["linkage", "prison", "review_queue"])],
                           tags={"datafirst/pid": "1"}, run_config={"loggers": {}})
    assert params["selector"] == {"repositoryLocationName": CODE_LOCATION_MODULE, "repositoryName": REPOSITORY,
                                  "jobName": "link_datasets",
                                  "assetSelection": [{"path": ["linkage", "prison", "review_queue"]}]}
    assert params["executionMetadata"]["tags"] == [{"key": "datafirst/pid", "value": "1"}]
    assert params["runConfigData"] == {"loggers": {}}
    assert "assetSelection" not in launch_params("ingest_extract")["selector"]  # the whole job


def test_a_refused_launch_says_why():
    assert _launched_run_id({"data": {"launchRun": {"__typename": "LaunchRunSuccess", "run": {"runId": "r1"}}}},
                            "link_datasets", "") == "r1"
    refused = {"data": {"launchRun": {"__typename": "InvalidSubsetError", "message": "no such asset"}}}
    with pytest.raises(RuntimeError, match="InvalidSubsetError.*no such asset"):
        _launched_run_id(refused, "link_datasets", "")
