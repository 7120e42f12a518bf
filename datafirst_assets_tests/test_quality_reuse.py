"""An incremental run keeps a dataset's quality estimates while few rows of its clusters, pairs and
records changed since they were made (linkage/quality_reuse.py), says so, and assesses it again
past the share, in full mode, or when what the estimates were made with changed."""

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, asset, materialize

from datafirst_assets.defs.linkage import QUALITY, LinkageSettings, linkage_key, linkage_quality
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.linkage.quality_reuse import Assessed, estimates_reusable, rows_changed_since
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.io_manager import WarehouseIOManager

N = 40


def _tables(source: str, extra: int = 0, extra_pair: bool = False) -> dict[str, pl.DataFrame]:
    ids = [f"{source}-{i}" for i in range(N + extra)]
    persons = [1 + i // 2 for i in range(N)] + [1 + N + i for i in range(extra)]
    pairs = [(ids[i], ids[i + 1], 9.0, 0.998) for i in range(0, N, 2)]
    if extra_pair:
        pairs.append((ids[1], ids[2], -2.0, 0.2))
    return {
        "clusters": pl.DataFrame({"record_id": ids, "model_version": ["v1"] * len(ids),
                                  "match_threshold": [0.9] * len(ids), SOURCES[source].person_id_name: persons,
                                  "record_hash": ["h"] * len(ids)}),
        "scored_pairs": pl.DataFrame(pairs, schema=["record_id_l", "record_id_r", "match_weight", "match_probability"],
                                     orient="row"),
        "person_records": pl.DataFrame({"record_id": ids, "source_dataset": [source] * len(ids),
                                        "extract_date": ["2024-01-31"] * len(ids)}),
    }


def _stub(source: str, name: str, frame: pl.DataFrame):
    @asset(key=linkage_key(source, name), metadata={"schema": f"linkage_{source}"})
    def _table() -> pl.DataFrame:
        return frame
    return _table


class Pipeline:
    """The quality asset over stub inputs written through the IO manager (so each write records its
    fingerprint and the rows it changed), on one instance."""

    def __init__(self, root, share: float):
        self.database, self.root = str(root / "wh.duckdb"), root
        self.instance = DagsterInstance.ephemeral()
        self.share = share
        self.write(*[(s, n, f) for s in SOURCES for n, f in _tables(s).items()])

    def resources(self, mode: str) -> dict:
        return {"io_manager": WarehouseIOManager(database=self.database), "warehouse": Warehouse(database=self.database),
                "linkage": LinkageSettings(data_dir=str(self.root), mode=mode, quality_refresh_share=self.share)}

    def write(self, *tables) -> None:
        assert materialize([_stub(*t) for t in tables], instance=self.instance,
                           resources=self.resources("incremental")).success

    def quality(self, mode: str = "incremental") -> tuple[pl.DataFrame, dict]:
        stubs = [_stub(s, n, pl.DataFrame()) for s in SOURCES for n in ("clusters", "scored_pairs", "person_records")]
        result = materialize([*stubs, linkage_quality], selection=[QUALITY], instance=self.instance,
                             resources=self.resources(mode))
        (event,) = [m for m in result.get_asset_materialization_events() if m.asset_key == QUALITY]
        with warehouse_cursor(self.database) as conn:
            table = pl.from_arrow(conn.sql("select * from linkage.quality order by source").to_arrow_table())
        return table, {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


ESTIMATES = ["estimated_pairwise_precision", "estimated_pairwise_recall", "estimated_bcubed_f1",
             "recommended_threshold"]


def _row(table: pl.DataFrame, source: str = "magistrates") -> dict:
    return table.filter(pl.col("source") == source).row(0, named=True)


def test_an_incremental_run_keeps_estimates_while_few_rows_changed_then_assesses_past_the_share(tmp_path):
    # 40 clusters rows + 20 pairs + 40 person records assessed: a share of 0.5 lets 50 rows change
    pipeline = Pipeline(tmp_path, share=0.5)
    first, meta = pipeline.quality()
    assert meta["estimates_kept"] == {}
    grown = _tables("magistrates", extra=1)  # one more record, a person of its own: 41 rows rewritten
    pipeline.write(("magistrates", "clusters", grown["clusters"]))
    kept, meta = pipeline.quality()
    (info,) = meta["estimates_kept"].values()
    assert list(meta["estimates_kept"]) == ["magistrates"] and info["rows_changed_since"] == N + 1
    assert info["rows_assessed"] == N + N // 2 + N
    assert _row(kept)["records"] == N + 1 and _row(kept)["persons"] == _row(first)["persons"] + 1
    assert {c: _row(kept)[c] for c in ESTIMATES} == {c: _row(first)[c] for c in ESTIMATES}
    assert "Estimates kept from an earlier run" in (tmp_path / "reports" / "linkage_quality.html").read_text()
    assert "Estimates of magistrates are kept from an earlier run" in (
        tmp_path / "reports" / "linkage_quality.md").read_text()
    full, meta = pipeline.quality(mode="full")  # the weekly rebuild assesses whatever the share
    assert meta["estimates_kept"] == {}
    # the same change again, counted since the assessment the full run made: kept
    pipeline.write(("magistrates", "person_records", grown["person_records"]))
    again, meta = pipeline.quality()
    assert meta["estimates_kept"]["magistrates"]["rows_changed_since"] == N + 1
    assert again.equals(full)
    # and a pair more: 41 + 21 rows since the full run's assessment, past 50: assessed again
    pipeline.write(("magistrates", "scored_pairs", _tables("magistrates", extra=1, extra_pair=True)["scored_pairs"]))
    assessed, meta = pipeline.quality()
    assert meta["estimates_kept"] == {} and "magistrates" in meta["computed"]
    assert assessed.equals(pipeline.quality(mode="full")[0])


def test_a_share_of_zero_or_other_labels_assess_every_changed_dataset(tmp_path):
    pipeline = Pipeline(tmp_path, share=0.0)
    pipeline.quality()
    pipeline.write(("magistrates", "clusters", _tables("magistrates", extra=1)["clusters"]))
    assert pipeline.quality()[1]["estimates_kept"] == {}
    pipeline.share = 0.5
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "magistrates.csv").write_text("record_id_l,record_id_r,clerical_match_score\n")
    pipeline.write(("magistrates", "clusters", _tables("magistrates", extra=2)["clusters"]))
    assert "magistrates" not in pipeline.quality()[1]["estimates_kept"]  # the labels file is not the assessed one


NOW = Assessed(run="r", at=0.0, model_version="v1", threshold=0.9, labels=None, configured=False, code="c", rows=100)


@pytest.mark.parametrize("field, value", [("model_version", "v2"), ("threshold", 0.8), ("labels", "abc"),
                                          ("configured", True), ("code", "d")])
def test_estimates_made_with_anything_else_are_not_reused(field, value):
    from dataclasses import replace

    assert estimates_reusable(NOW, now=NOW, changed=2, share=0.02)
    assert not estimates_reusable(replace(NOW, **{field: value}), now=NOW, changed=2, share=0.02)
    assert not estimates_reusable(NOW, now=NOW, changed=3, share=0.02)
    assert not estimates_reusable(NOW, now=NOW, changed=None, share=0.02)  # a write that did not say
    assert not estimates_reusable(None, now=NOW, changed=0, share=0.02)


def test_rows_changed_since_counts_every_write_and_knows_nothing_of_a_write_that_did_not_say(tmp_path):
    instance = DagsterInstance.ephemeral()
    resources = {"io_manager": WarehouseIOManager(database=str(tmp_path / "wh.duckdb"))}
    key = linkage_key("magistrates", "clusters")
    frame = _tables("magistrates")["clusters"]
    assert materialize([_stub("magistrates", "clusters", frame)], instance=instance, resources=resources).success
    assert materialize([_stub("magistrates", "clusters", frame.head(3))], instance=instance, resources=resources).success
    assert rows_changed_since(instance, [key], 0.0) == N + 3

    @asset(key=AssetKey(["linkage", "magistrates", "clusters"]))
    def unsaid():  # a materialization without the count (an older write)
        return 1

    assert materialize([unsaid], instance=instance).success
    assert rows_changed_since(instance, [key], 0.0) is None
