"""The over-merge guard on a hand-built chain, and the graph metrics of a clustering."""

from datetime import date

import numpy as np
import polars as pl

from datafirst_assets.linkage.cluster import clusters_from_edges
from datafirst_assets.linkage.guard import (
    chained_clusters,
    cluster_graph_metrics,
    conflicting_clusters,
    largest_clusters,
    dobs_compatible,
    split_conflicting_clusters,
)

# Two John Smiths, born years apart, chained through records without a date of birth:
# a1 - a2 (same man, dob keyed with day and month swapped) - x (no dob) - b1 - b2 (the other man).
RECORDS = pl.DataFrame({
    "record_id": ["a1", "a2", "x", "b1", "b2", "c1"],
    "dob": [date(1980, 3, 4), date(1980, 4, 3), None, date(1992, 11, 20), date(1992, 11, 21), date(1970, 1, 2)],
})
PAIRS = pl.DataFrame({
    "record_id_l": ["a1", "a2", "b1", "x", "a1"],
    "record_id_r": ["a2", "x", "b2", "b1", "b1"],
    "match_probability": [0.999, 0.97, 0.999, 0.95, 0.4],
})


def _chain():
    return clusters_from_edges(RECORDS["record_id"], PAIRS.filter(pl.col("match_probability") >= 0.9))


def test_dates_one_person_could_have():
    assert dobs_compatible(date(1980, 3, 4), date(1980, 4, 3))  # day/month swapped
    assert dobs_compatible(date(1980, 3, 4), date(1981, 3, 4))  # a slip in the year
    assert not dobs_compatible(date(1980, 3, 4), date(1992, 11, 20))


def test_the_guard_cuts_a_chain_between_conflicting_dates_of_birth():
    chained = _chain()
    assert chained.filter(pl.col("record_id").is_in(["a1", "b2"]))["cluster_id"].n_unique() == 1  # the chain
    assert conflicting_clusters(chained, RECORDS).to_list() == ["a1"]
    guarded = split_conflicting_clusters(chained, PAIRS, RECORDS, 0.9)
    label = dict(guarded.clusters.select("record_id", "cluster_id").iter_rows())
    assert label["a1"] == label["a2"] == label["x"]  # x goes with its strongest link (0.97 to a2)
    assert label["b1"] == label["b2"] != label["a1"]
    assert label["c1"] == "c1"  # untouched clusters keep their label
    assert (guarded.clusters_split, guarded.parts) == (1, 2)
    assert guarded.clusters.height == RECORDS.height
    # nothing to do when dates agree: the clustering comes back as it was
    same = split_conflicting_clusters(chained, PAIRS, RECORDS.with_columns(pl.lit(None, pl.Date).alias("dob")), 0.9)
    assert same.clusters_split == 0 and same.clusters.sort("record_id").equals(chained.sort("record_id"))


def test_graph_metrics_show_the_chain():
    metrics = cluster_graph_metrics(_chain(), PAIRS, 0.9)
    chain = metrics.row(0, named=True)
    assert (chain["records"], chain["links"], chain["bridges"]) == (5, 4, 4)  # a path: every link a bridge
    assert abs(chain["density"] - 0.4) < 1e-9
    assert metrics.filter(pl.col("cluster_id") == "c1")["density"].to_list() == [None]
    assert chained_clusters(metrics).is_empty()  # too small to call a chain
    # a 12-record path is a chain
    ids = [f"r{i:02d}" for i in range(12)]
    path = pl.DataFrame({"record_id_l": ids[:-1], "record_id_r": ids[1:], "match_probability": [0.99] * 11})
    long = cluster_graph_metrics(clusters_from_edges(ids, path), path, 0.9)
    assert long["bridges"].to_list() == [11] and chained_clusters(long).height == 1


def test_the_clusters_check_fails_on_an_oversized_cluster_through_dagster(tmp_path, monkeypatch):
    from dagster import DagsterInstance, SourceAsset, materialize

    from datafirst_assets.defs.linkage import LinkageSettings, build_dedupe_assets
    from datafirst_assets.linkage import guard
    from datafirst_assets.defs.resources import DataLayout, build_resources
    from datafirst_assets.sources.registry import SOURCES
    from datafirst_assets.warehouse.connection import warehouse_cursor
    from datafirst_assets_tests.linkage_fixtures import make_dataset

    source = "prison"
    records, _ = make_dataset(150, seed=3, source_dataset=source)
    layout = DataLayout(tmp_path / "data")
    person_records, model, cluster, _ = build_dedupe_assets(SOURCES[source])
    with warehouse_cursor(layout.warehouse) as conn:
        conn.execute(f"create schema if not exists linkage_{source}")
        arrow = records.with_columns(pl.lit("2024-01-31").alias("extract_date")).to_arrow()  # noqa: F841
        conn.execute(f"create or replace table linkage_{source}.person_records as select * from arrow")

    def run(threshold):
        linkage = LinkageSettings(data_dir=str(layout.root), thresholds={source: threshold}, u_max_pairs=3e5,
                                  mode="full")
        result = materialize([SourceAsset(key=person_records.key, metadata={"schema": f"linkage_{source}"}),
                              model, cluster], selection=[*model.keys, *cluster.keys],
                             instance=DagsterInstance.ephemeral(),
                             resources={**build_resources(layout), "linkage": linkage})
        check = {e.check_name: e for e in result.get_asset_check_evaluations()}["no_chained_clusters"]
        meta = next(m for m in result.asset_materializations_for_node(cluster.node_def.name)
                    if m.asset_key.path[-1] == "clusters").metadata
        return check, meta

    check, meta = run(0.9)
    largest = meta["largest_cluster_records"].value
    assert check.passed and largest >= 5 and "| records |" in meta["largest_clusters"].value
    # the same clustering, with a limit its largest person exceeds: the check fails and says where
    monkeypatch.setattr(guard, "MAX_CLUSTER_RECORDS", largest - 1)
    check, meta = run(0.9)
    assert not check.passed and check.metadata["chained_clusters"].value >= 1
    assert f"| {largest} |" in check.metadata["examples"].value


def test_parties_of_one_case_and_a_company_with_a_person_are_never_one_cluster():
    # p1 and p2 are two parties of case C1 (a mother and her daughter, same name and address,
    # no dates of birth) chained through p3; co is a company recorded as an individual,
    # linked to a person of the same surname.
    records = pl.DataFrame({
        "record_id": ["p1", "p2", "p3", "co", "q1"],
        "dob": [None, None, None, None, None],
        "case_id": ["C1", "C1", "C2", "C3", "C4"],
        "party_kind": ["PERSON", "PERSON", "PERSON", "COMPANY", "PERSON"],
    }, schema_overrides={"dob": pl.Date})
    pairs = pl.DataFrame({
        "record_id_l": ["p1", "p2", "co"],
        "record_id_r": ["p3", "p3", "q1"],
        "match_probability": [0.99, 0.95, 0.97],
    })
    chained = clusters_from_edges(records["record_id"], pairs)
    assert chained["cluster_id"].n_unique() == 2
    assert set(conflicting_clusters(chained, records).to_list()) == set(chained["cluster_id"].unique().to_list())
    label = dict(split_conflicting_clusters(chained, pairs, records, 0.9).clusters
                 .select("record_id", "cluster_id").iter_rows())
    assert label["p1"] == label["p3"] != label["p2"]  # p3 stays with its strongest link
    assert label["co"] != label["q1"]
    # without the case and kind columns the same clusters are left alone
    assert conflicting_clusters(chained, records.select("record_id", "dob")).is_empty()


def test_the_quality_report_shows_each_datasets_largest_clusters(tmp_path):
    from datafirst_assets.linkage.guard import largest_clusters_table
    from datafirst_assets.linkage.quality import quality_table, write_quality_report

    metrics = cluster_graph_metrics(_chain(), PAIRS, 0.9)
    table = largest_clusters_table({"family": largest_clusters(metrics, n=1), "civil": largest_clusters(metrics)})
    assert table["source"].to_list() == ["family", "civil", "civil"] and table["records"].to_list() == [5, 5, 1]
    row = {"source": "family", "records": 6, "persons": 2, "threshold": 0.9, "threshold_source": "model_estimate",
           "labels": 0}
    paths = write_quality_report(quality_table([row]), tmp_path, largest=table)
    assert "Largest clusters per dataset" in paths["html"].read_text()
    assert "| family | a1 | 5 | 4 |" in paths["markdown"].read_text()


def test_different_people_are_the_pairs_the_guards_rules_split():
    from datafirst_assets.linkage.guard import different_people

    records = pl.DataFrame({
        "record_id": ["a", "b", "c", "d", "e", "f"],
        "dob": [date(1980, 3, 4), date(1980, 4, 3), date(1992, 11, 20), None, date(1980, 3, 4), date(1980, 3, 4)],
        "case_id": ["k1", "k2", "k3", "k1", None, "k9"],
        "party_kind": ["person", "person", "person", "person", "person", "company"],
    })
    pairs = pl.DataFrame({"record_id_l": ["a", "a", "a", "a", "e", "x"],
                          "record_id_r": ["b", "c", "d", "e", "f", "a"]})
    # day/month swap: one person; years apart: two; one case: two; nothing against: one;
    # a company and a person: two; a record not in `records`: nothing known against
    assert different_people(pairs, records).to_list() == [False, True, True, False, True, False]
    assert different_people(pairs, records.select("record_id")).to_list() == [False] * 6


def _one_pass_roots(record_ids, left, right, probability, thresholds, records, dob_col="dob") -> dict:
    """The guard's definition, as a reference: one union-find pass over every link, one pair at a
    time, strongest first (ties by record), never joining parts that carry different people."""
    from datafirst_assets.linkage.disjoint_sets import DisjointSets
    from datafirst_assets.linkage.guard import UNIQUE_ID, _join_unless_different, _Part, _parts

    parts = _parts(pl.DataFrame({UNIQUE_ID: record_ids}, schema={UNIQUE_ID: pl.String}), records, dob_col)
    carried = [parts.get(r) or _Part() for r in record_ids]
    sets = DisjointSets(len(record_ids))
    order = np.lexsort((right, left, -probability))
    roots, position = {}, 0
    for t in sorted(thresholds, reverse=True):
        while position < len(order) and probability[order[position]] >= t:
            i = order[position]
            position += 1
            _join_unless_different(sets, carried, int(left[i]), int(right[i]))
        roots[t] = sets.roots()
    return roots


def test_the_threshold_sweep_guards_only_clusters_that_carry_two_people_and_matches_the_full_pass():
    from datafirst_assets.linkage.guard import guarded_components_at

    # a few people's dates, cases and kinds: enough clusters conflict, most do not
    ids, records, left, right, probability = _guarded_world(seed=3, n=2000, m=2600)
    thresholds = [0.5, 0.7, 0.9, 0.99]
    got = guarded_components_at(ids, left, right, probability, thresholds, records)
    full = _one_pass_roots(ids, left, right, probability, thresholds,
                           records.with_columns(pl.col("dob").cast(pl.Date)))
    assert list(got) == list(full) and all(np.array_equal(got[t], full[t]) for t in thresholds)
    # the guard did split something here, and left most clusters to the whole-array sweep
    plain = guarded_components_at(ids, left, right, probability, thresholds, records.select("record_id"))
    assert not np.array_equal(plain[0.5], got[0.5])


def test_the_largest_clusters_measured_alone_are_those_of_measuring_every_cluster():
    from datafirst_assets.linkage.guard import largest_cluster_metrics

    rng = np.random.default_rng(8)
    ids = [f"r{i:04d}" for i in range(1500)]
    # chains, stars and cliques of many sizes (ties in size included), links above and below 0.9
    edges = [(ids[i], ids[i + 1], float(rng.choice([0.95, 0.99, 0.5]))) for i in range(0, 1499) if rng.random() < 0.7]
    edges += [(ids[i], ids[i + 2], 0.97) for i in range(0, 1400, 7)]
    pairs = pl.DataFrame(edges, schema=["record_id_l", "record_id_r", "match_probability"], orient="row")
    clusters = clusters_from_edges(ids, pairs.filter(pl.col("match_probability") >= 0.9))
    for n in (1, 5, 40):
        assert largest_cluster_metrics(clusters, pairs, 0.9, n=n).equals(
            largest_clusters(cluster_graph_metrics(clusters, pairs, 0.9), n=n))


def _guarded_world(seed: int = 3, n: int = 2000, m: int = 800):
    """Records of a few dates, cases and kinds, and random links: small clusters, some carrying two people."""
    rng = np.random.default_rng(seed)
    ids = [f"r{i:05d}" for i in range(n)]
    dob = [date(1960 + int(y), int(mo), int(d)) if rng.random() < 0.8 else None
           for y, mo, d in zip(rng.integers(0, 40, n), rng.integers(1, 13, n), rng.integers(1, 29, n))]
    records = pl.DataFrame({"record_id": ids, "dob": dob,
                            "case_id": [f"C{c}" if rng.random() < 0.05 else None for c in rng.integers(0, 40, n)],
                            "party_kind": rng.choice(["PERSON"] * 30 + ["COMPANY"], n).tolist()})
    return ids, records, rng.integers(0, n, m), rng.integers(0, n, m), rng.choice([0.3, 0.6, 0.6, 0.95, 0.999], m)


def test_the_guarded_pass_kept_from_the_last_run_goes_again_only_through_clusters_that_changed():
    from datafirst_assets.linkage.guard import guarded_components_at, guarded_roots_keeping

    ids, records, left, right, probability = _guarded_world()
    thresholds = [0.5, 0.7, 0.9, 0.99]
    before = guarded_roots_keeping(ids, left, right, probability, thresholds, records)
    assert before.computed > 0 and before.joins["key_a"].n_unique() > 10  # several clusters guarded
    # the next extract: a record's date of birth corrected, a link re-scored, a new link, a link gone
    joined = before.joins.drop_nulls("record_id_l")
    moved = joined["record_id_l"][0]
    records = records.with_columns(pl.when(pl.col("record_id") == moved).then(pl.lit(date(1901, 1, 1)))
                                   .otherwise(pl.col("dob")).alias("dob"))
    probability = probability.copy()
    probability[5] = 0.97
    left, right = np.append(left[1:], 17), np.append(right[1:], 1700)
    probability = np.append(probability[1:], 0.96)
    kept = guarded_roots_keeping(ids, left, right, probability, thresholds, records, before.joins)
    fresh = guarded_roots_keeping(ids, left, right, probability, thresholds, records)
    whole = guarded_components_at(ids, left, right, probability, thresholds, records)
    for t in thresholds:
        assert np.array_equal(kept.roots[t], fresh.roots[t]) and np.array_equal(kept.roots[t], whole[t])
    assert 0 < kept.computed < fresh.computed / 4  # only the changed clusters' links went through it
    key = ["key_a", "key_b", "records", "links", "record_id_l", "record_id_r", "match_probability"]
    assert kept.joins.sort(key).equals(fresh.joins.sort(key))
    # and what it keeps serves the run after: nothing changed, nothing goes through the pass
    again = guarded_roots_keeping(ids, left, right, probability, thresholds, records, kept.joins)
    assert again.computed == 0 and all(np.array_equal(again.roots[t], whole[t]) for t in thresholds)
    assert again.joins is kept.joins  # kept as it was: the quality parts link its file, not write it again


def test_a_stale_or_foreign_kept_guard_pass_only_means_more_is_computed():
    from datafirst_assets.linkage.guard import guarded_components_at, guarded_roots_keeping

    ids, records, left, right, probability = _guarded_world(seed=5)
    thresholds = [0.5, 0.7, 0.9, 0.99]
    other = guarded_roots_keeping(*_guarded_world(seed=6)[:1], *_guarded_world(seed=6)[2:], thresholds,
                                  _guarded_world(seed=6)[1])
    got = guarded_roots_keeping(ids, left, right, probability, thresholds, records, other.joins)
    whole = guarded_components_at(ids, left, right, probability, thresholds, records)
    assert all(np.array_equal(got.roots[t], whole[t]) for t in thresholds)
    assert got.computed == guarded_roots_keeping(ids, left, right, probability, thresholds, records).computed
    # a file of another shape (another version's) is not read: every cluster goes through the pass
    foreign = guarded_roots_keeping(ids, left, right, probability, thresholds, records, pl.DataFrame({"x": [1]}))
    assert foreign.computed == got.computed and all(np.array_equal(foreign.roots[t], whole[t]) for t in thresholds)


def test_the_guard_keys_integer_cluster_labels_as_integers_and_finds_the_same_clusters():
    # the quality step's widest clusters are labelled by their root's position: kept as integers
    # rather than cast to text for every record, the same clusters conflict
    from datafirst_assets.linkage.guard import guarded_roots_keeping

    ids, records, left, right, probability = _guarded_world(seed=5)
    labels = np.arange(len(ids)) // 7
    as_text = pl.DataFrame({"record_id": ids, "cluster_id": [str(x) for x in labels]})
    as_int = pl.DataFrame({"record_id": ids, "cluster_id": labels})
    text = conflicting_clusters(as_text, records)
    number = conflicting_clusters(as_int, records, cluster_type=pl.Int64)
    assert number.dtype == pl.Int64 and text.len() > 5
    assert sorted(number.to_list()) == sorted(int(x) for x in text.to_list())
    # the ids as a list or as a Series: the same roots and joins
    thresholds = [0.5, 0.7, 0.9, 0.99]
    from_list = guarded_roots_keeping(ids, left, right, probability, thresholds, records)
    from_series = guarded_roots_keeping(pl.Series("record_id", ids), left, right, probability, thresholds, records)
    assert all(np.array_equal(from_list.roots[t], from_series.roots[t]) for t in thresholds)
    assert from_list.joins.equals(from_series.joins) and from_list.computed == from_series.computed


def test_the_largest_clusters_are_chosen_by_size_then_by_their_id_as_text():
    # the sizes are counted on the ids as they are and only the largest cast to text: ties are still
    # broken by the id as text (10 before 9), as when every id was cast
    from datafirst_assets.linkage.guard import cluster_graph_metrics, largest_cluster_metrics, largest_clusters

    sizes = {1: 3, 9: 4, 10: 4, 11: 4, 2: 1, 300: 4, 4: 2}
    ids = [f"r{c}_{i}" for c, k in sizes.items() for i in range(k)]
    people = [c for c, k in sizes.items() for _ in range(k)]
    clusters = pl.DataFrame({"record_id": ids, "person_id": people})
    pairs = pl.DataFrame({"record_id_l": ids[:-1], "record_id_r": ids[1:], "match_probability": [0.99] * (len(ids) - 1)})
    for n in (1, 2, 3, 5, 10):
        got = largest_cluster_metrics(clusters, pairs, 0.9, cluster_col="person_id", n=n)
        whole = largest_clusters(cluster_graph_metrics(clusters, pairs, 0.9, cluster_col="person_id"), n)
        assert got.equals(whole)
    assert largest_cluster_metrics(clusters, pairs, 0.9, cluster_col="person_id", n=3)["cluster_id"].to_list() == \
        ["10", "11", "300"]
    # labels named cluster_id, as integers
    named = clusters.rename({"person_id": "cluster_id"})
    assert largest_cluster_metrics(named, pairs, 0.9, n=2)["cluster_id"].to_list() == ["10", "11"]
