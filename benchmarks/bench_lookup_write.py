"""A/B of storing the cross-justice lookup at scale: rewritten whole vs written as its change in place.

    cp <bench>/data/warehouse.duckdb /tmp/me/whole.duckdb && cp <bench>/data/warehouse.duckdb /tmp/me/inplace.duckdb
    .venv/bin/python benchmarks/bench_lookup_write.py /tmp/me/whole.duckdb whole
    .venv/bin/python benchmarks/bench_lookup_write.py /tmp/me/inplace.duckdb inplace

Each run CHANGES the warehouse it is given (use copies). A carried lookup is made from the stored one
as an incremental run would change it (~1% of per-dataset persons get a new high id, 0.3% of records
gone, 0.7% new ones; the lookup's invariants hold), then stored the way `xjs_lookup` stores it: `whole`
as a WarehouseQuery (staged, contract checked in the database, swapped in, fingerprinted); `inplace`
as `changes_to` + `ChangedRows` over a stored lookup that is the content last validated (`xjs_lookup`
itself finds the change from its carry's join, cheaper than `changes_to`'s second full join: this
bench's in-place figure is an upper bound). Prints the
CPU and wall seconds of the write (the IO manager's internals, as `handle_output` calls them) and
whether the stored table then equals the carried one.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import replace

os.environ.setdefault("DATAFIRST_ALLOW_DEVELOPMENT_KEY", "1")

from dagster import AssetKey  # noqa: E402

from datafirst_assets.contracts.registry import contract_for  # noqa: E402
from datafirst_assets.contracts.wiring import check_in_database_before_store  # noqa: E402
from datafirst_assets.warehouse import io_manager as io  # noqa: E402
from datafirst_assets.warehouse.connection import warehouse_cursor  # noqa: E402
from datafirst_assets.warehouse.content import content_of, table_fingerprint  # noqa: E402

KEY = AssetKey(["linkage", "xjs", "lookup"])
CHANGED_HIGH = "case when hash(person_id_dataset) % 100 = 3 then person_id_high + 10000000 else person_id_high end"


class _Log:
    def info(self, message: str) -> None:
        print("  log:", message)

    warning = info


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _carried(conn, stored: str) -> str:
    conn.execute("attach ':memory:' as bench_scratch")
    conn.execute(f"""create table bench_scratch.lookup as
      select source_dataset, record_id, record_id_hash, person_id_dataset, {CHANGED_HIGH} as person_id_high,
             person_id_medium, person_id_low from {stored} where hash(record_id) % 1000 not in (1, 2, 5)
      union all select source_dataset, record_id || 'N', record_id_hash, person_id_dataset, {CHANGED_HIGH},
             person_id_medium, person_id_low from {stored} where hash(record_id) % 1000 between 7 and 13""")
    return "bench_scratch.lookup"


def _write(database: str, target, carried: str, mode: str, validated: str) -> None:
    with io._transaction(database) as tx:
        if mode == "whole":
            contract: dict = {}

            def validate(conn, staging: str) -> None:
                contract.update(check_in_database_before_store(KEY, conn, io.catalog_name(database), target.schema,
                                                               "__new_" + target.table))

            schema = io.write_table(tx, target, f"select * from {carried} order by source_dataset, record_id", _Log(),
                                    validate=validate)
            io._validated_content(tx, KEY, target, contract, "bench", schema, None)
            return
        with warehouse_cursor(database) as conn:
            change = replace(io.changes_to(conn, target.name, f"select * from {carried}",
                                           ["source_dataset", "record_id"], validated), appendable=True)
        written, contract, sums = io._write_changed_rows(tx, target, change, KEY, _Log())
        print("  write:", written or "rewritten whole")
        if written is None:
            raise SystemExit("not written in place")
        io._validated_content(tx, KEY, target, contract, "bench", io.table_columns(tx, target.schema, target.table), sums)


def main() -> int:
    database, mode = sys.argv[1], sys.argv[2]
    target = io.StoredTable(database, "linkage_xjs", "lookup", None, None, None)
    with warehouse_cursor(database) as conn:
        carried = _carried(conn, target.name)
        validated = content_of(table_fingerprint(conn, target), contract_for(KEY).name)
        cpu, wall = _cpu(), time.perf_counter()
        _write(database, target, carried, mode, validated)
        print(f"{mode}: cpu={_cpu() - cpu:.2f}s wall={time.perf_counter() - wall:.2f}s")
        same = [conn.execute(f"select count(*), sum(hash(t)) from {t} t").fetchall()[0] for t in (target.name, carried)]
        print("stored == carried:", same[0] == same[1], same[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
