"""An incremental cross-justice lookup (stored edges of unchanged persons kept, only pairs of new
or changed persons scored) gives the lookup a full one gives with the same model."""

from __future__ import annotations

import copy

import duckdb
import polars as pl
import pytest

from datafirst_assets.linkage.xjs import LEVELS, build_xjs_lookup
from datafirst_assets.linkage.xjs_incremental import PERSON, WRITTEN_BY, PreviousXjs, extend_edges, person_state
from datafirst_assets.linkage.xjs import person_variants
from datafirst_assets_tests.xjs_fixtures import shared_small_linkage_inputs


def _without_tf(model_json: dict) -> dict:
    """The model with its term-frequency adjustments taken out: an edge's score then depends on
    its two persons alone, so kept and rescored edges must agree exactly."""
    doc = copy.deepcopy(model_json)
    for comparison in doc["splink_model"]["comparisons"]:
        for level in comparison["comparison_levels"]:
            level.pop("tf_adjustment_column", None)
            level.pop("tf_adjustment_weight", None)
    doc["version"] = ""  # recomputed from the settings
    return doc


def _person_column(clusters: pl.DataFrame) -> str:
    return next(c for c in clusters.columns if c not in ("record_id", "model_version", "match_threshold",
                                                          "record_hash"))


def _before(person_records: dict, clusters: dict) -> tuple[dict, dict]:
    """An earlier state of the same world: every 25th record not yet delivered, some first names
    recorded differently, and two persons of one dataset not yet merged."""
    records_before, clusters_before = {}, {}
    for source, records in person_records.items():
        keep = records.with_row_index("_i").filter(pl.col("_i") % 25 != 7).drop("_i")
        if "forename" in keep.columns:
            keep = keep.with_row_index("_i").with_columns(
                pl.when(pl.col("_i") % 40 == 3).then(pl.col("forename") + "X").otherwise(pl.col("forename"))
                .alias("forename")).drop("_i")
        records_before[source] = keep
        clusters_before[source] = clusters[source].join(keep.select("record_id"), on="record_id", how="semi")
    source = next(iter(clusters))
    column = _person_column(clusters[source])
    ids = clusters[source].get_column(column).unique().sort()
    a, b = ids[0], ids[1]  # later merged: b's records become a's
    clusters_after = dict(clusters)
    clusters_after[source] = clusters[source].with_columns(
        pl.when(pl.col(column) == b).then(pl.lit(a)).otherwise(pl.col(column)).alias(column))
    return {"records": records_before, "clusters": clusters_before}, clusters_after


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    _, inputs = shared_small_linkage_inputs(tmp_path_factory, people=2000, seed=1, extracts=2)
    trained = build_xjs_lookup(inputs.person_records, inputs.clusters)
    saved = (_without_tf(trained.model.to_json()), trained.stats["variants"])
    before, clusters_after = _before(inputs.person_records, inputs.clusters)
    first = build_xjs_lookup(before["records"], before["clusters"], saved_model=saved)
    digests = first.digests.rows  # every variant's: the first lookup scored every pair
    previous = PreviousXjs(persons=first.state.with_columns(pl.lit("run-1").alias(WRITTEN_BY)),
                           edges=first.edges.with_columns(pl.lit("run-1").alias(WRITTEN_BY)),
                           digests=lambda persons: digests.join(pl.DataFrame({PERSON: persons}), on=PERSON, how="semi"))
    incremental = build_xjs_lookup(inputs.person_records, clusters_after, saved_model=saved, previous=previous)
    full = build_xjs_lookup(inputs.person_records, clusters_after, saved_model=saved)
    return first, incremental, full, saved


def test_the_incremental_lookup_equals_a_full_one_with_the_same_model(runs):
    first, incremental, full, _ = runs
    assert first.stats["lookup_mode"] == "full" and full.stats["lookup_mode"] == "full"
    assert incremental.stats["lookup_mode"] == "incremental", incremental.stats["reason"]
    # only a small share of persons and pairs was scored again; the rest came from the stored edges
    assert 0 < incremental.stats["persons_rescored"] < 0.5 * incremental.stats["persons_dataset"]
    assert incremental.stats["persons_gone"] >= 1  # the merged-away person
    assert 0 < incremental.stats["variant_pairs"] < 0.6 * full.stats["variant_pairs"]
    assert incremental.stats["edges_kept"] > 0
    # persons that only gained variants (their records delivered late) had only those scored, their
    # stored edges merged in; those whose forenames changed were scored whole
    assert 0 < incremental.stats["persons_grown"] < incremental.stats["persons_rescored"]
    assert incremental.digests.replaces is not None and first.digests.replaces is None
    # only the components the change reached were clustered again
    assert incremental.stats["clustering_mode"] == "touched components", incremental.stats["clustering_reason"]
    assert 0 < incremental.stats["clustering_persons_reclustered"] < incremental.stats["persons_dataset"]
    # the same edges, scores and partitions at every level
    keys = ["person_id_dataset_l", "person_id_dataset_r"]
    inc, ful = incremental.edges.sort(keys), full.edges.sort(keys)
    assert inc.select(keys).equals(ful.select(keys))
    assert (inc["match_probability"] - ful["match_probability"]).abs().max() < 1e-9
    assert inc.select(pl.exclude("match_weight", "match_probability")).equals(
        ful.select(pl.exclude("match_weight", "match_probability")))
    assert incremental.lookup.equals(full.lookup)
    assert incremental.persons.equals(full.persons)
    assert incremental.state.equals(full.state)
    assert [incremental.lookup[f"person_id_{lv}"].n_unique() for lv in LEVELS] == \
        [full.lookup[f"person_id_{lv}"].n_unique() for lv in LEVELS]


def _previous(**changes) -> PreviousXjs:
    persons = pl.DataFrame({"source_dataset": ["a", "b"], "person_id_dataset": ["a:1", "b:1"],
                            "variants_hash": ["h1", "h2"], "model_version": ["m1", "m1"],
                            "edges_above": [0.5, 0.5], WRITTEN_BY: ["r1", "r1"]})
    edges = pl.DataFrame({"source_dataset_l": ["a"], "person_id_dataset_l": ["a:1"], "source_dataset_r": ["b"],
                          "person_id_dataset_r": ["b:1"], "match_weight": [9.0], "match_probability": [0.99],
                          "variant_pairs": [1], "linked_at": ["high"], WRITTEN_BY: ["r1"]})
    return PreviousXjs(persons=changes.get("persons", persons), edges=changes.get("edges", edges))


def test_a_stored_state_is_extended_only_when_it_is_whole_and_of_the_same_model():
    assert _previous().cannot_extend("m1", 0.5) is None
    assert "model changed" in _previous().cannot_extend("m2", 0.5)
    assert "kept above" in _previous().cannot_extend("m1", 0.3)
    assert "no stored cross-justice persons" in PreviousXjs().cannot_extend("m1", 0.5)
    # edges stored by a later run that failed before it stored the persons: refused
    torn = _previous().edges.with_columns(pl.lit("r2").alias(WRITTEN_BY))
    assert "same run" in _previous(edges=torn).cannot_extend("m1", 0.5)
    old = _previous().persons.drop("variants_hash")
    assert "lack" in _previous(persons=old).cannot_extend("m1", 0.5)


def test_a_state_without_the_rows_run_marker_is_one_runs_only_by_the_state_marker():
    """Persons and edges stored without the run on their rows (this version's writes) are extended
    only when the state marker says one run stored both; one table with the rows' marker and one
    without was stored by two versions' runs, and is refused whatever the state marker says."""
    persons, edges = (frame.drop(WRITTEN_BY) for frame in (_previous().persons, _previous().edges))
    assert PreviousXjs(persons=persons, edges=edges, marked=True).cannot_extend("m1", 0.5) is None
    for marked in (False, None):
        assert "same run" in PreviousXjs(persons=persons, edges=edges, marked=marked).cannot_extend("m1", 0.5)
    assert "same run" in PreviousXjs(persons=persons, edges=_previous().edges, marked=True).cannot_extend("m1", 0.5)
    assert "same run" in PreviousXjs(persons=_previous().persons, edges=edges, marked=True).cannot_extend("m1", 0.5)


def test_touched_persons_and_extended_edges():
    previous = _previous()
    state = pl.DataFrame({"source_dataset": ["a", "c"], "person_id_dataset": ["a:1", "c:1"],
                          "variants_hash": ["h1", "h3"]})
    rescore, touched = previous.touched_persons(state)
    assert rescore.to_list() == ["c:1"] and touched.to_list() == ["b:1", "c:1"]
    fresh = previous.edges.with_columns(pl.lit("c").alias("source_dataset_r"), pl.lit("c:1").alias("person_id_dataset_r"),
                                        pl.lit(0.6).alias("match_probability"))
    edges, kept = extend_edges(previous.edges, fresh, touched)
    assert edges["person_id_dataset_r"].to_list() == ["c:1"] and kept == 0  # a:1 - b:1 dropped with b:1


def _digested(forenames: dict[str, list[str]]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(variants, vmap, state) of persons with these forenames (one record each)."""
    recs = pl.DataFrame({"source_dataset": [k[0] for k, v in forenames.items() for _ in v],
                         "record_id": [str(i) for i in range(sum(map(len, forenames.values())))],
                         "person_id_dataset": [k for k, v in forenames.items() for _ in v],
                         "forename": [name for v in forenames.values() for name in v]})
    variants, vmap = person_variants(recs)
    return variants, vmap, person_state(variants, vmap, "m1", 0.5)


def test_a_person_that_only_gained_variants_has_only_those_scored():
    """A person whose stored variants are all still its own (it gained some) has only the gained
    ones scored; one that lost a variant, or whose stored digests do not sum to its stored hash
    (a digests table of another state), is scored whole, as every changed person was before."""
    from datafirst_assets.linkage.xjs_incremental import grown_persons, variant_digests

    before = {"a:1": ["ann"], "a:2": ["bob", "rob"], "a:3": ["cy"], "b:1": ["dee"]}
    _, _, state_before = _digested(before)
    stored = variant_digests(*_digested(before)[:2])
    variants, vmap, state = _digested({"a:1": ["ann", "anne"], "a:2": ["bob"], "a:3": ["cy", "cyd"], "b:1": ["dee"]})

    def previous(digests: pl.DataFrame) -> PreviousXjs:
        return PreviousXjs(persons=state_before, digests=lambda persons: digests.join(
            pl.DataFrame({"person_id_dataset": persons}), on="person_id_dataset", how="semi").drop("variant_id"))

    rescore, _ = previous(stored).touched_persons(state)
    assert rescore.to_list() == ["a:1", "a:2", "a:3"]
    current = variant_digests(variants, vmap, rescore)
    grown, gained = grown_persons(previous(stored), rescore, current)
    assert grown.to_list() == ["a:1", "a:3"]  # a:2 lost "rob"
    names = variants.join(pl.DataFrame({"record_id": gained}), on="record_id", how="semi")["forename"].sort()
    assert names.to_list() == ["anne", "cyd"]
    # a:3's stored digest from another state: it no longer sums to a:3's stored hash
    stale = stored.with_columns(pl.when(pl.col("person_id_dataset") == "a:3").then(pl.col("variant_hi") + 1)
                                .otherwise(pl.col("variant_hi")).alias("variant_hi"))
    assert grown_persons(previous(stale), rescore, current)[0].to_list() == ["a:1"]
    assert grown_persons(PreviousXjs(persons=state_before), rescore, current)[0].is_empty()  # none stored


def test_a_grown_persons_stored_edges_are_merged_with_its_fresh_ones():
    """The stored edge of a person that only gained variants is kept and merged with the fresh edge of
    the same pair as `person_edges` would have aggregated all their variant pairs: best weight and
    probability, pairs counted; a pair only stored, or only fresh, passes as it is."""
    previous = _previous()
    stored = pl.concat([previous.edges, previous.edges.with_columns(
        pl.lit("c").alias("source_dataset_r"), pl.lit("c:1").alias("person_id_dataset_r"),
        pl.lit(0.7).alias("match_probability"))])
    fresh = previous.edges.with_columns(pl.lit(0.8).alias("match_probability"), pl.lit(12.0).alias("match_weight"),
                                        pl.lit(2).cast(pl.Int64).alias("variant_pairs"))
    edges, kept = extend_edges(stored, fresh, pl.Series(["a:1"]), grown=pl.Series(["a:1"]))
    assert kept == 2  # both stored edges, one merged with the fresh edge of its pair
    assert edges.select("person_id_dataset_r", "match_weight", "match_probability", "variant_pairs").rows() == [
        ("b:1", 12.0, 0.99, 3), ("c:1", 9.0, 0.7, 1)]
    # a person scored whole loses its stored edges, as before
    assert extend_edges(stored, fresh, pl.Series(["a:1"]))[0]["match_probability"].to_list() == [0.8]


def test_variants_hash_ignores_order_and_repeats_and_sees_a_changed_variant():
    recs = pl.DataFrame({"source_dataset": ["a"] * 3, "record_id": ["1", "2", "3"],
                         "person_id_dataset": ["a:1"] * 3, "forename": ["ann", "anne", "ann"]})
    h = person_state(*person_variants(recs), "m", 0.5)["variants_hash"][0]
    assert person_state(*person_variants(recs.reverse()), "m", 0.5)["variants_hash"][0] == h
    changed = recs.with_columns(pl.lit("ann").alias("forename"))
    assert person_state(*person_variants(changed), "m", 0.5)["variants_hash"][0] != h


def test_inputs_built_in_duckdb_give_the_lookup_the_polars_inputs_give(tmp_path_factory, runs):
    import duckdb

    from datafirst_assets.linkage.xjs import link_variants, records_with_persons
    from datafirst_assets.linkage.xjs_inputs import lookup_inputs

    _, inputs = shared_small_linkage_inputs(tmp_path_factory, people=2000, seed=1, extracts=2)
    first, _, _, _ = runs
    with duckdb.connect() as conn:
        for source in inputs.person_records:
            conn.register(f"records_{source}", inputs.person_records[source].to_arrow())
            conn.register(f"clusters_{source}", inputs.clusters[source].to_arrow())
        keys, variants, vmap = lookup_inputs(conn, {s: (f"records_{s}", f"clusters_{s}") for s in inputs.person_records})
        with pytest.raises(ValueError, match="have no per-dataset person id"):
            conn.register("no_clusters", inputs.clusters["prison"].head(3).to_arrow())
            lookup_inputs(conn, {"prison": ("records_prison", "no_clusters")})
    recs = records_with_persons(inputs.person_records, inputs.clusters)
    order = ["source_dataset", "record_id"]
    assert keys.sort(order).equals(recs.select(*order, "person_id_dataset").sort(order))
    in_polars = person_variants(recs)
    def described(v: pl.DataFrame, m: pl.DataFrame) -> pl.DataFrame:
        return (v.join(m.select(pl.col("variant_id").alias("record_id"), "person_id_dataset"), on="record_id")
                .drop("record_id").sort(pl.all()))
    assert described(variants, vmap).equals(described(*in_polars))
    # the same lookup, edges and state as from the polars inputs, with the same (reused) model
    saved = (first.model.to_json(), first.stats["variants"])
    from_duckdb = link_variants(keys, variants, vmap, saved_model=saved)
    from_polars = build_xjs_lookup(inputs.person_records, inputs.clusters, saved_model=saved)
    assert from_duckdb.lookup.equals(from_polars.lookup) and from_duckdb.state.equals(from_polars.state)
    assert from_duckdb.edges.equals(from_polars.edges)


def _materialize_lookup(tmp_path, inputs, mode: str, expect_success: bool = True, instance=None, events=None):
    """The xjs_lookup multi-asset materialised by Dagster over `inputs` planted in a warehouse."""
    from dagster import AssetKey, AssetSpec, materialize

    from datafirst_assets.defs import xjs as xjs_defs
    from datafirst_assets.defs.linkage import LinkageSettings, linkage_key
    from datafirst_assets.sources.registry import SOURCES
    from datafirst_assets.warehouse.io_manager import WarehouseIOManager
    from datafirst_assets_tests.warehouse_tables import write_table

    database = tmp_path / "wh.duckdb"
    for source in SOURCES:
        write_table(database, f"linkage_{source}", "person_records", inputs.person_records[source])
        write_table(database, f"linkage_{source}", "clusters", inputs.clusters[source])
    upstream = [linkage_key(s, t) for s in SOURCES for t in ("person_records", "clusters")]
    placeholders = [AssetSpec(key=key, metadata={"schema": "_".join(key.path[:-1])}).with_io_manager_key("io_manager")
                    for key in upstream]
    result = materialize([*placeholders, xjs_defs.xjs_lookup], selection=list(xjs_defs.xjs_lookup.keys),
                         raise_on_error=expect_success, instance=instance,
                         resources={"io_manager": WarehouseIOManager(database=str(database)),
                                    "warehouse": xjs_defs.Warehouse(database=str(database)),
                                    "linkage": LinkageSettings(data_dir=str(tmp_path), mode=mode)})
    assert result.success == expect_success
    if events is not None:
        events.append(result)
    if not expect_success:
        return {}, None
    def metadata(name: str) -> dict:
        return {k: v.value for k, v in next(m for m in result.get_asset_materialization_events()
                                            if m.asset_key == AssetKey(["linkage", "xjs", name])).materialization.metadata.items()}
    from datafirst_assets.warehouse.connection import warehouse_cursor

    with warehouse_cursor(database) as conn:
        lookup = pl.from_arrow(conn.sql("select * from linkage_xjs.lookup order by all").to_arrow_table())
    # the edges' metadata, with the lookup's as lookup_<name> and the persons' as persons_<name>
    return {**metadata("edges"), **{f"lookup_{k}": v for k, v in metadata("lookup").items()},
            **{f"persons_{k}": v for k, v in metadata("persons").items()}}, lookup


def test_the_asset_extends_its_stored_edges_on_a_changed_extract(tmp_path_factory, runs, tmp_path):
    """Through Dagster: the first lookup scores every pair, the next (one dataset's forenames
    changed) only the changed persons', and its partitions are those of a lookup from scratch."""
    import json

    from datafirst_assets.linkage.train import TrainedModel
    from datafirst_assets_tests.xjs_fixtures import LinkageInputs

    _, inputs = shared_small_linkage_inputs(tmp_path_factory, people=2000, seed=1, extracts=2)
    doc, trained_on = runs[3]
    (tmp_path / "models" / "xjs").mkdir(parents=True)
    (tmp_path / "models" / "xjs" / "current.json").write_text(json.dumps(
        {"model": TrainedModel.from_json(doc).to_json(), "trained_on_variants": trained_on}))
    first, _ = _materialize_lookup(tmp_path, inputs, "incremental")
    assert first["lookup_mode"] == "full" and "no stored cross-justice persons" in first["reason"]
    changed = dict(inputs.person_records)
    changed["prison"] = changed["prison"].with_columns(
        pl.when(pl.int_range(pl.len()) % 50 == 0).then(pl.col("forename") + "Q").otherwise(pl.col("forename"))
        .alias("forename"))
    later = LinkageInputs(person_records=changed, clusters=inputs.clusters, staged={})
    second, lookup = _materialize_lookup(tmp_path, later, "incremental")
    assert second["lookup_mode"] == "incremental", second["reason"]
    assert 0 < second["persons_rescored"] <= changed["prison"].height // 50 + 1 and second["edges_kept"] > 0
    # the stored persons state held the clusters: only the touched components were clustered again
    assert second["clustering_mode"] == "touched components", second["clustering_reason"]
    # ids carried against the stored lookup in the database: no record is new, so none was hashed,
    # and only the records of clusters the change reached went through Python
    assert second["lookup_records_rehashed"] == 0
    for level in LEVELS:
        assert second[f"lookup_records_recarried_{level}"] < second["lookup_records"] // 4
    assert "lookup_records_rehashed" not in first  # the first lookup carried and hashed in polars
    scratch = build_xjs_lookup(changed, inputs.clusters, saved_model=(doc, trained_on)).lookup
    def partition(frame: pl.DataFrame, level: str) -> set[frozenset]:
        groups = frame.group_by(f"person_id_{level}").agg(pl.col("person_id_dataset").unique().sort())
        return {frozenset(g) for g in groups.get_column("person_id_dataset").to_list()}
    for level in LEVELS:
        assert partition(lookup, level) == partition(scratch, level)
    _a_failed_carry_leaves_the_stored_lookup_and_no_scratch(tmp_path, later, lookup)


def _digests_agree_with_the_persons_state(database) -> int:
    """The stored variant digests sum, person by person, to the stored persons' variants hashes (every
    person has some); returns how many digests are stored."""
    from datafirst_assets.warehouse.connection import warehouse_cursor

    with warehouse_cursor(database) as conn:
        disagree, persons, rows = conn.execute(
            "select count(*) filter (where s.h is distinct from p.variants_hash), count(*), "
            "(select count(*) from linkage_xjs.variant_digests) from linkage_xjs.persons p left join "
            "(select person_id_dataset, sum(variant_hi::hugeint)::varchar || '-' || sum(variant_lo::hugeint)::varchar as h "
            "from linkage_xjs.variant_digests group by 1) s using (person_id_dataset)").fetchall()[0]
    assert disagree == 0 and persons > 0
    return rows


def test_the_asset_scores_only_the_variants_a_person_gained(tmp_path_factory, runs, tmp_path):
    """Through Dagster: records delivered late (every 30th, back in the next extract) add variants to
    persons that had the others: the next lookup scores only the added variants of those persons,
    their stored edges merged in, and gives the partitions a lookup from scratch gives. The digests
    it stores for the run after agree with the persons state it stores."""
    import json

    from datafirst_assets.linkage.train import TrainedModel
    from datafirst_assets_tests.xjs_fixtures import LinkageInputs

    _, inputs = shared_small_linkage_inputs(tmp_path_factory, people=2000, seed=1, extracts=2)
    doc, trained_on = runs[3]
    (tmp_path / "models" / "xjs").mkdir(parents=True)
    (tmp_path / "models" / "xjs" / "current.json").write_text(json.dumps(
        {"model": TrainedModel.from_json(doc).to_json(), "trained_on_variants": trained_on}))
    late = {s: r.filter(pl.int_range(pl.len()) % 30 == 7).select("record_id") for s, r in inputs.person_records.items()}
    early = LinkageInputs(person_records={s: r.join(late[s], on="record_id", how="anti")
                                          for s, r in inputs.person_records.items()},
                          clusters={s: c.join(late[s], on="record_id", how="anti") for s, c in inputs.clusters.items()},
                          staged={})
    first, _ = _materialize_lookup(tmp_path, early, "incremental")
    assert first["lookup_mode"] == "full"
    assert _digests_agree_with_the_persons_state(tmp_path / "wh.duckdb") >= first["persons_persons"]
    second, lookup = _materialize_lookup(tmp_path, inputs, "incremental")
    assert second["lookup_mode"] == "incremental", second["reason"]
    assert 0 < second["persons_grown"] <= second["persons_rescored"]
    _digests_agree_with_the_persons_state(tmp_path / "wh.duckdb")
    scratch = build_xjs_lookup(inputs.person_records, inputs.clusters, saved_model=(doc, trained_on)).lookup

    def partition(frame: pl.DataFrame, level: str) -> set[frozenset]:
        groups = frame.group_by(f"person_id_{level}").agg(pl.col("person_id_dataset").unique().sort())
        return {frozenset(g) for g in groups.get_column("person_id_dataset").to_list()}
    for level in LEVELS:
        assert partition(lookup, level) == partition(scratch, level)


def _a_failed_carry_leaves_the_stored_lookup_and_no_scratch(tmp_path, inputs, stored):
    """A lookup carried in the database that fails before it is stored: the stored lookup is the
    previous one, and the scratch catalog the carry used is detached (also after a success)."""
    from datafirst_assets.defs import xjs as xjs_defs
    from datafirst_assets.warehouse.connection import warehouse_cursor

    def scratch_catalogs() -> list:
        with warehouse_cursor(tmp_path / "wh.duckdb") as conn:
            return conn.execute("select database_name from duckdb_databases() "
                                "where starts_with(database_name, 'xjs_')").fetchall()

    assert scratch_catalogs() == []
    real = xjs_defs.lookup_problems

    def failing(*args, **kwargs):
        raise RuntimeError("planted failure after the carry")

    xjs_defs.lookup_problems = failing
    try:
        _materialize_lookup(tmp_path, inputs, "incremental", expect_success=False)
    finally:
        xjs_defs.lookup_problems = real
    assert scratch_catalogs() == []
    with warehouse_cursor(tmp_path / "wh.duckdb") as conn:
        after = pl.from_arrow(conn.sql("select * from linkage_xjs.lookup order by all").to_arrow_table())
    assert after.equals(stored)


def test_the_persons_state_from_the_inputs_hashes_needs_no_variant_map(tmp_path_factory):
    """The hashes built with the inputs carry each person's dataset, so the persons state is made
    from them alone (no pass over every variant in polars) and equals the one the variants give;
    the inputs' checks still name the first source with a problem."""
    import duckdb

    from datafirst_assets.linkage.xjs_inputs import lookup_inputs

    _, inputs = shared_small_linkage_inputs(tmp_path_factory, people=2000, seed=1, extracts=2)
    tables = {s: (f"records_{s}", f"clusters_{s}") for s in inputs.person_records}
    with duckdb.connect() as conn:
        for source in inputs.person_records:
            conn.register(f"records_{source}", inputs.person_records[source].to_arrow())
            conn.register(f"clusters_{source}", inputs.clusters[source].to_arrow())
        keys, variants, vmap, hashes = lookup_inputs(conn, tables, with_hashes=True)
        conn.register("doubled", pl.concat([inputs.clusters["prison"], inputs.clusters["prison"].head(1)]).to_arrow())
        conn.register("partial", inputs.clusters["probation"].head(3).to_arrow())
        broken = {**tables, "prison": ("records_prison", "doubled"), "probation": ("records_probation", "partial")}
        first = next(s for s in tables if s in ("prison", "probation"))
        with pytest.raises(ValueError, match=f"^{first}: " + ("a record has several person ids" if first == "prison"
                                                               else r"\d+ person records have no per-dataset")):
            lookup_inputs(conn, broken)
    assert set(hashes.columns) == {"person_id_dataset", "variants_hash", "source_dataset"}
    # and the persons (each with its dataset) without a pass over every record's keys
    from datafirst_assets.linkage.xjs import _persons_of

    from_records = keys.select("source_dataset", "person_id_dataset").unique().sort(pl.all())
    assert _persons_of(keys.head(0), hashes).sort(pl.all()).equals(from_records)
    assert _persons_of(keys, None).sort(pl.all()).equals(from_records)
    assert person_state(None, None, "m", 0.5, hashes).equals(person_state(variants, vmap, "m", 0.5))  # type: ignore[arg-type]


def test_a_lookup_whose_inputs_did_not_change_is_kept_with_its_check_and_a_changed_dataset_links_again(
        tmp_path_factory, tmp_path, monkeypatch):
    """A run with nothing new keeps the lookup, edges, persons state and id history (its invariants
    check carried over) instead of linking every variant again; a changed dataset, a full run,
    another saved model or another pseudonymisation key (the records' hashed ids) links again."""
    import json

    from dagster import DagsterInstance

    from datafirst_assets.warehouse.unchanged import CARRIED_OVER
    from datafirst_assets_tests.xjs_fixtures import LinkageInputs

    _, inputs = shared_small_linkage_inputs(tmp_path_factory, people=2000, seed=1, extracts=2)
    changed = dict(inputs.person_records)
    changed["civil"] = changed["civil"].with_columns((pl.col("forename") + "Z").alias("forename"))
    now = LinkageInputs(person_records=changed, clusters=inputs.clusters, staged={})
    model = tmp_path / "models" / "xjs" / "current.json"
    runs: list = []
    with DagsterInstance.ephemeral() as instance:
        def run(linkage_inputs, mode: str = "incremental") -> None:
            _materialize_lookup(tmp_path, linkage_inputs, mode, instance=instance, events=runs)

        run(inputs)  # trains and saves the model; its tables record the fingerprint with that model
        run(inputs)  # nothing new
        run(now)  # a dataset changed
        run(now, "full")
        run(now)
        doc = json.loads(model.read_text(encoding="utf-8"))
        model.write_text(json.dumps({**doc, "trained_on_variants": doc["trained_on_variants"] + 1}))
        run(now)  # another saved model
        monkeypatch.setenv("DATAFIRST_PSEUDONYMISATION_KEY", "another key, of a test, long enough to be accepted")
        run(now)

    def kept(result) -> set[str]:
        return {m.asset_key.path[-1] for m in result.get_asset_materialization_events()
                if "unchanged" in m.materialization.metadata}

    every = {"lookup", "edges", "persons", "id_changes"}
    assert [kept(r) for r in runs] == [set(), every, set(), set(), every, set(), set()]
    carried = runs[1].get_asset_check_evaluations()
    assert [(e.check_name, e.passed) for e in carried] == [("lookup_invariants", True)]
    assert CARRIED_OVER in carried[0].metadata


def _stored_xjs(database) -> dict[str, pl.DataFrame]:
    """The stored lookup, edges and persons state (without the run marker), in a fixed order."""
    from datafirst_assets.warehouse.connection import warehouse_cursor

    with warehouse_cursor(database) as conn:
        return {name: pl.from_arrow(conn.sql(f"select * from linkage_xjs.{name} order by all").to_arrow_table())
                for name in ("lookup", "edges", "persons")}


def test_an_incremental_lookup_is_written_as_its_change_and_stores_what_a_whole_rewrite_stores(
        tmp_path_factory, runs, tmp_path, monkeypatch):
    """Through Dagster, over a stored lookup its last write validated: an incremental run writes only
    the changed rows (records new, gone, or whose ids changed) in place, and stores exactly what a
    whole rewrite of the same run stores (the same run over a copy whose last validated write is not
    known: rewritten whole). A failure in the middle of the write in place leaves the previous tables."""
    import json
    import re
    import shutil

    from dagster import DagsterInstance

    from datafirst_assets.linkage.train import TrainedModel
    from datafirst_assets.warehouse import io_manager
    from datafirst_assets_tests.xjs_fixtures import LinkageInputs

    _, inputs = shared_small_linkage_inputs(tmp_path_factory, people=2000, seed=1, extracts=2)
    doc, trained_on = runs[3]
    before, clusters_after = _before(inputs.person_records, inputs.clusters)
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "models" / "xjs").mkdir(parents=True)
    (a / "models" / "xjs" / "current.json").write_text(json.dumps(
        {"model": TrainedModel.from_json(doc).to_json(), "trained_on_variants": trained_on}))
    # later: every record delivered, one dataset's two persons merged, and a few records gone
    records = {s: r.with_row_index("_i").filter(pl.col("_i") % 97 != 11).drop("_i") for s, r in inputs.person_records.items()}
    later = LinkageInputs(person_records=records, staged={}, clusters={
        s: c.join(records[s].select("record_id"), on="record_id", how="semi") for s, c in clusters_after.items()})
    with DagsterInstance.ephemeral() as instance:
        _materialize_lookup(a, LinkageInputs(person_records=before["records"], clusters=before["clusters"], staged={}),
                            "incremental", instance=instance)
        shutil.copytree(a, b)
        in_place, _ = _materialize_lookup(a, later, "incremental", instance=instance)
        whole, _ = _materialize_lookup(b, later, "incremental")  # another instance: no validated write known
        assert in_place["lookup_write"].startswith("in place: "), in_place["lookup_write"]
        counts = [int(n) for n in re.findall(r"(\d+) (?:row\(s\) deleted|updated|inserted)", in_place["lookup_write"])]
        assert len(counts) == 3 and all(counts) and sum(counts) < in_place["lookup_records"] // 2, counts  # deleted, updated, inserted
        assert whole["lookup_write"] == "rewritten whole"
        # the edges and persons state too: their rows carry no run, so only the touched persons' rows change
        for name, rows in (("", "edges"), ("persons_", "persons_persons")):
            assert in_place[f"{name}write"].startswith("in place: "), in_place[f"{name}write"]
            counts = [int(n) for n in re.findall(r"(\d+) (?:row\(s\) deleted|updated|inserted)", in_place[f"{name}write"])]
            assert 0 < sum(counts) < in_place[rows] // 2, (name, counts)
            assert whole[f"{name}write"] == "rewritten whole"
        stored = _stored_xjs(a / "wh.duckdb")
        for name, frame in _stored_xjs(b / "wh.duckdb").items():
            assert stored[name].equals(frame), name

        # a failure after the rows were changed in place, before the write commits: the transaction rolls back
        real = io_manager._apply

        def failing(*args, **kwargs):
            real(*args, **kwargs)
            raise RuntimeError("planted failure in the middle of the write")

        monkeypatch.setattr(io_manager, "_apply", failing)
        again = {s: r.with_columns((pl.col("forename") + "W").alias("forename")) if s == "civil" else r
                 for s, r in later.person_records.items()}
        _materialize_lookup(a, LinkageInputs(person_records=again, clusters=later.clusters, staged={}),
                            "incremental", expect_success=False, instance=instance)
    after = _stored_xjs(a / "wh.duckdb")
    for name, frame in stored.items():
        assert after[name].equals(frame), name


def test_a_state_stored_with_the_run_on_its_rows_is_extended_rewritten_whole_once_then_changed_in_place(
        tmp_path_factory, runs, tmp_path):
    """Persons and edges stored as the previous version stored them (the run on every row, no state
    marker) are still one run's state: the next lookup extends them, stores them whole in this
    version's form (no run on the rows, the state marker set), and the lookup after it changes
    only their touched rows in place."""
    import json

    from dagster import DagsterInstance

    from datafirst_assets.linkage.train import TrainedModel
    from datafirst_assets.warehouse.connection import warehouse_cursor
    from datafirst_assets_tests.xjs_fixtures import LinkageInputs

    _, inputs = shared_small_linkage_inputs(tmp_path_factory, people=2000, seed=1, extracts=2)
    doc, trained_on = runs[3]
    (tmp_path / "models" / "xjs").mkdir(parents=True)
    (tmp_path / "models" / "xjs" / "current.json").write_text(json.dumps(
        {"model": TrainedModel.from_json(doc).to_json(), "trained_on_variants": trained_on}))

    def forenames_changed(every: int) -> LinkageInputs:
        changed = dict(inputs.person_records)
        changed["prison"] = changed["prison"].with_columns(
            pl.when(pl.int_range(pl.len()) % every == 0).then(pl.col("forename") + "Q").otherwise(pl.col("forename"))
            .alias("forename"))
        return LinkageInputs(person_records=changed, clusters=inputs.clusters, staged={})

    database = tmp_path / "wh.duckdb"
    with DagsterInstance.ephemeral() as instance:
        _materialize_lookup(tmp_path, inputs, "incremental", instance=instance)
        with warehouse_cursor(database) as conn:  # as the previous version left them
            for name in ("persons", "edges"):
                conn.execute(f"alter table linkage_xjs.{name} add column {WRITTEN_BY} varchar default 'earlier-run'")
            conn.execute("drop table linkage_xjs.state_marker")
        second, _ = _materialize_lookup(tmp_path, forenames_changed(50), "incremental", instance=instance)
        assert second["lookup_mode"] == "incremental", second["reason"]
        assert "write" not in second and "persons_write" not in second  # stored whole, as frames
        with warehouse_cursor(database) as conn:
            assert not any(WRITTEN_BY in conn.sql(f"select * from linkage_xjs.{name} limit 0").columns
                           for name in ("persons", "edges"))
            assert conn.execute("select count(*) from linkage_xjs.state_marker").fetchall() == [(1,)]
        third, _ = _materialize_lookup(tmp_path, forenames_changed(45), "incremental", instance=instance)
    assert third["lookup_mode"] == "incremental", third["reason"]
    assert third["write"].startswith("in place: ") and third["persons_write"].startswith("in place: ")


def test_an_incremental_lookup_that_splits_a_person_fails_its_invariants_check(tmp_path_factory, tmp_path, monkeypatch):
    """Through Dagster, on the path an incremental run takes (ids carried against the stored lookup,
    ``lookup_problems`` in SQL): a raw lookup that puts one record of a per-dataset person in a
    cluster of its own gives that person two ids at every level, and the blocking check fails."""
    import dataclasses

    from dagster import DagsterInstance

    from datafirst_assets.defs import xjs as xjs_defs

    _, inputs = shared_small_linkage_inputs(tmp_path_factory, people=2000, seed=1, extracts=2)
    real, ids = xjs_defs.run_lookup, [f"person_id_{lv}" for lv in LEVELS]

    def split_one_person(*args, **kwargs):
        result = real(*args, **kwargs)
        lookup = result.lookup
        if lookup is None:  # the records' keys stayed in the database: the raw lookup as a frame, to corrupt
            with args[2].cursor() as conn:
                keys = conn.sql(f"select * from {result.keys_in_database.table}").pl()
            lookup = keys.join(result.persons.drop("source_dataset"), on="person_id_dataset", how="left")
        person = lookup.group_by("person_id_dataset").len().filter(pl.col("len") > 1).sort("person_id_dataset")[0, 0]
        first = lookup.filter(pl.col("person_id_dataset") == person).sort("record_id")[0, "record_id"]
        alone = (pl.col("person_id_dataset") == person) & (pl.col("record_id") == first)
        return dataclasses.replace(result, lookup=lookup.with_columns(
            pl.when(alone).then(pl.col(c).max() + 1).otherwise(pl.col(c)).alias(c) for c in ids))

    runs: list = []
    with DagsterInstance.ephemeral() as instance:
        _materialize_lookup(tmp_path, inputs, "incremental", instance=instance, events=runs)
        monkeypatch.setattr(xjs_defs, "run_lookup", split_one_person)
        monkeypatch.setattr(xjs_defs, "kept_if_unchanged", lambda *a, **k: None)  # the same inputs: link again
        _materialize_lookup(tmp_path, inputs, "incremental", expect_success=False, instance=instance, events=runs)
    (check,) = runs[1].get_asset_check_evaluations()
    problems = check.metadata["problems"].value
    assert check.check_name == "lookup_invariants" and not check.passed
    assert all(f"1 per-dataset person(s) map to several person_id_{lv} values" in problems
               for lv in ("high", "medium", "low")), problems
