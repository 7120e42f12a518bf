"""`contract` asset checks: every stored table, read back from the warehouse, still holds its contract.

The contract is enforced before every write (the IO manager refuses a violating table), so a
`contract` check fails only when a stored table was changed outside the pipeline, which is
exactly when nothing else would notice: a value typed into a stored table by hand, a table
replaced by a script. One multi-asset check per group keeps the number of steps small; each
selected table gets its own result (rule, failing count, sample rows). Tables over
`FULL_CHECK_ROWS` rows are checked on a sample of that many rows read inside DuckDB.
"""

from collections.abc import Iterable

import duckdb
import polars as pl
from dagster import AssetCheckResult, AssetCheckSpec, AssetKey, AssetsDefinition, MetadataValue, multi_asset_check

from datafirst_assets.contracts.core import validate_table
from datafirst_assets.contracts.registry import contract_for

FULL_CHECK_ROWS = 2_000_000


def _stored_tables(assets: Iterable) -> dict[str, list[tuple[AssetKey, str]]]:
    """Group -> (asset key, warehouse schema) of every warehouse-stored asset with a contract."""
    groups: dict[str, list[tuple[AssetKey, str]]] = {}
    for item in assets:
        if not isinstance(item, AssetsDefinition) or not item.is_executable:
            continue
        for spec in item.specs:
            schema = (spec.metadata or {}).get("schema")
            schema = getattr(schema, "value", schema)
            if isinstance(schema, str) and contract_for(spec.key) is not None:
                groups.setdefault(spec.group_name or spec.key.path[0], []).append((spec.key, schema))
    return groups


def _read(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> tuple[pl.DataFrame | None, int]:
    try:
        rows = conn.execute(f'select count(*) from "{schema}"."{table}"').fetchall()[0][0]
    except duckdb.CatalogException:
        return None, 0
    sample = f" using sample {FULL_CHECK_ROWS} rows (reservoir, 7)" if rows > FULL_CHECK_ROWS else ""
    return pl.from_arrow(conn.sql(f'select * from "{schema}"."{table}"{sample}').to_arrow_table()), rows


def _result(key: AssetKey, schema: str, frame: pl.DataFrame | None, rows: int) -> AssetCheckResult:
    if frame is None:
        return AssetCheckResult(asset_key=key, check_name="contract", passed=False,
                                metadata={"problem": f"{schema}.{key.path[-1]} is not in the warehouse"})
    report = validate_table(frame, contract_for(key))
    return AssetCheckResult(asset_key=key, check_name="contract", passed=report.passed, metadata={
        **report.metadata(), "stored_rows": rows, "checked": "sample" if rows > frame.height else "every row",
        "contract_report": MetadataValue.md(report.markdown())})


def _group_check(group: str, tables: list[tuple[AssetKey, str]]):
    schemas = dict(tables)

    @multi_asset_check(
        name=f"contracts_{group}",
        specs=[AssetCheckSpec("contract", asset=key, blocking=True,
                              description=f"The stored table still holds its contract `{contract_for(key).name}` "
                              "(enforced before every write; fails if the stored table was changed outside the "
                              "pipeline).") for key, _ in tables],
        can_subset=True,
        required_resource_keys={"warehouse"},
    )
    def _check(context):
        with context.resources.warehouse.cursor() as conn:
            for check_key in sorted(context.selected_asset_check_keys, key=lambda k: k.asset_key.path):
                key = check_key.asset_key
                frame, rows = _read(conn, schemas[key], key.path[-1])
                yield _result(key, schemas[key], frame, rows)

    return _check


def contract_checks(assets: Iterable) -> list:
    """One `contract` check per stored table of `assets`, grouped into one step per asset group."""
    return [_group_check(group, tables) for group, tables in sorted(_stored_tables(assets).items())]
