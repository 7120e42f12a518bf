"""What a stored table holds, as a fingerprint computed where it lives (no row is read into Python).

Used to keep a step's tables when its inputs did not change (`warehouse.unchanged`), and to pass
a `contract` check without reading a table again when it holds exactly the content that was
validated, at its write or by an earlier check (`contracts.checks`).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    from datafirst_assets.warehouse.io_manager import StoredTable

PACKAGE = Path(__file__).resolve().parents[1]
# Output metadata of a write whose contract was validated on the whole table it stored
VALIDATED_CONTENT = "contract_validated_content"
VALIDATED_IN_RUN = "contract_validated_in_run"
# ... and of a write of some partitions of a partitioned table: partition -> content validated
VALIDATED_PARTITIONS = "contract_validated_partitions"


@lru_cache(maxsize=1)
def code_version() -> str:
    """Hash of the package's source: any code change invalidates every stored fingerprint."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def table_columns(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, str]:
    rows = connection.execute(
        "select column_name, data_type from duckdb_columns() "
        "where database_name = current_database() and schema_name = ? and table_name = ? order by column_index",
        [schema, table],
    ).fetchall()
    return {name: dtype for name, dtype in rows}


def table_fingerprint(conn: duckdb.DuckDBPyConnection, table: StoredTable) -> str:
    """Columns, row count and the sum of the rows' hashes of `table` (its selected partitions)."""
    columns = table_columns(conn, table.schema, table.table)
    if not columns:
        return "missing"
    rows, hashes = conn.execute(
        f"select count(*), coalesce(sum(hash(t)::hugeint), 0) from ({table.select_sql()}) t").fetchone()
    wanted = table.columns or tuple(columns)
    return f"{sorted((c, columns.get(c)) for c in wanted)}|{rows}|{hashes}"


def contract_content(conn: duckdb.DuckDBPyConnection, table: StoredTable, contract_name: str) -> str:
    """The content a `contract` check verifies: the stored rows, the contract's name and the code."""
    return hashlib.sha256(f"{code_version()}|{contract_name}|{table_fingerprint(conn, table)}".encode()).hexdigest()


def partition_contents(conn: duckdb.DuckDBPyConnection, table: StoredTable, contract_name: str) -> dict[str, str]:
    """Per partition of `table` (by its `partition_expr`; its selected partitions, or all), the content a
    `contract` check verifies: the partition's rows, the table's columns in order, the contract and
    the code. One pass over the table in DuckDB."""
    columns = table_columns(conn, table.schema, table.table)
    if not columns or table.partition_expr is None:
        return {}
    rows = conn.execute(f"select cast({table.partition_expr} as varchar), count(*), "
                        f"coalesce(sum(hash(t)::hugeint), 0) from ({table.select_sql()}) t group by 1").fetchall()
    head = f"{code_version()}|{contract_name}|{list(columns.items())}"
    return {str(part): hashlib.sha256(f"{head}|{part}|{n}|{h}".encode()).hexdigest() for part, n, h in rows}
