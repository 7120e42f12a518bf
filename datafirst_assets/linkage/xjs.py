"""Cross-justice-system (XJS) person lookup: one cross-system person id per per-dataset person,
at three match thresholds that nest (high inside medium inside low).

    result = build_xjs_lookup(person_records, clusters)       # dicts keyed by source
    result.lookup    # source_dataset, record_id, person_id_dataset, person_id_high/_medium/_low
    result.edges     # scored cross-dataset person pairs (best variant pair), with the level
                     # at which each pair ended up in one cluster
    check_lookup_invariants(result.lookup, person_records)   # [] when every invariant holds
    XJS_LOOKUP_SCHEMA.validate(result.lookup)                 # the same invariants, as pandera

Design (the choices the issue leaves open):

* **Unit of linkage: name/DOB variants of per-dataset persons.** Each per-dataset person
  (a cluster of the dataset's own dedupe) contributes one row per *distinct* combination of
  its linkage fields over its records: exact repeats collapse, every spelling, alias, maiden
  name, DOB keying or postcode a person was recorded with stays a row of its own. Pairs of
  variants are scored by one Splink model; two persons' edge is their best-scoring variant
  pair ("the evidence that they are the same person is the best pair of records they have").
  Aggregating variants into arrays per person would need array comparisons whose m/u no
  longer mean "this field agrees"; keeping rows reuses the per-dataset comparisons,
  blocking and training unchanged and costs only the duplicate-free record count.
* **Cross-dataset pairs only** (Splink ``link_only`` on one frame with ``source_dataset``):
  within a dataset the per-dataset dedupe is the authority, so no within-dataset pair is
  scored and, by default, the clustering never puts two persons of the same dataset into one
  cross-justice person either (``same_dataset="separate"``). Connected components would merge
  them through a third dataset (magistrates A - prison P - magistrates B); the dedupe already
  judged A and B different on their own records, and chains through one shared record of
  another system are the classic source of runaway clusters. The constraint costs the splits
  the dedupe left (a person split in one dataset stays split in the lookup: the same error
  the dataset's own id has). ``same_dataset="merge"`` gives plain connected components.
* **One prediction, one clustering, three cuts.** Pairs are scored once (down to the low
  threshold) and clustered once: edges are processed strongest first (single-linkage
  agglomeration, union-find with a per-cluster set of datasets); the state of the clustering
  when the edges fall below each threshold is that threshold's clustering. Every cut is a
  stage of one monotone merge sequence, so high nests in medium nests in low by construction,
  which independent clusterings per threshold (of different edge sets, or with conflicts
  resolved separately) do not guarantee. The components are computed in DuckDB
  (``clusters_sql``); only components where the same-dataset rule can bite (two persons of
  one dataset) run through the union-find, with the same result.
* **Ids**: dense integers per threshold, numbered by the smallest per-dataset person key in
  the cluster (never a raw system id); :func:`carry_forward_xjs_ids` then carries the ids of
  the previous run forward, level by level, as the per-dataset ids are carried.
* **Thresholds** (match probability of the best variant pair): high 0.99, medium 0.9,
  low 0.5 by default; see ``DEFAULT_THRESHOLDS``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from datafirst_assets.common.pandera_polars import pa
import polars as pl

from datafirst_assets.linkage.backend import make_db_api, sql_dialect
from datafirst_assets.linkage.clusters_sql import nested_clusters_duckdb, threshold_levels
from datafirst_assets.linkage.disjoint_sets import DisjointSets
from datafirst_assets.linkage.predict import linker_for_model, pairs_to_polars, predict_pairs
from datafirst_assets.linkage.settings import (
    LINKAGE_FIELDS,
    SOURCE_DATASET,
    UNIQUE_ID,
    model_spec_for_records,
)
from datafirst_assets.linkage.stable_ids import (
    CHANGE_SCHEMA,
    HISTORY_SCHEMA,
    KINDS,
    PERSON_ID,
    RECORD_ID,
    carry_forward_ids,
    history_with,
    next_free_id,
    run_history_rows,
    same_record_sets,
)
from datafirst_assets.linkage.train import TrainedModel, TrainingConfig, train_model, u_pairs_for
from datafirst_assets.linkage.xjs_incremental import (
    AFFECTED,
    CLUSTER_NAMES,
    DIGEST_COLUMNS,
    DigestChange,
    KeysInDatabase,
    PreviousXjs,
    cluster_state,
    clustered_as,
    extend_edges,
    grown_persons,
    person_state,
    recluster_touched,
    variant_digests,
)
from datafirst_assets.sources.registry import SOURCES

#: Match probabilities (high, medium, low) of the best variant pair for two per-dataset
#: persons of different datasets to share a cross-justice id at that level.
DEFAULT_THRESHOLDS: tuple[float, float, float] = (0.99, 0.9, 0.5)
LEVELS = ("high", "medium", "low")
ID_COLUMNS = tuple(f"person_id_{lv}" for lv in LEVELS)
LOOKUP_COLUMNS = ("source_dataset", "record_id", "person_id_dataset", *ID_COLUMNS)
PERSON = "person_id_dataset"
#: Separator between dataset and per-dataset person id in ``person_id_dataset``.
SEP = ":"


@dataclass
class XjsResult:
    # one row per source record; None when the records' keys stayed in the database
    # (``link_variants(keys=KeysInDatabase)``: joined to ``persons`` where the lookup is carried)
    lookup: pl.DataFrame | None
    persons: pl.DataFrame  # one row per per-dataset person: source_dataset, person_id_dataset, ids
    edges: pl.DataFrame  # scored cross-dataset person pairs (see build_xjs_lookup)
    thresholds: tuple[float, float, float]
    model: TrainedModel | None
    stats: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    state: pl.DataFrame | None = None  # per-dataset persons' variants hashes (xjs_incremental.STATE_SCHEMA)
    # the persons whose state or edges may differ from the stored ones (new, gone, or clustered again;
    # every other person's state row and edges are the stored ones): None when any may
    touched: pl.Series | None = None
    # where the records' keys are when ``lookup`` is None (``RecordsAndPersons`` of them and ``persons``)
    keys_in_database: KeysInDatabase | None = None
    # the variant digests to store (``xjs_incremental.DigestChange``); None: fewer than two datasets, none scored
    digests: DigestChange | None = None


# ------------------------------------------------------------------------------ inputs


def person_id_column(source: str, clusters: pl.DataFrame) -> str:
    """The per-dataset person id column of a clusters frame (the registry's name if present)."""
    name = SOURCES[source].person_id_name if source in SOURCES else None
    if name and name in clusters.columns:
        return name
    others = [c for c in clusters.columns if c not in (UNIQUE_ID, "model_version", SOURCE_DATASET)]
    if len(others) != 1:
        raise ValueError(f"{source}: cannot tell the person id column of clusters {clusters.columns}")
    return others[0]


def dataset_person_key(source: str | pl.Expr, person_id: pl.Expr) -> pl.Expr:
    """``<source>:<per-dataset id>``: unique over datasets."""
    src = pl.lit(source) if isinstance(source, str) else source
    return pl.concat_str([src, pl.lit(SEP), person_id.cast(pl.String)])


def records_with_persons(person_records: Mapping[str, pl.DataFrame],
                         clusters: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """All person records with their per-dataset person key (diagonal concat of the sources;
    fields a source lacks are null). Raises if a record has no or several person ids."""
    frames = []
    for source, records in person_records.items():
        if source not in clusters:
            raise ValueError(f"no clusters for source {source!r}")
        cl = clusters[source]
        pid = person_id_column(source, cl)
        ids = cl.select(pl.col(UNIQUE_ID).cast(pl.String),
                        dataset_person_key(source, pl.col(pid)).alias(PERSON))
        if ids.get_column(UNIQUE_ID).is_duplicated().any():
            raise ValueError(f"{source}: a record has several person ids in clusters")
        fields = [c for c in LINKAGE_FIELDS if c in records.columns]
        rec = records.select(pl.col(UNIQUE_ID).cast(pl.String), *fields).join(ids, on=UNIQUE_ID, how="left")
        missing = rec.get_column(PERSON).null_count()
        if missing:
            raise ValueError(f"{source}: {missing} person records have no per-dataset person id")
        frames.append(rec.with_columns(pl.lit(source).alias(SOURCE_DATASET)))
    if not frames:
        raise ValueError("no person records given")
    out = pl.concat(frames, how="diagonal_relaxed")
    if "dob" in out.columns:
        out = out.with_columns(pl.col("dob").cast(pl.Date))
    return out.select(SOURCE_DATASET, UNIQUE_ID, PERSON, *[c for c in LINKAGE_FIELDS if c in out.columns])


def person_variants(recs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Distinct (person, linkage fields) rows -> (variants for Splink, variant -> person map).

    The variant's ``record_id`` is a dense number (as text) that means nothing outside this
    run; ``source_dataset`` is the person's dataset.
    """
    fields = [c for c in LINKAGE_FIELDS if c in recs.columns]
    distinct = (recs.select(SOURCE_DATASET, PERSON, *fields)
                .unique(maintain_order=True)
                .with_row_index("_v")
                .with_columns(pl.col("_v").cast(pl.String).alias(UNIQUE_ID)))
    variants = distinct.select(UNIQUE_ID, SOURCE_DATASET, *fields)
    vmap = distinct.select(pl.col(UNIQUE_ID).alias("variant_id"), SOURCE_DATASET, PERSON)
    return variants, vmap


# ---------------------------------------------------------------------------- clustering


def nested_clusters(nodes: pl.DataFrame, edges: pl.DataFrame, thresholds: Sequence[float], *,
                    node_col: str = PERSON, group_col: str | None = SOURCE_DATASET,
                    left: str = "person_id_dataset_l", right: str = "person_id_dataset_r",
                    score: str = "match_probability", same_group: str = "separate",
                    labels: Sequence[str] | None = None) -> pl.DataFrame:
    """Cluster ``nodes`` once over one scored edge set and cut it at every threshold.

    Edges are processed in descending ``score`` (ties by node keys, so the result does not
    depend on row order); before the first edge below a threshold the current components are
    that threshold's clusters. With ``same_group="separate"`` an edge whose two clusters both
    hold a node of the same ``group_col`` value is skipped (a cannot-link constraint: at most
    one node per group in any cluster). Returns ``node_col`` [, ``group_col``] and one
    ``cluster_<label>`` column (dense Int64) per threshold; labels default to "high",
    "medium", "low" for three thresholds. Thresholds may be given in any order; the output
    nests from the highest to the lowest.
    """
    ts, labels, order_t = threshold_levels(thresholds, labels, same_group)
    keep_cols = [node_col] + ([group_col] if group_col else [])
    nodes = nodes.select(keep_cols).unique(node_col).sort(node_col)
    n = nodes.height
    idx = nodes.with_row_index("_i").select(node_col, pl.col("_i").cast(pl.Int64))
    e = (edges.select(pl.col(left).alias("_a"), pl.col(right).alias("_b"), pl.col(score).alias("_s"))
         .filter(pl.col("_s") >= min(ts))
         .join(idx.rename({node_col: "_a", "_i": "_ia"}), on="_a", how="inner")
         .join(idx.rename({node_col: "_b", "_i": "_ib"}), on="_b", how="inner")
         .filter(pl.col("_ia") != pl.col("_ib"))
         .sort(["_s", "_ia", "_ib"], descending=[True, False, False]))
    if group_col and same_group == "separate":
        codes = (nodes.get_column(group_col).cast(pl.String).fill_null("")
                 .rank("dense").cast(pl.Int64).to_list())
        # groups present in each cluster, as a bit set (Python ints: any number of groups)
        members: list[int] | None = [1 << (c - 1) for c in codes]
    else:
        members = None
    sets = DisjointSets(n)
    out = nodes
    k = 0
    ea_l, eb_l, es_l = (e.get_column(c).to_list() for c in ("_ia", "_ib", "_s"))
    m = len(ea_l)
    for ti in order_t:
        t = ts[ti]
        while k < m and es_l[k] >= t:
            ra, rb = sets.find(ea_l[k]), sets.find(eb_l[k])
            k += 1
            if ra == rb or (members is not None and members[ra] & members[rb]):
                continue
            kept = sets.join(ra, rb)
            if members is not None:
                members[kept] = members[ra] | members[rb]
        out = out.with_columns(pl.Series(f"_root_{ti}", sets.roots()))
    # dense ids numbered by the smallest node key of the cluster
    for ti in order_t:
        col = f"cluster_{labels[ti]}"
        out = out.with_columns(
            pl.col(node_col).min().over(f"_root_{ti}").rank("dense").cast(pl.Int64).alias(col))
    return out.select(*keep_cols, *[f"cluster_{labels[ti]}" for ti in order_t])


# ---------------------------------------------------------------------------------- build


def build_xjs_lookup(person_records: Mapping[str, pl.DataFrame], clusters: Mapping[str, pl.DataFrame],
                     **options: Any) -> XjsResult:
    """Link the per-dataset persons of all datasets into cross-justice persons.

    ``person_records[source]``: record_id + standardised linkage fields (the dedupe input);
    ``clusters[source]``: record_id -> per-dataset person id (the dedupe output). The options
    are :func:`link_variants`'. (The asset builds the same inputs in DuckDB: ``xjs_inputs``.)
    """
    _check_thresholds(options.get("thresholds", DEFAULT_THRESHOLDS))
    t0 = time.perf_counter()
    recs = records_with_persons(person_records, clusters)
    variants, vmap = person_variants(recs)
    keys = recs.select(SOURCE_DATASET, UNIQUE_ID, PERSON)
    del recs
    return link_variants(keys, variants, vmap, prepared_in=time.perf_counter() - t0, **options)


def link_variants(
    keys: pl.DataFrame | KeysInDatabase,
    variants: pl.DataFrame,
    vmap: pl.DataFrame,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    db_api=None,
    same_dataset: str = "separate",
    training: TrainingConfig | None = None,
    keep_edges_above: float | None = None,
    progress=None,
    connection=None,
    saved_model: tuple[dict[str, Any], int] | None = None,
    retrain_growth: float | None = 2.0,
    previous: PreviousXjs | None = None,
    prepared_in: float = 0.0,
    variants_hashes: pl.DataFrame | None = None,
    sorted_lookup: bool = True,
) -> XjsResult:
    """Link per-dataset persons, given as their records and variants, into cross-justice persons.

    ``keys``: source_dataset, record_id, person_id_dataset of every person record (or, with
    ``variants_hashes``, a ``KeysInDatabase``: then no lookup frame is built); ``variants``
    and ``vmap``: the persons' distinct linkage-field rows (:func:`person_variants`).
    ``thresholds``: (high, medium, low) match probabilities, high >= medium >= low.
    ``keep_edges_above``: scored edges kept in ``edges`` (default the low threshold; lower
    values keep weaker pairs for review / threshold studies, at the cost of a bigger table).
    ``connection``: a DuckDB connection the clustering runs on (default: its own in-memory
    database with the configured memory limit); see ``clusters_sql.nested_clusters_duckdb``.
    ``saved_model``: (model JSON, variants it was trained on) of an earlier run, reused instead of
    training while it fits the variants (``incremental.model_to_reuse``, ``retrain_growth``).
    ``previous``: the stored persons state and edges of an earlier lookup; when the model is the
    one those edges were scored with, only pairs of new or changed persons are scored and the
    other stored edges kept (``xjs_incremental``); the clustering is always redone over all edges.
    ``prepared_in``: seconds spent building the inputs (reported as ``timings["variants"]``).
    ``variants_hashes``: each person's variants hash when the inputs came with it (``xjs_inputs``).
    ``sorted_lookup``: the lookup sorted by dataset and record id; False leaves it in the order the
    join gives, for a caller that orders it itself (the carry in the warehouse does: sorting a
    million records in polars first costs over a CPU second for nothing).

    Returns an :class:`XjsResult`: ``lookup`` (one row per record), ``persons`` (one row per
    per-dataset person), ``edges`` (person pairs of different datasets: their best variant
    pair's match weight and probability, the number of variant pairs scored, and
    ``linked_at``: the highest level at which both are in one cross-justice person, null if
    never), the trained model, counts and timings.
    """
    say = progress or (lambda _m: None)
    high, medium, low = _check_thresholds(thresholds)
    t0 = time.perf_counter() - prepared_in
    timings: dict[str, float] = {"variants": prepared_in}
    persons = _persons_of(keys, variants_hashes)
    n_datasets = variants.get_column(SOURCE_DATASET).n_unique()
    say(f"{keys.height} records, {persons.height} per-dataset persons, {variants.height} variants "
        f"over {n_datasets} datasets")

    model = None
    keep = low if keep_edges_above is None else min(keep_edges_above, low)
    edges = person_edges(_no_pairs(), vmap)
    scoring: dict[str, Any] = {"lookup_mode": "full", "reason": "fewer than two datasets"}
    seeds, digests = None, None
    state = person_state(variants, vmap, None, keep, variants_hashes)
    if n_datasets >= 2:
        db_api = db_api or make_db_api()
        t = time.perf_counter()
        model = _model_for(variants, db_api, training, saved_model, retrain_growth, say)
        timings["train"] = time.perf_counter() - t
        t = time.perf_counter()
        state = state.with_columns(pl.lit(model.version, dtype=pl.String).alias("model_version"))
        edges, scoring, seeds, digests = _score_edges(variants, vmap, model, db_api, keep, state, previous, say)
        timings["predict"] = time.perf_counter() - t

    t = time.perf_counter()
    how = clustered_as((high, medium, low), same_dataset)
    clustered, cluster_stats = _cluster_persons(persons, edges, (high, medium, low), same_dataset, connection,
                                                previous, seeds if scoring["lookup_mode"] == "incremental" else None)
    touched = cluster_stats.pop(AFFECTED, None)
    state = state.join(cluster_state(clustered, how), on=PERSON, how="left")
    clustered = clustered.drop("component", *CLUSTER_NAMES, strict=False).rename({f"cluster_{lv}": f"person_id_{lv}" for lv in LEVELS})
    edges = _linked_at(edges, clustered)
    lookup = None
    if isinstance(keys, pl.DataFrame):
        lookup = (keys.select(SOURCE_DATASET, UNIQUE_ID, PERSON)
                  .join(clustered.drop(SOURCE_DATASET), on=PERSON, how="left")
                  .select(*LOOKUP_COLUMNS))
        lookup = lookup.sort(SOURCE_DATASET, UNIQUE_ID) if sorted_lookup else lookup
    timings["cluster"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    stats = {
        "records": keys.height, "persons_dataset": persons.height, "variants": variants.height,
        **scoring, "person_edges": edges.height,
        **{f"persons_{lv}": clustered.get_column(f"person_id_{lv}").n_unique() for lv in LEVELS},
        "edges_not_linked": int(edges.filter(pl.col("match_probability") >= low)
                                .get_column("linked_at").null_count()),
        "same_dataset": same_dataset,
        **{f"clustering_{k}": v for k, v in cluster_stats.items()},
    }
    return XjsResult(lookup=lookup, persons=clustered.sort(PERSON), edges=edges,
                     thresholds=(high, medium, low), model=model, stats=stats, timings=timings, state=state,
                     touched=touched, keys_in_database=None if isinstance(keys, pl.DataFrame) else keys,
                     digests=digests)


def _persons_of(keys: pl.DataFrame | KeysInDatabase, hashes: pl.DataFrame | None) -> pl.DataFrame:
    """source_dataset, person_id_dataset of every person: from the variants hashes when they came
    with the inputs with each person's dataset (one row per person: every person has a variant),
    else from the records' keys (a pass over every record)."""
    if hashes is not None and SOURCE_DATASET in hashes.columns:
        return hashes.select(SOURCE_DATASET, PERSON)
    if not isinstance(keys, pl.DataFrame):
        raise ValueError("records' keys kept in the database need the variants hashes with their datasets")
    return keys.select(SOURCE_DATASET, PERSON).unique(PERSON)


def _no_pairs() -> pl.DataFrame:
    return pl.DataFrame(schema={"variant_id_l": pl.String, "variant_id_r": pl.String,
                                "match_weight": pl.Float64, "match_probability": pl.Float64})


def _cluster_persons(persons: pl.DataFrame, edges: pl.DataFrame, thresholds: tuple[float, float, float],
                     same_dataset: str, connection, previous: PreviousXjs | None,
                     seeds: pl.Series | None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """``nested_clusters_duckdb``'s clustering (plus each person's ``component``): of the
    components the seeds reach only when the stored persons state can serve (the edges were
    extended), else of every edge."""
    def cluster(nodes: pl.DataFrame, some_edges: pl.DataFrame) -> tuple[pl.DataFrame, dict]:
        return nested_clusters_duckdb(
            nodes, some_edges, thresholds, node_col=PERSON, group_col=SOURCE_DATASET,
            left="person_id_dataset_l", right="person_id_dataset_r", same_group=same_dataset,
            connection=connection, python_clusters=nested_clusters, component_col="component")

    why = "every edge scored again"
    if seeds is not None and previous is not None:
        clustered, stats = recluster_touched(persons, edges, previous.persons, seeds,
                                             clustered_as(thresholds, same_dataset), cluster)
        if clustered is not None:
            return clustered, stats
        why = stats["reason"]
    clustered, stats = cluster(persons, edges)
    return clustered, {**stats, "mode": "all components", "reason": why}


def _score_edges(variants: pl.DataFrame, vmap: pl.DataFrame, model: TrainedModel, db_api, keep: float,
                 state: pl.DataFrame, previous: PreviousXjs | None,
                 say) -> tuple[pl.DataFrame, dict[str, Any], pl.Series | None, DigestChange]:
    """Person edges at or above ``keep``, and how they were found: every cross-dataset pair
    scored (full), or the stored edges of unchanged persons kept and only the pairs of new or
    changed persons scored (incremental: the model is the one the stored edges were scored with;
    of a person that only gained variants, only the gained ones, its stored edges merged in:
    ``grown_persons``). Incremental: also the persons whose clusters may have changed (new,
    changed or gone persons and both ends of every fresh edge); None otherwise. Last, the variant
    digests to store for the next run (every person's, or the changed persons')."""
    why_not = "no previous lookup given" if previous is None else previous.cannot_extend(model.version, keep)
    if why_not is None:
        from datafirst_assets.linkage.incremental import score_new_records  # as in _model_for

        assert previous is not None and previous.edges is not None
        rescore, touched = previous.touched_persons(state)
        current = variant_digests(variants, vmap, rescore)
        grown, gained = grown_persons(previous, rescore, current)
        say(f"extending the stored cross-justice edges: {rescore.len()} new or changed persons to score "
            f"({grown.len()} of them only gained variants: those alone scored), {touched.len() - rescore.len()} gone")
        whole = pl.DataFrame({PERSON: rescore}).join(pl.DataFrame({PERSON: grown}), on=PERSON, how="anti")
        rescore_variants = pl.concat([vmap.join(whole, on=PERSON, how="semi").get_column("variant_id"), gained])
        fresh = score_new_records(db_api, model, variants, rescore_variants, keep_above=keep, only_blocked=True)
        pairs = (fresh.select(pl.col("record_id_l").alias("variant_id_l"), pl.col("record_id_r").alias("variant_id_r"),
                              "match_weight", "match_probability") if fresh.height else _no_pairs())
        fresh_edges = person_edges(pairs, vmap)
        edges, kept = extend_edges(previous.edges, fresh_edges, touched, grown)
        seeds = pl.concat([touched.cast(pl.String), fresh_edges.get_column("person_id_dataset_l"),
                           fresh_edges.get_column("person_id_dataset_r")]).unique()
        digests = DigestChange(rows=current.select(PERSON, *DIGEST_COLUMNS), replaces=touched)
        return edges, {"lookup_mode": "incremental", "reason": f"{rescore.len()} persons new or changed",
                       "persons_rescored": rescore.len(), "persons_grown": grown.len(),
                       "variants_rescored": rescore_variants.len(), "persons_gone": touched.len() - rescore.len(),
                       "variant_pairs": pairs.height, "edges_kept": kept}, seeds, digests
    say(f"scoring every cross-dataset pair (keeping match probability >= {keep}): {why_not}")
    linker = linker_for_model(db_api, variants, model)
    sdf = predict_pairs(linker, threshold_match_probability=keep)
    pairs = pairs_to_polars(sdf, ["record_id_l", "record_id_r", "match_weight", "match_probability"])
    pairs = pairs.rename({"record_id_l": "variant_id_l", "record_id_r": "variant_id_r"})
    sdf.drop_table_from_database_and_remove_from_cache()
    digests = DigestChange(rows=variant_digests(variants, vmap).select(PERSON, *DIGEST_COLUMNS))
    return person_edges(pairs, vmap), {"lookup_mode": "full", "reason": why_not, "variant_pairs": pairs.height}, \
        None, digests


def _model_for(variants: pl.DataFrame, db_api, training: TrainingConfig | None,
               saved_model: tuple[dict[str, Any], int] | None, retrain_growth: float | None, say) -> TrainedModel:
    """The saved cross-justice model while it fits the variants (a linker over them made for it),
    else a model trained on them."""
    from datafirst_assets.linkage.incremental import model_to_reuse  # imports this module's neighbours

    doc, trained_on = saved_model if saved_model is not None else (None, None)
    reused, why = model_to_reuse(doc, trained_on, variants, retrain_growth=retrain_growth)
    if reused is not None:
        say(f"reusing the saved cross-justice model: {why}")
        # No linker yet: an incremental lookup scores through its own (``score_new_records``).
        return replace(reused, timings={"reused": 1.0})
    say(f"training the cross-justice model: {why}")
    spec = model_spec_for_records(variants, link_type="link_only", sql_dialect=sql_dialect(db_api))
    return train_model(variants, spec, db_api, training or TrainingConfig(u_max_pairs=u_pairs_for(variants.height)),
                       progress=say)


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, float, float]:
    ts = tuple(float(x) for x in thresholds)
    if len(ts) != 3:
        raise ValueError(f"thresholds must be (high, medium, low), got {thresholds!r}")
    if not (ts[0] >= ts[1] >= ts[2]):
        raise ValueError(f"thresholds must satisfy high >= medium >= low, got {ts}")
    if not all(0.0 < x <= 1.0 for x in ts):
        raise ValueError(f"thresholds are match probabilities in (0, 1], got {ts}")
    return ts  # type: ignore[return-value]


def person_edges(pairs: pl.DataFrame, vmap: pl.DataFrame) -> pl.DataFrame:
    """Variant pairs -> person pairs (ordered keys), best variant pair per person pair."""
    m = vmap.select("variant_id", SOURCE_DATASET, PERSON)
    j = (pairs.join(m.rename({"variant_id": "variant_id_l", SOURCE_DATASET: "_sl", PERSON: "_pl"}),
                    on="variant_id_l", how="inner")
         .join(m.rename({"variant_id": "variant_id_r", SOURCE_DATASET: "_sr", PERSON: "_pr"}),
               on="variant_id_r", how="inner")
         .filter((pl.col("_pl") != pl.col("_pr")) & (pl.col("_sl") != pl.col("_sr"))))  # cross-dataset only
    swap = pl.col("_pl") > pl.col("_pr")
    j = j.select(
        pl.when(swap).then(pl.col("_sr")).otherwise(pl.col("_sl")).alias("source_dataset_l"),
        pl.when(swap).then(pl.col("_pr")).otherwise(pl.col("_pl")).alias("person_id_dataset_l"),
        pl.when(swap).then(pl.col("_sl")).otherwise(pl.col("_sr")).alias("source_dataset_r"),
        pl.when(swap).then(pl.col("_pl")).otherwise(pl.col("_pr")).alias("person_id_dataset_r"),
        "match_weight", "match_probability",
    )
    return (j.group_by("source_dataset_l", "person_id_dataset_l", "source_dataset_r", "person_id_dataset_r")
            .agg(pl.col("match_weight").max(), pl.col("match_probability").max(),
                 pl.len().cast(pl.Int64).alias("variant_pairs"))
            .sort("match_probability", "person_id_dataset_l", "person_id_dataset_r",
                  descending=[True, False, False]))


def _linked_at(edges: pl.DataFrame, clustered: pl.DataFrame) -> pl.DataFrame:
    c = clustered.select(PERSON, *[f"person_id_{lv}" for lv in LEVELS])
    def side(s: str) -> pl.DataFrame:
        return c.rename({PERSON: f"person_id_dataset_{s}",
                         **{f"person_id_{lv}": f"_{lv}_{s}" for lv in LEVELS}})

    j = (edges.join(side("l"), on="person_id_dataset_l", how="left")
         .join(side("r"), on="person_id_dataset_r", how="left"))
    expr = pl.lit(None, dtype=pl.String)
    for lv in reversed(LEVELS):  # highest level wins
        expr = pl.when(pl.col(f"_{lv}_l") == pl.col(f"_{lv}_r")).then(pl.lit(lv)).otherwise(expr)
    return j.with_columns(expr.alias("linked_at")).drop([f"_{lv}_{s}" for lv in LEVELS for s in "lr"])


# ------------------------------------------------------------------------------ invariants


def _all_records(person_records: Mapping[str, pl.DataFrame] | pl.DataFrame) -> pl.DataFrame:
    if isinstance(person_records, pl.DataFrame):
        return person_records.select(pl.col(SOURCE_DATASET).cast(pl.String),
                                     pl.col(UNIQUE_ID).cast(pl.String))
    return pl.concat([f.select(pl.lit(s).alias(SOURCE_DATASET), pl.col(UNIQUE_ID).cast(pl.String))
                      for s, f in person_records.items()]) if person_records else pl.DataFrame(
        schema={SOURCE_DATASET: pl.String, UNIQUE_ID: pl.String})


def check_lookup_invariants(lookup: pl.DataFrame,
                            person_records: Mapping[str, pl.DataFrame] | pl.DataFrame) -> list[str]:
    """Problems with a lookup (empty list when it is sound):

    * the columns are there and no id is null;
    * every row references an existing person record, and every record has exactly one row;
    * every per-dataset person belongs to its row's dataset and maps to exactly one
      cross-justice id at each threshold;
    * high-threshold persons nest inside medium ones, medium inside low.
    """
    problems: list[str] = []
    missing_cols = [c for c in LOOKUP_COLUMNS if c not in lookup.columns]
    if missing_cols:
        return [f"lookup lacks column(s) {missing_cols}"]
    nulls = {c: lookup.get_column(c).null_count() for c in LOOKUP_COLUMNS}
    problems += [f"{n} null value(s) in {c}" for c, n in nulls.items() if n]
    lk = lookup.select(*LOOKUP_COLUMNS).with_columns(pl.col(UNIQUE_ID).cast(pl.String))
    records = _all_records(person_records)
    dup = lk.select(SOURCE_DATASET, UNIQUE_ID).is_duplicated().sum()
    if dup:
        problems.append(f"{dup} row(s) share a (source_dataset, record_id) with another row")
    orphans = lk.join(records, on=[SOURCE_DATASET, UNIQUE_ID], how="anti")
    if orphans.height:
        ex = orphans.head(3).select(SOURCE_DATASET, UNIQUE_ID).rows()
        problems.append(f"{orphans.height} row(s) reference no existing person record, e.g. {ex}")
    unmapped = records.join(lk, on=[SOURCE_DATASET, UNIQUE_ID], how="anti")
    if unmapped.height:
        ex = unmapped.head(3).rows()
        problems.append(f"{unmapped.height} person record(s) have no lookup row, e.g. {ex}")
    wrong_prefix = lk.filter(~pl.col(PERSON).str.starts_with(pl.col(SOURCE_DATASET) + SEP))
    if wrong_prefix.height:
        problems.append(f"{wrong_prefix.height} row(s) whose person_id_dataset is not of their dataset")
    for lv in LEVELS:
        col = f"person_id_{lv}"
        n = (lk.group_by(PERSON).agg(pl.col(col).n_unique().alias("n")).filter(pl.col("n") > 1).height)
        if n:
            problems.append(f"{n} per-dataset person(s) map to several {col} values")
    for inner, outer in (("high", "medium"), ("medium", "low")):
        n = (lk.group_by(f"person_id_{inner}").agg(pl.col(f"person_id_{outer}").n_unique().alias("n"))
             .filter(pl.col("n") > 1).height)
        if n:
            problems.append(f"{n} {inner}-threshold person(s) are split across {outer}-threshold persons "
                            f"(not nested)")
    return problems


def _one_per(group: str, col: str):
    def check(data) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col(col).n_unique().over(group) == 1).alias("ok"))
    return check


XJS_LOOKUP_SCHEMA = pa.DataFrameSchema(
    {
        "source_dataset": pa.Column(pl.String, pa.Check.isin(list(SOURCES))),
        "record_id": pa.Column(pl.String),
        "person_id_dataset": pa.Column(pl.String, pa.Check.str_matches(rf"^[a-z_]+{SEP}\S+$")),
        **{c: pa.Column(pl.Int64, pa.Check.ge(1)) for c in ID_COLUMNS},
    },
    checks=[
        pa.Check(lambda data: data.lazyframe.select(
            pl.col(PERSON).str.starts_with(pl.col(SOURCE_DATASET) + SEP).alias("ok")),
            name="person_id_dataset_of_own_dataset",
            error="person_id_dataset is prefixed by its row's dataset"),
        *[pa.Check(_one_per(PERSON, f"person_id_{lv}"), name=f"one_{lv}_id_per_dataset_person",
                   error=f"every per-dataset person maps to exactly one person_id_{lv}") for lv in LEVELS],
        pa.Check(_one_per("person_id_high", "person_id_medium"), name="high_nests_in_medium",
                 error="each high-threshold person lies inside one medium-threshold person"),
        pa.Check(_one_per("person_id_medium", "person_id_low"), name="medium_nests_in_low",
                 error="each medium-threshold person lies inside one low-threshold person"),
    ],
    unique=["source_dataset", "record_id"],
    strict=True,
    name="linkage_xjs_lookup",
    description="Cross-justice person lookup: one row per source record, its per-dataset person and "
    "its cross-justice person at the high, medium and low thresholds (nested).",
)


# -------------------------------------------------------------------------- stable ids

#: One row per change of a cross-justice id, as the per-dataset id_changes, plus its level.
XJS_CHANGE_SCHEMA = {"level": pl.String, **CHANGE_SCHEMA}
XJS_HISTORY_SCHEMA = {"level": pl.String, **HISTORY_SCHEMA}


_KEY = "_record_key"


def _record_key() -> pl.Expr:
    """``<dataset>:<record id>``: a record, unique over datasets (the unit ids are carried by)."""
    return pl.concat_str([pl.col(SOURCE_DATASET), pl.lit(SEP), pl.col(UNIQUE_ID).cast(pl.String)]).alias(_KEY)


def xjs_change_counts(changes: pl.DataFrame, lookup: pl.DataFrame, first_run: bool) -> dict[str, int]:
    """``<level>_<kind>`` -> persons, every level and kind (0 included). The first run logs no row
    per person (everyone is new), so there every person of a level counts as new."""
    logged = {(lv, kind): n for lv, kind, n in changes.group_by("level", "kind").len().iter_rows()}
    counts = {f"{lv}_{kind}": logged.get((lv, kind), 0) for lv in LEVELS for kind in KINDS}
    if first_run:
        counts |= {f"{lv}_new": lookup.get_column(f"person_id_{lv}").n_unique() for lv in LEVELS}
    return counts


def carry_forward_xjs_ids(lookup: pl.DataFrame, previous: pl.DataFrame | None = None,
                          history: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The lookup with ``person_id_high/_medium/_low`` carried forward from ``previous`` (the
    last stored lookup, None on the first run), and the changes (``XJS_CHANGE_SCHEMA``).

    Each level is carried as the per-dataset ids are (:func:`carry_forward_ids`, records as
    the unit): a cross-justice person whose records are exactly a previous person's keeps
    that id, a merge keeps the id covering most records and logs the other as ``merge``, a
    split keeps the id on the larger part. New ids are numbered above every id the level
    ever issued (``history``: the stored change log), so a retired id is never reused.
    Relabelling a partition keeps it a partition, so the levels still nest.
    """
    has_previous = previous is not None and previous.height > 0
    keyed = lookup.with_columns(_record_key())
    changes = []
    for level in LEVELS:
        col = f"person_id_{level}"
        prev = (previous.select(_record_key().alias(RECORD_ID), pl.col(col).alias(PERSON_ID))
                if has_previous and col in previous.columns else None)
        past = (history.filter(pl.col("level") == level)
                if history is not None and not history.is_empty() and "level" in history.columns else None)
        start = next_free_id(None if prev is None else prev.get_column(PERSON_ID),
                             None if past is None else past.get_column("old_id"),
                             None if past is None else past.get_column("new_id"))
        carried = carry_forward_ids(prev, keyed.select(pl.col(_KEY).alias(RECORD_ID), col), first_new_id=start,
                                    cluster_col=col)
        keyed = keyed.drop(col).join(carried.ids.rename({RECORD_ID: _KEY, PERSON_ID: col}), on=_KEY, how="left")
        changes.append(carried.changes.select(pl.lit(level).alias("level"), *CHANGE_SCHEMA))
    out = keyed.select(lookup.columns)
    return out, pl.concat(changes).cast(XJS_CHANGE_SCHEMA)  # type: ignore[arg-type]


def xjs_id_change_history(history: pl.DataFrame | None, changes: pl.DataFrame, *, run_id: str,
                          at: datetime | None = None) -> pl.DataFrame:
    """The stored cross-justice change log with this run's ``changes`` appended (``history_with``)."""
    rows = run_history_rows(changes, run_id=run_id, mode="full", at=at, schema=XJS_CHANGE_SCHEMA)
    return history_with(history, rows, run_id=run_id, schema=XJS_HISTORY_SCHEMA)


def unchanged_xjs_persons_kept(previous: pl.DataFrame, lookup: pl.DataFrame) -> dict[str, tuple[int, int]]:
    """Per level: (previous cross-justice persons whose exact record set is again one person,
    how many of them kept their id). The floor is that the two are equal. The records of the two
    lookups are matched once for the three levels."""
    keys = [pl.col(SOURCE_DATASET).cast(pl.String), pl.col(UNIQUE_ID).cast(pl.String)]
    before = previous.select(*keys, *ID_COLUMNS)
    after = lookup.select(*keys, *[pl.col(c).alias(f"_now_{c}") for c in ID_COLUMNS])
    joined = before.join(after, on=[SOURCE_DATASET, UNIQUE_ID], how="left")
    return {level: same_record_sets(joined, f"person_id_{level}", f"_now_person_id_{level}",
                                    after.group_by(f"_now_person_id_{level}").agg(pl.len().alias("_size")))
            for level in LEVELS}
