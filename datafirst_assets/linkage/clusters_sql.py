"""Nested clustering at several thresholds, computed in DuckDB: the same clusters as
``xjs.nested_clusters`` without holding the edges in Python.

``nested_clusters`` processes edges strongest first with a union-find and, with
``same_group="separate"``, skips an edge whose two clusters already hold a node of the same
group (a cannot-link constraint). That sequence is only needed where the constraint can bite:

* Connected components over every edge at the lowest threshold are computed in SQL (label
  propagation with pointer jumping; each pass halves the distance to a component's smallest
  node, so a few passes suffice).
* A component holding at most one node per group can never meet the constraint, so at every
  threshold its clusters are the plain connected components of the edges at or above that
  threshold (SQL again).
* Only components with two nodes of one group (a person split in one dataset and joined
  through another) go to the union-find in Python, with just their own nodes and edges: the
  union-find's decisions in one component depend only on that component's edges, taken in the
  same global order, so the result is identical.

Cluster ids are dense integers numbered by the smallest node key of each cluster, over all
clusters, exactly as ``nested_clusters`` numbers them.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import polars as pl

from datafirst_assets.warehouse.duckdb_settings import duckdb_settings

#: Give up (an error, not a wrong answer) if labels still change after this many passes.
MAX_PASSES = 200


def threshold_levels(thresholds: Sequence[float], labels: Sequence[str] | None,
                     same_group: str) -> tuple[list[float], list[str], list[int]]:
    """Nested clustering's thresholds as floats, their labels ("high", "medium", "low" for three)
    and their order from the highest; checks the same-group rule's name."""
    if same_group not in ("separate", "merge"):
        raise ValueError(f"same_group must be 'separate' or 'merge', not {same_group!r}")
    ts = [float(t) for t in thresholds]
    if not ts:
        raise ValueError("give at least one threshold")
    if labels is None:
        labels = ["high", "medium", "low"] if len(ts) == 3 else [f"t{i}" for i in range(len(ts))]
    return ts, list(labels), sorted(range(len(ts)), key=lambda i: -ts[i])


def _components(conn: duckdb.DuckDBPyConnection, edges: str, out: str) -> int:
    """``out(i, c)``: c = the smallest node index of i's connected component over ``edges(a, b)``
    (nodes ``_cc_nodes(i)``). Returns the passes it took."""
    conn.execute(f"create or replace temp table {out} as select i, i as c from _cc_nodes")
    conn.execute(f"create or replace temp table _cc_both as select a, b from {edges} union all "
                 f"select b as a, a as b from {edges}")
    for passes in range(1, MAX_PASSES + 1):
        # Smallest label among the node and its neighbours, then jump to that label's own label.
        conn.execute(f"""
            create or replace temp table _cc_step as
            select l.i, least(l.c, coalesce(n.c, l.c)) as c
            from {out} l left join (
                select e.a as i, min(x.c) as c from _cc_both e join {out} x on x.i = e.b group by e.a
            ) n on n.i = l.i""")
        conn.execute("""
            create or replace temp table _cc_jump as
            select s.i, least(s.c, t.c) as c from _cc_step s join _cc_step t on t.i = s.c""")
        changed = conn.execute(f"select count(*) from _cc_jump j join {out} l using (i) where j.c <> l.c").fetchall()[0][0]
        conn.execute(f"create or replace temp table {out} as select * from _cc_jump")
        if not changed:
            return passes
    raise RuntimeError(f"connected components did not settle in {MAX_PASSES} passes")


def _frame(conn: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    return pl.from_arrow(conn.sql(sql).to_arrow_table())  # type: ignore[return-value]


def nested_clusters_duckdb(nodes: pl.DataFrame, edges: pl.DataFrame, thresholds: Sequence[float], *,
                           node_col: str, group_col: str | None, left: str, right: str,
                           score: str = "match_probability", same_group: str = "separate",
                           labels: Sequence[str] | None = None,
                           connection: duckdb.DuckDBPyConnection | None = None,
                           python_clusters=None, component_col: str | None = None) -> tuple[pl.DataFrame, dict]:
    """As ``xjs.nested_clusters`` (same arguments, same output), computed in DuckDB except for
    components where the same-group constraint can bite; those go to ``python_clusters`` (the
    union-find). Returns the clusters and counts (components, passes, nodes sent to Python).
    ``component_col``: also a column of that name holding each node's connected component over
    the edges at the lowest threshold, named by its smallest node key (what an incremental
    clustering needs to tell which components a change touches, ``xjs_incremental``)."""
    ts, labels, order_t = threshold_levels(thresholds, labels, same_group)
    keep_cols = [node_col] + ([group_col] if group_col else [])
    own = connection is None
    conn = duckdb.connect(config=duckdb_settings().config()) if own else connection.cursor()
    try:
        conn.register("_cc_in_nodes", nodes.select(keep_cols).unique(node_col).to_arrow())
        conn.register("_cc_in_edges", edges.select(pl.col(left).alias("_a"), pl.col(right).alias("_b"),
                                                   pl.col(score).cast(pl.Float64).alias("_s")).to_arrow())
        group = f'"{group_col}"' if group_col else "null"
        conn.execute(f"""create or replace temp table _cc_nodes as
            select "{node_col}" as node, {group} as grp, (row_number() over (order by "{node_col}")) - 1 as i
            from _cc_in_nodes""")
        conn.execute(f"""create or replace temp table _cc_edges as
            select a.i as a, b.i as b, e._s as s from _cc_in_edges e
            join _cc_nodes a on a.node = e._a join _cc_nodes b on b.node = e._b
            where e._s >= {min(ts)!r} and a.i <> b.i""")
        stats = {"passes": _components(conn, "_cc_edges", "_cc_low")}
        # Components where two nodes share a group: the constraint may bite there.
        if group_col and same_group == "separate":
            conn.execute("""create or replace temp table _cc_hard as
                select l.c from _cc_low l join _cc_nodes n using (i)
                group by l.c having count(*) > count(distinct coalesce(n.grp::varchar, ''))""")
        else:
            conn.execute("create or replace temp table _cc_hard as select null::bigint as c where false")
        reps = []
        for ti in order_t:
            name = f"_cc_t{ti}"
            conn.execute(f"create or replace temp view _cc_e{ti} as select a, b from _cc_edges where s >= {ts[ti]!r}")
            stats["passes"] += _components(conn, f"_cc_e{ti}", name)
            # Each easy node's cluster, named by its smallest node key.
            reps.append(_frame(conn, f"""
                select n.node as "{node_col}", min(n.node) over (partition by t.c) as rep
                from {name} t join _cc_nodes n using (i) join _cc_low l using (i)
                where l.c not in (select c from _cc_hard)""").rename({"rep": f"_rep_{ti}"}))
        hard_nodes = _frame(conn, f"""select n.node as "{node_col}"{', n.grp as "' + group_col + '"' if group_col else ''}
            from _cc_nodes n join _cc_low l using (i) where l.c in (select c from _cc_hard)""")
        hard_edges = _frame(conn, f"""select a.node as _a, b.node as _b, e.s as _s from _cc_edges e
            join _cc_nodes a on a.i = e.a join _cc_nodes b on b.i = e.b
            join _cc_low l on l.i = e.a where l.c in (select c from _cc_hard)""")
        component = (_frame(conn, f"""select n.node as "{node_col}", m.node as "{component_col}" from _cc_low l
            join _cc_nodes n using (i) join _cc_nodes m on m.i = l.c""") if component_col else None)
        stats.update(components=conn.execute("select count(distinct c) from _cc_low").fetchall()[0][0],
                     constrained_components=conn.execute("select count(*) from _cc_hard").fetchall()[0][0],
                     nodes_in_python=hard_nodes.height, edges_in_python=hard_edges.height)
    finally:
        if own:
            conn.close()
        else:
            for table in ("_cc_in_nodes", "_cc_in_edges"):
                conn.unregister(table)
            conn.close()
    easy = reps[0]
    for extra in reps[1:]:
        easy = easy.join(extra, on=node_col, how="left")
    if hard_nodes.height:
        if python_clusters is None:
            from datafirst_assets.linkage.xjs import nested_clusters as python_clusters
        hard = python_clusters(hard_nodes, hard_edges, ts, node_col=node_col, group_col=group_col,
                               left="_a", right="_b", score="_s", same_group=same_group, labels=labels)
        hard = hard.select(node_col, *[pl.col(node_col).min().over(f"cluster_{labels[ti]}").alias(f"_rep_{ti}")
                                       for ti in order_t])
        easy = pl.concat([easy, hard.select(easy.columns)])
    out = nodes.select(keep_cols).unique(node_col).sort(node_col).join(easy, on=node_col, how="left")
    out = out.with_columns(pl.col(f"_rep_{ti}").rank("dense").cast(pl.Int64).alias(f"cluster_{labels[ti]}")
                           for ti in order_t)
    out = out.select(*keep_cols, *[f"cluster_{labels[ti]}" for ti in order_t])
    if component is not None:
        out = out.join(component, on=node_col, how="left")
    return out, stats
