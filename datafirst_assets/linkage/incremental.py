"""Link a dataset's person records, incrementally when a previous link can be extended.

    previous = PreviousLink(clusters=..., pairs=..., changes=...)   # what the last run stored
    result = link_incremental(records, model, make_db_api(), previous)   # no retraining
    result = link_full(records, model, make_db_api(), choose=..., previous=previous)
    result.ids / result.pairs / result.changes / result.clusters_table(model.version)

Incremental: records that are new since the previous link, or whose linkage fields changed
(a record hash tells), are scored with the stored model against every other record
(Splink's ``predict_between(existing, new)``) and among themselves (``predict_within(new)``);
pairs touching changed or vanished records are dropped from the stored pairs and the new
pairs added. Only the previous persons reached by a touched record or a new link (at the
clustering threshold) are re-clustered; every other person keeps its records as they were. The
over-merge guard and carrying ids forward then work on the re-clustered records alone
(``cluster_and_carry``): a person kept whole keeps its id and logs no change, so the ids and the
change log are those working on every record gives (tested against it on random worlds).
Term frequencies are computed over all current records, as a full prediction would; stored
pairs keep the scores they were given.

Full: every pair is scored again and everything re-clustered (with Splink), after the model
was retrained. Either way person ids are carried forward from the previous link
(``stable_ids.py``), so an unchanged person keeps their id.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import polars as pl

from datafirst_assets.common.pairs import ordered_pairs
from datafirst_assets.common.sql import quote_identifier, row_text_sql
from datafirst_assets.linkage.backend import release_db_api
from datafirst_assets.linkage.cluster import cluster_pairs
from datafirst_assets.linkage.disjoint_sets import component_minimum
from datafirst_assets.linkage.predict import (
    PAIR_COLUMNS,
    check_blocking_pairs,
    chunks_for,
    linker_for_model,
    pair_columns,
    pairs_to_polars,
    predict_pairs_in_chunks,
    slim_pairs,
)
from datafirst_assets.linkage.settings import LINKAGE_FIELDS, SOURCE_DATASET, UNIQUE_ID, usable_fields
from datafirst_assets.linkage.stable_ids import (
    CHANGE_SCHEMA,
    PERSON_ID,
    CarriedIds,
    carry_forward_ids,
    next_free_id,
)
from datafirst_assets.linkage.guard import split_conflicting_clusters
from datafirst_assets.linkage.train import TrainedModel, aligned_frames, make_linker, register_records, uses_full_name
from datafirst_assets.warehouse.connection import scratch_cursor
from datafirst_assets.warehouse.io_manager import WarehouseQuery

# Scored pairs below this probability are not kept: they never form links at any sensible
# threshold, and keeping them would make the pairs table quadratic in practice.
KEEP_PAIRS_ABOVE = 0.01
#: Columns that say when or where a record was delivered, not who it describes.
NOT_HASHED = (UNIQUE_ID, "extract_date")
#: What a previous link must have stored for the next one to extend it.
STATE_COLUMNS = (UNIQUE_ID, PERSON_ID, "model_version", "match_threshold", "record_hash")
MODES = ("incremental", "full")


# ----------------------------------------------------------------------------- records


def record_hashes(records: pl.DataFrame, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """record_id -> record_hash: an MD5 (16 hex digits) of the record's linkage fields, the
    same in every process and version (polars' own hash is not), so the next run can tell
    which records changed. The delivery date is left out: a record re-sent unchanged is unchanged."""
    columns = [c for c in (columns or records.columns) if c not in NOT_HASHED]
    # string views (polars' own layout): no copy of every record's strings on the way to DuckDB
    frame = records.select(pl.col(UNIQUE_ID).cast(pl.String), *columns).to_arrow(  # noqa: F841 (SQL below)
        compat_level=pl.CompatLevel.newest())
    with scratch_cursor() as con:
        out = con.sql(f"select {UNIQUE_ID}, substr(md5({row_text_sql(columns)}), 1, 16) as record_hash "
                      "from frame").to_arrow_table()
    return pl.from_arrow(out)  # type: ignore[return-value]


@dataclass
class RecordChanges:
    new: pl.Series  # record ids never linked before
    changed: pl.Series  # linked before, linkage fields differ now
    removed: pl.Series  # linked before, no longer among the person records

    @property
    def rescore(self) -> pl.Series:
        return pl.concat([self.new, self.changed]).alias(UNIQUE_ID)

    @property
    def touched(self) -> pl.Series:
        return pl.concat([self.new, self.changed, self.removed]).alias(UNIQUE_ID)


def diff_records(hashes: pl.DataFrame, previous: pl.DataFrame) -> RecordChanges:
    """Compare record hashes (record_id, record_hash) now and at the previous link."""
    j = hashes.join(previous.select(UNIQUE_ID, pl.col("record_hash").alias("_before")), on=UNIQUE_ID, how="full",
                    coalesce=True)
    return RecordChanges(
        new=j.filter(pl.col("_before").is_null()).get_column(UNIQUE_ID).sort(),
        changed=j.filter(pl.col("record_hash").is_not_null() & pl.col("_before").is_not_null()
                         & (pl.col("record_hash") != pl.col("_before"))).get_column(UNIQUE_ID).sort(),
        removed=j.filter(pl.col("record_hash").is_null()).get_column(UNIQUE_ID).sort(),
    )


# ---------------------------------------------------------------------------- scoring


def tf_columns(settings: dict[str, Any]) -> list[str]:
    """Columns with term-frequency adjustments in a (trained) Splink settings JSON."""
    cols = {lvl["tf_adjustment_column"] for comp in settings.get("comparisons", [])
            for lvl in comp.get("comparison_levels", []) if lvl.get("tf_adjustment_column")}
    return sorted(cols)


def score_new_records(db_api, model: TrainedModel, records: pl.DataFrame, rescore: pl.Series, *,
                      keep_above: float = KEEP_PAIRS_ABOVE, only_blocked: bool = False) -> pl.DataFrame:
    """Pairs of each record in ``rescore`` with every other record, scored with ``model``.

    Blocking and scoring follow the model's prediction rules: between new and existing
    records (``predict_between``) and among the new ones (``predict_within``), so no pair of
    two existing records is scored again. ``only_blocked``: only the existing records a rule
    pairs with a new one go to ``predict_between`` (``blocked_with``): the same pairs, in
    another row order (neither the cross-justice lookup's edges nor a dataset's stored pairs, compared
    in any order, depend on it; Splink's own order varies between runs anyway), and the records
    are handed over as arrow string views (``register_records``: the same values, no copy).
    """
    records = records.with_columns(pl.col(UNIQUE_ID).cast(pl.String))
    # one mask for both sides (a semi and an anti join hashed every record twice); a null id is
    # never new, as it matched nothing in the joins
    is_new = records.get_column(UNIQUE_ID).is_in(rescore.cast(pl.String).implode()).fill_null(False)
    new = records.filter(is_new)
    if new.is_empty():
        return pl.DataFrame()
    existing = records.filter(~is_new)
    if only_blocked:
        existing = blocked_with(existing, new, model)
    linker = _scoring_linker(db_api, model, records, new, existing if only_blocked else None)
    new_sdf = register_records(db_api, new, model.spec, name="new_records", views=only_blocked)
    outputs = [linker.inference.predict_within(new_sdf, threshold_match_probability=keep_above,
                                               warning_mode="never")]
    if not existing.is_empty():
        existing_sdf = register_records(db_api, existing, model.spec, name="existing_records", views=only_blocked)
        outputs.append(linker.inference.predict_between(existing_sdf, new_sdf, threshold_match_probability=keep_above,
                                                        warning_mode="never"))
    frames = []
    for sdf in outputs:
        frames.append(slim_pairs(sdf))
        sdf.drop_table_from_database_and_remove_from_cache()
    return ordered_pairs(pl.concat(frames, how="diagonal_relaxed"))


def _scoring_linker(db_api, model: TrainedModel, records: pl.DataFrame, new: pl.DataFrame,
                    blocked: pl.DataFrame | None):
    """The linker ``score_new_records`` scores through, its term frequencies those of every record.

    ``blocked`` None: a linker over every record, its term-frequency tables computed over them
    (Splink's ``compute_tf_table``). Else (the existing records ``blocked_with`` found): the only
    records any pair scored here has are ``new`` and ``blocked``, and a pair reads the term
    frequency of its own values only, so the tables hold just those values' frequencies, counted
    over every record (``needed_term_frequencies``: the same numbers as the whole tables' rows for
    them), and the linker is made over ``new`` alone. Each whole table was a group-by over every
    record (850,000 cross-justice variants at 300,000 people, seven columns) and every scored pair
    was joined to them; a 1% extract needs a few percent of their rows."""
    columns = tf_columns(model.settings)
    # a blocked scoring (the cross-justice lookup's, a dataset's extension) hands its records over as
    # string views (``register_records``); a whole one keeps the layout training was tuned with
    views = blocked is not None
    if blocked is None or uses_full_name(model.settings):
        linker = make_linker(db_api, records, model.settings, model.spec, views=views)
        for column in columns:
            linker.table_management.compute_tf_table(column)
        return linker
    linker = make_linker(db_api, new, model.settings, model.spec, views=True)
    prefix = model.settings.get("term_frequency_adjustment_column_prefix", "tf_")
    for column, table in needed_term_frequencies(records, pl.concat([new, blocked], how="diagonal_relaxed"),
                                                 columns, prefix).items():
        registered = db_api.register(table.to_arrow(compat_level=pl.CompatLevel.newest()),
                                     table_name=f"__tf_{column}_{secrets.token_hex(4)}")
        linker.table_management.register_term_frequency_lookup(registered, column)
    return linker


def needed_term_frequencies(records: pl.DataFrame, scored: pl.DataFrame, columns: Sequence[str],
                            prefix: str = "tf_") -> dict[str, pl.DataFrame]:
    """column -> (column, ``<prefix><column>``): the term frequency over ``records`` of each value
    ``scored`` has in the column: its count over the column's non-null count, as Splink's
    ``term_frequencies_for_single_column_sql`` computes it (a double division of two integers,
    each correctly rounded: the same bits), but only for those values: a filter of ``records``
    instead of a group-by of every value. A column either frame lacks is skipped (Splink then
    refuses the scoring for want of its table, as it failed before on the missing column)."""
    out = {}
    for column in columns:
        if column not in records.columns or column not in scored.columns:
            continue
        values = scored.get_column(column).drop_nulls().unique()
        every = records.get_column(column)
        total = every.len() - every.null_count()
        counts = (records.lazy().select(column).filter(pl.col(column).is_in(values.implode()))
                  .group_by(column).agg(pl.len().alias("_n")).collect())
        # numpy's division, element by element as DuckDB divides: polars divides a column by a
        # scalar as a product with its reciprocal, one bit off for about a tenth of the values
        tf = counts.get_column("_n").to_numpy().astype("float64") / float(total)
        out[column] = counts.select(column).with_columns(pl.Series(f"{prefix}{column}", tf, dtype=pl.Float64))
    return out


def _plain_rules(settings: dict[str, Any]) -> list[str] | None:
    """The prediction blocking rules as DuckDB conditions on ``l`` and ``r``, or None when one is
    not a plain condition (exploding or salted rules, another dialect): then nothing is filtered."""
    rules = []
    for rule in settings.get("blocking_rules_to_generate_predictions", []):
        if isinstance(rule, dict):
            if set(rule) - {"blocking_rule", "sql_dialect"} or rule.get("sql_dialect", "duckdb") != "duckdb":
                return None
            rule = rule.get("blocking_rule")
        if not isinstance(rule, str):
            return None
        rules.append(rule)
    return rules or None


def blocked_with(existing: pl.DataFrame, new: pl.DataFrame, model: TrainedModel) -> pl.DataFrame:
    """The rows of ``existing`` that some prediction blocking rule pairs with a row of ``new``
    (for ``link_only``, of another dataset): the only existing records
    ``predict_between(existing, new)`` can pair, so it scores exactly the same pairs without
    joining every existing record to the term-frequency tables. Term frequencies are unchanged:
    the linker's tables are computed over every record. The rules run on the frames Splink sees
    (``aligned_frames``); when they cannot run here, every existing row is kept."""
    rules = _plain_rules(model.settings)
    if rules is None or existing.is_empty():
        return existing
    left, right = (aligned_frames(frame, model.spec)[0] for frame in (new, existing))
    other = (" and l.{0} <> r.{0}".format(quote_identifier(SOURCE_DATASET))
             if model.settings.get("link_type") == "link_only" and SOURCE_DATASET in left.columns else "")
    sql = " union ".join(f"select r.__row from r semi join l on ({rule}){other}" for rule in rules)
    try:
        with scratch_cursor() as con:
            # string views: polars' own layout, no copy of every existing record's strings
            con.register("l", left.to_arrow(compat_level=pl.CompatLevel.newest()))
            con.register("r", right.with_row_index("__row").to_arrow(compat_level=pl.CompatLevel.newest()))
            rows = con.sql(sql).pl().get_column("__row")
    except duckdb.Error:
        return existing
    return existing.with_row_index("__row").filter(pl.col("__row").is_in(rows.implode())).drop("__row")


# ------------------------------------------------------------------------- clustering


def _linked_to(links: pl.DataFrame, ids: pl.DataFrame) -> pl.DataFrame:
    """Records at the other end of a link from any record in ``ids`` (record_id)."""
    left = links.join(ids, left_on="record_id_l", right_on=UNIQUE_ID, how="semi").select(
        pl.col("record_id_r").alias(UNIQUE_ID))
    right = links.join(ids, left_on="record_id_r", right_on=UNIQUE_ID, how="semi").select(
        pl.col("record_id_l").alias(UNIQUE_ID))
    return pl.concat([left, right]).unique()


def affected_records(previous: pl.DataFrame, links: pl.DataFrame, touched: pl.Series) -> pl.DataFrame:
    """``record_id`` of every record whose person may change: the touched records (new, changed or
    removed), the records of the previous persons they belonged to, everything linked to those, the
    persons of those... to a fixed point. Grown from the records added in the last round only (the
    closure of a union is the union of the closures), so each round reads only its frontier's links
    and persons, not the whole affected set again."""
    affected = pl.DataFrame({UNIQUE_ID: touched.cast(pl.String)}).unique()
    frontier = affected
    while frontier.height:
        reach = pl.concat([frontier, _linked_to(links, frontier)]).unique()
        persons = previous.join(reach, on=UNIQUE_ID, how="semi").select(PERSON_ID).unique()
        grown = pl.concat([reach, previous.join(persons, on=PERSON_ID, how="semi").select(UNIQUE_ID)]).unique()
        frontier = grown.join(affected, on=UNIQUE_ID, how="anti")
        affected = pl.concat([affected, frontier])
    return affected


@dataclass
class Reclustered:
    """An incremental re-clustering in two parts: the previous persons no touched record reaches,
    kept whole (``kept``: record_id, person_id, as before), and the affected records' new clusters
    (``redone``: record_id, cluster_id labelled ``r:<smallest record id>``) with the links among them
    (``links``: record_id_l, record_id_r, match_probability, at or above the threshold)."""

    kept: pl.DataFrame
    redone: pl.DataFrame
    links: pl.DataFrame

    def clusters(self) -> pl.DataFrame:
        """Every record's cluster label: ``p:<person id>`` for the kept, ``r:...`` for the redone."""
        kept = self.kept.select(UNIQUE_ID, pl.concat_str([pl.lit("p:"), pl.col(PERSON_ID).cast(pl.String)])
                                .alias("cluster_id"))
        return pl.concat([kept, self.redone])


def recluster_touched(previous: pl.DataFrame, record_ids: pl.Series, pairs: pl.DataFrame, threshold: float,
                      touched: pl.Series) -> Reclustered:
    """:func:`recluster` (not ``everything``) in its two parts (:class:`Reclustered`), so that what
    follows (the guard, carrying ids forward) can work on the affected records only."""
    ids = pl.DataFrame({UNIQUE_ID: record_ids.cast(pl.String)})
    links = pairs.filter(pl.col("match_probability") >= threshold).select(
        pl.col("record_id_l").cast(pl.String), pl.col("record_id_r").cast(pl.String), "match_probability")
    prev = previous.select(pl.col(UNIQUE_ID).cast(pl.String), pl.col(PERSON_ID))
    affected = affected_records(prev, links, touched).join(ids, on=UNIQUE_ID, how="semi")
    inner = (links.join(affected, left_on="record_id_l", right_on=UNIQUE_ID, how="semi")
             .join(affected, left_on="record_id_r", right_on=UNIQUE_ID, how="semi"))
    redone = component_labels(affected.get_column(UNIQUE_ID), inner).with_columns(
        pl.concat_str([pl.lit("r:"), pl.col("cluster_id")]).alias("cluster_id"))
    kept = ids.join(affected, on=UNIQUE_ID, how="anti").join(prev, on=UNIQUE_ID, how="left")
    if kept.get_column(PERSON_ID).null_count():
        raise ValueError("a record outside the affected set has no previous person")
    return Reclustered(kept=kept, redone=redone, links=inner)


def recluster(previous: pl.DataFrame, record_ids: pl.Series, pairs: pl.DataFrame, threshold: float,
              touched: pl.Series, *, everything: bool = False) -> tuple[pl.DataFrame, int]:
    """record_id -> cluster_id for every id in ``record_ids``: connected components of
    ``pairs`` at ``match_probability >= threshold``, recomputed only around ``touched``
    records (new, changed or removed); every other previous person keeps its records.

    ``previous``: record_id, person_id of the previous link, whose persons must be the
    components of the (unchanged) stored pairs at this threshold. ``everything`` recomputes
    all components (e.g. the threshold moved). Returns the clusters and the number of
    records re-clustered.
    """
    if everything:
        ids = record_ids.cast(pl.String)
        links = pairs.filter(pl.col("match_probability") >= threshold).select(
            pl.col("record_id_l").cast(pl.String), pl.col("record_id_r").cast(pl.String))
        return component_labels(ids, links), ids.len()
    parts = recluster_touched(previous, record_ids, pairs, threshold, touched)
    return parts.clusters(), parts.redone.height


def carry_touched(previous: PreviousLink, parts: Reclustered, redone: pl.DataFrame) -> CarriedIds:
    """``carry_forward_ids`` of every record's cluster (``parts.clusters()`` with ``redone``, the
    affected records' clusters after the guard, in place of ``parts.redone``), worked out on the
    affected records only.

    A kept person's records are exactly one previous person's, and no other cluster holds any of
    them, so it keeps its id and logs no change whatever the rest does; an affected person's
    records are all affected (the affected set holds whole persons). So the overlaps, contests,
    minted ids (numbered from the same first free id, in the order of the clusters' smallest
    records) and changes are those of the affected records and the previous persons they came
    from alone, and the kept records keep their ids as they were."""
    before = previous.ids()
    assert before is not None
    gone = parts.kept.get_column(PERSON_ID).unique().implode()
    carried = carry_forward_ids(before.filter(~pl.col(PERSON_ID).is_in(gone)), redone,
                                first_new_id=previous.next_id(), log_new=before.height > 0)
    ids = pl.concat([parts.kept.select(UNIQUE_ID, pl.col(PERSON_ID).cast(pl.Int64)), carried.ids]).sort(UNIQUE_ID)
    return CarriedIds(ids=ids, changes=carried.changes, next_id=carried.next_id)


def component_labels(record_ids: pl.Series, edges: pl.DataFrame, *, left: str = "record_id_l",
                     right: str = "record_id_r") -> pl.DataFrame:
    """``clusters_from_edges`` (record_id, cluster_id = the component's smallest record id) in
    whole-array steps (:func:`disjoint_sets.component_minimum`) instead of a union per edge: the
    records are numbered in sorted order, so a component's smallest number is its smallest id."""
    ids = record_ids.cast(pl.String).unique().sort()
    index = pl.DataFrame({UNIQUE_ID: ids, "_i": pl.int_range(ids.len(), dtype=pl.Int64, eager=True)})
    numbered = (edges.select(pl.col(left).cast(pl.String).alias("_a"), pl.col(right).cast(pl.String).alias("_b"))
                .join(index.rename({UNIQUE_ID: "_a", "_i": "_l"}), on="_a")
                .join(index.rename({UNIQUE_ID: "_b", "_i": "_r"}), on="_b"))
    roots = component_minimum(ids.len(), numbered["_l"].to_numpy(), numbered["_r"].to_numpy())
    return pl.DataFrame({UNIQUE_ID: ids, "cluster_id": ids.gather(roots)})


# ------------------------------------------------------------------------------- runs


@dataclass
class PreviousLink:
    """What the previous link stored: its clusters (STATE_COLUMNS), scored pairs and the
    id-change history (any of them may be missing)."""

    clusters: pl.DataFrame | None = None
    pairs: pl.DataFrame | None = None
    changes: pl.DataFrame | None = None

    def ids(self) -> pl.DataFrame | None:
        if self.clusters is None or PERSON_ID not in self.clusters.columns:
            return None
        return self.clusters.select(pl.col(UNIQUE_ID).cast(pl.String), pl.col(PERSON_ID).cast(pl.Int64))

    def next_id(self) -> int:
        """Above every id in the previous clusters and in the change history."""
        ids = self.ids()
        columns = [None if ids is None else ids.get_column(PERSON_ID)]
        if self.changes is not None and not self.changes.is_empty():
            columns += [self.changes.get_column("old_id"), self.changes.get_column("new_id")]
        return next_free_id(*columns)

    def constant(self, column: str) -> Any:
        if self.clusters is None or column not in self.clusters.columns or self.clusters.is_empty():
            return None
        values = self.clusters.get_column(column).unique()
        return values[0] if values.len() == 1 else None

    def cannot_extend(self, model_version: str, *, check_pairs: bool = True) -> str | None:
        """Why an incremental link cannot build on this one (None: it can). ``check_pairs``
        False leaves out the stored pairs (to look before loading them)."""
        if self.clusters is None or self.clusters.is_empty():
            return "no previous clusters"
        missing = [c for c in STATE_COLUMNS if c not in self.clusters.columns]
        if missing:
            return f"the previous clusters lack {missing} (written before incremental linking)"
        before = self.constant("model_version")
        if before != model_version:
            return f"the model changed ({before} -> {model_version})"
        if self.constant("match_threshold") is None:
            return "the previous clustering threshold is unknown"
        if check_pairs and self.pairs is None:
            return "no stored scored pairs"
        return None


@dataclass
class LinkResult:
    ids: pl.DataFrame  # record_id, person_id
    pairs: pl.DataFrame | WarehouseQuery  # every stored scored pair (>= KEEP_PAIRS_ABOVE)
    changes: pl.DataFrame  # this run's id changes (CHANGE_SCHEMA)
    hashes: pl.DataFrame  # record_id, record_hash
    threshold: float
    threshold_source: str
    mode: str  # full | incremental
    reason: str  # why this mode
    next_id: int
    stats: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # Pairs at or above the threshold (ids, weight, probability) when ``pairs`` is stored by a
    # query and so is not a frame here.
    links: pl.DataFrame | None = None
    # Incremental: the previous persons kept whole (same records, same links among them, same id);
    # None when every person was worked out again.
    kept_persons: pl.Series | None = None
    # Incremental: how ``pairs`` differs from the stored pairs: the ids of the stored pairs dropped
    # (record_id_l, record_id_r) and the pairs added, which ``pairs`` ends with (after the kept
    # stored pairs, in their order)
    pair_changes: tuple[pl.DataFrame, pl.DataFrame] | None = None

    def threshold_links(self) -> pl.DataFrame:
        """The scored pairs that link at the clustering threshold, as a polars frame."""
        pairs = self.links if self.links is not None else self.pairs
        assert isinstance(pairs, pl.DataFrame)
        return pairs.filter(pl.col("match_probability") >= self.threshold)

    def clusters_table(self, model_version: str, person_id_name: str = PERSON_ID) -> pl.DataFrame:
        """What the clusters asset stores: record -> person id, and what the next run needs."""
        return (self.ids.join(self.hashes, on=UNIQUE_ID, how="left")
                .select(UNIQUE_ID, pl.col(PERSON_ID).alias(person_id_name),
                        pl.lit(model_version).alias("model_version"),
                        pl.lit(self.threshold, dtype=pl.Float64).alias("match_threshold"), "record_hash")
                .sort(UNIQUE_ID))


def _carry(previous: PreviousLink | None, clusters: pl.DataFrame) -> Any:
    previous = previous or PreviousLink()
    return carry_forward_ids(previous.ids(), clusters, first_new_id=previous.next_id())



def cluster_and_carry(previous: PreviousLink, record_ids: pl.Series, pairs: pl.DataFrame, records: pl.DataFrame,
                      threshold: float, touched: pl.Series, *, everything: bool = False,
                      timings: dict[str, float] | None = None, started: float | None = None) -> tuple:
    """An incremental link's clusters (guarded) and carried-forward ids: (``CarriedIds``, the guard's
    ``GuardResult``, records re-clustered, persons kept). ``everything`` (the threshold moved) re-clusters, guards
    and carries over every record; otherwise only the records a touched record reaches are worked
    on and every other previous person is kept as it was (the same ids, changes and guard counts as
    working on everything: see :func:`carry_touched`), and the previous persons kept whole (None
    with ``everything``). ``timings`` gets "cluster" and "ids" seconds."""
    timings = {} if timings is None else timings
    t = time.perf_counter() if started is None else started
    if everything:
        clusters, reclustered = recluster(previous.ids(), record_ids, pairs, threshold, touched,  # type: ignore[arg-type]
                                          everything=True)
        guarded = split_conflicting_clusters(clusters, pairs, records, threshold)
        timings["cluster"] = time.perf_counter() - t
        t = time.perf_counter()
        carried, kept = _carry(previous, guarded.clusters), None
    else:
        parts = recluster_touched(previous.ids(), record_ids, pairs, threshold, touched)  # type: ignore[arg-type]
        reclustered = parts.redone.height
        # The guard only on the affected records' clusters: a kept person is one the guard left
        # whole last time, with the same records (a record whose fields changed is touched), so it
        # carries no two people and the guard would leave it as it is.
        affected = parts.redone.get_column(UNIQUE_ID).implode()
        guarded = split_conflicting_clusters(parts.redone, parts.links,
                                             records.filter(pl.col(UNIQUE_ID).cast(pl.String).is_in(affected)),
                                             threshold)
        timings["cluster"] = time.perf_counter() - t
        t = time.perf_counter()
        carried = carry_touched(previous, parts, guarded.clusters)
        kept = parts.kept.get_column(PERSON_ID).unique().sort()
    timings["ids"] = time.perf_counter() - t
    return carried, guarded, reclustered, kept


def link_full(records: pl.DataFrame, model: TrainedModel, db_api, *,
              choose: Callable[[pl.DataFrame], tuple[float, str]], previous: PreviousLink | None = None,
              keep_above: float = KEEP_PAIRS_ABOVE, reason: str = "full run requested",
              num_chunks: int | None = None, max_pairs_per_rule: float | None = None,
              progress: Callable[[str], None] | None = None) -> LinkResult:
    """Score every pair, choose the threshold on the scores (``choose(pairs) -> (match
    probability, where it came from)``, given ids, weight and probability only), cluster
    with Splink in the backend, carry ids forward.

    Pairs are scored in ``num_chunks`` passes (default: sized from the blocking rules'
    measured pair counts) into one table in the backend, and clustered there. When the
    backend runs inside the warehouse (``backend.warehouse_db_api``) the result's ``pairs``
    is a ``WarehouseQuery`` that stores them from there; otherwise a polars frame."""
    timings: dict[str, float] = {}
    check_blocking_pairs(model.spec, max_pairs_per_rule)
    t = time.perf_counter()
    hashes = record_hashes(records)
    linker = linker_for_model(db_api, records, model.settings, model.spec)
    pairs_sdf = predict_pairs_in_chunks(linker, num_chunks or chunks_for(model.spec),
                                        threshold_match_probability=keep_above, progress=progress)
    timings["predict"] = time.perf_counter() - t
    # Ids, weight and probability only: what the threshold choice and the guard read.
    scores = pairs_to_polars(pairs_sdf, PAIR_COLUMNS)
    threshold, source = choose(scores)
    t = time.perf_counter()
    clusters = cluster_pairs(linker, pairs_sdf, threshold_match_probability=threshold)
    guarded = split_conflicting_clusters(clusters, scores, records, threshold)
    clusters = guarded.clusters
    links = scores.filter(pl.col("match_probability") >= threshold)
    del scores
    timings["cluster"] = time.perf_counter() - t
    pairs, n_pairs = pairs_to_store(db_api, pairs_sdf)
    t = time.perf_counter()
    carried = _carry(previous, clusters)
    timings["ids"] = time.perf_counter() - t
    return LinkResult(ids=carried.ids, pairs=pairs, changes=carried.changes, hashes=hashes, threshold=threshold,
                      threshold_source=source, mode="full", reason=reason, next_id=carried.next_id,
                      stats={"records": records.height, "pairs": n_pairs, "reclustered": records.height,
                             **carried.counts(), **guarded.stats},
                      timings=timings, links=links)


def pairs_to_store(db_api, pairs_sdf) -> tuple[pl.DataFrame | WarehouseQuery, int]:
    """Scored pairs as the clusters asset stores them, and how many there are: a query the
    warehouse runs on Splink's table when Splink runs in the warehouse (the pairs never
    reach Python; the table is dropped once stored), else a polars frame."""
    columns = pair_columns(pairs_sdf)
    count = pairs_sdf.query_sql("select count(*) as n from {this}")
    try:
        n_pairs = int(pl.from_arrow(count.as_pyarrow_table())["n"][0])  # type: ignore[index]
    finally:
        count.drop_table_from_database_and_remove_from_cache()
    scratch = getattr(db_api, "scratch_catalog", None)
    if scratch is None:
        frame = pairs_to_polars(pairs_sdf, columns)
        pairs_sdf.drop_table_from_database_and_remove_from_cache()
        return frame, n_pairs
    sql = f"select {', '.join(columns)} from {scratch}.main.{pairs_sdf.physical_name}"

    def cleanup() -> None:
        # Once the pairs are stored nothing else of this link is needed: drop Splink's whole
        # scratch catalog (records, blocked pairs, predictions), not just the pairs table.
        pairs_sdf.drop_table_from_database_and_remove_from_cache()
        release_db_api(db_api)

    return WarehouseQuery(sql, cleanup=cleanup), n_pairs


def link_incremental(records: pl.DataFrame, model: TrainedModel, db_api, previous: PreviousLink, *,
                     threshold: float | None = None, keep_above: float = KEEP_PAIRS_ABOVE) -> LinkResult:
    """Extend ``previous`` (which must be extendable: see ``PreviousLink.cannot_extend``)
    with the records that are new or changed, scored by ``model`` without retraining.
    ``threshold``: the configured one, else the previous run's."""
    problem = previous.cannot_extend(model.version)
    if problem:
        raise ValueError(f"cannot link incrementally: {problem}")
    assert previous.clusters is not None and previous.pairs is not None
    timings: dict[str, float] = {}
    before = float(previous.constant("match_threshold"))
    threshold, source = (before, "previous run") if threshold is None else (threshold, "configured")

    t = time.perf_counter()
    hashes = record_hashes(records)
    changes = diff_records(hashes, previous.clusters.select(pl.col(UNIQUE_ID).cast(pl.String), "record_hash"))
    timings["diff"] = time.perf_counter() - t

    t = time.perf_counter()
    # Only the existing records a blocking rule pairs with a rescored one go to predict_between
    # (a quarter of them for magistrates' rules), handed over as string views: the same pairs and
    # scores (term frequencies still over every record), without joining every stored record to
    # the term-frequency tables (predict_between was a third of this step at 1M people).
    fresh = score_new_records(db_api, model, records, changes.rescore, keep_above=keep_above, only_blocked=True)
    timings["score"] = time.perf_counter() - t

    t = time.perf_counter()
    touched = pl.DataFrame({UNIQUE_ID: changes.touched})
    stored = previous.pairs.with_columns(pl.col("record_id_l").cast(pl.String), pl.col("record_id_r").cast(pl.String))
    kept = (stored.join(touched, left_on="record_id_l", right_on=UNIQUE_ID, how="anti")
            .join(touched, left_on="record_id_r", right_on=UNIQUE_ID, how="anti"))
    pairs = pl.concat([kept, fresh], how="diagonal_relaxed") if fresh.height else kept
    dropped = stored.filter(pl.col("record_id_l").is_in(changes.touched.implode())
                            | pl.col("record_id_r").is_in(changes.touched.implode())).select("record_id_l", "record_id_r")
    carried, guarded, reclustered, kept_persons = cluster_and_carry(
        previous, hashes.get_column(UNIQUE_ID), pairs, records, threshold, changes.touched,
        everything=threshold != before, timings=timings, started=t)
    return LinkResult(
        ids=carried.ids, pairs=pairs, changes=carried.changes, hashes=hashes, threshold=threshold,
        threshold_source=source, mode="incremental",
        reason=f"{changes.new.len()} new, {changes.changed.len()} changed, {changes.removed.len()} removed records",
        next_id=carried.next_id,
        stats={"records": records.height, "new_records": changes.new.len(), "changed_records": changes.changed.len(),
               "removed_records": changes.removed.len(), "new_pairs": fresh.height, "pairs": pairs.height,
               "reclustered": reclustered, **carried.counts(), **guarded.stats},
        timings=timings, kept_persons=kept_persons, pair_changes=(dropped, pairs.slice(kept.height)))


# ---------------------------------------------------------------------------- models


# A model's field still counts as usable down to this completeness (usable_fields' cut is 0.01).
FIELD_DRIFT_COMPLETENESS = 0.005


def model_to_reuse(doc: dict[str, Any] | None, trained_records: int | None, records: pl.DataFrame, *,
                   retrain_growth: float | None = 2.0) -> tuple[TrainedModel | None, str]:
    """The stored model if it still fits ``records`` (else None), and why.

    It fits when the fields usable for linkage are the ones it was trained on, and, with
    ``retrain_growth``, the records have not grown past that multiple of what it was trained
    on (a model trained on a first small extract should not serve for ever).
    """
    if doc is None:
        return None, "no saved model"
    model = TrainedModel.from_json(doc)
    missing = [c for c in model.spec.columns if c not in records.columns and c != SOURCE_DATASET]
    if missing:
        return None, f"records lack {missing}"
    now = sorted(usable_fields(records, LINKAGE_FIELDS))
    # Hysteresis: a field of the model that drifts just under the completeness cut (a few new
    # records without it) keeps the model; one that fell well under it, or a new usable field, retrains.
    kept = set(usable_fields(records, model.spec.fields, min_completeness=FIELD_DRIFT_COMPLETENESS))
    if set(now) - set(model.spec.fields) or set(model.spec.fields) - kept:
        return None, f"usable fields changed ({sorted(model.spec.fields)} -> {now})"
    if retrain_growth and trained_records and records.height > retrain_growth * trained_records:
        return None, f"records grew from {trained_records:,} to {records.height:,} (over {retrain_growth}x)"
    return model, f"model {model.version} still fits the records"


__all__ = [
    "KEEP_PAIRS_ABOVE", "MODES", "CHANGE_SCHEMA", "record_hashes", "diff_records", "score_new_records",
    "recluster", "recluster_touched", "carry_touched", "cluster_and_carry", "PreviousLink", "LinkResult", "link_full", "link_incremental", "model_to_reuse",
]
