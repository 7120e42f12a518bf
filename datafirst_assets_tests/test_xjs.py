"""Cross-justice person lookup: nested clustering, invariants, schema, metrics, accuracy."""

import random

import pandera.polars as pa
import polars as pl
import pytest

from datafirst_assets.linkage.case_link import build_case_link
from datafirst_assets.linkage.cluster import clusters_from_edges
from datafirst_assets.linkage.xjs import (
    LOOKUP_COLUMNS,
    XJS_LOOKUP_SCHEMA,
    build_xjs_lookup,
    check_lookup_invariants,
    nested_clusters,
    person_variants,
    records_with_persons,
)
from datafirst_assets.evaluation.truth import xjs_truth
from datafirst_assets.linkage.xjs_metrics import case_link_metrics, evaluate_xjs, xjs_markdown
from datafirst_assets_tests.xjs_fixtures import shared_small_linkage_inputs

LEVELS = ("high", "medium", "low")
T = (0.99, 0.9, 0.5)


def _edges(rows):
    return pl.DataFrame(rows, schema=["person_id_dataset_l", "person_id_dataset_r", "match_probability"],
                        orient="row")


def _nodes(keys):
    return pl.DataFrame({"person_id_dataset": keys, "source_dataset": [k.split(":")[0] for k in keys]})


def _as_lookup(clustered: pl.DataFrame) -> pl.DataFrame:
    """One record per node, so lookup checks apply to bare clusterings."""
    return clustered.select(
        "source_dataset", pl.col("person_id_dataset").alias("record_id"), "person_id_dataset",
        *[pl.col(f"cluster_{lv}").alias(f"person_id_{lv}") for lv in LEVELS])


def _nesting_problems(clustered: pl.DataFrame) -> list[str]:
    lk = _as_lookup(clustered)
    records = lk.select("source_dataset", "record_id")
    return [p for p in check_lookup_invariants(lk, records) if "nested" in p]


def _one_person_per_dataset(frame, cluster_col):
    per = frame.group_by(cluster_col).agg(pl.col("source_dataset").n_unique().alias("d"), pl.len().alias("n"))
    return bool((per["d"] == per["n"]).all())


def _components(nodes, edges, t):
    cc = clusters_from_edges(nodes, edges.filter(pl.col("match_probability") >= t),
                             left="person_id_dataset_l", right="person_id_dataset_r")
    return cc.rename({"record_id": "person_id_dataset"})


# ---------------------------------------------------------------- nesting by construction


def test_independent_clusterings_of_different_edge_sets_break_nesting_one_edge_set_cannot():
    """Scoring again for each threshold (another blocking pass, a retrained model, another
    variant aggregation) gives each threshold its own edge set; components then need not nest."""
    nodes = ["magistrates:1", "prison:1", "probation:1"]
    high_run = _edges([("magistrates:1", "prison:1", 0.995)])  # scored in the "high" run
    medium_run = _edges([("prison:1", "probation:1", 0.95),  # scored again: mag-prison now 0.85
                         ("magistrates:1", "prison:1", 0.85)])
    naive = (_components(nodes, high_run, 0.99).rename({"cluster_id": "cluster_high"})
             .join(_components(nodes, medium_run, 0.9).rename({"cluster_id": "cluster_medium"}),
                   on="person_id_dataset")
             .join(_components(nodes, medium_run, 0.5).rename({"cluster_id": "cluster_low"}),
                   on="person_id_dataset")
             .with_columns(pl.col("person_id_dataset").str.split(":").list.first().alias("source_dataset")))
    assert _nesting_problems(naive), "independent edge sets should break nesting here"

    # one edge set (every pair scored once, here the second run), clustered once, cut three times
    ours = nested_clusters(_nodes(nodes), medium_run, T)
    assert _nesting_problems(ours) == []
    assert ours["cluster_high"].n_unique() == 3 and ours["cluster_low"].n_unique() == 1


def test_splitting_same_dataset_conflicts_per_threshold_breaks_nesting_single_pass_does_not():
    """Per threshold: components, then refuse any component holding two persons of one
    dataset (split it up). At high, magistrates:1-prison:1 link; at medium prison:1 also
    reaches magistrates:2, the component conflicts and is split, so magistrates:1 and
    prison:1 are together at high but apart at medium."""
    keys = ["magistrates:1", "magistrates:2", "prison:1"]
    edges = _edges([("magistrates:1", "prison:1", 0.995), ("magistrates:2", "prison:1", 0.95)])

    def split_conflicts(t):
        cc = _components(keys, edges, t).with_columns(
            pl.col("person_id_dataset").str.split(":").list.first().alias("source_dataset"))
        conflict = cc.group_by("cluster_id").agg(
            (pl.col("source_dataset").n_unique() < pl.len()).alias("bad")).filter("bad")
        return cc.with_columns(pl.when(pl.col("cluster_id").is_in(conflict["cluster_id"].implode()))
                               .then(pl.col("person_id_dataset")).otherwise(pl.col("cluster_id"))
                               .alias("cluster_id"))

    naive = (split_conflicts(0.99).rename({"cluster_id": "cluster_high"})
             .join(split_conflicts(0.9).drop("source_dataset").rename({"cluster_id": "cluster_medium"}),
                   on="person_id_dataset")
             .join(split_conflicts(0.5).drop("source_dataset").rename({"cluster_id": "cluster_low"}),
                   on="person_id_dataset"))
    assert _nesting_problems(naive)

    ours = nested_clusters(_nodes(keys), edges, T).sort("person_id_dataset")
    assert _nesting_problems(ours) == []
    c = dict(zip(ours["person_id_dataset"], ours["cluster_medium"]))
    assert c["magistrates:1"] == c["prison:1"] != c["magistrates:2"]  # strongest edge wins
    assert ours["cluster_low"].n_unique() == 2  # magistrates:2 never joins (same dataset)


def test_same_dataset_persons_stay_apart_unless_asked_to_merge():
    keys = ["magistrates:1", "prison:7", "magistrates:2", "family:3"]
    edges = _edges([("magistrates:1", "prison:7", 0.999), ("magistrates:2", "prison:7", 0.97),
                    ("family:3", "magistrates:2", 0.95)])
    sep = nested_clusters(_nodes(keys), edges, T)
    assert _one_person_per_dataset(sep, "cluster_low")  # never two persons of one dataset together
    low = dict(zip(sep["person_id_dataset"], sep["cluster_low"]))
    assert low["magistrates:2"] == low["family:3"] != low["magistrates:1"]
    merged = nested_clusters(_nodes(keys), edges, T, same_group="merge")
    assert merged["cluster_medium"].n_unique() == 1


@pytest.mark.parametrize("seed", range(25))
def test_random_graphs_nest_and_merge_mode_equals_connected_components(seed):
    rng = random.Random(seed)
    keys = [f"{d}:{i}" for d in ("magistrates", "prison", "probation") for i in range(rng.randint(2, 12))]
    rows = []
    for _ in range(rng.randint(1, 60)):
        a, b = rng.sample(keys, 2)
        rows.append((a, b, rng.choice([0.2, 0.5, 0.7, 0.9, 0.95, 0.99, 0.999, rng.random()])))
    edges = _edges(rows)
    for mode in ("separate", "merge"):
        out = nested_clusters(_nodes(keys), edges, T, same_group=mode)
        assert out.height == len(keys)
        assert _nesting_problems(out) == []
        if mode == "separate":
            assert _one_person_per_dataset(out, "cluster_low")
        else:
            for lv, t in zip(LEVELS, T):
                cc = _components(keys, edges, t).join(out, on="person_id_dataset")
                # same partition: a one-to-one map between the two labellings
                pairs = cc.select("cluster_id", f"cluster_{lv}").unique().height
                assert pairs == cc["cluster_id"].n_unique() == cc[f"cluster_{lv}"].n_unique()


def test_thresholds_in_any_order_and_validation():
    keys = ["magistrates:1", "prison:1"]
    edges = _edges([("magistrates:1", "prison:1", 0.95)])
    out = nested_clusters(_nodes(keys), edges, (0.5, 0.99, 0.9), labels=("low", "high", "medium"))
    assert out["cluster_high"].n_unique() == 2 and out["cluster_medium"].n_unique() == 1
    with pytest.raises(ValueError, match="high >= medium >= low"):
        build_xjs_lookup({}, {}, thresholds=(0.5, 0.9, 0.99))


# ---------------------------------------------------------------------- variants and inputs


def test_variants_keep_every_name_and_dob_a_person_has_and_collapse_repeats():
    records = {"prison": pl.DataFrame({
        "record_id": ["a", "b", "c", "d"], "source_dataset": ["prison"] * 4,
        "forename": ["JANE", "JANE", "JANE", "BOB"], "surname": ["SMITH", "SMITH", "JONES", "BROWN"],
        "dob": pl.Series(["1990-01-02", "1990-01-02", "1990-02-01", "1980-05-05"]).str.to_date()})}
    clusters = {"prison": pl.DataFrame({"record_id": ["a", "b", "c", "d"],
                                        "estimated_offender_id": [1, 1, 1, 2]})}
    recs = records_with_persons(records, clusters)
    assert recs["person_id_dataset"].to_list() == ["prison:1"] * 3 + ["prison:2"]
    variants, vmap = person_variants(recs)
    assert variants.height == 3  # a and b are one variant; c (maiden name, swapped dob) stays
    assert vmap.filter(pl.col("person_id_dataset") == "prison:1").height == 2
    assert variants["record_id"].n_unique() == 3
    with pytest.raises(ValueError, match="no per-dataset person id"):
        records_with_persons(records, {"prison": clusters["prison"].head(3)})


# ------------------------------------------------------------------------ invariants


def _tiny_lookup():
    records = {"magistrates": pl.DataFrame({"record_id": ["1", "2", "3"]}),
               "prison": pl.DataFrame({"record_id": ["9"]})}
    lookup = pl.DataFrame({
        "source_dataset": ["magistrates", "magistrates", "magistrates", "prison"],
        "record_id": ["1", "2", "3", "9"],
        "person_id_dataset": ["magistrates:1", "magistrates:1", "magistrates:2", "prison:1"],
        "person_id_high": [1, 1, 2, 3], "person_id_medium": [1, 1, 2, 1], "person_id_low": [1, 1, 2, 1],
    })
    return lookup, records


def test_invariants_pass_on_a_sound_lookup_and_schema_validates():
    lookup, records = _tiny_lookup()
    assert check_lookup_invariants(lookup, records) == []
    XJS_LOOKUP_SCHEMA.validate(lookup)


def _set(lk, record_id, col, value):
    """The lookup with one cell changed."""
    return lk.with_columns(pl.when(pl.col("record_id") == record_id).then(pl.lit(value, lk.schema[col]))
                           .otherwise(pl.col(col)).alias(col))


@pytest.mark.parametrize("breakage, message", [
    (lambda lk: _set(lk, "2", "person_id_medium", 5), "map to several person_id_medium"),
    (lambda lk: _set(lk, "9", "person_id_low", 7), "not nested"),
    (lambda lk: _set(lk, "3", "person_id_high", 1), "not nested"),
    (lambda lk: lk.filter(pl.col("record_id") != "3"), "have no lookup row"),
    (lambda lk: pl.concat([lk, lk.head(1)]), "share a (source_dataset, record_id)"),
    (lambda lk: _set(lk, "9", "record_id", "99"), "reference no existing person record"),
    (lambda lk: _set(lk, "9", "person_id_dataset", "magistrates:1"), "not of their dataset"),
    (lambda lk: lk.with_columns(pl.lit(None, pl.Int64).alias("person_id_low")), "null value"),
])
def test_invariants_catch_broken_lookups(breakage, message):
    lookup, records = _tiny_lookup()
    broken = breakage(lookup)
    problems = check_lookup_invariants(broken, records)
    assert any(message in p for p in problems), problems


def test_schema_rejects_a_lookup_that_does_not_nest():
    lookup, _ = _tiny_lookup()
    broken = _set(lookup, "9", "person_id_low", 7)
    with pytest.raises(pa.errors.SchemaErrors) as err:
        XJS_LOOKUP_SCHEMA.validate(broken, lazy=True)
    assert "medium_nests_in_low" in str(err.value)


# --------------------------------------------------------------------------- metrics


def test_metrics_on_a_hand_computed_example():
    # truth: X = {a1, b1} (F), Y = {a2, b2} (M); predicted: {a1, b1, b2}, {a2}
    lookup = pl.DataFrame({
        "source_dataset": ["a", "a", "b", "b"], "record_id": ["1", "2", "1", "2"],
        "person_id_dataset": ["a:1", "a:2", "b:1", "b:2"],
        "person_id_high": [1, 2, 3, 4], "person_id_medium": [1, 2, 1, 1], "person_id_low": [1, 2, 1, 1],
    })
    truth = pl.DataFrame({"source_dataset": ["a", "a", "b", "b"], "record_id": ["1", "2", "1", "2"],
                          "person_id": ["X", "Y", "X", "Y"], "sex": ["F", "M", "F", "M"],
                          "ethnic_group": ["White"] * 4, "age_band": ["25-34"] * 4})
    ev = evaluate_xjs(lookup, truth, thresholds=T)
    o = {(r["level"], r["scope"]): r for r in ev["overall"].iter_rows(named=True)}
    med = o[("medium", "all_pairs")]
    assert med["pairwise_precision"] == pytest.approx(1 / 3)
    assert med["pairwise_recall"] == pytest.approx(1 / 2)
    assert med["bcubed_precision"] == pytest.approx(2 / 3) and med["bcubed_recall"] == pytest.approx(3 / 4)
    assert med["bcubed_f1"] == pytest.approx(12 / 17)
    cross = o[("medium", "cross_dataset_pairs")]
    assert cross["pairwise_precision"] == pytest.approx(1 / 2)
    assert cross["pairwise_recall"] == pytest.approx(1 / 2)
    high = o[("high", "all_pairs")]  # all singletons: nothing predicted, nothing found
    assert high["pairwise_precision"] == 1.0 and high["pairwise_recall"] == 0.0
    assert high["bcubed_precision"] == 1.0 and high["bcubed_recall"] == pytest.approx(1 / 2)
    pairs = {(r["level"], r["dataset_l"], r["dataset_r"]): r
             for r in ev["by_dataset_pair"].iter_rows(named=True)}
    ab = pairs[("medium", "a", "b")]
    assert (ab["tp"], ab["predicted_pairs"], ab["true_pairs"]) == (1, 2, 2)
    bb = pairs[("medium", "b", "b")]
    assert (bb["tp"], bb["predicted_pairs"], bb["true_pairs"]) == (0, 1, 0) and bb["pairwise_recall"] is None
    sub = {(r["level"], r["subgroup"], r["group"]): r for r in ev["by_subgroup"].iter_rows(named=True)}
    assert sub[("medium", "sex", "F")]["bcubed_precision"] == pytest.approx(2 / 3)
    assert sub[("medium", "sex", "F")]["bcubed_recall"] == pytest.approx(1.0)
    assert sub[("medium", "sex", "M")]["bcubed_precision"] == pytest.approx(2 / 3)
    assert sub[("medium", "sex", "M")]["bcubed_recall"] == pytest.approx(1 / 2)
    assert "Cross-justice lookup" in xjs_markdown(ev)


def test_case_link_metrics_hand_computed():
    truth = pl.DataFrame({"defendant_case_id": ["m1", "m2", "m3", "m4"],
                          "defendant_on_case_id": ["c1", "c2", "c3", "c4"],
                          "case_type": ["SENT_FOR_TRIAL", "SENT_FOR_TRIAL", "APPEAL", "APPEAL"]})
    links = pl.DataFrame({"defendant_case_id": ["m1", "m2", "m9"], "defendant_on_case_id": ["c1", "c2", "c3"],
                          "case_type": ["SENT_FOR_TRIAL", "SENT_FOR_TRIAL", "APPEAL"]})
    m = {r["case_type"]: r for r in case_link_metrics(links, truth).iter_rows(named=True)}
    assert m["all"]["precision"] == pytest.approx(2 / 3) and m["all"]["recall"] == pytest.approx(1 / 2)
    assert m["SENT_FOR_TRIAL"]["precision"] == 1.0 and m["SENT_FOR_TRIAL"]["recall"] == 1.0
    assert m["APPEAL"]["precision"] == 0.0 and m["APPEAL"]["recall"] == 0.0


# ------------------------------------------------------------- on a simulated population


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    sim, inputs = shared_small_linkage_inputs(tmp_path_factory, people=2000, seed=1, extracts=2)
    result = build_xjs_lookup(inputs.person_records, inputs.clusters)
    return sim, inputs, result


def test_lookup_is_sound_on_simulated_data(world):
    _, inputs, result = world
    lookup = result.lookup
    assert lookup.columns == list(LOOKUP_COLUMNS)
    assert check_lookup_invariants(lookup, inputs.person_records) == []
    XJS_LOOKUP_SCHEMA.validate(lookup)
    assert lookup.height == sum(f.height for f in inputs.person_records.values())
    assert set(lookup["source_dataset"].unique()) == set(inputs.person_records)
    n = [lookup[f"person_id_{lv}"].n_unique() for lv in LEVELS]
    assert n[0] >= n[1] >= n[2]  # nested: fewer, larger persons at lower thresholds
    # per-dataset dedupe is the authority: never two persons of one dataset in one person
    persons = lookup.select("source_dataset", "person_id_dataset", "person_id_low").unique()
    assert _one_person_per_dataset(persons, "person_id_low")


def test_edges_are_cross_dataset_person_pairs(world):
    _, _, result = world
    e = result.edges
    assert e.height > 0
    assert (e["source_dataset_l"] != e["source_dataset_r"]).all()
    assert (e["person_id_dataset_l"] < e["person_id_dataset_r"]).all()
    assert e.select("person_id_dataset_l", "person_id_dataset_r").is_unique().all()
    assert e["match_probability"].min() >= result.thresholds[2]
    strong = e.filter(pl.col("match_probability") >= result.thresholds[0])
    # an edge at the high threshold is linked at high unless the dataset constraint refused it
    assert strong.filter(pl.col("linked_at") == "high").height >= 0.9 * strong.height


def test_accuracy_floor_on_simulated_data(world):
    sim, _, result = world
    ev = evaluate_xjs(result.lookup, xjs_truth(sim.truth_dir), thresholds=result.thresholds)
    overall = ev["overall"].filter(pl.col("scope") == "all_pairs")
    b3 = dict(zip(overall["level"], overall["bcubed_f1"]))
    assert b3["medium"] >= 0.95, ev["overall"]
    assert min(b3.values()) >= 0.93
    assert ev["by_dataset_pair"].height == 3 * 28  # 7 datasets: 21 pairs + 7 within, per level
    assert set(ev["by_subgroup"]["subgroup"].unique()) == {"sex", "ethnic_group", "age_band"}


def test_case_link_with_the_person_link_on_simulated_data(world):
    sim, inputs, result = world
    links = build_case_link(inputs.hocas, inputs.xhibit, person_link=result.lookup)
    m = case_link_metrics(links, pl.read_parquet(sim.truth_dir / "case_links.parquet")).row(0, named=True)
    assert m["case_type"] == "all" and m["precision"] >= 0.99 and m["recall"] >= 0.97, m
    assert links["keys_agreed"].str.contains("person").mean() > 0.9


def test_lookup_clusters_in_duckdb_equal_the_union_find_on_simulated_data(world):
    _, _, result = world
    persons = result.persons.select("source_dataset", "person_id_dataset")
    in_python = nested_clusters(persons, result.edges, result.thresholds)
    in_duckdb = result.persons.select("person_id_dataset", *[pl.col(f"person_id_{lv}").alias(f"cluster_{lv}")
                                                             for lv in LEVELS])
    assert in_duckdb.equals(in_python.select("person_id_dataset", *[f"cluster_{lv}" for lv in LEVELS]))
    assert result.stats["clustering_components"] > 0


def test_the_saved_model_is_reused_and_gives_the_lookup_its_training_run_gave(world):
    _, inputs, result = world
    saved = (result.model.to_json(), result.stats["variants"])
    again = build_xjs_lookup(inputs.person_records, inputs.clusters, saved_model=saved)
    assert "reused" in again.model.timings and again.model.version == result.model.version
    assert again.lookup.equals(result.lookup) and again.edges.equals(result.edges)
    # grown past retrain_growth times what it was trained on: trained afresh
    grown = build_xjs_lookup(inputs.person_records, inputs.clusters, saved_model=(saved[0], saved[1] // 3))
    assert "reused" not in grown.model.timings


def test_pair_counts_by_dataset_pair_from_one_grouping_equal_counting_each_pair_apart():
    """Every dataset pair's record pairs in one grouping (`_pair_counts_by_datasets`) against the
    pairs counted for each (a, b) on its own, on random groups, a dataset absent and no records."""
    import numpy as np

    from datafirst_assets.linkage.xjs_metrics import _pair_counts_by_datasets

    rng = np.random.default_rng(5)
    n = 400
    j = pl.DataFrame({"source_dataset": rng.choice(["civil", "family", "prison"], n).tolist(),
                      "cluster_id": rng.integers(0, 60, n).astype(str).tolist(),
                      "person_id": rng.integers(0, 50, n).astype(str).tolist()})
    datasets = ["civil", "family", "oasys", "prison"]  # oasys has no record

    def apart(frame, by, a, b):
        c = (frame.filter(pl.col("source_dataset").is_in([a, b])).group_by(by)
             .agg((pl.col("source_dataset") == a).sum().alias("na"), (pl.col("source_dataset") == b).sum().alias("nb")))
        na, nb = c["na"].to_numpy().astype(int), c["nb"].to_numpy().astype(int)
        return int((na * (na - 1) // 2).sum() if a == b else (na * nb).sum())

    for by in (["cluster_id", "person_id"], ["cluster_id"], ["person_id"]):
        counts = _pair_counts_by_datasets(j, by, datasets)
        assert counts == {(a, b): apart(j, by, a, b) for i, a in enumerate(datasets) for b in datasets[i:]}
        assert counts[("civil", "prison")] > 0 and counts[("civil", "civil")] > 0
        assert set(_pair_counts_by_datasets(j.clear(), by, datasets).values()) == {0}
