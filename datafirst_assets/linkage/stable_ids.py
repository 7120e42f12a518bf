"""Per-dataset person ids that survive re-clustering.

    carried = carry_forward_ids(previous, clusters, first_new_id=next_free_id(previous, history))
    carried.ids       # record_id -> person_id (Int64)
    carried.changes   # old_id, new_id, kind, records: merges, splits, moves, new and retired ids

Splink names a cluster after its smallest record id, so a merge or a split renames clusters
that researchers have already used. Instead each new cluster inherits the previous person id
that covers most of its records:

- overlaps (new cluster, previous id, shared records) are taken largest first, ties broken by
  the smaller previous id, then the cluster's smallest record id; a cluster takes at most one
  previous id and a previous id goes to at most one cluster;
- clusters left without one get new ids, numbered above every id ever issued (never reused),
  in order of their smallest record id.

A cluster whose records are exactly a previous person's records shares records with that
person only, and that person with it only, so it always keeps its id.

Kinds of change (one row per previous id / new id pair that shares records, or per id that
appears or disappears):

  merge    the old id is gone; (some of) its records are now in new_id's person
  split    the old id lives on; some of its records formed a person with a new id
  moved    the old id lives on; some of its records joined another existing person
  new      a person with no previously linked record (old_id null)
  retired  none of the old id's records exist any more (new_id null)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

import polars as pl

PERSON_ID = "person_id"
RECORD_ID = "record_id"
KINDS = ("merge", "split", "moved", "new", "retired")
CHANGE_SCHEMA = {"old_id": pl.Int64, "new_id": pl.Int64, "kind": pl.String, "records": pl.Int64}
#: The stored change log: each run's changes with when (UTC), which run and which mode.
HISTORY_SCHEMA = {**CHANGE_SCHEMA, "changed_at": pl.Datetime("us"), "run_id": pl.String, "mode": pl.String}


@dataclass
class CarriedIds:
    ids: pl.DataFrame  # record_id, person_id (Int64), sorted by record_id
    changes: pl.DataFrame  # CHANGE_SCHEMA
    next_id: int  # the first id not yet issued after this assignment

    def counts(self) -> dict[str, int]:
        """Rows per kind of change (every kind present, zeros included)."""
        have = dict(self.changes.group_by("kind").len().iter_rows()) if self.changes.height else {}
        return {kind: int(have.get(kind, 0)) for kind in KINDS}


def run_change_counts(stats: dict, person_ids: pl.Series, *, first_run: bool) -> dict[str, int]:
    """This run's id changes per kind, from a link's stats. On the first run every id is new (the
    change log keeps no row per person then), so "new" counts the persons."""
    counts = {kind: stats[kind] for kind in KINDS if kind in stats}
    if first_run:
        counts["new"] = person_ids.n_unique()
    return counts


def empty_changes() -> pl.DataFrame:
    return pl.DataFrame(schema=CHANGE_SCHEMA)


def next_free_id(*id_columns: pl.Series | Iterable[int | None] | None) -> int:
    """One above every id seen in the given columns (previous ids, the change history's old
    and new ids), so a retired id is never issued again; 1 when there are none."""
    highest = 0
    for column in id_columns:
        if column is None:
            continue
        series = column if isinstance(column, pl.Series) else pl.Series(list(column), dtype=pl.Int64)
        top = series.cast(pl.Int64).max()
        if top is not None:
            highest = max(highest, int(top))  # type: ignore[arg-type]
    return highest + 1


def _greedy(overlap: pl.DataFrame) -> dict[str, int]:
    """cluster key -> previous id, largest overlap first (see the module docstring)."""
    # Pairs that compete with nothing (their cluster overlaps one previous id, and that id one
    # cluster) are assigned whatever the order: only the contested rest needs the Python loop.
    lone = overlap.filter((pl.len().over("_c") == 1) & (pl.len().over("old") == 1))
    assigned = dict(zip(lone["_c"].to_list(), lone["old"].to_list()))
    contested = overlap.join(lone.select("_c"), on="_c", how="anti").sort(
        ["n", "old", "_c"], descending=[True, False, False])
    used: set[int] = set()
    for cluster, old, _n in contested.iter_rows():
        if cluster in assigned or old in used:
            continue
        assigned[cluster] = old
        used.add(old)
    return assigned


def carry_forward_ids(
    previous: pl.DataFrame | None,
    clusters: pl.DataFrame,
    *,
    first_new_id: int | None = None,
    cluster_col: str = "cluster_id",
    log_new: bool | None = None,
) -> CarriedIds:
    """Person ids for ``clusters`` (record_id, ``cluster_col``: any cluster label), carried
    forward from ``previous`` (record_id, person_id; None or empty on the first release).

    ``first_new_id`` is where minting starts; by default one above the previous ids (give
    :func:`next_free_id` of the history too, so that retired ids are not reused).
    ``log_new`` writes a ``new`` row per minted person with no previous record; by default
    only when there were previous ids (the first release mints everyone: no news there).
    """
    has_previous = previous is not None and previous.height > 0
    log_new = has_previous if log_new is None else log_new
    current = clusters.select(pl.col(RECORD_ID).cast(pl.String), pl.col(cluster_col).cast(pl.String).alias("_label"))
    if current.get_column(RECORD_ID).is_duplicated().any():
        raise ValueError("a record appears in several clusters")
    # The smallest record id names the cluster: a label that does not depend on how the
    # clustering happened to number its output.
    current = current.with_columns(pl.col(RECORD_ID).min().over("_label").alias("_c"))
    prev = (previous.select(pl.col(RECORD_ID).cast(pl.String), pl.col(PERSON_ID).cast(pl.Int64).alias("old"))
            if has_previous else pl.DataFrame(schema={RECORD_ID: pl.String, "old": pl.Int64}))
    start = first_new_id if first_new_id is not None else next_free_id(prev.get_column("old"))
    if has_previous and start <= (prev.get_column("old").max() or 0):  # type: ignore[operator]
        raise ValueError(f"first_new_id {start} would reuse a previous id")

    overlap = (current.join(prev, on=RECORD_ID, how="inner")
               .group_by("_c", "old").agg(pl.len().cast(pl.Int64).alias("n")))
    assigned = _greedy(overlap)
    keys = current.select("_c").unique().sort("_c")
    inherited = pl.DataFrame({"_c": list(assigned), "new_id": list(assigned.values())},
                             schema={"_c": pl.String, "new_id": pl.Int64})
    minted = (keys.join(inherited, on="_c", how="anti")
              .with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + start).alias("new_id")))
    by_cluster = pl.concat([inherited, minted.with_columns(pl.lit(True).alias("_minted"))], how="diagonal")
    by_cluster = by_cluster.with_columns(pl.col("_minted").fill_null(False))
    ids = (current.join(by_cluster, on="_c", how="left")
           .select(RECORD_ID, pl.col("new_id").alias(PERSON_ID)).sort(RECORD_ID))

    surviving = inherited.select(pl.col("new_id").alias("old"), pl.lit(True).alias("_survives"))
    moved = (overlap.join(by_cluster, on="_c", how="left")
             .filter(pl.col("old") != pl.col("new_id"))
             .join(surviving, on="old", how="left")
             .with_columns(
                 pl.when(pl.col("_survives").is_null()).then(pl.lit("merge"))
                 .when(pl.col("_minted")).then(pl.lit("split"))
                 .otherwise(pl.lit("moved")).alias("kind"))
             .select(pl.col("old").alias("old_id"), "new_id", "kind", pl.col("n").alias("records")))
    sizes = current.group_by("_c").agg(pl.len().cast(pl.Int64).alias("records"))
    new_people = (minted.join(overlap.select("_c").unique(), on="_c", how="anti").join(sizes, on="_c")
                  .select(pl.lit(None, dtype=pl.Int64).alias("old_id"), "new_id", pl.lit("new").alias("kind"),
                          "records")) if log_new else empty_changes()
    retired = (prev.join(current.select(RECORD_ID), on=RECORD_ID, how="anti")
               .group_by("old").agg(pl.len().cast(pl.Int64).alias("records"))
               .join(overlap.select("old").unique(), on="old", how="anti")
               .select(pl.col("old").alias("old_id"), pl.lit(None, dtype=pl.Int64).alias("new_id"),
                       pl.lit("retired").alias("kind"), "records"))
    changes = (pl.concat([moved.cast(CHANGE_SCHEMA), new_people.cast(CHANGE_SCHEMA), retired.cast(CHANGE_SCHEMA)])
               .sort(["old_id", "new_id"], nulls_last=True))
    return CarriedIds(ids=ids, changes=changes, next_id=start + minted.height)


def run_history_rows(changes: pl.DataFrame, *, run_id: str, mode: str, at: datetime | None = None,
                     schema: dict = CHANGE_SCHEMA) -> pl.DataFrame:
    """This run's rows of a change log: its ``changes`` (the columns of ``schema``: ``CHANGE_SCHEMA``,
    or the cross-justice log's with its level), when, which run, which mode."""
    at = at or datetime.now(timezone.utc).replace(tzinfo=None)
    return changes.select(*schema).cast(schema).with_columns(  # type: ignore[arg-type]
        pl.lit(at, dtype=pl.Datetime("us")).alias("changed_at"), pl.lit(run_id).alias("run_id"),
        pl.lit(mode).alias("mode"))


def history_with(history: pl.DataFrame | None, this_run: pl.DataFrame, *, run_id: str,
                 schema: dict = HISTORY_SCHEMA) -> pl.DataFrame:
    """The stored change log ``history`` (columns ``schema``) with this run's rows (``run_history_rows``)
    after it; a re-execution of the same run replaces its earlier rows rather than repeating them."""
    if history is None or history.is_empty() or not set(schema) <= set(history.columns):
        return this_run
    earlier = history.select(*schema).cast(schema).filter(pl.col("run_id") != run_id)  # type: ignore[arg-type]
    return pl.concat([earlier, this_run])


def id_change_history(history: pl.DataFrame | None, changes: pl.DataFrame, *, run_id: str, mode: str,
                      at: datetime | None = None) -> pl.DataFrame:
    """The stored change log with this run's ``changes`` appended (``history_with``)."""
    return history_with(history, run_history_rows(changes, run_id=run_id, mode=mode, at=at), run_id=run_id)


def unchanged_persons_kept(previous: pl.DataFrame, current: pl.DataFrame) -> tuple[int, int]:
    """(previous persons whose exact record set is again one person, how many of them kept
    their id): the stability floor is that the two are equal. Both frames: record_id, person_id."""
    before = previous.select(pl.col(RECORD_ID).cast(pl.String), pl.col(PERSON_ID).cast(pl.Int64))
    after = current.select(pl.col(RECORD_ID).cast(pl.String), pl.col(PERSON_ID).cast(pl.Int64).alias("_now"))
    return same_record_sets(before.join(after, on=RECORD_ID, how="left"), PERSON_ID, "_now",
                            after.group_by("_now").agg(pl.len().alias("_size")))


def same_record_sets(joined: pl.DataFrame, before: str, after: str, sizes: pl.DataFrame) -> tuple[int, int]:
    """``unchanged_persons_kept`` from ``joined`` (every previous record: its previous person
    ``before`` and its current person ``after``, null if the record is gone) and ``sizes``
    (``after``, ``_size``: records per current person). A previous person's records are exactly
    one current person's when they all went to that person and it has no other record: one
    join and two group-bys, not a comparison of sorted member lists."""
    per_person = (joined.group_by(before).agg(pl.len().alias("_size"), pl.col(after).null_count().alias("_gone"),
                                              pl.col(after).n_unique().alias("_persons"), pl.col(after).first())
                  .filter((pl.col("_gone") == 0) & (pl.col("_persons") == 1))
                  .join(sizes, on=[after, "_size"], how="semi"))
    return per_person.height, per_person.filter(pl.col(before) == pl.col(after)).height
