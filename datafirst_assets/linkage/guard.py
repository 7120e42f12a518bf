"""Clusters that do not chain: an over-merge guard and the graph shape of each clustering.

    guarded = split_conflicting_clusters(clusters, pairs, records, threshold)
    guarded.clusters   # the same rows, conflicting clusters split (cluster labels are text)
    metrics = cluster_graph_metrics(guarded.clusters, pairs, threshold)   # one row per cluster
    largest_clusters(metrics)                                             # the ten biggest

Connected components join any two records reachable through links above the threshold, so
at scale common names and missing dates of birth chain different people into one cluster
through a few weak links. The guard is a pure step between clustering and id carrying (polars
in, polars out; it works on whatever clustering produced the labels): a cluster whose records
carry two full dates of birth that cannot be one person's (fewer than two of day, month and
year agree, and not a day/month swap: the recording errors a date really suffers) is rebuilt
from its own links, strongest first, never joining two parts whose dates conflict. Records
without a date join the part they are most strongly linked to. Clusters without a conflict
are left exactly as they were. Case systems add two rules of the same kind: two parties of
one case (``case_id``) are different people, and a party whose name looks like a company's
(``party_kind``) is never one person with a party who does not.

The graph metrics are Splink's (``compute_graph_metrics``: cluster size, density, bridges)
computed here in polars on the stored pairs, so they work for any backend and for incremental
runs, which do not re-cluster with Splink.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import polars as pl

from datafirst_assets.linkage.disjoint_sets import DisjointSets, component_minimum, roots_at_thresholds
from datafirst_assets.linkage.settings import UNIQUE_ID

#: A clustering fails the shape check when a cluster has more records than this ...
MAX_CLUSTER_RECORDS = 500
#: ... or when a cluster of at least CHAIN_MIN_RECORDS records has a link density below
#: CHAIN_MAX_DENSITY (long and thin: people chained through a few links, not one person
#: whose records mostly match each other).
CHAIN_MIN_RECORDS = 10
CHAIN_MAX_DENSITY = 0.2
METRIC_SCHEMA = {"cluster_id": pl.String, "records": pl.Int64, "links": pl.Int64, "density": pl.Float64,
                 "bridges": pl.Int64}


def dobs_compatible(a: date, b: date) -> bool:
    """Could two recorded dates of birth be one person's? Equal, two of day/month/year agree
    (a slip in one part), or day and month swapped."""
    agree = (a.year == b.year) + (a.month == b.month) + (a.day == b.day)
    return agree >= 2 or (a.year == b.year and a.month == b.day and a.day == b.month)


def dates_compatible(left: str, right: str) -> pl.Expr:
    """Whether two date columns can be one person's date of birth (the guard's rule)."""
    ly, lm, ld = (getattr(pl.col(left).dt, p)() for p in ("year", "month", "day"))
    ry, rm, rd = (getattr(pl.col(right).dt, p)() for p in ("year", "month", "day"))
    agree = (ly == ry).cast(pl.Int8) + (lm == rm).cast(pl.Int8) + (ld == rd).cast(pl.Int8)
    return (agree >= 2) | ((ly == ry) & (lm == rd) & (ld == rm))


@dataclass
class GuardResult:
    clusters: pl.DataFrame  # the input's rows and columns, cluster column as text
    clusters_split: int = 0  # clusters that carried conflicting dates of birth
    parts: int = 0  # clusters they became
    stats: dict[str, Any] = field(default_factory=dict)


#: Record columns that make two records different people when ... they share a value
#: (parties of one case), or their values differ (a company and a person).
SAME_MEANS_DIFFERENT = ("case_id",)
DIFFERENT_MEANS_DIFFERENT = ("party_kind",)
#: Every record column the guard's rules read (with the default date-of-birth column).
GUARD_COLUMNS = (UNIQUE_ID, "dob", *SAME_MEANS_DIFFERENT, *DIFFERENT_MEANS_DIFFERENT)


def _members(clusters: pl.DataFrame, records: pl.DataFrame, col: str, cluster_col: str,
             dtype: type[pl.DataType] = pl.String, cluster_type: type[pl.DataType] = pl.String) -> pl.DataFrame:
    return (clusters.select(pl.col(UNIQUE_ID).cast(pl.String), pl.col(cluster_col).cast(cluster_type))
            .join(records.select(pl.col(UNIQUE_ID).cast(pl.String), pl.col(col).cast(dtype)), on=UNIQUE_ID,
                  how="inner")
            .drop_nulls(col))


def conflicting_clusters(clusters: pl.DataFrame, records: pl.DataFrame, *, cluster_col: str = "cluster_id",
                         dob_col: str = "dob", cluster_type: type[pl.DataType] = pl.String) -> pl.Series:
    """Labels of clusters whose records cannot be one person's: two dates of birth that cannot
    be one person's, two parties of one case, or a company with a person. ``cluster_type``: the
    labels' type (the quality step's are record positions: kept as integers, not cast to text)."""
    found = [pl.Series(cluster_col, [], dtype=cluster_type)]
    if dob_col in records.columns:
        dobs = (_members(clusters, records, dob_col, cluster_col, pl.Date, cluster_type)
                .select(cluster_col, dob_col).unique())
        several = dobs.filter(pl.len().over(cluster_col) > 1)
        pairs = (several.join(several, on=cluster_col, suffix="_r")
                 .filter(pl.col(dob_col) < pl.col(f"{dob_col}_r"))
                 .filter(~dates_compatible(dob_col, f"{dob_col}_r")))
        found.append(pairs.get_column(cluster_col))
    for col in SAME_MEANS_DIFFERENT:
        if col in records.columns:
            m = _members(clusters, records, col, cluster_col, cluster_type=cluster_type)
            found.append(m.filter(pl.len().over(cluster_col, col) > 1).get_column(cluster_col))
    for col in DIFFERENT_MEANS_DIFFERENT:
        if col in records.columns:
            m = _members(clusters, records, col, cluster_col, cluster_type=cluster_type)
            found.append(m.filter(pl.col(col).n_unique().over(cluster_col) > 1).get_column(cluster_col))
    return pl.concat(found).unique().sort()


def different_people(pairs: pl.DataFrame, records: pl.DataFrame, *, dob_col: str = "dob") -> pl.Series:
    """Per pair of ``pairs`` (record_id_l, record_id_r): whether the guard's rules say its two records
    are different people (dates of birth that cannot be one person's, two parties of one case, a
    company and a person), in the pairs' order. The guard never joins such a pair, so whatever the
    model scored it, it is a known non-match."""
    cols = [c for c in (dob_col, *SAME_MEANS_DIFFERENT, *DIFFERENT_MEANS_DIFFERENT) if c in records.columns]
    if not cols or pairs.is_empty():
        return pl.Series("different_people", [False] * pairs.height, dtype=pl.Boolean)
    rec = records.select(pl.col(UNIQUE_ID).cast(pl.String),
                         *[pl.col(c).cast(pl.Date if c == dob_col else pl.String) for c in cols])
    side = lambda s: rec.rename({c: f"{c}_{s}" for c in rec.columns})  # noqa: E731
    joined = (pairs.select(pl.col("record_id_l").cast(pl.String), pl.col("record_id_r").cast(pl.String))
              .with_row_index("_row").join(side("l"), on="record_id_l", how="left")
              .join(side("r"), on="record_id_r", how="left").sort("_row"))
    rules = [pl.col(f"{c}_l") == pl.col(f"{c}_r") for c in SAME_MEANS_DIFFERENT if c in cols]
    rules += [pl.col(f"{c}_l") != pl.col(f"{c}_r") for c in DIFFERENT_MEANS_DIFFERENT if c in cols]
    if dob_col in cols:
        rules.append(~dates_compatible(f"{dob_col}_l", f"{dob_col}_r"))
    return joined.select(pl.any_horizontal([r.fill_null(False) for r in rules]).alias("different_people")).to_series()


@dataclass
class _Part:
    """What a growing part of a split cluster carries, to refuse a join that would make it
    two people."""

    dobs: set = field(default_factory=set)
    cases: set = field(default_factory=set)
    kinds: set = field(default_factory=set)

    def compatible(self, other: _Part) -> bool:
        return (not (self.cases & other.cases) and len(self.kinds | other.kinds) <= 1
                and all(dobs_compatible(x, y) for x in self.dobs for y in other.dobs))

    def absorb(self, other: _Part) -> None:
        self.dobs |= other.dobs
        self.cases |= other.cases
        self.kinds |= other.kinds


def _parts(members: pl.DataFrame, records: pl.DataFrame, dob_col: str) -> dict[str, _Part]:
    cols = [c for c in (dob_col, *SAME_MEANS_DIFFERENT, *DIFFERENT_MEANS_DIFFERENT) if c in records.columns]
    rows = members.select(UNIQUE_ID).join(
        records.select(pl.col(UNIQUE_ID).cast(pl.String), *cols), on=UNIQUE_ID, how="left")
    parts = {}
    for row in rows.iter_rows(named=True):
        dob, case, kind = row.get(dob_col), row.get("case_id"), row.get("party_kind")
        parts[row[UNIQUE_ID]] = _Part({dob} if dob is not None else set(), {case} if case is not None else set(),
                                      {kind} if kind is not None else set())
    return parts


def _join_unless_different(sets: DisjointSets, carried, left: int, right: int) -> bool:
    """Join the parts of records ``left`` and ``right`` unless they carry different people (``carried``:
    each part's `_Part` by its root); whether they were joined."""
    a, b = sets.find(left), sets.find(right)
    if a == b or not carried[a].compatible(carried[b]):
        return False
    kept = sets.join(a, b)
    carried[kept].absorb(carried[b if kept == a else a])
    return True


def guarded_components_at(record_ids: list[str], left, right, probability, thresholds: list[float],
                          records: pl.DataFrame, *, dob_col: str = "dob") -> dict:
    """Each record's cluster root at every threshold t, as :func:`split_conflicting_clusters` leaves
    the clusters of the pairs with probability >= t: one union-find pass adding pairs from the most
    probable down, never joining two parts that carry different people (conflicting dates, two
    parties of one case, a company and a person). ``left`` / ``right``: positions in ``record_ids``.

    A cluster at the lowest threshold whose records carry no two people (most of them) never
    refuses a join, so it and every cluster inside it are the plain clusters
    (:func:`disjoint_sets.roots_at_thresholds`, whole-array steps); only the pairs inside the
    others go through the guarded pass (:func:`_guarded_joins`). A root is its cluster's smallest
    position either way. :func:`guarded_roots_keeping` gives the same and keeps the pass's work."""
    return guarded_roots_keeping(record_ids, left, right, probability, thresholds, records, dob_col=dob_col).roots


#: What the guarded pass keeps for the next one (:func:`guarded_roots_keeping`): per cluster at the
#: lowest threshold whose records carry different people, its key (``key_a``, ``key_b``: two sums of
#: hashes of its links' ids and probabilities and of its records' ids and guard values; ``records``,
#: ``links``: how many) and each link the pass joined there (ids null when it joined none).
GUARD_JOINS = {"key_a": pl.UInt64, "key_b": pl.UInt64, "records": pl.UInt32, "links": pl.UInt32,
               "record_id_l": pl.String, "record_id_r": pl.String, "match_probability": pl.Float64}
_KEY = ["key_a", "key_b", "records", "links"]


@dataclass
class GuardedRoots:
    """:func:`guarded_roots_keeping`'s roots per threshold, what it keeps (``GUARD_JOINS``) and how
    many links went through the pass one by one (those of clusters not taken from ``previous``)."""

    roots: dict[float, np.ndarray]
    joins: pl.DataFrame
    computed: int = 0


def _conflicted_keys(ids: pl.Series, group: np.ndarray, left: np.ndarray, right: np.ndarray,
                     probability: np.ndarray, records: pl.DataFrame, dob_col: str) -> pl.DataFrame:
    """``_group`` (0..k-1) and its key (``_KEY``) per conflicted cluster: ``ids`` its records with
    their cluster number ``group``, ``left`` / ``right`` its links (positions in ``ids``). What the
    pass decides in a cluster reads only these: its links in order of probability (ties by ids)
    and its records' guard values. Hashes cut to 32 bits, so that sums of millions never overflow."""
    cols = [c for c in (dob_col, *SAME_MEANS_DIFFERENT, *DIFFERENT_MEANS_DIFFERENT) if c in records.columns]
    members = (pl.DataFrame({UNIQUE_ID: ids, "_group": group})
               .join(records.select(pl.col(UNIQUE_ID).cast(pl.String), *[pl.col(c).cast(pl.String) for c in cols])
                     .unique(UNIQUE_ID, keep="first"), on=UNIQUE_ID, how="left"))
    links = pl.DataFrame({"_group": group[left], "l": ids.gather(left), "r": ids.gather(right),
                          "p": probability})

    def sums(frame: pl.DataFrame, columns: list[str], name: str) -> pl.DataFrame:
        row = pl.struct(columns)
        return frame.group_by("_group").agg(
            (row.hash(seed=41) % (1 << 32)).sum().alias("a"), (row.hash(seed=43) % (1 << 32)).sum().alias("b"),
            pl.len().cast(pl.UInt32).alias(name))

    m, k = sums(members, [UNIQUE_ID, *cols], "records"), sums(links, ["l", "r", "p"], "links")
    return (m.join(k, on="_group", how="left", suffix="_k")
            .select("_group", (pl.col("a") + pl.col("a_k").fill_null(0)).cast(pl.UInt64).alias("key_a"),
                    (pl.col("b") + pl.col("b_k").fill_null(0)).cast(pl.UInt64).alias("key_b"),
                    "records", pl.col("links").fill_null(0).cast(pl.UInt32))
            .sort("_group"))


def _guarded_joins(record_ids: pl.Series, left: np.ndarray, right: np.ndarray, order: np.ndarray,
                   records: pl.DataFrame, dob_col: str) -> np.ndarray:
    """The links (indices, in ``order``) the guarded pass joins, going through them in ``order``:
    the one union-find pass over them, the roots at each threshold being those of these links alone.
    Only the records of the links in ``order`` are read (``left`` / ``right``: positions in ``record_ids``)."""
    wanted = np.unique(np.concatenate([left[order], right[order]]))
    parts = _parts(record_ids.gather(wanted).to_frame(UNIQUE_ID), records, dob_col)
    carried = {int(p): parts.get(r) or _Part() for p, r in zip(wanted, record_ids.gather(wanted).to_list())}
    sets = DisjointSets(len(record_ids))
    joined = [i for i in order if _join_unless_different(sets, carried, int(left[i]), int(right[i]))]
    return np.asarray(joined, dtype=np.int64)


def guarded_roots_keeping(record_ids: list[str] | pl.Series, left, right, probability, thresholds: list[float],
                          records: pl.DataFrame, previous: pl.DataFrame | None = None, *,
                          dob_col: str = "dob") -> GuardedRoots:
    """:func:`guarded_components_at`, keeping the guarded pass's work: the roots of a conflicted
    cluster at every threshold are those of the links the pass joined in it, so each conflicted
    cluster's joins are kept (``GuardedRoots.joins``) under a key of everything the pass read there;
    with ``previous`` (what an earlier call kept) a cluster of the same key takes its joins instead
    of going through its links one by one in Python (the quality step's largest cost at 300,000
    people, every cluster each run where a 1% extract touches few). The roots are the same arrays."""
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    probability = np.asarray(probability, dtype=float)
    if not thresholds:
        return GuardedRoots({}, pl.DataFrame(schema=GUARD_JOINS))
    if dob_col in records.columns:
        records = records.with_columns(pl.col(dob_col).cast(pl.Date))
    # as a Series: its members are gathered, not looked up one by one in a Python list
    all_ids = (record_ids.cast(pl.String) if isinstance(record_ids, pl.Series)
               else pl.Series(UNIQUE_ID, record_ids, dtype=pl.String)).alias(UNIQUE_ID)
    n = len(all_ids)
    linked = probability >= min(thresholds)
    widest = component_minimum(n, left[linked], right[linked])
    bad = conflicting_clusters(pl.DataFrame({UNIQUE_ID: all_ids, "_c": widest}), records, cluster_col="_c",
                               dob_col=dob_col, cluster_type=pl.Int64)
    conflicted = np.isin(widest, bad.cast(pl.Int64).to_numpy())
    inside = linked & conflicted[left]  # a linked pair's records are in one widest cluster
    members = np.flatnonzero(conflicted)
    if not members.size:
        return GuardedRoots(roots_at_thresholds(n, left, right, probability, thresholds),
                            pl.DataFrame(schema=GUARD_JOINS))
    local = np.full(n, -1, dtype=np.int64)
    local[members] = np.arange(members.size)
    ids = all_ids.gather(members)
    group = np.unique(widest[members], return_inverse=True)[1].reshape(-1)
    in_left, in_right, in_probability = local[left[inside]], local[right[inside]], probability[inside]
    keys = _conflicted_keys(ids, group, in_left, in_right, in_probability, records, dob_col)
    if previous is not None and not set(GUARD_JOINS) <= set(previous.columns):
        previous = None  # not what this code keeps: every cluster goes through the pass
    stored = (previous.select(*GUARD_JOINS).cast(GUARD_JOINS) if previous is not None  # type: ignore[arg-type]
              else pl.DataFrame(schema=GUARD_JOINS))
    reused = keys.join(stored.select(_KEY).unique(), on=_KEY, how="semi")
    redo = np.ones(keys.height, dtype=bool)
    redo[reused["_group"].to_numpy()] = False
    # the pass over the links of the clusters not kept: in the order the whole pass takes them
    # (strongest first, ties by record position, i.e. by id), each cluster's decisions its own
    todo = np.flatnonzero(redo[group[in_left]])
    order = todo[np.lexsort((in_right[todo], in_left[todo], -in_probability[todo]))]
    joined = _guarded_joins(ids, in_left, in_right, order, records, dob_col)
    computed = (keys.filter(pl.Series(redo)).join(
        pl.DataFrame({"_group": group[in_left[joined]], "record_id_l": ids.gather(in_left[joined]),
                      "record_id_r": ids.gather(in_right[joined]), "match_probability": in_probability[joined]}),
        on="_group", how="left"))
    taken = reused.join(stored, on=_KEY, how="inner")
    if previous is not None and not todo.size and not computed.height and taken.height == stored.height:
        joins = previous  # every cluster kept and none gone: what was kept, as it was (stored again by a link)
    else:
        joins = pl.concat([taken.select(*GUARD_JOINS), computed.select(*GUARD_JOINS)]).cast(GUARD_JOINS)  # type: ignore[arg-type]
    # every kept join's records as positions again (record ids are unique: each has one position)
    position = pl.DataFrame({UNIQUE_ID: ids, "_p": members})
    edges = (joins.drop_nulls("record_id_l")
             .join(position.rename({UNIQUE_ID: "record_id_l", "_p": "_l"}), on="record_id_l")
             .join(position.rename({UNIQUE_ID: "record_id_r", "_p": "_r"}), on="record_id_r"))
    plain = ~inside
    roots = roots_at_thresholds(n, np.concatenate([left[plain], edges["_l"].to_numpy()]),
                                np.concatenate([right[plain], edges["_r"].to_numpy()]),
                                np.concatenate([probability[plain], edges["match_probability"].to_numpy()]),
                                thresholds)
    return GuardedRoots(roots, joins, computed=int(todo.size))


def split_conflicting_clusters(clusters: pl.DataFrame, pairs: pl.DataFrame, records: pl.DataFrame,
                               threshold: float, *, cluster_col: str = "cluster_id",
                               dob_col: str = "dob") -> GuardResult:
    """``clusters`` with every cluster that carries records of different people (conflicting
    dates of birth, two parties of one case, a company and a person) rebuilt from its links
    (``pairs``: record_id_l, record_id_r, match_probability) at or above ``threshold``,
    strongest first, never joining parts that conflict. A split part is labelled
    ``<cluster>~<its smallest record id>``; other labels are unchanged (as text)."""
    out = clusters.with_columns(pl.col(cluster_col).cast(pl.String))
    bad = conflicting_clusters(out, records, cluster_col=cluster_col, dob_col=dob_col)
    if bad.is_empty():
        return GuardResult(out)
    members = out.filter(pl.col(cluster_col).is_in(bad.implode())).select(pl.col(UNIQUE_ID).cast(pl.String),
                                                                          cluster_col)
    if dob_col in records.columns:
        records = records.with_columns(pl.col(dob_col).cast(pl.Date))
    links = (pairs.filter(pl.col("match_probability") >= threshold)
             .select(pl.col("record_id_l").cast(pl.String), pl.col("record_id_r").cast(pl.String),
                     "match_probability")
             .join(members.rename({UNIQUE_ID: "record_id_l"}), on="record_id_l", how="inner")
             .join(members.rename({UNIQUE_ID: "record_id_r", cluster_col: "_c_r"}), on="record_id_r", how="inner")
             .filter(pl.col(cluster_col) == pl.col("_c_r"))
             .sort(["match_probability", "record_id_l", "record_id_r"], descending=[True, False, False]))
    record_ids = list(dict.fromkeys(members.get_column(UNIQUE_ID).to_list()))
    index = {r: i for i, r in enumerate(record_ids)}
    sets = DisjointSets(len(record_ids))
    parts = _parts(members, records, dob_col)
    carried = [parts[r] for r in record_ids]
    for left, right in links.select("record_id_l", "record_id_r").iter_rows():
        _join_unless_different(sets, carried, index[left], index[right])
    roots = pl.DataFrame({UNIQUE_ID: record_ids, "_root": sets.roots()})
    relabelled = (members.join(roots, on=UNIQUE_ID)
                  .with_columns(pl.col(UNIQUE_ID).min().over("_root").alias("_first"))
                  .select(UNIQUE_ID, pl.concat_str([pl.col(cluster_col), pl.lit("~"), pl.col("_first")]).alias("_new")))
    out = (out.with_columns(pl.col(UNIQUE_ID).cast(pl.String)).join(relabelled, on=UNIQUE_ID, how="left")
           .with_columns(pl.coalesce("_new", cluster_col).alias(cluster_col)).drop("_new"))
    parts = relabelled.get_column("_new").n_unique()
    return GuardResult(out, clusters_split=bad.len(), parts=parts,
                       stats={"guard_clusters_split": bad.len(), "guard_parts": parts})


# ------------------------------------------------------------------------ graph metrics


def _bridges(edges: list[tuple[str, str]]) -> int:
    """Edges whose removal disconnects their component (iterative Tarjan, one graph)."""
    adjacency: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for i, (a, b) in enumerate(edges):
        adjacency[a].append((b, i))
        adjacency[b].append((a, i))
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    count = 0
    for start in adjacency:
        if start in order:
            continue
        order[start] = low[start] = len(order)
        stack = [(start, -1, iter(adjacency[start]))]
        while stack:
            node, via, neighbours = stack[-1]
            advanced = False
            for nxt, edge in neighbours:
                if edge == via:
                    continue
                if nxt in order:
                    low[node] = min(low[node], order[nxt])
                else:
                    order[nxt] = low[nxt] = len(order)
                    stack.append((nxt, edge, iter(adjacency[nxt])))
                    advanced = True
                    break
            if not advanced:
                stack.pop()
                if stack:
                    parent = stack[-1][0]
                    low[parent] = min(low[parent], low[node])
                    if low[node] > order[parent]:
                        count += 1
    return count


def cluster_graph_metrics(clusters: pl.DataFrame, pairs: pl.DataFrame, threshold: float, *,
                          cluster_col: str = "cluster_id", known: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per cluster (``METRIC_SCHEMA``): records, links at or above ``threshold``
    inside it, density (links / possible links; null for one record) and bridges (links whose
    removal would split it: the weak joints chaining shows up as). ``known``: rows measured before
    for clusters whose records and links inside are unchanged (a cluster's row reads only those),
    taken as they are; only the other clusters are measured."""
    members = clusters.select(pl.col(UNIQUE_ID).cast(pl.String), pl.col(cluster_col).cast(pl.String).alias("cluster_id"))
    if known is not None:
        known = known.select(*METRIC_SCHEMA).cast(METRIC_SCHEMA).join(members.select("cluster_id").unique(),  # type: ignore[arg-type]
                                                                      on="cluster_id", how="semi")
        members = members.join(known.select("cluster_id"), on="cluster_id", how="anti")
    sizes = members.group_by("cluster_id").agg(pl.len().cast(pl.Int64).alias("records"))
    links = (pairs.filter(pl.col("match_probability") >= threshold)
             .select(pl.col("record_id_l").cast(pl.String), pl.col("record_id_r").cast(pl.String))
             .join(members.rename({UNIQUE_ID: "record_id_l"}), on="record_id_l", how="inner")
             .join(members.rename({UNIQUE_ID: "record_id_r", "cluster_id": "_c_r"}), on="record_id_r", how="inner")
             .filter(pl.col("cluster_id") == pl.col("_c_r")).drop("_c_r"))
    counts = links.group_by("cluster_id").agg(pl.len().cast(pl.Int64).alias("links"))
    metrics = (sizes.join(counts, on="cluster_id", how="left")
               .with_columns(pl.col("links").fill_null(0))
               .with_columns(pl.when(pl.col("records") > 1)
                             .then(pl.col("links") / (pl.col("records") * (pl.col("records") - 1) / 2))
                             .alias("density")))
    # A complete graph of three or more has no bridge; a tree's every link is one.
    sparse = metrics.filter((pl.col("records") >= 3) & (pl.col("density") < 1)).select("cluster_id")
    bridges = {c: _bridges(list(zip(g["record_id_l"].to_list(), g["record_id_r"].to_list())))
               for (c,), g in links.join(sparse, on="cluster_id", how="semi").group_by("cluster_id")}
    metrics = metrics.with_columns(
        pl.col("cluster_id").replace_strict(bridges, default=0, return_dtype=pl.Int64).alias("bridges"))
    metrics = metrics.select(*METRIC_SCHEMA).cast(METRIC_SCHEMA)  # type: ignore[arg-type]
    if known is not None:
        metrics = pl.concat([known, metrics])
    return metrics.sort(["records", "cluster_id"], descending=[True, False])


def largest_clusters(metrics: pl.DataFrame, n: int = 10) -> pl.DataFrame:
    return metrics.sort(["records", "cluster_id"], descending=[True, False]).head(n)


def largest_cluster_metrics(clusters: pl.DataFrame, pairs: pl.DataFrame, threshold: float, *,
                            cluster_col: str = "cluster_id", n: int = 10) -> pl.DataFrame:
    """``largest_clusters(cluster_graph_metrics(...), n)``, measuring only those ``n`` clusters: a
    cluster's metrics read only its own records and links, so the rest (and their bridges, found
    one cluster at a time in Python) need not be measured to report the largest."""
    # grouped by the ids as they are (every record's id was cast to text to be grouped); only the
    # clusters as large as the n-th largest are cast, to break ties by the id as text as before
    counts = clusters.group_by(cluster_col).agg(pl.len().alias("records"))
    if counts.height > n:
        counts = counts.filter(pl.col("records") >= counts["records"].top_k(n).min())
    sizes = (counts.with_columns(pl.col(cluster_col).cast(pl.String).alias("_text"))
             .sort(["records", "_text"], descending=[True, False]).head(n))
    largest = clusters.filter(pl.col(cluster_col).is_in(sizes[cluster_col].implode()))
    return largest_clusters(cluster_graph_metrics(largest, pairs, threshold, cluster_col=cluster_col), n)


def largest_clusters_table(per_source: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Each dataset's largest clusters in one table (``source`` first), for the quality report:
    where a reviewer looks for chaining."""
    frames = [m.select(pl.lit(source).alias("source"), *METRIC_SCHEMA) for source, m in per_source.items()]
    return pl.concat(frames) if frames else pl.DataFrame(schema={"source": pl.String, **METRIC_SCHEMA})


def chained_clusters(metrics: pl.DataFrame) -> pl.DataFrame:
    """Clusters of a shape one person's records do not make: too big, or long and thin."""
    return metrics.filter((pl.col("records") > MAX_CLUSTER_RECORDS)
                          | ((pl.col("records") >= CHAIN_MIN_RECORDS) & (pl.col("density") < CHAIN_MAX_DENSITY)))


def graph_summary(metrics: pl.DataFrame) -> dict[str, Any]:
    """Headline figures for asset metadata."""
    multi = metrics.filter(pl.col("records") > 1)
    return {
        "clusters": metrics.height,
        "largest_cluster_records": int(metrics["records"].max() or 0),
        "clusters_over_10_records": int((metrics["records"] > 10).sum()),
        "mean_density_multi_record": round(float(multi["density"].mean()), 4) if multi.height else None,
        "bridges": int(metrics["bridges"].sum()),
        "chained_clusters": chained_clusters(metrics).height,
    }
