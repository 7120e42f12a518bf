"""Extend the stored cross-justice edges instead of scoring every cross-dataset pair again.

    state = person_state(variants, vmap, model_version, edges_above)   # stored as linkage/xjs/persons
    previous = PreviousXjs(persons=<stored persons>, edges=<stored edges>)
    why_not = previous.cannot_extend(model.version, edges_above)       # None: it can be extended
    touched = previous.touched_persons(state)                           # changed, new or gone persons
    edges = extend_edges(previous.edges, fresh_edges, touched)

A per-dataset person is described to the lookup by its *variants* (the distinct rows of linkage
fields over its records, ``xjs.person_variants``). ``variants_hash`` sums the MD5 digests of its
variants (the same in every process, whatever their order), so the next run tells which persons changed, as the
per-dataset link tells changed records by their ``record_hash`` (``incremental.record_hashes``).
Per-dataset ids are carried forward, so a person whose records did not change keeps both its key
(``<dataset>:<id>``) and its hash.

An edge's score depends only on the two persons' variants and the model, so when the model is
the one the stored edges were scored with, the pairs of two unchanged persons would score as
they did: their stored edges are kept, and only pairs with a person that is new or changed are
scored (``incremental.score_new_records``: between those persons' variants and every other
variant, and among them). Edges touching a changed or vanished person are dropped. Term
frequencies are those of all current variants, as a full prediction's; stored edges keep the
scores they were given (the per-dataset incremental link does the same), so a model with term
frequency adjustments drifts slightly from a full rescore until the next full run.

The stored state is only trusted when the persons table and the edges table were written by the
same run (``written_by_run``): a run that stored the edges and failed before storing the persons
leaves a state the next run refuses, and that run scores every pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl

from datafirst_assets.linkage.settings import LINKAGE_FIELDS, SOURCE_DATASET, UNIQUE_ID

PERSON = "person_id_dataset"
#: Which run wrote a state table (the persons and edges of one run go together).
WRITTEN_BY = "written_by_run"
#: One row per per-dataset person: what the next run compares to tell changed persons.
STATE_SCHEMA = {SOURCE_DATASET: pl.String, PERSON: pl.String, "variants_hash": pl.String,
                "model_version": pl.String, "edges_above": pl.Float64}
#: Columns of a stored edge that a kept edge carries (``linked_at`` is recomputed every run).
EDGE_COLUMNS = ("source_dataset_l", "person_id_dataset_l", "source_dataset_r", "person_id_dataset_r",
                "match_weight", "match_probability", "variant_pairs")


def variants_hashes(variants: pl.DataFrame, vmap: pl.DataFrame) -> pl.DataFrame:
    """person_id_dataset -> variants_hash: each variant's fields joined in a fixed order and
    MD5-hashed, the 128-bit digests summed per person (in two 64-bit halves, so the sum is exact):
    the same in every process and independent of the variants' order."""
    fields = [c for c in LINKAGE_FIELDS if c in variants.columns]
    frame = (variants.select(pl.col(UNIQUE_ID).alias("variant_id"), *fields)  # noqa: F841 (SQL below)
             .join(vmap.select("variant_id", PERSON), on="variant_id", how="inner")
             .drop("variant_id").to_arrow())
    parts = ", ".join(f"coalesce(cast(\"{c}\" as varchar), chr(0))" for c in fields) or "''"
    with duckdb.connect() as con:
        out = con.sql(f"""
            with v as (select "{PERSON}", md5_number(concat_ws(chr(31), {parts})) as h from frame)
            select "{PERSON}", sum((h >> 64)::hugeint)::varchar || '-'
                || sum((h & 18446744073709551615::uhugeint)::hugeint)::varchar as variants_hash
            from v group by "{PERSON}" order by "{PERSON}" """).to_arrow_table()
    return pl.from_arrow(out)  # type: ignore[return-value]


def person_state(variants: pl.DataFrame, vmap: pl.DataFrame, model_version: str | None,
                 edges_above: float) -> pl.DataFrame:
    """What the persons table stores (``STATE_SCHEMA``): each person's dataset and variants
    hash, the model version the edges were scored with and the probability they were kept above."""
    persons = vmap.select(SOURCE_DATASET, PERSON).unique(PERSON)
    return (persons.join(variants_hashes(variants, vmap), on=PERSON, how="left")
            .with_columns(pl.lit(model_version, dtype=pl.String).alias("model_version"),
                          pl.lit(edges_above, dtype=pl.Float64).alias("edges_above"))
            .select(*STATE_SCHEMA).cast(STATE_SCHEMA).sort(PERSON))  # type: ignore[arg-type]


def _single(frame: pl.DataFrame, column: str):
    values = frame.get_column(column).unique()
    return values[0] if values.len() == 1 else None


@dataclass
class PreviousXjs:
    """What the previous lookup stored: its persons state and its edges (either may be missing)."""

    persons: pl.DataFrame | None = None
    edges: pl.DataFrame | None = None

    def cannot_extend(self, model_version: str, edges_above: float) -> str | None:
        """Why this run cannot keep the stored edges (None: it can)."""
        if self.persons is None or self.persons.is_empty():
            return "no stored cross-justice persons"
        if self.edges is None:
            return "no stored cross-justice edges"
        missing = [c for c in (*STATE_SCHEMA, WRITTEN_BY) if c not in self.persons.columns]
        missing += [c for c in (*EDGE_COLUMNS, WRITTEN_BY) if c not in self.edges.columns]
        if missing:
            return f"the stored persons or edges lack {sorted(set(missing))} (written before incremental lookups)"
        before = _single(self.persons, "model_version")
        if before != model_version:
            return f"the model changed ({before} -> {model_version})"
        if _single(self.persons, "edges_above") != edges_above:
            return f"edges were kept above {_single(self.persons, 'edges_above')}, now {edges_above}"
        run = _single(self.persons, WRITTEN_BY)
        if run is None or (not self.edges.is_empty() and _single(self.edges, WRITTEN_BY) != run):
            return "the stored persons and edges were not written by the same run"
        return None

    def touched_persons(self, state: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
        """(persons to score: new, or whose variants changed; persons whose stored edges go:
        those and the persons that are gone)."""
        assert self.persons is not None
        before = self.persons.select(PERSON, pl.col("variants_hash").alias("_before"))
        j = state.select(PERSON, "variants_hash").join(before, on=PERSON, how="full", coalesce=True)
        rescore = j.filter(pl.col("variants_hash").is_not_null()
                           & (pl.col("_before").is_null() | (pl.col("variants_hash") != pl.col("_before"))))
        gone = j.filter(pl.col("variants_hash").is_null())
        rescore_ids = rescore.get_column(PERSON).sort()
        return rescore_ids, pl.concat([rescore_ids, gone.get_column(PERSON)]).sort()


def extend_edges(stored: pl.DataFrame, fresh: pl.DataFrame, touched: pl.Series) -> pl.DataFrame:
    """The stored edges whose two persons are both untouched, plus the freshly scored ones,
    in ``xjs.person_edges``' order (strongest first, ties by the persons' keys)."""
    gone = pl.DataFrame({PERSON: touched.cast(pl.String)})
    kept = (stored.select(*EDGE_COLUMNS)
            .join(gone, left_on="person_id_dataset_l", right_on=PERSON, how="anti")
            .join(gone, left_on="person_id_dataset_r", right_on=PERSON, how="anti"))
    edges = pl.concat([kept, fresh.select(*EDGE_COLUMNS)], how="vertical_relaxed") if fresh.height else kept
    return edges.sort("match_probability", "person_id_dataset_l", "person_id_dataset_r",
                      descending=[True, False, False])


# ----------------------------------------------------------- clustering the touched components

#: What the persons table also stores about the clustering (absent in states written before):
#: each person's connected component over the edges at the lowest threshold and its cluster at
#: each level, both named by their smallest person key, and how it was clustered (the thresholds
#: and the same-dataset rule), so the next run re-clusters only the components a change touches.
CLUSTER_LEVELS = ("high", "medium", "low")
CLUSTER_STATE = {"component": pl.String, **{f"cluster_{lv}": pl.String for lv in CLUSTER_LEVELS},
                 "clustered_as": pl.String}


def clustered_as(thresholds: tuple[float, float, float], same_dataset: str) -> str:
    return f"{same_dataset}|{','.join(repr(float(t)) for t in thresholds)}"


def cluster_state(clustered: pl.DataFrame, how: str) -> pl.DataFrame:
    """person_id_dataset and ``CLUSTER_STATE`` from a clustering (``cluster_<level>`` ids and
    ``component``): each cluster named by its smallest person key, which survives renumbering."""
    return clustered.select(
        PERSON, "component", *[pl.col(PERSON).min().over(f"cluster_{lv}").alias(f"cluster_{lv}") for lv in CLUSTER_LEVELS],
        pl.lit(how, dtype=pl.String).alias("clustered_as")).cast({PERSON: pl.String, **CLUSTER_STATE})  # type: ignore[arg-type]


def recluster_touched(persons: pl.DataFrame, edges: pl.DataFrame, stored: pl.DataFrame | None, seeds: pl.Series,
                      how: str, cluster) -> tuple[pl.DataFrame | None, dict]:
    """The clustering of every person (``PERSON``, ``source_dataset``, ``cluster_<level>`` dense
    ids numbered by each cluster's smallest person key, ``component``), computing only the
    components that ``seeds`` (persons new, changed or gone, and both ends of every freshly scored
    edge) reach; every other person keeps the cluster ``stored`` (the previous persons state)
    gives it. ``cluster(nodes, edges)`` is the full clustering. Returns (None, why) when the
    stored state cannot serve.

    Why this equals clustering everything: a stored component that no seed reaches has exactly
    the nodes and edges it had (its edges had two untouched ends, so they were kept; no fresh
    edge ends in it), and the clustering of a component depends only on its own edges (taken in
    the global order, ``clusters_sql``); an edge of the new graph never leaves the re-clustered
    set (a kept edge lies inside one stored component, a fresh one joins two seeds)."""
    if stored is None or not set(CLUSTER_STATE) <= set(stored.columns):
        return None, {"reason": "the stored persons have no clusters (written before incremental clustering)"}
    if _single(stored, "clustered_as") != how:
        return None, {"reason": f"clustered as {_single(stored, 'clustered_as')}, now {how}"}
    before = stored.select(PERSON, *list(CLUSTER_STATE)[:-1])
    seed = pl.DataFrame({PERSON: seeds.cast(pl.String)}).unique()
    hit = before.join(seed, on=PERSON, how="semi").get_column("component").unique()
    current = persons.select(PERSON, SOURCE_DATASET).unique(PERSON)
    affected = pl.concat([before.filter(pl.col("component").is_in(hit.implode())).select(PERSON), seed,
                          current.join(before, on=PERSON, how="anti").select(PERSON)]).unique()
    nodes = current.join(affected, on=PERSON, how="semi")
    left_in = edges.get_column("person_id_dataset_l").is_in(nodes.get_column(PERSON).implode())
    right_in = edges.get_column("person_id_dataset_r").is_in(nodes.get_column(PERSON).implode())
    if (left_in != right_in).any():  # cannot happen (see above); never a wrong answer if it does
        return None, {"reason": "an edge leaves the touched components"}
    sub, stats = cluster(nodes, edges.filter(left_in)) if nodes.height else (None, {})
    named = before.join(affected, on=PERSON, how="anti").join(current, on=PERSON, how="semi")
    if sub is not None:
        named = pl.concat([cluster_state(sub, how).drop("clustered_as"), named])
    out = current.sort(PERSON).join(named, on=PERSON, how="left")
    out = out.with_columns(pl.col(f"cluster_{lv}").rank("dense").cast(pl.Int64) for lv in CLUSTER_LEVELS)
    return out.select(PERSON, SOURCE_DATASET, *[f"cluster_{lv}" for lv in CLUSTER_LEVELS], "component"), {
        **stats, "mode": "touched components", "persons_reclustered": nodes.height,
        "components_touched": hit.len()}
