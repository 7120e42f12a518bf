"""An incremental cross-justice lookup sends to ``predict_between`` only the existing variants a
prediction blocking rule pairs with a new one (``incremental.blocked_with``), and scores exactly
the pairs it scored with every existing variant."""

from __future__ import annotations

from types import SimpleNamespace

import polars as pl

from datafirst_assets.linkage import incremental
from datafirst_assets.linkage.backend import make_db_api
from datafirst_assets.linkage.train import TrainedModel
from datafirst_assets.linkage.xjs import person_variants, records_with_persons
from datafirst_assets_tests.test_xjs_incremental import runs  # noqa: F401 (fixture)
from datafirst_assets_tests.xjs_fixtures import shared_small_linkage_inputs

RULES = [{"blocking_rule": 'l."surname" = r."surname"', "sql_dialect": "duckdb"}, 'l.pnc = r.pnc']


def _model(rules, link_type="link_only"):
    return SimpleNamespace(settings={"blocking_rules_to_generate_predictions": rules, "link_type": link_type},
                           spec=None)


def _frame(rows):
    return pl.DataFrame(rows, schema=["record_id", "source_dataset", "surname", "pnc"], orient="row")


NEW = _frame([("n1", "prison", "SMITH", None), ("n2", "probation", "JONES", "P9")])
EXISTING = _frame([
    ("e1", "probation", "SMITH", None),   # surname of n1, another dataset: kept
    ("e2", "prison", "SMITH", None),      # surname of n1, its dataset; of no other new record: dropped (link_only)
    ("e3", "prison", "BROWN", "P9"),      # pnc of n2: kept
    ("e4", "civil", "GREEN", None),       # nothing in common: dropped
    ("e5", "prison", "JONES", None),      # surname of n2, another dataset: kept
])


def test_only_existing_records_a_rule_pairs_with_a_new_one_are_kept():
    kept = incremental.blocked_with(EXISTING, NEW, _model(RULES))
    assert kept.get_column("record_id").to_list() == ["e1", "e3", "e5"]  # in their order, every column
    assert kept.columns == EXISTING.columns
    # dedupe models: a record of the new record's own dataset can pair with it
    assert incremental.blocked_with(EXISTING, NEW, _model(RULES, "dedupe_only")).get_column(
        "record_id").to_list() == ["e1", "e2", "e3", "e5"]


def test_rules_that_cannot_run_here_keep_every_existing_record():
    salted = [{"blocking_rule": 'l."surname" = r."surname"', "salting_partitions": 4}]
    exploding = [{"blocking_rule": 'l."surname" = r."surname"', "arrays_to_explode": ["surname"]}]
    spark = [{"blocking_rule": 'l."surname" = r."surname"', "sql_dialect": "spark"}]
    unknown_column = ['l."nickname" = r."nickname"']
    for rules in (salted, exploding, spark, unknown_column, []):
        assert incremental.blocked_with(EXISTING, NEW, _model(rules)).equals(EXISTING)


def test_scoring_only_the_blocked_existing_variants_gives_the_same_pairs(tmp_path_factory, runs, monkeypatch):  # noqa: F811
    """(The blocked scoring also hands the records over as arrow string views: the same scores.)"""
    _, inputs = shared_small_linkage_inputs(tmp_path_factory, people=2000, seed=1, extracts=2)
    doc, _ = runs[3]
    model = TrainedModel.from_json(doc)
    variants, vmap = person_variants(records_with_persons(inputs.person_records, inputs.clusters))
    rescore = variants.get_column("record_id").gather_every(40)
    between: list[int] = []
    real = incremental.register_records
    monkeypatch.setattr(incremental, "register_records", lambda db, frame, spec, name, **kw: (
        between.append(frame.height) if name == "existing_records" else None) or real(db, frame, spec, name=name, **kw))

    def scored(only_blocked: bool) -> pl.DataFrame:
        pairs = incremental.score_new_records(make_db_api(), model, variants, rescore, keep_above=0.01,
                                              only_blocked=only_blocked)
        return pairs.sort(pairs.columns)

    everything, blocked = scored(False), scored(True)
    assert everything.height > 0 and blocked.equals(everything)
    assert between[0] == variants.height - rescore.len() and between[1] < between[0] // 2
