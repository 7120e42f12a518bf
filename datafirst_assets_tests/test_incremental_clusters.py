"""An incremental link's clustering, guard and carried ids worked out on the affected records only
(`incremental.cluster_and_carry`) give exactly what working on every record gives (the reference
below: main's way before, every record re-labelled, guarded and carried), on random worlds: records
come, go and change, clusters merge and split, the guard splits people, ids are minted and retired."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pytest
from dagster import DagsterInstance, SourceAsset, materialize

from datafirst_assets.defs.linkage import LinkageSettings, build_dedupe_assets
from datafirst_assets.defs.resources import DataLayout, build_resources
from datafirst_assets.linkage.cluster import clusters_from_edges
from datafirst_assets.linkage.quality_parts import graph_digest, load_graph, save_graph
from datafirst_assets.linkage.guard import cluster_graph_metrics, split_conflicting_clusters
from datafirst_assets.linkage.incremental import PreviousLink, cluster_and_carry, component_labels
from datafirst_assets.linkage.stable_ids import carry_forward_ids
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets_tests.linkage_fixtures import make_dataset

THRESHOLD = 0.5
DOBS = [dt.date(1980, 1, 2), dt.date(1980, 2, 1), dt.date(1975, 6, 7), dt.date(1990, 11, 12), None]


def _reference(previous: PreviousLink, record_ids: pl.Series, pairs: pl.DataFrame, records: pl.DataFrame,
               threshold: float, touched: pl.Series):
    """Main's incremental clustering (00e92e5), over every record: the affected set grown to a fixed
    point, its components by a union per edge, every other record labelled by its previous person,
    then the guard and the carried ids over all of them."""
    ids = pl.DataFrame({"record_id": record_ids.cast(pl.String)})
    links = pairs.filter(pl.col("match_probability") >= threshold).select("record_id_l", "record_id_r")
    prev = previous.ids()
    affected = pl.DataFrame({"record_id": touched.cast(pl.String)}).unique()
    while True:
        left = links.join(affected, left_on="record_id_l", right_on="record_id", how="semi").select(
            pl.col("record_id_r").alias("record_id"))
        right = links.join(affected, left_on="record_id_r", right_on="record_id", how="semi").select(
            pl.col("record_id_l").alias("record_id"))
        reach = pl.concat([affected, left, right]).unique()
        persons = prev.join(reach, on="record_id", how="semi").select("person_id").unique()
        grown = pl.concat([reach, prev.join(persons, on="person_id", how="semi").select("record_id")]).unique()
        if grown.height == affected.height:
            break
        affected = grown
    affected = affected.join(ids, on="record_id", how="semi")
    inner = (links.join(affected, left_on="record_id_l", right_on="record_id", how="semi")
             .join(affected, left_on="record_id_r", right_on="record_id", how="semi"))
    redone = clusters_from_edges(affected["record_id"], inner).with_columns(
        pl.concat_str([pl.lit("r:"), pl.col("cluster_id")]).alias("cluster_id"))
    kept = (ids.join(affected, on="record_id", how="anti").join(prev, on="record_id", how="left")
            .select("record_id", pl.concat_str([pl.lit("p:"), pl.col("person_id").cast(pl.String)]).alias("cluster_id")))
    guarded = split_conflicting_clusters(pl.concat([kept, redone]), pairs, records, threshold)
    carried = carry_forward_ids(prev, guarded.clusters, first_new_id=previous.next_id())
    return carried, guarded, affected.height


def _record(rng: random.Random, record_id: str) -> dict:
    return {"record_id": record_id, "dob": rng.choice(DOBS), "case_id": rng.choice(["C1", "C2", "C3", None, None]),
            "party_kind": "COMPANY" if rng.random() < 0.05 else "PERSON"}


def _pairs(rng: random.Random, ends: list[str], others: list[str], n: int) -> list[dict]:
    out = []
    for _ in range(n):
        a, b = rng.choice(ends), rng.choice(others)
        if a != b:
            out.append({"record_id_l": min(a, b), "record_id_r": max(a, b), "match_weight": 0.0,
                        "match_probability": rng.choice([0.2, 0.55, 0.6, 0.9, 0.95, 0.99, rng.random()])})
    return out


def _world(seed: int):
    """A previous link (guarded clusters of random pairs, ids carried from an earlier one so that
    they are not 1..n, and a change history holding higher, retired ids), then a new state: records
    new, removed and changed, the pairs touching those replaced by freshly scored ones."""
    rng = random.Random(seed)
    n = rng.randint(20, 120)
    names = rng.sample(range(100, 999), n + 40)
    ids = [f"R{x}" for x in names[:n]]
    records = pl.DataFrame([_record(rng, r) for r in ids])
    pairs = pl.DataFrame(_pairs(rng, ids, ids, int(n * rng.uniform(0.6, 1.6)))).unique(
        ["record_id_l", "record_id_r"], keep="first", maintain_order=True)
    first = carry_forward_ids(None, component_labels(records["record_id"], pairs.filter(
        pl.col("match_probability") >= 0.9)), first_new_id=rng.randint(1, 50))
    clusters = clusters_from_edges(records["record_id"], pairs.filter(pl.col("match_probability") >= THRESHOLD))
    guarded = split_conflicting_clusters(clusters, pairs, records, THRESHOLD)
    start = first.next_id + rng.randint(0, 5)
    linked = carry_forward_ids(first.ids, guarded.clusters, first_new_id=start)
    history = pl.DataFrame({"old_id": [start + 7], "new_id": [None], "kind": ["retired"], "records": [1]},
                           schema={"old_id": pl.Int64, "new_id": pl.Int64, "kind": pl.String, "records": pl.Int64})
    previous = PreviousLink(clusters=linked.ids, pairs=pairs, changes=history)

    removed = rng.sample(ids, rng.randint(0, max(1, n // 10)))
    changed = rng.sample([r for r in ids if r not in removed], rng.randint(0, max(1, n // 10)))
    new = [f"R{x}" if rng.random() < 0.7 else f"A{x}" for x in names[n:n + rng.randint(0, 12)]]
    staying = [r for r in ids if r not in removed]
    now = pl.concat([records.filter(pl.col("record_id").is_in(staying) & ~pl.col("record_id").is_in(changed)),
                     pl.DataFrame([_record(rng, r) for r in changed + new], schema=records.schema)])
    touched = pl.Series("record_id", new + changed + removed, dtype=pl.String)
    current = staying + new
    fresh = _pairs(rng, changed + new, current, 3 * len(changed + new)) if changed + new else []
    kept = pairs.filter(~pl.col("record_id_l").is_in(touched.implode()) & ~pl.col("record_id_r").is_in(touched.implode()))
    pairs_now = pl.concat([kept, pl.DataFrame(fresh, schema=pairs.schema)]).unique(
        ["record_id_l", "record_id_r"], keep="first", maintain_order=True)
    return previous, now, pairs_now, touched


@pytest.mark.parametrize("seed", range(60))
def test_working_on_the_affected_records_only_gives_what_working_on_every_record_gives(seed):
    previous, records, pairs, touched = _world(seed)
    want, want_guard, want_count = _reference(previous, records["record_id"], pairs, records, THRESHOLD, touched)

    got, got_guard, got_count, _ = cluster_and_carry(previous, records["record_id"], pairs, records, THRESHOLD, touched)

    assert got.ids.equals(want.ids)
    assert got.changes.equals(want.changes)
    assert got.next_id == want.next_id
    assert got_guard.stats == want_guard.stats
    assert got_count == want_count



@pytest.mark.parametrize("seed", range(0, 60, 4))
def test_a_moved_threshold_re_clusters_every_record_as_before(seed):
    """With ``everything`` (the threshold moved) every record is re-clustered (components in
    whole-array steps), guarded and carried, as main did with a union per edge."""
    previous, records, pairs, touched = _world(seed)
    clusters = clusters_from_edges(records["record_id"], pairs.filter(pl.col("match_probability") >= 0.6))
    guarded = split_conflicting_clusters(clusters, pairs, records, 0.6)
    want = carry_forward_ids(previous.ids(), guarded.clusters, first_new_id=previous.next_id())

    got, got_guard, count, kept = cluster_and_carry(previous, records["record_id"], pairs, records, 0.6, touched,
                                                    everything=True)

    assert got.ids.equals(want.ids) and got.changes.equals(want.changes) and got.next_id == want.next_id
    assert got_guard.stats == guarded.stats and count == records.height and kept is None

def test_the_random_worlds_exercise_what_could_go_wrong():
    """The worlds above mint, retire, merge, split and guard: a shortcut that got any of them wrong
    would be caught there."""
    kinds, guard_splits, kept = set(), 0, 0
    for seed in range(60):
        previous, records, pairs, touched = _world(seed)
        carried, guarded, count = _reference(previous, records["record_id"], pairs, records, THRESHOLD, touched)
        kinds |= set(carried.changes["kind"].to_list())
        guard_splits += guarded.stats.get("guard_clusters_split", 0)
        kept += records.height - count
    assert kinds == {"merge", "split", "moved", "new", "retired"}
    assert guard_splits > 0 and kept > 0


def test_component_labels_are_the_union_find_clusters():
    rng = random.Random(3)
    ids = [f"X{i}" for i in rng.sample(range(1000), 200)]
    edges = pl.DataFrame(_pairs(rng, ids, ids, 150))
    got = component_labels(pl.Series(ids), edges).sort("record_id")
    want = clusters_from_edges(pl.Series(ids), edges).sort("record_id")
    assert got.equals(want)


def test_a_new_person_touching_no_previous_one_is_logged_as_new():
    """Only new records that link to no previous person: no previous person is affected, yet the
    minted ids are logged as new persons (as when every record is carried)."""
    def pair(a, b):
        return {"record_id_l": a, "record_id_r": b, "match_weight": 0.0, "match_probability": 0.9}

    records = pl.DataFrame([_record(random.Random(i), r) for i, r in enumerate(["A1", "A2", "A3", "Z1", "Z2"])])
    records = records.with_columns(pl.lit(None, dtype=pl.Date).alias("dob"), pl.lit(None, dtype=pl.String).alias("case_id"),
                                   pl.lit("PERSON").alias("party_kind"))
    before = pl.DataFrame([pair("A1", "A2")])
    ids = carry_forward_ids(None, component_labels(pl.Series(["A1", "A2", "A3"]), before)).ids
    previous = PreviousLink(clusters=ids, pairs=before)
    pairs, touched = pl.DataFrame([pair("A1", "A2"), pair("Z1", "Z2")]), pl.Series("record_id", ["Z1", "Z2"])
    want, _, _ = _reference(previous, records["record_id"], pairs, records, THRESHOLD, touched)

    got, _, count, _ = cluster_and_carry(previous, records["record_id"], pairs, records, THRESHOLD, touched)

    assert count == 2
    assert got.changes.rows() == want.changes.rows() == [(None, 3, "new", 2)]
    assert got.ids.equals(want.ids)


@pytest.mark.parametrize("seed", range(0, 60, 3))
def test_the_kept_persons_metrics_measured_before_are_those_measured_again(seed):
    """An incremental link's persons kept whole have the link-graph metrics they had: taking those rows
    from the previous measurement and measuring the rest gives every row measured afresh."""
    previous, records, pairs, touched = _world(seed)
    links_before = previous.pairs.filter(pl.col("match_probability") >= THRESHOLD)
    before = cluster_graph_metrics(previous.ids(), links_before, THRESHOLD, cluster_col="person_id")
    carried, _, _, kept = cluster_and_carry(previous, records["record_id"], pairs, records, THRESHOLD, touched)
    links = pairs.filter(pl.col("match_probability") >= THRESHOLD)
    known = before.filter(pl.col("cluster_id").is_in(kept.cast(pl.String).implode()))

    again = cluster_graph_metrics(carried.ids, links, THRESHOLD, cluster_col="person_id", known=known)

    assert again.equals(cluster_graph_metrics(carried.ids, links, THRESHOLD, cluster_col="person_id"))
    assert known.height > 0


def test_kept_graph_metrics_are_taken_only_for_the_link_they_were_measured_on(tmp_path):
    previous, _, _, _ = _world(5)
    ids, links = previous.ids(), previous.pairs.filter(pl.col("match_probability") >= THRESHOLD)
    metrics = cluster_graph_metrics(ids, links, THRESHOLD, cluster_col="person_id")
    digest = graph_digest(ids, links, THRESHOLD, "code")
    save_graph(tmp_path, "magistrates", digest, metrics)

    assert load_graph(tmp_path, "magistrates", digest).equals(metrics)
    assert load_graph(tmp_path, "magistrates", graph_digest(ids, links, THRESHOLD, "other code")) is None
    assert load_graph(tmp_path, "magistrates", graph_digest(ids, links, 0.6, "code")) is None
    assert load_graph(tmp_path, "magistrates", graph_digest(ids, links.head(links.height - 1), THRESHOLD, "code")) is None
    moved = ids.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.col("person_id") + 1000)
                             .otherwise(pl.col("person_id")).alias("person_id"))
    assert load_graph(tmp_path, "magistrates", graph_digest(moved, links, THRESHOLD, "code")) is None
    rescored = links.with_columns(pl.col("match_probability").reverse())
    assert load_graph(tmp_path, "magistrates", graph_digest(ids, rescored, THRESHOLD, "code")) is None
    assert load_graph(tmp_path, "crown_court", digest) is None


# ------------------------------------------------------------------------------- Dagster

SOURCE = "prison"
GRAPH_KEYS = ("clusters", "largest_cluster_records", "clusters_over_10_records", "mean_density_multi_record",
              "bridges", "chained_clusters", "largest_clusters", "persons", "records", "records_reclustered",
              "clusters_split_by_guard", "highest_person_id", "new_records")


def _link_twice(tmp_path, records: pl.DataFrame, shortcuts: bool, monkeypatch) -> tuple[dict, dict]:
    """A full link of all but the last records, then an incremental one of them all, as `datafirst run`
    runs them (Splink in the warehouse); without ``shortcuts`` the incremental step works as main did:
    the scored pairs written whole, every person's graph metrics measured. Returns the stored tables
    and the incremental run's metadata."""
    from datafirst_assets.defs import linkage as defs

    if not shortcuts:
        monkeypatch.setattr(defs, "_pairs_output", lambda result, _validated: result.pairs)
        monkeypatch.setattr(defs, "_clusters_output", lambda _result, clusters, *_rest: clusters)
        monkeypatch.setattr(defs, "load_graph", lambda *_args: None)
    layout = DataLayout(tmp_path / "data")
    person_records, model, cluster, _ = build_dedupe_assets(SOURCES[SOURCE])
    stored = SourceAsset(key=person_records.key, metadata={"schema": f"linkage_{SOURCE}"})
    linkage = LinkageSettings(data_dir=str(layout.root), thresholds={SOURCE: 0.9}, u_max_pairs=3e5,
                              warehouse_database=str(layout.warehouse), predict_chunks=2)
    instance = DagsterInstance.ephemeral()
    metadata = {}
    for frame in (records.head(records.height - 30), records):
        with warehouse_cursor(layout.warehouse) as conn:
            conn.execute(f"create schema if not exists linkage_{SOURCE}")
            arrow = frame.to_arrow()  # noqa: F841 (read by name in the SQL)
            conn.execute(f"create or replace table linkage_{SOURCE}.person_records as select * from arrow")
        result = materialize([stored, model, cluster], selection=[*model.keys, *cluster.keys], instance=instance,
                             resources={**build_resources(layout), "linkage": linkage})
        assert result.success
        metadata = {m.asset_key.path[-1]: {k: v.value for k, v in m.metadata.items()}
                    for m in result.asset_materializations_for_node(cluster.node_def.name)}
    with warehouse_cursor(layout.warehouse) as conn:
        tables = {name: pl.from_arrow(conn.sql(f"select * exclude ({drop}) from linkage_{SOURCE}.{name}").to_arrow_table())
                  for name, drop in (("clusters", "model_version"), ("scored_pairs", "match_weight"),
                                     ("id_changes", "changed_at, run_id"))}
    return tables, metadata


def test_the_incremental_cluster_step_stores_what_it_stored_before(tmp_path, monkeypatch):
    """The clusters step with its shortcuts (the scored pairs and clusters changed in place, the kept
    persons' graph metrics reused) stores the same clusters, pairs and id changes, and reports the same graph, as
    the same step writing the pairs whole and measuring every person."""
    records, _ = make_dataset(700, seed=11, source_dataset=SOURCE)
    records = records.sort("record_id").with_columns(pl.lit("2024-01-31").alias("extract_date"))
    # a few earlier records changed too: their pairs are dropped and scored again
    changed = records["record_id"].gather([3, 50, 400]).implode()
    records = pl.concat([records.filter(~pl.col("record_id").is_in(changed)),
                         records.filter(pl.col("record_id").is_in(changed)).with_columns(pl.lit("ZZ1 1ZZ").alias("postcode"))])
    records = records.sort("record_id")

    fast, fast_meta = _link_twice(tmp_path / "fast", records, True, monkeypatch)
    slow, slow_meta = _link_twice(tmp_path / "slow", records, False, monkeypatch)

    assert fast_meta["clusters"]["mode"] == "incremental"
    for name in ("scored_pairs", "clusters"):
        assert fast_meta[name]["write"].startswith("in place") and "write" not in slow_meta[name]
    assert fast_meta["scored_pairs"]["new_pairs"] > 0 and fast_meta["clusters"]["records_reclustered"] < 200
    for name in fast:
        keys = [c for c in fast[name].columns if c != "match_probability"]
        # the two paths train their models apart, and DuckDB's parallel sums in EM may differ in the last
        # bit (seen: 2.2e-16), so probabilities agree to 1e-12 and everything else exactly
        kept, again = fast[name].sort(keys), slow[name].sort(keys)
        assert kept.select(keys).equals(again.select(keys)), name
        if "match_probability" in kept.columns:
            assert (kept["match_probability"] - again["match_probability"]).abs().max() <= 1e-12, name
    for key in GRAPH_KEYS:
        assert fast_meta["clusters"][key] == slow_meta["clusters"][key], key
