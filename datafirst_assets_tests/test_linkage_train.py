"""Training, prediction and clustering on a small synthetic person file with truth."""

from __future__ import annotations

import json

import polars as pl
import pytest

from datafirst_assets.linkage.backend import make_db_api
from datafirst_assets.linkage.cluster import cluster_pairs, clusters_from_edges
from datafirst_assets.linkage.dedupe import deduplicate
from datafirst_assets.linkage.metrics import (
    choose_threshold_by_clusters,
    choose_threshold,
    evaluate_clusters,
    label_pairs_from_truth,
    true_pair_count,
)
from datafirst_assets.linkage.predict import linker_for_model, predict_pairs, slim_pairs
from datafirst_assets.linkage.settings import model_spec_for_records
from datafirst_assets.linkage.train import (
    bound_unobserved_u,
    EM_LEFTOVERS,
    splink_tables,
    TrainingConfig,
    load_model,
    save_charts,
    save_model,
    summary_table,
    train_model,
)
from datafirst_assets_tests.linkage_fixtures import make_dataset, make_people, make_person_records

FAST = TrainingConfig(u_max_pairs=4e5, seed=7)


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, pl.DataFrame]:
    return make_dataset(1200, seed=21)


@pytest.fixture(scope="module")
def trained(data):
    records, _ = data
    spec = model_spec_for_records(records)
    return train_model(records, spec, make_db_api(), FAST)


def test_training_produces_sensible_model(trained):
    s = trained.summary
    assert 1e-5 < s["probability_two_random_records_match"] < 1e-2
    weights = {(c["comparison"], lvl["level"]): lvl["match_weight"] for c in s["comparisons"] for lvl in c["levels"]}
    # agreement is evidence for a match, disagreement against
    assert weights[("dob", "Exact match on dob")] > 5
    assert weights[("surname", "Exact match on surname")] > 3
    assert weights[("pnc", "Exact match on pnc")] > 5
    assert weights[("dob", "All other comparisons")] < -5
    # m regularised: no level is a near-infinite veto
    assert min(w for w in weights.values() if w is not None) > -15
    table = summary_table(s)
    assert {"comparison", "level", "m", "u", "match_weight"} <= set(table.columns)
    # every level has m, u and a weight, rare ones ("within 2 edits") included: none shows blank
    assert table.filter(pl.any_horizontal(pl.col("m", "u", "match_weight").is_null())).is_empty(), table
    json.dumps(s)  # Dagster metadata must be JSON-serialisable
    assert set(trained.timings) >= {"prior", "u", "em"}


def test_training_leaves_no_em_tables_in_the_database(trained):
    """EM's blocked pairs and comparison vectors are dropped once a session ends: at 1M records
    they held ~0.5 GB through prediction and clustering (maximum RSS 1,987 -> 1,351 MiB for a dedupe)."""
    tables = splink_tables(trained.linker._db_api)
    assert tables, "the term-frequency tables prediction reuses are still there"
    assert not [t for t in tables if t.startswith(EM_LEFTOVERS)]
    # the linker still predicts on what is left
    assert predict_pairs(trained.linker, threshold_match_probability=0.5).as_pandas_dataframe(limit=5).shape[0]


def test_a_level_random_sampling_never_saw_gets_a_bounded_u(trained):
    comparison = next(c for c in trained.linker._settings_obj.comparisons if c.output_column_name == "pnc")
    level = next(lvl for lvl in comparison.comparison_levels if not lvl.is_null_level)
    original = level.u_probability
    level.u_probability = None  # as when no sampled pair falls at the level
    try:
        changed = bound_unobserved_u(trained.linker, 1e6)
        assert changed == [f"pnc: {level.label_for_charts}"]
        assert level.u_probability == pytest.approx(1e-6)
    finally:
        level.u_probability = original  # the module's model stays as trained


def test_cluster_quality_and_threshold_choice(data, trained):
    records, truth = data
    pairs_sdf = predict_pairs(trained.linker, threshold_match_probability=0.001)
    pairs = slim_pairs(pairs_sdf)
    assert {"record_id_l", "record_id_r", "match_weight", "match_probability"} <= set(pairs.columns)

    labelled = label_pairs_from_truth(pairs, truth)
    best = choose_threshold(labelled, total_positives=true_pair_count(truth))
    assert best["f1"] > 0.9
    clusters = cluster_pairs(trained.linker, pairs_sdf, threshold_match_probability=0.9)
    assert clusters.height == records.height and clusters.columns == ["source_dataset", "record_id", "cluster_id"]
    report = evaluate_clusters(clusters, truth)
    assert report["bcubed"]["f1"] >= 0.97, report["bcubed"]
    assert report["pairwise"]["precision"] >= 0.97
    assert set(report["subgroup_gaps"]) == {"sex", "ethnic_group", "age_band"}

    # polars connected components on the stored pairs agree with Splink's clustering
    edges = pairs.filter(pl.col("match_probability") >= 0.9)
    ours = clusters_from_edges(records.get_column("record_id"), edges)
    j = ours.join(clusters.select("record_id", pl.col("cluster_id").alias("cluster_id_splink")), on="record_id")
    assert j.group_by("cluster_id").agg(pl.col("cluster_id_splink").n_unique()).get_column(
        "cluster_id_splink").max() == 1
    assert ours.get_column("cluster_id").n_unique() == clusters.get_column("cluster_id").n_unique()

    by_clusters = choose_threshold_by_clusters(pairs, truth, candidates=(0.5, 0.9, 0.99))
    assert len(by_clusters["candidates"]) == 3 and by_clusters["f1"] >= 0.97
    assert by_clusters["f1"] == max(c["f1"] for c in by_clusters["candidates"])


def test_model_json_round_trip_and_charts(tmp_path, data, trained):
    records, _ = data
    path = save_model(trained, tmp_path / "model.json")
    loaded = load_model(path)
    assert loaded.version == trained.version
    linker = linker_for_model(make_db_api(), records, loaded.settings, loaded.spec)
    a = slim_pairs(predict_pairs(linker, threshold_match_probability=0.5)).sort("record_id_l", "record_id_r")
    b = slim_pairs(predict_pairs(trained.linker, threshold_match_probability=0.5)).sort("record_id_l", "record_id_r")
    assert a.select("record_id_l", "record_id_r").equals(b.select("record_id_l", "record_id_r"))
    assert a.get_column("match_weight").to_list() == pytest.approx(b.get_column("match_weight").to_list())

    charts = save_charts(trained.linker, tmp_path / "charts")
    for key in ("match_weights_chart", "m_u_parameters_chart"):
        html = charts[key].read_text()
        assert len(html) > 50_000  # vega libraries inlined
        assert "cdn.jsdelivr" not in html and "<script src=" not in html


def test_retraining_with_same_seed_keeps_version(data, trained):
    records, _ = data
    again = train_model(records, model_spec_for_records(records), make_db_api(), FAST)
    assert again.version == trained.version


def test_link_and_dedupe_two_sources():
    people = make_people(500, seed=3)
    a, ta = make_person_records(people.head(400), seed=4, source_dataset="court", id_prefix="C")
    b, tb = make_person_records(people.tail(300), seed=5, source_dataset="prison", id_prefix="P")
    b = b.drop("postcode", "address", "cro")  # sources differ in the fields they hold
    result = deduplicate([a, b], training=FAST, threshold_match_probability=0.9)
    cl = result.clusters
    assert result.model.settings["link_type"] == "link_and_dedupe"
    assert set(cl.columns) == {"source_dataset", "record_id", "cluster_id"}
    assert cl.height == a.height + b.height
    truth = pl.concat([ta, tb]).with_columns(
        pl.concat_str([pl.when(pl.col("record_id").str.starts_with("C")).then(pl.lit("court"))
                       .otherwise(pl.lit("prison")), pl.col("record_id")], separator=":").alias("record_id"))
    cl2 = cl.with_columns(pl.concat_str(["source_dataset", "record_id"], separator=":").alias("record_id"))
    report = evaluate_clusters(cl2, truth)
    assert report["bcubed"]["f1"] >= 0.95, report["bcubed"]
    cross = cl.group_by("cluster_id").agg(pl.col("source_dataset").n_unique().alias("k"))
    assert cross.filter(pl.col("k") == 2).height >= 150  # people 200-399 are in both


def test_prior_recall_comes_from_the_trained_agreement_when_the_rules_rest_on_postcode():
    """Sparse dates of birth: the prior's deterministic rule is forename, surname and postcode. People
    move, so its recall is the trained chance of agreeing exactly on each times the chance both
    records carry it, not an assumed 0.9 a field."""
    from datafirst_assets.linkage.settings import build_model_spec
    from datafirst_assets.linkage.train import exact_agreement_m, make_linker, recall_from_m

    fields = ["forename", "surname", "dob", "postcode", "address"]
    completeness = {"forename": 0.9, "surname": 1.0, "dob": 0.4, "postcode": 1.0, "address": 1.0}
    spec = build_model_spec(fields, completeness=completeness)
    assert "postcode" in spec.deterministic_rules[0]
    records = make_dataset(60, seed=2)[0].select("record_id", "source_dataset", *fields)
    linker = make_linker(make_db_api(), records, spec.settings, spec)
    # forename: both names agree (weighed by the full name), forename alone ...; surname: surname alone
    # (its "both agree" level is the forename's), ...
    m = {"forename": [0.5, 0.3, 0.04, 0.02, 0.01, 0.01, 0.01, 0.01], "surname": [0.4, 0.05, 0.02, 0.01, 0.02],
         "postcode": [0.55, 0.05, 0.1, 0.2, 0.1]}
    for comp in linker._settings_obj.comparisons:
        levels = [lvl for lvl in comp.comparison_levels if not lvl.is_null_level]
        for lvl, value in zip(levels, m.get(comp.output_column_name, [])):
            lvl.m_probability = value
    assert exact_agreement_m(linker, "postcode") == pytest.approx(0.55)
    assert exact_agreement_m(linker, "forename") == pytest.approx(0.8)
    assert exact_agreement_m(linker, "surname") == pytest.approx(0.5 + 0.5 * 0.4)  # both, or surname alone
    assert exact_agreement_m(linker, "pnc") is None  # not compared
    assert recall_from_m(linker, spec) == pytest.approx(0.9**2 * 0.8 * 0.7 * 0.55)


def test_rare_name_pairs_are_records_sharing_a_full_name_too_rare_to_share_by_chance():
    from datafirst_assets.linkage.train import rare_name_pairs

    common = [("JOHN", "SMITH")] * 30 + [("JOHN", f"S{i}") for i in range(2000)] + [("J", "RARE")] * 2
    names = common + [("ZEPHYRINE", "QUILLFEATHER")] * 2
    records = pl.DataFrame({"record_id": [f"r{i:04d}" for i in range(len(names))],
                            "source_dataset": "civil",
                            "forename": [f for f, _ in names], "surname": [s for _, s in names]})
    pairs = rare_name_pairs(records)
    # JOHN SMITH is common; J RARE is only an initial; the rare name's two records pair once
    assert pairs.rows() == [("civil", "r2032", "civil", "r2033")]
    assert rare_name_pairs(records, max_pairs=0).height == 0
    assert rare_name_pairs(records.drop("forename")).height == 0


def _sparse_dob_linker(n_names: int, moved_share: float):
    from datafirst_assets.linkage.settings import build_model_spec
    from datafirst_assets.linkage.train import make_linker

    fields = ["forename", "surname", "dob", "postcode", "address"]
    spec = build_model_spec(fields, completeness={"forename": 1.0, "surname": 1.0, "dob": 0.3, "postcode": 1.0,
                                                  "address": 1.0})
    rows = []
    for i in range(n_names):
        moved = i < n_names * moved_share
        for k in range(2):
            rows.append({"record_id": f"r{i:04d}{k}", "source_dataset": "civil", "forename": f"FORENAME{i}",
                         "surname": f"SURNAME{i}", "dob": None,
                         "postcode": ("ZE2 9XX" if moved and k else "AB1 2CD"),
                         "address": ("99 OTHER ROAD" if moved and k else f"{i} HIGH STREET")})
    rows += [{"record_id": f"s{i:04d}", "source_dataset": "civil", "forename": f"OTHER{i}", "surname": f"PERSON{i}",
              "dob": None, "postcode": "CD3 4EF", "address": f"{i} LOW STREET"} for i in range(1000)]
    records = pl.DataFrame(rows, schema_overrides={"dob": pl.Date})
    linker = make_linker(make_db_api(), records, spec.settings, spec)
    for comp in linker._settings_obj.comparisons:  # as EM left it on sparse data: nobody moves
        levels = [lvl for lvl in comp.comparison_levels if not lvl.is_null_level]
        for lvl in levels:
            lvl.m_probability = 0.001 if lvl is not levels[0] else 1 - 0.001 * (len(levels) - 1)
    return linker, records, spec


def _m(linker, comparison: str) -> list[float]:
    comp = next(c for c in linker._settings_obj.comparisons if c.output_column_name == comparison)
    return [lvl.m_probability for lvl in comp.comparison_levels if not lvl.is_null_level]


def test_moving_fields_m_comes_from_rare_name_pairs_when_dates_of_birth_are_sparse():
    """EM on sparse data learns that nobody moves (m of "postcode differs" 0.001); pairs sharing a rare
    full name show how often one person's postcode and address differ, and replace EM's m there."""
    from datafirst_assets.linkage.train import estimate_moving_m

    linker, records, spec = _sparse_dob_linker(300, moved_share=0.4)
    forename_before = _m(linker, "forename")
    assert estimate_moving_m(linker, records, spec)
    assert _m(linker, "postcode")[0] == pytest.approx(0.6)  # exact
    assert _m(linker, "postcode")[-1] == pytest.approx(0.4)  # all other comparisons
    assert _m(linker, "address")[-1] == pytest.approx(0.4)
    assert _m(linker, "forename") == pytest.approx(forename_before)  # EM's, untouched


def test_moving_fields_m_is_left_to_em_without_enough_rare_pairs_or_when_dates_of_birth_are_full():
    from datafirst_assets.linkage.settings import build_model_spec
    from datafirst_assets.linkage.train import estimate_moving_m

    linker, records, spec = _sparse_dob_linker(50, moved_share=0.4)  # 50 pairs: too few
    assert not estimate_moving_m(linker, records, spec)
    assert _m(linker, "postcode")[-1] == pytest.approx(0.001)
    full = build_model_spec(["forename", "surname", "dob", "postcode", "address"],
                            completeness={"dob": 0.95, "postcode": 1.0})
    assert "postcode" not in " ".join(full.deterministic_rules)
    linker, records, _ = _sparse_dob_linker(300, moved_share=0.4)
    assert not estimate_moving_m(linker, records, full)
    assert _m(linker, "postcode")[-1] == pytest.approx(0.001)


def test_u_pairs_scale_with_the_records_between_a_floor_and_a_cap():
    from datafirst_assets.linkage.train import u_pairs_for

    assert u_pairs_for(876) == 1e5  # the demo's smallest dataset: the floor
    assert u_pairs_for(12_787) == 127_870  # ten pairs a record
    assert u_pairs_for(13_000_000) == 1e7


def test_u_is_sampled_in_one_pass_only_while_the_sample_is_small():
    from datafirst_assets.linkage.train import TrainingConfig, u_chunks_for

    assert u_chunks_for(TrainingConfig(u_max_pairs=1e5)) == 1  # the demo: one query, not ten
    assert u_chunks_for(TrainingConfig(u_max_pairs=1e7)) is None  # Splink's passes, with their early stop
    assert u_chunks_for(TrainingConfig(u_max_pairs=1e5, u_num_chunks=4)) == 4  # asked for
