"""The saved asset selections the README documents resolve to what it says they select."""

from dagster import AssetKey, AssetSelection

from datafirst_assets.definitions import RESEARCH_RELEASE_SELECTION, defs, one_source_selection


def test_one_source_end_to_end_selects_that_source_in_every_stage():
    graph = defs.resolve_asset_graph()
    keys = AssetSelection.from_string(one_source_selection("magistrates")).resolve(graph)
    assert {k.path[1] for k in keys} == {"magistrates"}
    assert {"raw", "staged", "quarantine", "linkage", "linked", "deidentified", "synthetic"} <= {k.path[0] for k in keys}


def test_research_release_selection_is_the_release_and_all_it_is_built_from():
    graph = defs.resolve_asset_graph()
    keys = AssetSelection.from_string(RESEARCH_RELEASE_SELECTION).resolve(graph)
    release = AssetKey(["release", "deidentified"])
    assert keys == AssetSelection.assets(release).upstream().resolve(graph)
    assert {"raw", "staged", "linkage", "deidentified"} <= {k.path[0] for k in keys}
    assert not any(k.path[0].startswith("synthetic") for k in keys)
