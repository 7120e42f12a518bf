"""Extend the stored cross-justice edges instead of scoring every cross-dataset pair again.

    state = person_state(variants, vmap, model_version, edges_above)   # stored as linkage/xjs/persons
    previous = PreviousXjs(persons=<stored persons>, edges=<stored edges>)
    why_not = previous.cannot_extend(model.version, edges_above)       # None: it can be extended
    touched = previous.touched_persons(state)                           # changed, new or gone persons
    edges, kept = extend_edges(previous.edges, fresh_edges, touched)

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

The ids of the lookup are carried forward in the warehouse's DuckDB against the stored lookup
(``carry_forward_stored``, below): only records of clusters whose ids may change reach Python.

The stored state is only trusted when the persons table and the edges table were written by the
same run: the step clears the *state marker* (``STATE_MARKER``, a one-row table beside them) before
it writes either and marks the state again, with the run and both tables' row counts, only after
both were stored, so a run that stored the edges and failed before storing the persons leaves a
state the next run refuses, and that run scores every pair. (States written before the marker
carried the run on every row, ``written_by_run``, which made every row differ from the stored one
in every run: the two tables could only be rewritten whole. Such a state is still read, by those
columns, and rewritten whole once.) With the marker off the rows, an incremental run stores the
persons and edges as their change (``changed_rows``): the rows of the persons whose components it
clustered again, and of the edges touching them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import polars as pl

from datafirst_assets.common.sql import quote_identifier, quote_literal, row_text_sql
from datafirst_assets.deidentify.keys import keyed_hash
from datafirst_assets.linkage.settings import LINKAGE_FIELDS, SOURCE_DATASET, UNIQUE_ID
from datafirst_assets.linkage.stable_ids import CHANGE_SCHEMA, PERSON_ID, RECORD_ID, carry_forward_ids, same_record_sets
from datafirst_assets.warehouse.connection import scratch_cursor

PERSON = "person_id_dataset"
#: The run marker on every row of states written before the state marker (read, never written).
WRITTEN_BY = "written_by_run"
#: The state marker's table (in the lookup's schema) and its one row: the run that stored the
#: persons and edges together, and their row counts then.
STATE_MARKER = "state_marker"
STATE_MARKER_COLUMNS = "run_id varchar, persons bigint, edges bigint"
#: One row per per-dataset person: what the next run compares to tell changed persons.
STATE_SCHEMA = {SOURCE_DATASET: pl.String, PERSON: pl.String, "variants_hash": pl.String,
                "model_version": pl.String, "edges_above": pl.Float64}
#: Columns of a stored edge that a kept edge carries (``linked_at`` is recomputed every run).
EDGE_COLUMNS = ("source_dataset_l", "person_id_dataset_l", "source_dataset_r", "person_id_dataset_r",
                "match_weight", "match_probability", "variant_pairs")


#: A variant's MD5 digest (``variant_digest_sql``) as its two 64-bit halves: a person's digests sum
#: to its ``variants_hash``. Stored per person (``DIGESTS_TABLE``) so that the next run tells a person
#: that only gained variants from one that lost some (``grown_persons``).
DIGEST_COLUMNS = ("variant_hi", "variant_lo")
DIGESTS_TABLE = "variant_digests"
DIGESTS_SCHEMA = {PERSON: pl.String, "variant_hi": pl.UInt64, "variant_lo": pl.UInt64}
_LOW_64 = "18446744073709551615::uhugeint"


def variant_digest_sql(fields: list[str]) -> str:
    """A variant's MD5 digest (a UHUGEINT) over its ``fields``, in a fixed order."""
    return f"md5_number({row_text_sql(fields)})"


def digest_halves_sql(digest: str) -> str:
    """``DIGEST_COLUMNS`` of a digest column."""
    return f"({digest} >> 64)::ubigint as variant_hi, ({digest} & {_LOW_64})::ubigint as variant_lo"


def variants_hash_sql(relation: str, fields: list[str], *, with_dataset: bool = False,
                      digest: str | None = None) -> str:
    """SELECT person_id_dataset, variants_hash over ``relation`` (one row per variant: PERSON and
    ``fields``): each variant's fields joined in a fixed order and MD5-hashed, the 128-bit digests
    summed per person (in two 64-bit halves, so the sum is exact): the same in every process and
    independent of the variants' order. ``with_dataset``: also the person's ``source_dataset``
    (a column of ``relation``), so ``person_state`` needs no pass over the variant map. ``digest``:
    a column of ``relation`` holding each variant's digest already (``variant_digest_sql``)."""
    dataset = f", min({SOURCE_DATASET}) as {SOURCE_DATASET}" if with_dataset else ""
    carried = f", {SOURCE_DATASET}" if with_dataset else ""
    return f"""
        with v as (select "{PERSON}"{carried}, {digest or variant_digest_sql(fields)} as h from {relation})
        select "{PERSON}", sum((h >> 64)::hugeint)::varchar || '-'
            || sum((h & {_LOW_64})::hugeint)::varchar as variants_hash{dataset}
        from v group by "{PERSON}" order by "{PERSON}" """


def variants_hashes(variants: pl.DataFrame, vmap: pl.DataFrame) -> pl.DataFrame:
    """person_id_dataset -> variants_hash (``variants_hash_sql``) of polars variants."""
    fields, frame = _variants_with_persons(variants, vmap)  # noqa: F841 (SQL below)
    with scratch_cursor() as con:
        out = con.sql(variants_hash_sql("frame", fields)).to_arrow_table()
    return pl.from_arrow(out)  # type: ignore[return-value]


def _variants_with_persons(variants: pl.DataFrame, vmap: pl.DataFrame):
    """(the linkage fields the variants have, variant_id + person_id_dataset + those fields as arrow):
    what the variants hashes and digests are taken of."""
    fields = [c for c in LINKAGE_FIELDS if c in variants.columns]
    frame = (variants.select(pl.col(UNIQUE_ID).alias("variant_id"), *fields)
             .join(vmap.select("variant_id", PERSON), on="variant_id", how="inner").to_arrow())
    return fields, frame


def variant_digests(variants: pl.DataFrame, vmap: pl.DataFrame, persons: pl.Series | None = None) -> pl.DataFrame:
    """variant_id, person_id_dataset and ``DIGEST_COLUMNS`` of the variants of ``persons`` (None:
    of every person): from the variant map when it carries them (``xjs_inputs`` computes them where
    it numbers the variants), else hashed here as ``variants_hashes`` hashes them."""
    wanted = vmap if persons is None else vmap.join(pl.DataFrame({PERSON: persons.cast(pl.String)}), on=PERSON,
                                                    how="semi")
    if all(c in vmap.columns for c in DIGEST_COLUMNS):
        return wanted.select("variant_id", PERSON, *DIGEST_COLUMNS)
    fields, frame = _variants_with_persons(variants, wanted)  # noqa: F841 (SQL below)
    with scratch_cursor() as con:
        out = con.sql(f'select variant_id, "{PERSON}", {digest_halves_sql(variant_digest_sql(fields))} '
                      "from frame").to_arrow_table()
    return pl.from_arrow(out).cast({"variant_id": pl.String, PERSON: pl.String})  # type: ignore[return-value]


@dataclass(frozen=True)
class DigestChange:
    """What the stored variant digests become: ``rows`` (person_id_dataset and ``DIGEST_COLUMNS``, every
    variant of the persons they cover) in place of the stored rows of ``replaces`` (None: of every person)."""

    rows: pl.DataFrame
    replaces: pl.Series | None = None


def person_state(variants: pl.DataFrame, vmap: pl.DataFrame, model_version: str | None,
                 edges_above: float, hashes: pl.DataFrame | None = None) -> pl.DataFrame:
    """What the persons table stores (``STATE_SCHEMA``): each person's dataset and variants
    hash, the model version the edges were scored with and the probability they were kept above.
    ``hashes``: ``variants_hashes`` already computed where the variants were built (xjs_inputs);
    when they also give each person's dataset (``variants_hash_sql(with_dataset=True)``: one row
    per person of the variant map) the map is not read again."""
    if hashes is not None and SOURCE_DATASET in hashes.columns:
        persons_hashes = hashes
    else:
        persons = vmap.select(SOURCE_DATASET, PERSON).unique(PERSON)
        persons_hashes = persons.join(variants_hashes(variants, vmap) if hashes is None
                                      else hashes.select(PERSON, "variants_hash"), on=PERSON, how="left")
    return (persons_hashes
            .with_columns(pl.lit(model_version, dtype=pl.String).alias("model_version"),
                          pl.lit(edges_above, dtype=pl.Float64).alias("edges_above"))
            .select(*STATE_SCHEMA).cast(STATE_SCHEMA).sort(PERSON))  # type: ignore[arg-type]


def _single(frame: pl.DataFrame, column: str):
    values = frame.get_column(column).unique()
    return values[0] if values.len() == 1 else None


@dataclass
class PreviousXjs:
    """What the previous lookup stored: its persons state and its edges (either may be missing), and
    whether the state marker says one run stored both (``state_marked``; None: not read)."""

    persons: pl.DataFrame | None = None
    edges: pl.DataFrame | None = None
    marked: bool | None = None
    # the stored variant digests (``DIGESTS_SCHEMA``) of the persons given; None: none stored
    digests: Callable[[pl.Series], pl.DataFrame] | None = None

    def cannot_extend(self, model_version: str, edges_above: float) -> str | None:
        """Why this run cannot keep the stored edges (None: it can)."""
        if self.persons is None or self.persons.is_empty():
            return "no stored cross-justice persons"
        if self.edges is None:
            return "no stored cross-justice edges"
        missing = [c for c in STATE_SCHEMA if c not in self.persons.columns]
        missing += [c for c in EDGE_COLUMNS if c not in self.edges.columns]
        if missing:
            return f"the stored persons or edges lack {sorted(set(missing))} (written before incremental lookups)"
        before = _single(self.persons, "model_version")
        if before != model_version:
            return f"the model changed ({before} -> {model_version})"
        if _single(self.persons, "edges_above") != edges_above:
            return f"edges were kept above {_single(self.persons, 'edges_above')}, now {edges_above}"
        if not self._one_run():
            return "the stored persons and edges were not written by the same run"
        return None

    def _one_run(self) -> bool:
        """Both tables stored by one run: by the run marker on their rows when both carry it (a
        state written before the state marker), else by the state marker, when neither carries it
        (one table with the rows' marker and one without: two versions' runs wrote them)."""
        assert self.persons is not None and self.edges is not None
        on_rows = [WRITTEN_BY in frame.columns for frame in (self.persons, self.edges)]
        if all(on_rows):
            run = _single(self.persons, WRITTEN_BY)
            return run is not None and (self.edges.is_empty() or _single(self.edges, WRITTEN_BY) == run)
        return not any(on_rows) and bool(self.marked)

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


def grown_persons(previous: PreviousXjs, rescore: pl.Series, current: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
    """(the persons of ``rescore`` that only gained variants, the variant ids they gained), from
    ``current`` (``variant_digests`` of ``rescore``'s variants now) and the digests stored for them.

    A person's stored edges are the best pairs of its variants then; when every one of those
    variants is still its own, its edges now are those pairs and the pairs of the variants it
    gained, so only the gained variants need scoring (``extend_edges`` merges the two). Stored
    digests are taken for a person only when they sum to its stored ``variants_hash`` (the state
    the stored edges belong to): a digest table left by another run, or missing, leaves the person
    scored whole, as before. At 1M people 13,320 of a 1% extract's 13,335 changed persons had only
    gained variants: 14,387 gained against the 50,133 they have."""
    none = (pl.Series(PERSON, [], pl.String), pl.Series("variant_id", [], pl.String))
    if previous.digests is None or previous.persons is None or rescore.is_empty():
        return none
    stored = previous.digests(rescore)
    if stored.is_empty():
        return none
    halves = [pl.col(c).cast(pl.Int128).sum().cast(pl.String) for c in DIGEST_COLUMNS]
    sums = stored.group_by(PERSON).agg(pl.concat_str(halves, separator="-").alias("_sum"))
    verified = (sums.join(previous.persons.select(PERSON, "variants_hash"), on=PERSON, how="inner")
                .filter(pl.col("_sum") == pl.col("variants_hash")).select(PERSON))
    on = [PERSON, *DIGEST_COLUMNS]
    lost = stored.join(current, on=on, how="anti").select(PERSON).unique()
    grown = verified.join(lost, on=PERSON, how="anti")
    gained = current.join(grown, on=PERSON, how="semi").join(stored, on=on, how="anti")
    return grown.get_column(PERSON).sort(), gained.get_column("variant_id").sort()


def _kept_edges(stored: pl.DataFrame, dropped: pl.Series) -> pl.DataFrame:
    """The stored edges with neither person in ``dropped``."""
    gone = pl.DataFrame({PERSON: dropped.cast(pl.String)})
    return (stored.select(*EDGE_COLUMNS)
            .join(gone, left_on="person_id_dataset_l", right_on=PERSON, how="anti")
            .join(gone, left_on="person_id_dataset_r", right_on=PERSON, how="anti"))


def extend_edges(stored: pl.DataFrame, fresh: pl.DataFrame, touched: pl.Series,
                 grown: pl.Series | None = None) -> tuple[pl.DataFrame, int]:
    """The stored edges whose two persons are both untouched, plus the freshly scored ones,
    in ``xjs.person_edges``' order (strongest first, ties by the persons' keys), and how many
    stored edges it keeps. A person of ``grown`` (touched, but only gained variants:
    ``grown_persons``) keeps its stored edges, merged with its fresh ones as ``xjs.person_edges``
    would aggregate all their variant pairs: the best weight and probability, the pairs counted."""
    grown = pl.Series(PERSON, [], pl.String) if grown is None else grown.cast(pl.String)
    kept = _kept_edges(stored, touched.filter(~touched.cast(pl.String).is_in(grown.implode())))
    kept_count, fresh = kept.height, fresh.select(*EDGE_COLUMNS)
    if grown.len():
        ends = pl.col("person_id_dataset_l").is_in(grown.implode()) | pl.col("person_id_dataset_r").is_in(grown.implode())
        keys = list(EDGE_COLUMNS[:4])
        fresh = (pl.concat([kept.filter(ends), fresh], how="vertical_relaxed")
                 .group_by(keys).agg(pl.col("match_weight").max(), pl.col("match_probability").max(),
                                     pl.col("variant_pairs").sum().cast(pl.Int64)))
        kept = kept.filter(~ends)
    edges = pl.concat([kept, fresh.select(*EDGE_COLUMNS)], how="vertical_relaxed") if fresh.height else kept
    return edges.sort("match_probability", "person_id_dataset_l", "person_id_dataset_r",
                      descending=[True, False, False]), kept_count


# ------------------------------------------------------------- the state marker and the change


def clear_state_marker(conn: duckdb.DuckDBPyConnection, marker: str) -> None:
    """Before the persons or edges are written: the stored state is no longer one run's."""
    conn.execute(f"create table if not exists {marker} ({STATE_MARKER_COLUMNS})")
    conn.execute(f"delete from {marker}")


def mark_state(conn: duckdb.DuckDBPyConnection, marker: str, run_id: str, persons: int, edges: int) -> None:
    """After both were written: they are ``run_id``'s, with these row counts."""
    conn.begin()
    try:
        clear_state_marker(conn, marker)
        conn.execute(f"insert into {marker} values (?, ?, ?)", [run_id, persons, edges])
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def stored_digests(conn: duckdb.DuckDBPyConnection, table: str, persons: pl.Series) -> pl.DataFrame:
    """The digests ``table`` stores of ``persons`` (``DIGESTS_SCHEMA``; none when there is no such
    table, or it has other columns: a person is then scored whole)."""
    view = f"_persons_{secrets.token_hex(4)}"
    conn.register(view, pl.DataFrame({PERSON: persons.cast(pl.String)}).to_arrow())
    try:
        found = pl.from_arrow(conn.sql(f'select d."{PERSON}", d.variant_hi, d.variant_lo from {table} d '
                                       f'semi join {view} p on d."{PERSON}" = p."{PERSON}"').to_arrow_table())
        return found.cast(DIGESTS_SCHEMA)  # type: ignore[union-attr]
    except duckdb.Error:  # never stored (a state from before the digests), or not these columns
        return pl.DataFrame(schema=DIGESTS_SCHEMA)
    finally:
        conn.unregister(view)


def store_digests(conn: duckdb.DuckDBPyConnection, table: str, change: DigestChange, stored: bool) -> int:
    """``change`` applied to the digests ``table`` stores (``stored``: whether it exists) in one
    transaction (a failure leaves them as they were; `grown_persons` checks them against the persons
    state either way): the whole table replaced, or the rows of ``change.replaces`` replaced by
    ``change.rows``. Returns the rows written. Not an asset of its own: a cache of the persons
    state, like the state marker, which nothing but the next lookup reads."""
    view = f"_digests_{secrets.token_hex(4)}"
    conn.register(view, change.rows.select(*DIGESTS_SCHEMA).cast(DIGESTS_SCHEMA).to_arrow())
    conn.begin()
    try:
        if change.replaces is None or not stored:
            conn.execute(f"create or replace table {table} as select * from {view}")
        else:
            gone = f"_gone_{secrets.token_hex(4)}"
            conn.register(gone, pl.DataFrame({PERSON: change.replaces.cast(pl.String)}).to_arrow())
            try:
                conn.execute(f'delete from {table} d using {gone} g where d."{PERSON}" = g."{PERSON}"')
                conn.execute(f"insert into {table} select * from {view}")
            finally:
                conn.unregister(gone)
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.unregister(view)
    conn.commit()
    return change.rows.height


def state_marked(conn: duckdb.DuckDBPyConnection, marker: str, persons: str, edges: str) -> bool:
    """The state marker names a run and the stored persons and edges have the row counts it
    recorded (a table restored or rewritten from elsewhere since is not taken for the run's)."""
    try:
        rows = conn.execute(f"select persons, edges from {marker}").fetchall()
        counts = conn.execute(f"select (select count(*) from {persons}), (select count(*) from {edges})").fetchall()
    except duckdb.Error:  # no marker (a state written before it), or no tables
        return False
    return len(rows) == 1 and tuple(rows[0]) == tuple(counts[0])


def changed_rows(stored: pl.DataFrame, now: pl.DataFrame, key: list[str],
                 candidates: pl.DataFrame | None) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(keys of the stored rows gone, rows whose stored version differs, rows new) that turn
    ``stored`` into ``now``, looking only at the keys of ``candidates`` (None: every key): the
    caller knows the other rows are the same in both (the writer checks the result's content)."""
    if candidates is not None:
        stored = stored.join(candidates, on=key, how="semi")
        now = now.join(candidates, on=key, how="semi")
    stored = stored.select(now.columns)
    deletes = stored.select(key).join(now.select(key), on=key, how="anti")
    inserts = now.join(stored.select(key), on=key, how="anti")
    updates = (now.join(stored.select(key), on=key, how="semi")
               .join(stored, on=now.columns, how="anti", nulls_equal=True))
    return deletes, updates, inserts


# ----------------------------------------------------------- clustering the touched components

#: What the persons table also stores about the clustering (absent in states written before):
#: each person's connected component over the edges at the lowest threshold and its cluster at
#: each level, both named by their smallest person key, and how it was clustered (the thresholds
#: and the same-dataset rule), so the next run re-clusters only the components a change touches.
CLUSTER_LEVELS = LEVELS = ("high", "medium", "low")
CLUSTER_STATE = {"component": pl.String, **{f"cluster_{lv}": pl.String for lv in CLUSTER_LEVELS},
                 "clustered_as": pl.String}


def clustered_as(thresholds: tuple[float, float, float], same_dataset: str) -> str:
    return f"{same_dataset}|{','.join(repr(float(t)) for t in thresholds)}"


#: ``recluster_touched``'s stats entry (taken out before they are reported): the persons it clustered
#: again, new or gone; every other person kept its stored clusters and its edges their ends' clusters.
AFFECTED = "_affected_persons"
#: Columns of ``recluster_touched``'s clustering: each person's cluster names (``cluster_state``'s)
#: at each level, which it has at hand, so ``cluster_state`` need not name every cluster again.
CLUSTER_NAMES = tuple(f"cluster_name_{lv}" for lv in CLUSTER_LEVELS)


def cluster_state(clustered: pl.DataFrame, how: str) -> pl.DataFrame:
    """person_id_dataset and ``CLUSTER_STATE`` from a clustering (``cluster_<level>`` ids and
    ``component``): each cluster named by its smallest person key, which survives renumbering
    (taken from ``CLUSTER_NAMES`` when the clustering has them: a group-by over every person less)."""
    names = [pl.col(name) if name in clustered.columns else pl.col(PERSON).min().over(f"cluster_{lv}")
             for lv, name in zip(CLUSTER_LEVELS, CLUSTER_NAMES)]
    return clustered.select(
        PERSON, "component", *[name.alias(f"cluster_{lv}") for lv, name in zip(CLUSTER_LEVELS, names)],
        pl.lit(how, dtype=pl.String).alias("clustered_as")).cast({PERSON: pl.String, **CLUSTER_STATE})  # type: ignore[arg-type]


def recluster_touched(persons: pl.DataFrame, edges: pl.DataFrame, stored: pl.DataFrame | None, seeds: pl.Series,
                      how: str, cluster) -> tuple[pl.DataFrame | None, dict]:
    """The clustering of every person (``PERSON``, ``source_dataset``, ``cluster_<level>`` dense
    ids numbered by each cluster's smallest person key, ``component``, and that key: the
    ``CLUSTER_NAMES``), in the order of ``PERSON``, computing only the
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
    # in key order: the persons come sorted from the inputs (``variants_hash_sql``), and a sort of
    # sorted keys is a pass, not the string sort an unordered ``unique`` left (0.5 CPU s at 300,000 people)
    current = persons.select(PERSON, SOURCE_DATASET).unique(PERSON, maintain_order=True).sort(PERSON)
    affected = pl.concat([before.filter(pl.col("component").is_in(hit.implode())).select(PERSON), seed,
                          current.join(before, on=PERSON, how="anti").select(PERSON)]).unique()
    nodes = current.join(affected, on=PERSON, how="semi")
    left_in = edges.get_column("person_id_dataset_l").is_in(nodes.get_column(PERSON).implode())
    right_in = edges.get_column("person_id_dataset_r").is_in(nodes.get_column(PERSON).implode())
    if (left_in != right_in).any():  # cannot happen (see above); never a wrong answer if it does
        return None, {"reason": "an edge leaves the touched components"}
    sub, stats = cluster(nodes, edges.filter(left_in)) if nodes.height else (None, {})
    # each person's stored clusters, replaced by its new ones when it was clustered again (every
    # affected current person is a node: a new person has no stored row, only new ones)
    out = current.join(before, on=PERSON, how="left", maintain_order="left")
    if sub is not None:
        fresh = cluster_state(sub, how).drop("clustered_as").with_columns(pl.lit(True).alias("_fresh"))
        out = out.join(fresh, on=PERSON, how="left", suffix="_fresh", maintain_order="left")
        kept = pl.col("_fresh").is_null()
        out = out.select(PERSON, SOURCE_DATASET, *(pl.when(kept).then(pl.col(c)).otherwise(pl.col(f"{c}_fresh")).alias(c)
                                                   for c in list(CLUSTER_STATE)[:-1]))
    out = _number_clusters(out.with_columns(pl.col(f"cluster_{lv}").alias(name)
                                            for lv, name in zip(CLUSTER_LEVELS, CLUSTER_NAMES)))
    return out.select(PERSON, SOURCE_DATASET, *[f"cluster_{lv}" for lv in CLUSTER_LEVELS], "component",
                      *CLUSTER_NAMES), {
        **stats, "mode": "touched components", "persons_reclustered": nodes.height,
        "components_touched": hit.len(), AFFECTED: affected.get_column(PERSON)}


def _number_clusters(out: pl.DataFrame) -> pl.DataFrame:
    """Each ``cluster_<level>`` name (the smallest person key of the cluster) replaced by its dense
    rank among the level's names, as ``rank("dense")`` numbers them, without sorting the names: a
    cluster's name is its smallest member's key, whose own row (a *leader*: it names its own
    cluster) is a row of ``out``; so with ``out`` in key order the names, in order, are the leaders,
    and a name's rank is its leader's place among them (a join of the names to the leaders: 0.28
    against 0.54 CPU s for the three levels at 300,000 people). Should a name have no leader row
    (it cannot, see ``recluster_touched``), or ``out`` not be in key order, the names are ranked."""
    keys = out.get_column(PERSON)
    ordered = keys.is_sorted() and keys.null_count() == 0
    numbered = []
    for lv in CLUSTER_LEVELS:
        name = pl.col(f"cluster_{lv}")
        leaders = out.filter(pl.col(PERSON) == name).select(
            pl.col(PERSON).alias("_name"), pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("_id"))
        ids = (out.select(name.alias("_name")).join(leaders, on="_name", how="left", maintain_order="left")
               .get_column("_id")) if ordered else None
        if ids is None or ids.null_count() != out.get_column(f"cluster_{lv}").null_count():
            ids = out.get_column(f"cluster_{lv}").rank("dense").cast(pl.Int64)
        numbered.append(ids.alias(f"cluster_{lv}"))
    return out.with_columns(numbered)


# ------------------------------------------- carrying ids forward against the stored lookup

# Carry cross-justice ids forward against the stored lookup in DuckDB, touching in Python only
# the records whose ids may change.
#
#     scratch = attach_scratch(conn)                       # an in-memory catalog of the warehouse
#     carried = carry_forward_stored(conn, scratch, raw, "<db>.linkage_xjs.lookup", history_table)
#     carried.sql         # the new lookup (with record_id_hash), as a SELECT the IO manager stores
#     carried.changes     # this run's id changes (xjs.XJS_CHANGE_SCHEMA)
#
# ``xjs.carry_forward_xjs_ids`` + ``defs.xjs.add_record_hashes`` give the same lookup from the whole
# previous lookup in polars (three joins, group-bys and sorts over every record, each level). Here
# the previous lookup stays where it is stored. Per level, a record's ids can only change when its
# new cluster (``raw``: the lookup before carrying, dense cluster ids) and its previous id are not
# in a one-to-one match: a cluster is *settled* when all its records had one previous id and that
# id's records are exactly the cluster's (no record new, gone or moved). A settled cluster keeps
# its id and logs no change in ``stable_ids.carry_forward_ids`` (its one overlap competes with
# nothing). Every other cluster and previous id (*unsettled*) goes through ``carry_forward_ids``
# together; that set is closed (a record of an unsettled cluster whose previous id is settled
# cannot exist: that id's records all lie in one cluster, this one), so the greedy assignment, the
# ids minted (numbered from the same first free id, in the order of the clusters' smallest record)
# and the change log are those of the whole. Only records not stored before are hashed.

SEP = ":"  # as xjs.SEP
LOOKUP_COLUMNS = (SOURCE_DATASET, UNIQUE_ID, "record_id_hash", PERSON, *(f"person_id_{lv}" for lv in LEVELS))


def attach_scratch(conn: duckdb.DuckDBPyConnection) -> str:
    """A private in-memory catalog in the warehouse's database instance: its tables are visible
    to every cursor of the instance (the IO manager's write too), and never reach the file."""
    name = f"xjs_{secrets.token_hex(4)}"
    conn.execute(f"attach ':memory:' as {name}")
    return name


def detach_scratch(conn: duckdb.DuckDBPyConnection, scratch: str) -> None:
    conn.execute(f"detach database if exists {scratch}")


def stored_lookup_usable(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    """The stored lookup has every column this carry reads and at least one row."""
    try:
        columns = set(conn.sql(f"select * from {table} limit 0").columns)
    except duckdb.Error:
        return False
    if not set(LOOKUP_COLUMNS) <= columns:
        return False
    return bool(conn.execute(f"select count(*) from (select 1 from {table} limit 1)").fetchall()[0][0])  # type: ignore[index]


@dataclass(frozen=True)
class KeysInDatabase:
    """Every person record's source_dataset, record_id and person_id_dataset, in a DuckDB table
    (``xjs_inputs.lookup_inputs(keys_into=...)``), and how many there are."""

    table: str
    height: int


@dataclass(frozen=True)
class RecordsAndPersons:
    """The raw lookup as its two parts, joined where it is carried (``carry_forward_stored``):
    every record's keys (stored) and each per-dataset person's dense cluster ids
    (``xjs.XjsResult.persons``). Building it as a frame and sending it back to the database took
    0.8-1.2 s at 1,000,000 people against 0.5-0.7 s joined here (3.5M records, timed alone), and the
    frame was most of the 0.2-0.3 GiB by which the extract's peak (this step's) fell."""

    keys: KeysInDatabase
    persons: pl.DataFrame


@dataclass
class StoredCarry:
    sql: str  # SELECT of the carried lookup (LOOKUP_COLUMNS), ordered as the polars path orders it
    table: str  # the scratch table holding it
    changes: pl.DataFrame  # level + CHANGE_SCHEMA, as carry_forward_xjs_ids returns them
    kept: dict[str, tuple[int, int]]  # as xjs.unchanged_xjs_persons_kept
    stats: dict[str, int] = field(default_factory=dict)
    # level -> the carried lookup's distinct ids (``_carry_level``: no count over every record)
    persons: dict[str, int] = field(default_factory=dict)
    # the scratch table of the records whose row differs from the stored one: their stored key
    # (was_dataset, was_record), key now (now_dataset, now_record) and change (delete, insert, update)
    changed: str = ""


def _pair_records(conn, scratch: str, previous: str) -> None:
    """``scratch.pairs``: every record now or before (one full join): its key, its stored hash
    and, per level, its raw cluster now (``c_<level>``) and its previous id (``p_<level>``); and
    its stored key and per-dataset person (``was_*``: what its change to the stored row is found by)."""
    key = f"coalesce(r.{SOURCE_DATASET}, p.{SOURCE_DATASET}) || {quote_literal(SEP)} || coalesce(r.{UNIQUE_ID}, p.{UNIQUE_ID})"
    levels = ", ".join(f"r.person_id_{lv} as c_{lv}, p.person_id_{lv} as p_{lv}" for lv in LEVELS)
    conn.execute(f"""
        create or replace table {scratch}.pairs as
        select {key} as k, r.{SOURCE_DATASET} as now_dataset, r.{UNIQUE_ID} as now_record, r.{PERSON},
               p.record_id_hash, {levels}, p.{SOURCE_DATASET} as was_dataset, p.{UNIQUE_ID} as was_record,
               p.{PERSON} as was_person
        from {scratch}.raw r full join {previous} p using ({SOURCE_DATASET}, {UNIQUE_ID})""")


def _unsettled(conn, scratch: str) -> pl.DataFrame:
    """level, k, c, p of every record of an unsettled cluster or previous id (module docstring).

    Per level the records are first reduced to their distinct (cluster, previous id) pairs
    (``scratch.cp_<level>``: one group-by over every record, kept for ``_level_facts``; a few more
    pairs than persons), and a cluster is unsettled when it has more than one pair or one with no
    previous id (a new record), a previous id likewise: the same test as ``count(distinct p) <> 1
    or count(p) <> count(*)`` per cluster over the records (a null is a pair of its own, and
    ``count(distinct)`` skips it), with two group-bys over the pairs instead of two over every
    record. The records of every level's unsettled clusters and ids are then found in one pass."""
    flags = []
    for lv in LEVELS:
        conn.execute(f"create or replace table {scratch}.cp_{lv} as select c_{lv} as c, p_{lv} as p "
                     f"from {scratch}.pairs group by all")
        conn.execute(f"""create or replace table {scratch}.bad_{lv} as
            select c, null::bigint as p from {scratch}.cp_{lv} where c is not null group by c
                having count(*) > 1 or bool_or(p is null)
            union all
            select null, p from {scratch}.cp_{lv} where p is not null group by p having count(*) > 1 or bool_or(c is null)""")
        flags.append(f"coalesce(c_{lv} in (select c from {scratch}.bad_{lv} where c is not null) "
                     f"or p_{lv} in (select p from {scratch}.bad_{lv} where p is not null), false) as u_{lv}")
    rows = conn.sql(f"""select * from (select k, {', '.join(f'c_{lv}, p_{lv}' for lv in LEVELS)}, {', '.join(flags)}
                        from {scratch}.pairs) where {' or '.join(f'u_{lv}' for lv in LEVELS)}""").pl()
    return pl.concat([rows.filter(pl.col(f"u_{lv}")).select(pl.lit(lv).alias("level"), "k",
                                                             pl.col(f"c_{lv}").alias("c"), pl.col(f"p_{lv}").alias("p"))
                      for lv in LEVELS])


def _level_facts(conn, scratch: str, history: str | None) -> dict[str, tuple[int, int]]:
    """level -> (the first id free to mint: ``stable_ids.next_free_id`` of the previous ids and
    the level's logged ids; how many previous ids there are), from each level's distinct
    (cluster, previous id) pairs (``_unsettled``'s: the previous ids, without a pass over every record)."""
    facts = [conn.execute(f"select max(p)::bigint, count(distinct p) from {scratch}.cp_{lv}").fetchall()[0]
             for lv in LEVELS]
    logged: dict[str, int] = {}
    if history is not None:
        logged = {lv: top for lv, top in conn.execute(
            f"select level, greatest(max(old_id), max(new_id))::bigint from {history} group by level").fetchall()
            if top is not None}
    return {lv: (max(facts[i][0] or 0, logged.get(lv, 0)) + 1, facts[i][1]) for i, lv in enumerate(LEVELS)}


def _carry_level(rows: pl.DataFrame, start: int, previous_ids: int,
                 level: str) -> tuple[pl.DataFrame, pl.DataFrame, tuple[int, int], int]:
    """(record key -> new id of the unsettled records, changes, ``unchanged_xjs_persons_kept``'s
    (n, k), the carried lookup's distinct ids) at ``level`` from its unsettled ``rows``. Every
    settled previous id is one settled cluster's, which keeps it, and the unsettled clusters get
    other ids (unsettled previous ids or new ones), one each: the ids are the settled ones and
    those the unsettled records got."""
    prev = rows.filter(pl.col("p").is_not_null()).select(pl.col("k").alias(RECORD_ID), pl.col("p").alias(PERSON_ID))
    cur = rows.filter(pl.col("c").is_not_null()).select(pl.col("k").alias(RECORD_ID), pl.col("c").alias("cluster"))
    carried = carry_forward_ids(prev, cur, first_new_id=start, cluster_col="cluster", log_new=True)
    kept = (0, 0)
    if prev.height:
        after = carried.ids.select(RECORD_ID, pl.col(PERSON_ID).alias("_now"))
        kept = same_record_sets(prev.join(after, on=RECORD_ID, how="left"), PERSON_ID, "_now",
                                after.group_by("_now").agg(pl.len().alias("_size")))
    changes = carried.changes.select(pl.lit(level).alias("level"), *CHANGE_SCHEMA)
    # a settled previous id is again exactly one person's records, and keeps its id
    settled = previous_ids - prev.get_column(PERSON_ID).n_unique()
    return carried.ids, changes, (kept[0] + settled, kept[1] + settled), settled + carried.ids.get_column(PERSON_ID).n_unique()


def _stored_hashes_usable(conn, scratch: str) -> bool:
    """The stored hashes are of this run's key: one stored record per dataset hashed again agrees
    (as ``defs.xjs._stored_hashes``; here the dataset's smallest record id is the probe)."""
    probes = conn.execute(f"""
        select now_dataset, arg_min(now_record, k), arg_min(record_id_hash, k) from {scratch}.pairs
        where record_id_hash is not null and now_dataset is not null group by now_dataset""").fetchall()
    return all(keyed_hash(pl.Series([record_id], dtype=pl.String), namespace=source)[0] == digest
               for source, record_id, digest in probes)


def _new_hashes(conn, scratch: str) -> int | None:
    """``scratch.hashes``: the keyed hash of every current record with no usable stored hash.
    Returns how many were hashed; None when the stored hashes are of another key (all hashed)."""
    reuse = _stored_hashes_usable(conn, scratch)
    todo = conn.sql(f"select now_dataset, now_record, k from {scratch}.pairs where now_record is not null"
                    + (" and record_id_hash is null" if reuse else "")).pl()
    parts = [part.select("k", keyed_hash(part.get_column("now_record"), namespace=str(source)).alias("h"))
             for (source,), part in todo.group_by("now_dataset")]
    hashes = pl.concat(parts) if parts else pl.DataFrame(schema={"k": pl.String, "h": pl.String})  # noqa: F841
    conn.execute(f"create or replace table {scratch}.hashes as select * from hashes")
    return todo.height if reuse else None


def _store_raw(conn: duckdb.DuckDBPyConnection, scratch: str, raw: pl.DataFrame | RecordsAndPersons) -> int:
    """``scratch.raw``: the raw lookup's records with their dense cluster ids; returns its rows."""
    ids = [f"person_id_{lv}" for lv in LEVELS]
    if isinstance(raw, pl.DataFrame):
        raw_arrow = raw.select(SOURCE_DATASET, pl.col(UNIQUE_ID).cast(pl.String), PERSON,  # noqa: F841 (SQL below)
                               *ids).to_arrow()
        conn.execute(f"create or replace table {scratch}.raw as select * from raw_arrow")
        return raw.height
    persons = raw.persons.select(PERSON, *ids).to_arrow()  # noqa: F841 (SQL below)
    # a left join, as `link_variants` joins the records' keys to the persons (a person every record has)
    conn.execute(f"""create or replace table {scratch}.raw as
        select k.{SOURCE_DATASET}, k.{UNIQUE_ID}::varchar as {UNIQUE_ID}, k.{PERSON}, {', '.join(f'p.{c}' for c in ids)}
        from {raw.keys.table} k left join persons p on p.{PERSON} = k.{PERSON}""")
    return raw.keys.height


def carry_forward_stored(conn: duckdb.DuckDBPyConnection, scratch: str, raw: pl.DataFrame | RecordsAndPersons,
                         previous: str, history: str | None) -> StoredCarry:
    """The lookup ``raw`` (xjs.LOOKUP_COLUMNS, dense cluster ids; or its parts, `RecordsAndPersons`)
    with its ids carried forward from the stored lookup ``previous`` (a table name;
    ``stored_lookup_usable``) and its record id hashes, in ``scratch`` (see the module docstring).
    ``history``: the stored change log, or None."""
    records = _store_raw(conn, scratch, raw)
    _pair_records(conn, scratch, previous)
    unsettled = _unsettled(conn, scratch)
    facts = _level_facts(conn, scratch, history)  # from the distinct pairs _unsettled stored
    changes, kept, stats, persons = [], {}, {}, {}
    for level in LEVELS:
        rows = unsettled.filter(pl.col("level") == level)
        ids, level_changes, kept[level], persons[level] = _carry_level(rows, *facts[level], level)
        stats[f"records_recarried_{level}"] = rows.height
        changes.append(level_changes)
        carried = ids.select(pl.col(RECORD_ID).alias("k"), pl.col(PERSON_ID).alias("id")).to_arrow()  # noqa: F841
        conn.execute(f"create or replace table {scratch}.ids_{level} as select * from carried")
    rehashed = _new_hashes(conn, scratch)
    stats["records_rehashed"] = records if rehashed is None else rehashed
    # what the records carried or hashed here get (a few in a hundred), in one small table by record,
    # so each pass over every record below looks one table up, not four
    joins = " ".join(f"left join {scratch}.ids_{lv} i_{lv} using (k)" for lv in LEVELS)
    keys = " union ".join(f"select k from {scratch}.{name}" for name in ("hashes", *(f"ids_{lv}" for lv in LEVELS)))
    conn.execute(f"""
        create or replace table {scratch}.fix as
        select k, h.h, {', '.join(f'i_{lv}.id as id_{lv}' for lv in LEVELS)}
        from ({keys}) left join {scratch}.hashes h using (k) {joins}""")
    joins = f"left join {scratch}.fix f using (k)"
    ids = ", ".join(f"coalesce(f.id_{lv}, p_{lv})::bigint as person_id_{lv}" for lv in LEVELS)
    hashed = "f.h" if rehashed is None else "coalesce(record_id_hash, f.h)"
    conn.execute(f"""
        create or replace table {scratch}.lookup as
        select now_dataset as {SOURCE_DATASET}, now_record as {UNIQUE_ID}, {hashed} as record_id_hash, {PERSON}, {ids}
        from {scratch}.pairs {joins}
        where now_record is not null""")
    # the rows that differ from the stored ones (gone, new, or any column changed): the lookup's
    # change to the stored table, found from the join the carry made anyway (no second pass over both)
    differs = " or ".join([f"{PERSON} is distinct from was_person", "_hash is distinct from record_id_hash",
                           *(f"person_id_{lv} is distinct from p_{lv}" for lv in LEVELS)])
    conn.execute(f"""
        create or replace table {scratch}.changed as
        select was_dataset, was_record, now_dataset, now_record,
               case when now_record is null then 'delete' when was_record is null then 'insert' else 'update' end as change
        from (select pairs.*, {hashed} as _hash, {ids} from {scratch}.pairs {joins})
        where now_record is null or was_record is null or {differs}""")
    table = f"{scratch}.lookup"
    all_changes = pl.concat(changes).cast({"level": pl.String, **CHANGE_SCHEMA})  # type: ignore[arg-type]
    return StoredCarry(sql=f"select * from {table} order by {SOURCE_DATASET}, {UNIQUE_ID}", table=table,
                       changes=all_changes, kept=kept, stats=stats, changed=f"{scratch}.changed", persons=persons)


def lookup_problems(conn: duckdb.DuckDBPyConnection, table: str, records_sql: str) -> list[str]:
    """``xjs.check_lookup_invariants`` of the lookup stored in ``table`` against the records of
    ``records_sql`` (source_dataset, record_id), in SQL (one query, examples only on failure):
    the same problems in the same words. Each pass over every row counts what it can: the nulls
    and wrong prefixes in one scan, the shared keys, rows of no record and records of no row from
    one count per key joined once to the records, the three per-person counts in one group-by
    (two anti joins, three group-bys and seven scans fewer than one query per problem)."""
    ids = [f"person_id_{lv}" for lv in LEVELS]
    pair = f"({SOURCE_DATASET}, {UNIQUE_ID})"
    orphans = f"select {SOURCE_DATASET}, {UNIQUE_ID} from {table} l anti join ({records_sql}) r using {pair}"
    unmapped = f"select {SOURCE_DATASET}, {UNIQUE_ID} from ({records_sql}) r anti join {table} l using {pair}"
    scan = ", ".join([*(f"count(*) filter (where {quote_identifier(c)} is null)"
                        for c in (SOURCE_DATASET, UNIQUE_ID, PERSON, *ids)),
                      f"count(*) filter (where not starts_with({PERSON}, {SOURCE_DATASET} || {quote_literal(SEP)}))"])
    # a key's rows (n, never null) and whether a record has it (_r): the full join keeps the keys of
    # either side that the other lacks, matching as the anti joins do (a null key matches nothing)
    keyed = f"""
        with k as materialized (select {SOURCE_DATASET}, {UNIQUE_ID}, count(*) as n from {table} group by all)
        select (select coalesce(sum(n) filter (where n > 1), 0) from k),
               coalesce(sum(k.n) filter (where r._r is null), 0), count(*) filter (where k.n is null)
        from k full join (select {SOURCE_DATASET}, {UNIQUE_ID}, true as _r from ({records_sql})) r
          on k.{SOURCE_DATASET} = r.{SOURCE_DATASET} and k.{UNIQUE_ID} = r.{UNIQUE_ID}"""
    # "more than one distinct value" as min <> max (both skip nulls, as count(distinct) does): the same
    # counts without a distinct set per group (0.47 against 0.14 CPU s for the three ids at 300,000 people)
    several = (f"select {', '.join(f'count(*) filter (where n_{c})' for c in ids)} from (select "
               f"{', '.join(f'min({c}) <> max({c}) as n_{c}' for c in ids)} from {table} group by {PERSON})")
    nested = {(i, o): f"(select count(*) from (select 1 from {table} group by person_id_{i} "
                      f"having min(person_id_{o}) <> max(person_id_{o})))" for i, o in (("high", "medium"), ("medium", "low"))}
    (*nulls, prefix), (dup, n_orphans, n_unmapped) = (conn.execute(f"select {scan} from {table}").fetchall()[0],
                                                      conn.execute(keyed).fetchall()[0])
    found = [*nulls, dup, n_orphans, n_unmapped, prefix, *conn.execute(several).fetchall()[0],
             *conn.execute(f"select {', '.join(nested.values())}").fetchall()[0]]
    nulls, (dup, n_orphans, n_unmapped, prefix), rest = found[:6], found[6:10], found[10:]
    problems = [f"{n} null value(s) in {c}" for c, n in zip((SOURCE_DATASET, UNIQUE_ID, PERSON, *ids), nulls) if n]
    if dup:
        problems.append(f"{dup} row(s) share a (source_dataset, record_id) with another row")
    if n_orphans:
        problems.append(f"{n_orphans} row(s) reference no existing person record, e.g. "
                        f"{conn.execute(orphans + ' limit 3').fetchall()}")
    if n_unmapped:
        problems.append(f"{n_unmapped} person record(s) have no lookup row, e.g. "
                        f"{conn.execute(unmapped + ' limit 3').fetchall()}")
    if prefix:
        problems.append(f"{prefix} row(s) whose person_id_dataset is not of their dataset")
    problems += [f"{n} per-dataset person(s) map to several {c} values" for c, n in zip(ids, rest[:3]) if n]
    problems += [f"{n} {i}-threshold person(s) are split across {o}-threshold persons (not nested)"
                 for (i, o), n in zip(nested, rest[3:]) if n]
    return problems
