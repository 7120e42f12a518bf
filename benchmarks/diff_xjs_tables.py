"""Compare the cross-justice tables of two warehouses, e.g. a base run's and a changed run's from the
same restored state: linkage_xjs.lookup, edges, persons, id_changes and state_marker as multisets of
rows (``except all`` both ways, so row order does not matter), id_changes and the marker without the
columns that name the run (run_id, changed_at).

    .venv/bin/python benchmarks/diff_xjs_tables.py A/warehouse.duckdb B/warehouse.duckdb

Prints one line per table and ALL SAME, or DIFFERENCES (exit status 1).
"""

from __future__ import annotations

import sys

import duckdb

TABLES = ("lookup", "edges", "persons", "id_changes", "state_marker")
RUN_COLUMNS = ("run_id", "changed_at")


def main(a: str, b: str) -> int:
    con = duckdb.connect()
    con.execute(f"attach '{a}' as a (read_only)")
    con.execute(f"attach '{b}' as b (read_only)")
    ok = True
    for t in TABLES:
        cols = {d: [c for c in con.sql(f"select * from {d}.linkage_xjs.{t} limit 0").columns if c not in RUN_COLUMNS]
                for d in "ab"}
        rows = {d: con.execute(f"select count(*) from {d}.linkage_xjs.{t}").fetchall()[0][0] for d in "ab"}
        sel = ", ".join(f'"{c}"' for c in cols["a"])
        extra = [-1, -1]
        if cols["a"] == cols["b"]:
            extra = [con.execute(f"select count(*) from (select {sel} from {x}.linkage_xjs.{t} except all "
                                 f"select {sel} from {y}.linkage_xjs.{t})").fetchall()[0][0] for x, y in ("ab", "ba")]
        same = cols["a"] == cols["b"] and rows["a"] == rows["b"] and extra == [0, 0]
        ok &= same
        print(f"{t:12s} rows {rows['a']} / {rows['b']} columns_same {cols['a'] == cols['b']} "
              f"a-b {extra[0]} b-a {extra[1]} {'SAME' if same else 'DIFFERENT'}")
    print("ALL SAME" if ok else "DIFFERENCES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
