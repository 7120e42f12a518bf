"""The synthetic stage in incremental runs costs what changed: an approved summary is kept while the
fresh one drifts within the refresh tolerance (synthetic/refresh.py), and with it the synthetic
tables, their report rows, the linking tables and the synthetic derived tables. Tolerance 0 gives
what a full rebuild gives on the same inputs; with the default, every synthetic table is still
exactly what the stored summaries draw, and a table that moved further is drawn as a full run would."""

import json
import math
import re

import polars as pl
import pytest
from dagster import AssetKey, AssetOut, DagsterInstance, Output, materialize, multi_asset

from datafirst_assets.defs.derived import derived_assets, derived_key
from datafirst_assets.defs.linkage import LinkageSettings
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.defs.synthetic import REPORT, SUMMARIES, SyntheticSettings, synthetic_assets, synthetic_key
from datafirst_assets.deidentify.release_spec import release_tables
from datafirst_assets.synthetic.fabricate import fabricate_release
from datafirst_assets.synthetic.generate import synthesise_release
from datafirst_assets.synthetic.refresh import drift, histogram_distance, total_variation
from datafirst_assets.synthetic.summaries import SummaryRules, summarise_one
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.io_manager import WarehouseIOManager

from datafirst_assets.defs.deidentify import deidentified_key

SMALL = ("magistrates", "hocas_all_offence")  # loses 0.5% of its rows: within the tolerance
LARGE = ("civil", "cases")  # a third of its claim types change: beyond it
REAL: dict = {}


@multi_asset(outs={f"{s}__{t}": AssetOut(key=deidentified_key(s, t), metadata={"schema": f"deidentified_{s}"})
                   for s, t in release_tables()})
def release():
    for (s, t) in release_tables():
        yield Output(REAL[(s, t)], output_name=f"{s}__{t}")


def _versions() -> dict[str, dict]:
    v1 = fabricate_release(2000, seed=3)
    small = {**v1, SMALL: v1[SMALL].filter(pl.int_range(pl.len()) % 200 != 7)}
    cases = v1[LARGE]
    changed = cases.with_columns(pl.when(pl.int_range(pl.len()) % 3 == 0).then(pl.lit(cases["claim_type"][0]))
                                 .otherwise(pl.col("claim_type")).alias("claim_type"))
    return {"v1": v1, "small": small, "both": {**small, LARGE: changed}}


def _run(folder, instance, tables: dict, *, mode: str = "incremental", tolerance: float = 0.02):
    REAL.clear()
    REAL.update(tables)
    database = str(folder / "warehouse.duckdb")
    result = materialize(
        [release, *synthetic_assets(defined=set(release.keys)), *derived_assets(("synthetic",))],
        instance=instance, raise_on_error=False,
        resources={"io_manager": WarehouseIOManager(database=database), "warehouse": Warehouse(database=database),
                   "synthetic": SyntheticSettings(data_dir=str(folder), seed=1, refresh_tolerance=tolerance),
                   "linkage": LinkageSettings(data_dir=str(folder), mode=mode)})
    assert result.success
    return {m.asset_key: m.materialization.metadata for m in result.get_asset_materialization_events()}


def _kept(metadata: dict) -> set[AssetKey]:
    return {key for key, m in metadata.items() if "unchanged" in m}


def _table(folder, schema: str, table: str) -> pl.DataFrame:
    with warehouse_cursor(folder / "warehouse.duckdb") as conn:
        return pl.from_arrow(conn.sql(f"select * from {schema}.{table} order by all").to_arrow_table())


def _synthetic(folder) -> dict:
    return {tid: _table(folder, f"synthetic_{tid[0]}", tid[1]) for tid in release_tables()}


def _doc(folder) -> dict:
    return json.loads((folder / "synthetic" / "summaries.json").read_text())


def _outputs(folder) -> dict:
    """Everything the synthetic stage publishes, to compare two runs by."""
    return {"summaries": (folder / "synthetic" / "summaries.json").read_text(), "tables": _synthetic(folder),
            "report": (folder / "reports" / "synthetic_report.md").read_text(),
            "journeys": _table(folder, "derived_synthetic", "person_journeys"),
            "profile": _table(folder, "derived_synthetic", "repeat_offending_profile")}


def _equal(a: dict, b: dict, *, real_rows: bool = True) -> None:
    """`real_rows=False`: the report's count of the real release's rows (now) may differ."""
    assert a["summaries"] == b["summaries"]
    drop = (lambda text: text) if real_rows else (lambda text: re.sub(r"real release: [\d,]+ rows", "", text))
    assert drop(a["report"]) == drop(b["report"])
    for tid in release_tables():
        assert a["tables"][tid].equals(b["tables"][tid]), tid
    assert a["journeys"].equals(b["journeys"]) and a["profile"].equals(b["profile"])


@pytest.fixture(scope="module")
def versions():
    return _versions()


def test_tolerance_zero_equals_a_full_rebuild_on_the_same_inputs(tmp_path, versions):
    full = tmp_path / "full"
    _run(full, DagsterInstance.ephemeral(), versions["both"], mode="full")
    incremental, instance = tmp_path / "incremental", DagsterInstance.ephemeral()
    _run(incremental, instance, versions["v1"], tolerance=0.0)
    second = _run(incremental, instance, versions["both"], tolerance=0.0)
    _equal(_outputs(incremental), _outputs(full))
    assert second[SUMMARIES]["kept_within_tolerance"].value == {}
    # datasets no extract touched keep their synthetic tables and report rows all the same
    assert synthetic_key("prison", "nomis_flatfile") in _kept(second)
    assert second[REPORT]["tables_compared"].value < len(release_tables())


def test_barely_changed_summaries_keep_the_synthetic_side_and_a_larger_change_is_drawn_again(tmp_path, versions):
    folder, instance = tmp_path / "incremental", DagsterInstance.ephemeral()
    _run(folder, instance, versions["v1"])
    first = _outputs(folder)

    small = _run(folder, instance, versions["small"])
    kept = small[SUMMARIES]["kept_within_tolerance"].value
    assert set(kept) == {"magistrates.hocas_all_offence"} and 0 < kept["magistrates.hocas_all_offence"] <= 0.02
    _equal(_outputs(folder), first, real_rows=False)  # the approved summaries: nothing published changes
    # every synthetic table, the linking tables, the report's rows and the derived tables: kept, not made again
    assert {synthetic_key(*tid) for tid in release_tables()} | {
        derived_key("synthetic", "person_journeys"), derived_key("synthetic", "repeat_offending_profile"),
        AssetKey(["catalogue", "synthetic", "derived"])} <= _kept(small)
    assert small[REPORT]["tables_compared"].value == 0

    both = _run(folder, instance, versions["both"])
    assert set(both[SUMMARIES]["kept_within_tolerance"].value) >= {"magistrates.hocas_all_offence"}
    now = _synthetic(folder)
    full = tmp_path / "full"
    _run(full, DagsterInstance.ephemeral(), versions["both"], mode="full")
    rebuilt = _synthetic(full)
    # the changed dataset is drawn as a full run draws it; the barely changed one keeps its tables
    for tid in release_tables():
        if tid[0] == "civil":
            assert now[tid].equals(rebuilt[tid]), tid
        if tid[0] == "magistrates":
            assert now[tid].equals(first["tables"][tid]), tid
    # whatever was kept, every synthetic table is what the stored summaries draw
    drawn = synthesise_release(_doc(folder), seed=1)
    for tid, frame in drawn.items():
        assert frame.sort(frame.columns, nulls_last=True).equals(
            now[tid].sort(now[tid].columns, nulls_last=True)), tid


def test_drift_measures_how_far_a_fresh_summary_moved(versions):
    rules = SummaryRules()
    approved = json.loads(json.dumps(summarise_one(SMALL, versions["v1"], rules)))
    assert drift(approved, approved) == 0.0
    fresh = json.loads(json.dumps(summarise_one(SMALL, versions["small"], rules)))
    assert 0 < drift(approved, fresh) <= 0.02
    cases = [json.loads(json.dumps(summarise_one(LARGE, v, rules))) for v in (versions["v1"], versions["both"])]
    assert drift(*cases) > 0.1
    other = json.loads(json.dumps(approved))
    other["columns"]["offence_date"]["kind"] = "integer"
    assert drift(approved, other) == math.inf  # another structure is never "close"
    assert total_variation({"a": 1, "b": 1}, {"a": 2}) == 0.5
    # bins spread over their range: a moved edge counts by the rows it moves
    assert histogram_distance([{"lo": 0, "hi": 10, "rows": 10}], [{"lo": 0, "hi": 4, "rows": 5},
                                                                  {"lo": 5, "hi": 10, "rows": 5}]) < 0.11
    assert histogram_distance([{"lo": "2020-01", "hi": "2020-01", "rows": 5}],
                              [{"lo": "2020-02", "hi": "2020-02", "rows": 5}]) == 1.0


def test_a_changed_case_lookup_is_drawn_again_without_the_cross_justice_lookup(tmp_path, versions):
    """The linking tables are drawn each from its own summary and inputs: a case lookup drawn again
    keeps the (large) cross-justice lookup, and both are what a full run on the same inputs draws."""
    v1 = versions["v1"]
    case_id = ("linking", "case_lookup")
    changed = {**v1, case_id: v1[case_id].filter(pl.int_range(pl.len()) % 3 != 0)}  # a third unlinked
    folder, instance = tmp_path / "incremental", DagsterInstance.ephemeral()
    _run(folder, instance, v1)
    before = _synthetic(folder)
    second = _run(folder, instance, changed)
    assert synthetic_key("linking", "xjs_lookup") in _kept(second)
    assert synthetic_key("linking", "case_lookup") not in _kept(second)
    assert second[synthetic_key("linking", "case_lookup")]["contract_passed"].value  # gated as drawn
    assert second[REPORT]["tables_compared"].value == 1  # the report compares the case lookup alone
    now = _synthetic(folder)
    assert now[("linking", "xjs_lookup")].equals(before[("linking", "xjs_lookup")])
    assert not now[case_id].equals(before[case_id])
    full = tmp_path / "full"
    _run(full, DagsterInstance.ephemeral(), changed, mode="full")
    _equal(_outputs(folder), _outputs(full))
    third = _run(folder, instance, changed)  # nothing new: both kept
    assert {synthetic_key("linking", "xjs_lookup"), synthetic_key("linking", "case_lookup")} <= _kept(third)
