"""What a stored table holds, as a fingerprint computed where it lives (no row is read into Python).

Used to keep a step's tables when its inputs did not change (`warehouse.unchanged`), and to pass
a `contract` check without reading a table again when it holds exactly the content that was
validated, at its write or by an earlier check (`contracts.checks`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
from datafirst_assets.common.sql import quote_identifier

if TYPE_CHECKING:
    from datafirst_assets.warehouse.io_manager import StoredTable

PACKAGE = Path(__file__).resolve().parents[1]
# Output metadata of a write whose contract was validated on the whole table it stored
VALIDATED_CONTENT = "contract_validated_content"
VALIDATED_IN_RUN = "contract_validated_in_run"
# ... and of a write of some partitions of a partitioned table: partition -> content validated
VALIDATED_PARTITIONS = "contract_validated_partitions"
# ... and of a whole table's write that fingerprinted what it stored: {"database", "table",
# "fingerprint"} (`table_fingerprint` of the table as committed), so that a step fingerprinting its
# inputs takes it from the event log instead of hashing every row again (`unchanged.recorded_fingerprints`)
TABLE_FINGERPRINT = "table_fingerprint"
#: Materialization metadata: how many rows the write changed (deleted + updated + inserted in place;
#: every row written for a whole write; 0 for a table kept as stored), so that a step can tell how
#: much its inputs changed since it last computed from them without reading them (`linkage.quality_reuse`)
ROWS_CHANGED = "rows_changed"


#: Benchmarks only: a package folder whose code version this one's fingerprints use, so that a change of
#: code is timed on a state another code made (an A/B from one snapshot) without every stored fingerprint
#: and validated content counting as changed (`bench_incremental_graph.py --as-code-of`). Never set in use.
CODE_VERSION_OF = "DATAFIRST_CODE_VERSION_OF"


@lru_cache(maxsize=1)
def code_version() -> str:
    """Hash of the package's source: any code change invalidates every stored fingerprint."""
    package = Path(os.environ.get(CODE_VERSION_OF) or PACKAGE)
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# (database file, schema, table) -> (run id, content, fingerprint) of the last write of that table in
# this process whose contract was validated on every row (`remember_validated_write`): the whole
# table's `contract_content`, or partition -> `partition_contents` for a write of some partitions, and
# the whole table's `table_fingerprint` as the write took it (None for partitions)
_VALIDATED_WRITES: dict[tuple[str, str, str], tuple[str, str | dict[str, str], str | None]] = {}


# (database file, schema, table) -> (run id, `table_fingerprint`) of a whole stored table as a
# `contract` check of that run read it in this process (`remember_checked_fingerprint`)
_CHECKED_TABLES: dict[tuple[str, str, str], tuple[str, str]] = {}


def remember_checked_fingerprint(database: str, schema: str, table: str, run_id: str, fingerprint: str) -> None:
    """Record, in this process, that run `run_id`'s `contract` check just read `schema.table` whole
    and found `fingerprint` (`table_fingerprint`): what it holds, read from the table itself."""
    _CHECKED_TABLES[(str(Path(database).resolve()), schema, table)] = (run_id, fingerprint)


def checked_fingerprints(tables: Iterable[StoredTable], run_id: str) -> dict[tuple[str, str], str]:
    """A `memo` for `unchanged.inputs_fingerprint`: the fingerprint run `run_id`'s own `contract`
    check read from each of `tables` (whole tables only), in this process. The checks are blocking,
    so they run before any step of the run that reads their tables, and nothing of the run writes
    a table after its check: the steps after them (each dataset's catalogue, the release) take the
    fingerprint the check read moments before instead of hashing every row of every release table
    again, as each of them did (three reads of every table a run, the check's included). A table
    not checked by this run (a run of the release alone) is hashed as before."""
    memo = {}
    for table in tables:
        if table.columns is not None or table.partitions is not None:
            continue
        run, fingerprint = _CHECKED_TABLES.get((str(Path(table.database).resolve()), table.schema, table.table),
                                               (None, None))
        if run == run_id and fingerprint is not None:
            memo[(table.database, table.select_sql())] = fingerprint
    return memo


def table_columns(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, str]:
    """Column name -> type of `schema.table` in the connection's current database ({} if there is no
    such table or view). Read from a relation on the table, not from `duckdb_columns()`, which lists
    every column of every table in the warehouse (about 3,000 in the demo) to return a few: 0.5 ms
    instead of 1.2 per call, called about 1,000 times in a link run. Same names and type names."""
    database = connection.execute("select current_database()").fetchall()[0][0]
    return _relation_columns(connection, f"{quote_identifier(database)}.{quote_identifier(schema)}.{quote_identifier(table)}")


def relation_columns(connection: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
    """Column name -> type of the table or view `name` (catalog-qualified), {} if there is none."""
    return _relation_columns(connection, name)


def _relation_columns(connection: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
    # For a missing table DuckDB's Python client looks for a variable of that name in this frame (a
    # "replacement scan"): here only `connection` and `name` (not frames), which it refuses.
    try:
        relation = connection.table(name)
    except (duckdb.CatalogException, duckdb.InvalidInputException):
        return {}
    return dict(zip(relation.columns, map(str, relation.types)))


def table_fingerprint(conn: duckdb.DuckDBPyConnection, table: StoredTable) -> str:
    """Columns, row count and the sum of the rows' hashes of `table` (its selected partitions)."""
    # Found by its catalog-qualified name, as the hash query reads it, not in the cursor's current
    # database: from a cursor using another catalog by default that said "missing" for every content.
    columns = _relation_columns(conn, table.name)
    if not columns:
        return "missing"
    rows, hashes = content_sums(conn, table.select_sql())
    wanted = table.columns or tuple(columns)
    return fingerprint_of({c: columns.get(c) for c in wanted}, rows, hashes)  # type: ignore[misc]


def row_hash_sum(alias: str = "_t", where: str | None = None) -> str:
    """The SQL aggregate every content sum uses: the sum of the hashes of the rows of `alias` (a whole
    row as one struct; order-independent), 0 for none, over the rows where `where` holds if given.
    Writes in place compare sums taken by different queries, so they must all hash rows alike."""
    filtered = f" filter (where {where})" if where else ""
    return f"coalesce(sum(hash({alias})::hugeint){filtered}, 0)"


def fingerprint_by_partition(conn: duckdb.DuckDBPyConnection, table: StoredTable,
                             column: str) -> tuple[str, dict[str, str]]:
    """`table_fingerprint` of `table` and, from the same pass over its rows, each value of `column`'s
    row count and sum of row hashes (``"rows|sum"``): which extract dates changed since it was last read."""
    columns = _relation_columns(conn, table.name)
    if not columns:
        return "missing", {}
    parts = conn.execute(f"select cast({quote_identifier(column)} as varchar), count(*), "
                         f"{row_hash_sum()} from ({table.select_sql()}) _t group by 1").fetchall()
    rows, hashes = sum(int(n) for _, n, _ in parts), sum(int(h) for _, _, h in parts)
    wanted = table.columns or tuple(columns)
    return (fingerprint_of({c: columns.get(c) for c in wanted}, rows, hashes),  # type: ignore[misc]
            {str(part): f"{n}|{h}" for part, n, h in parts})


def content_sums(conn: duckdb.DuckDBPyConnection, select: str) -> tuple[int, int]:
    """Row count and the sum of the rows' hashes of a SELECT (order-independent, in DuckDB): what
    `table_fingerprint` records, and what a write in place (`io_manager.ChangedRows`) compares."""
    rows, hashes = conn.execute(
        f"select count(*), {row_hash_sum()} from ({select}) _t").fetchall()[0]
    return int(rows), int(hashes)


def fingerprint_of(columns: dict[str, str], rows: int, hashes: int) -> str:
    """`table_fingerprint` of a table with these columns, row count and sum of row hashes."""
    return f"{sorted(columns.items())}|{rows}|{hashes}"


def fingerprint_sums(fingerprint: str | None, columns: dict[str, str]) -> tuple[int, int] | None:
    """(rows, hashes) of a `fingerprint_of` these `columns` (None: none given, or one of other columns)."""
    if fingerprint is None:
        return None
    head, _, hashes = fingerprint.rpartition("|")
    _, _, rows = head.rpartition("|")
    try:
        sums = (int(rows), int(hashes))
    except ValueError:
        return None
    return sums if fingerprint_of(columns, *sums) == fingerprint else None


def contract_content(conn: duckdb.DuckDBPyConnection, table: StoredTable, contract_name: str) -> str:
    """The content a `contract` check verifies: the stored rows, the contract's name and the code."""
    return content_of(table_fingerprint(conn, table), contract_name)


def recorded_fingerprint(database: str, schema: str, table: str, fingerprint: str) -> dict:
    """The `TABLE_FINGERPRINT` metadata of a write of `schema.table` in `database`."""
    return {"database": str(Path(database).resolve()), "table": f"{schema}.{table}", "fingerprint": fingerprint}


def fingerprint_recorded_for(metadata: Mapping, database: str, schema: str, table: str) -> str | None:
    """The whole table's fingerprint that a write of `schema.table` in `database` recorded in its
    materialization's `metadata` (`TABLE_FINGERPRINT`); None when it recorded none for that table."""
    recorded = metadata.get(TABLE_FINGERPRINT)
    recorded = getattr(recorded, "value", recorded)
    if not isinstance(recorded, Mapping):
        return None
    here = recorded_fingerprint(database, schema, table, "")
    if (recorded.get("database"), recorded.get("table")) != (here["database"], here["table"]):
        return None
    fingerprint = recorded.get("fingerprint")
    return fingerprint if isinstance(fingerprint, str) else None


def content_of(fingerprint: str, contract_name: str) -> str:
    """`contract_content` of a table whose `table_fingerprint` is `fingerprint`."""
    return hashlib.sha256(f"{code_version()}|{contract_name}|{fingerprint}".encode()).hexdigest()


def remember_validated_write(database: str, schema: str, table: str, run_id: str,
                             content: str | dict[str, str], fingerprint: str | None = None) -> None:
    """Record, in this process, that run `run_id` just stored `schema.table` with `content` after
    validating every row (the IO manager, once the write committed): what that write's
    materialization records as `VALIDATED_CONTENT` (a whole table) or `VALIDATED_PARTITIONS`, and
    the whole table's `table_fingerprint` as the write took it (`written_fingerprint`)."""
    _VALIDATED_WRITES[(str(Path(database).resolve()), schema, table)] = (
        run_id, dict(content) if isinstance(content, dict) else content, fingerprint)


def written_fingerprint(database: str, schema: str, table: str, run_id: str) -> str | None:
    """The `table_fingerprint` run `run_id`'s own write of the whole table took, in this process, from
    the stored table inside the write's transaction (or from sums checked against the expected ones):
    None if this run did not write it here."""
    run, _, fingerprint = _VALIDATED_WRITES.get((str(Path(database).resolve()), schema, table), (None, None, None))
    return fingerprint if run == run_id else None


def validated_in_run(database: str, schema: str, table: str, run_id: str) -> str | dict[str, str] | None:
    """The content run `run_id` stored in `schema.table` after validating every row (a whole table's, or
    partition -> content), if it wrote that table in this process (the run's `contract` check runs in
    the process of its writes: the in-process executor); None otherwise, then the event log tells
    (`contracts.checks`)."""
    run, content, _ = _VALIDATED_WRITES.get((str(Path(database).resolve()), schema, table), (None, None, None))
    return content if run == run_id else None


def partition_contents(conn: duckdb.DuckDBPyConnection, table: StoredTable, contract_name: str) -> dict[str, str]:
    """Per partition of `table` (by its `partition_expr`; its selected partitions, or all), the content a
    `contract` check verifies: the partition's rows, the table's columns in order, the contract and
    the code. One pass over the table in DuckDB."""
    columns = _relation_columns(conn, table.name)  # as `table_fingerprint`
    if not columns or table.partition_expr is None:
        return {}
    rows = conn.execute(f"select cast({table.partition_expr} as varchar), count(*), "
                        f"{row_hash_sum('t')} from ({table.select_sql()}) t group by 1").fetchall()
    head = f"{code_version()}|{contract_name}|{list(columns.items())}"
    return {str(part): hashlib.sha256(f"{head}|{part}|{n}|{h}".encode()).hexdigest() for part, n, h in rows}
