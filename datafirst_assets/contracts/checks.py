"""`contract` asset checks: every stored table, read back from the warehouse, still holds its contract.

The contract is enforced before every write (the IO manager refuses a violating table), so a
`contract` check fails only when a stored table was changed outside the pipeline, which is
exactly when nothing else would notice: a value typed into a stored table by hand, a table
replaced by a script. One multi-asset check per group keeps the number of steps small; each
selected table gets its own result (rule, failing count, sample rows). Tables over
`IN_DATABASE_ROWS` rows are checked where they live, every row, by pandera's Ibis backend in DuckDB
(`contracts.in_database`); smaller ones are read into polars, which is faster for them.

A table whose content is exactly what an earlier evaluation of this check verified (the content
fingerprint, computed in DuckDB, recorded with every result, with the contract's name and the code)
passes without being read again: a change made outside the pipeline changes the fingerprint, and
the table is then checked row by row. So does a table whose content is exactly what the IO manager
validated, every row, when it wrote the whole table (the same fingerprint, recorded with the
materialization: `warehouse.content.VALIDATED_CONTENT`): a table just written is not read and
validated a second time; when that write was made by the check's own run (in the run's process:
the in-process executor), the write's content and fingerprint are taken from the process
(`validated_in_run`, `written_fingerprint`) rather than read from the event log or hashed again:
the write took that fingerprint from the stored table inside its own transaction, and nothing
outside the run's process can write the file while the run holds it (DuckDB's lock); what the
check guards against is a change made outside the pipeline, between runs. A partitioned table
(the ingest's) is verified partition by partition (the same fingerprint per partition, in one
pass in DuckDB): it passes unread when every partition holds what the latest passing check verified or what a write validated, row by row, when it
stored that partition (`VALIDATED_PARTITIONS`); its contracts' rules hold within a partition (keys
are unique per extract date), so a new extract date is validated once, as it is written, not
again with every earlier date. Otherwise the whole table is read and checked.

A run that opened the warehouse as this pipeline's last close sealed it (`connection.opened_untouched_since`:
nothing has written the file since) takes the fingerprint of each whole table it did not write itself
from what the table's latest write recorded (`content.TABLE_FINGERPRINT`), instead of hashing every
row of every stored table on every run: that fingerprint is then the table's content by the same
proof, and the checks above compare it as they compare a hashed one. So a check hashes a table only
when its run did not write it and did not open the sealed warehouse itself: a process that kept the
warehouse open from an earlier run (as tests do), or a file written by something else since the
last close.
"""

import hashlib
import json
from collections.abc import Iterable

import duckdb
import polars as pl
from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSpec,
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    MetadataValue,
    multi_asset_check,
)

from datafirst_assets.contracts.core import IN_DATABASE_ROWS, ContractReport, validate_table
from datafirst_assets.contracts.registry import contract_for
from datafirst_assets.defs.event_log import prefetched_asset_records
from datafirst_assets.warehouse.io_manager import StoredTable
from datafirst_assets.warehouse.content import (
    VALIDATED_CONTENT,
    VALIDATED_IN_RUN,
    VALIDATED_PARTITIONS,
    content_of,
    partition_contents,
    remember_checked_fingerprint,
    table_fingerprint,
    validated_in_run,
    written_fingerprint,
)
from datafirst_assets.warehouse.connection import run_opened_sealed
from datafirst_assets.warehouse.unchanged import latest_evaluation, latest_evaluation_record, recorded_fingerprints

CONTENT = "content_fingerprint"
VERIFIED_IN = "verified_in_run"
VERIFIED_PARTITIONS = "verified_partitions"
WRITTEN = "every row, validated before it was written (the stored table holds exactly that)"
#: `CONTENT_READ`: how the check took the stored table's content fingerprint
CONTENT_READ = "content_read"
HASHED = "hashed from the stored rows"
WRITTEN_READ = "as this run's write took it from the stored table, in the write's transaction"
SEALED = "as the table's latest write recorded it (the warehouse file unchanged since the pipeline sealed it)"


def _stored_tables(assets: Iterable) -> dict[str, list[tuple[AssetKey, str, str | None]]]:
    """Group -> (asset key, warehouse schema, partition column or None) of every warehouse-stored
    asset with a contract."""
    groups: dict[str, list[tuple[AssetKey, str, str | None]]] = {}
    for item in assets:
        if not isinstance(item, AssetsDefinition) or not item.is_executable:
            continue
        for spec in item.specs:
            schema = (spec.metadata or {}).get("schema")
            schema = getattr(schema, "value", schema)
            partition = (spec.metadata or {}).get("partition_expr") if spec.partitions_def is not None else None
            if isinstance(schema, str) and contract_for(spec.key) is not None:
                groups.setdefault(spec.group_name or spec.key.path[0], []).append(
                    (spec.key, schema, getattr(partition, "value", partition)))
    return groups


def _validate(conn: duckdb.DuckDBPyConnection, schema: str, table: str, contract) -> tuple[ContractReport | None, str]:
    try:
        rows = conn.execute(f'select count(*) from "{schema}"."{table}"').fetchall()[0][0]
    except duckdb.CatalogException:
        return None, ""
    if rows > IN_DATABASE_ROWS:
        # imported here, not at load: ibis and sqlglot cost every run's process ~0.4 s (contracts/wiring.py)
        from datafirst_assets.contracts.in_database import validate_in_duckdb

        database = conn.execute("select current_database()").fetchall()[0][0]
        report = validate_in_duckdb(conn, database, schema, table, contract)
        if report is not None:
            return report, "duckdb (pandera.ibis)"
    return validate_table(pl.from_arrow(conn.sql(f'select * from "{schema}"."{table}"').to_arrow_table()),
                          contract), "polars"


def _result(key: AssetKey, schema: str, report: ContractReport | None, checked_in: str,
            fingerprint: str, partitions: dict | None = None) -> AssetCheckResult:
    if report is None:
        return AssetCheckResult(asset_key=key, check_name="contract", passed=False,
                                metadata={"problem": f"{schema}.{key.path[-1]} is not in the warehouse"})
    return AssetCheckResult(asset_key=key, check_name="contract", passed=report.passed, metadata={
        **report.metadata(), "stored_rows": report.rows, "checked": "every row", "contract_checked_in": checked_in,
        "contract_report": MetadataValue.md(report.markdown()), CONTENT: fingerprint,
        **({VERIFIED_PARTITIONS: MetadataValue.json(partitions)} if partitions is not None and report.passed else {})})


def _database(conn: duckdb.DuckDBPyConnection) -> str:
    """The warehouse `conn` is open on (asked once per check step, not once per table: ~1 ms each)."""
    return conn.execute("select current_database()").fetchall()[0][0]


def _sealed(context) -> bool:
    """Whether this run opened the warehouse as the pipeline's last close sealed it (see the module)."""
    return run_opened_sealed(context.instance, context.run.run_id, context.resources.warehouse.database)


def _recorded_fingerprint(context, key: AssetKey, schema: str, table: str) -> str | None:
    """The fingerprint the table's latest write recorded, unless this run wrote the table itself."""
    database = context.resources.warehouse.database
    if validated_in_run(database, schema, table, context.run.run_id) is not None:
        return None
    stored = StoredTable(database, schema, table)
    return recorded_fingerprints(context.instance, {key: stored}).get((stored.database, stored.select_sql()))


def _content(context, conn: duckdb.DuckDBPyConnection, database: str, key: AssetKey, schema: str, contract,
             sealed: bool) -> tuple[str, str]:
    """The content the check verifies (`contract_content`) and how its fingerprint was taken; the
    fingerprint is kept for the run's later steps that fingerprint the table (`content.checked_fingerprints`).
    In a sealed warehouse (see the module) a table this run did not write has the fingerprint its
    latest write recorded."""
    table = key.path[-1]
    fingerprint, read = written_fingerprint(context.resources.warehouse.database, schema, table,
                                            context.run.run_id), WRITTEN_READ
    if fingerprint is None and sealed:
        fingerprint, read = _recorded_fingerprint(context, key, schema, table), SEALED
    if fingerprint is None:
        fingerprint, read = table_fingerprint(conn, StoredTable(database, schema, table)), HASHED
    if fingerprint != "missing":
        remember_checked_fingerprint(context.resources.warehouse.database, schema, table, context.run.run_id, fingerprint)
    return content_of(fingerprint, contract.name), read


def _verified_before(context, check_key: AssetCheckKey, fingerprint: str) -> str | None:
    """The run whose passing evaluation of this check saw exactly this content, if the latest did."""
    run_id, evaluation = latest_evaluation(context, check_key)
    seen = evaluation.metadata.get(CONTENT) if evaluation is not None else None
    if evaluation is None or not evaluation.passed or getattr(seen, "value", seen) != fingerprint:
        return None
    verified = evaluation.metadata.get(VERIFIED_IN)
    return getattr(verified, "value", verified) or run_id


def _validated_at_write(context, key: AssetKey, fingerprint: str) -> str | None:
    """The run whose write validated every row of exactly this content, if the asset's latest
    materialization recorded it (a kept table's materialization carries its write's record)."""
    event = context.instance.get_latest_materialization_event(key)
    metadata = event.asset_materialization.metadata if event is not None and event.asset_materialization else {}
    validated = metadata.get(VALIDATED_CONTENT)
    if getattr(validated, "value", validated) != fingerprint:
        return None
    run = metadata.get(VALIDATED_IN_RUN)
    return getattr(run, "value", run) or event.run_id


def _written_in_this_run(context, schema: str, key: AssetKey, fingerprint: str) -> str | None:
    """This run, if its own write (in this process, to the warehouse this check reads) validated every
    row of exactly this content: what `_validated_at_write` reads from the asset's latest
    materialization, without two event-log queries per table (and asked first: the latest evidence)."""
    run_id = context.run.run_id
    if validated_in_run(context.resources.warehouse.database, schema, key.path[-1], run_id) != fingerprint:
        return None
    return run_id


def _json(value) -> dict:
    value = getattr(value, "value", value)
    return value if isinstance(value, dict) else {}


def _partitions_written_in_this_run(context, schema: str, key: AssetKey, current: dict[str, str]) -> bool:
    """Every stored partition holds what this run's own write (in this process) validated, row by row,
    when it stored it: what `_partitions_verified` reads from the asset's latest materialization (that
    write's), without two event-log queries per table. A first load's check passes this way."""
    written = validated_in_run(context.resources.warehouse.database, schema, key.path[-1], context.run.run_id)
    return (isinstance(written, dict) and bool(current)
            and all(written.get(part) == content for part, content in current.items()))


def _partitions_verified(context, check_key: AssetCheckKey, current: dict[str, str]) -> bool:
    """Every stored partition holds content verified before: by the latest check, when it passed,
    or row by row by the write that stored it (the asset's latest materialization records those)."""
    _, evaluation = latest_evaluation(context, check_key)
    known = _json(evaluation.metadata.get(VERIFIED_PARTITIONS)) if evaluation is not None and evaluation.passed else {}
    event = context.instance.get_latest_materialization_event(check_key.asset_key)
    if event is not None and event.asset_materialization is not None:
        known = {**known, **_json(event.asset_materialization.metadata.get(VALIDATED_PARTITIONS))}
    return bool(current) and all(known.get(part) == content for part, content in current.items())


def _sealed_partitions(context, check_key: AssetCheckKey, schema: str) -> dict[str, str] | None:
    """Each stored partition's content in a sealed warehouse (see the module), from the records alone:
    what the latest passing check verified, with what each write since validated over it (this run's
    from the process). None when the records cannot tell: no passing check before, or a later write
    that recorded no content."""
    key, run_id = check_key.asset_key, context.run.run_id
    latest = latest_evaluation_record(context, check_key)
    evaluation = latest.event.asset_check_evaluation if latest is not None else None
    known = dict(_json(evaluation.metadata.get(VERIFIED_PARTITIONS))) if evaluation is not None and evaluation.passed else {}
    if not known:
        return None
    since = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, after_timestamp=latest.event.timestamp), limit=10_000, ascending=True).records
    written_here = validated_in_run(context.resources.warehouse.database, schema, key.path[-1], run_id)
    for record in since:
        materialization = record.asset_materialization
        if materialization is None or materialization.partition is None:
            return None
        if record.run_id == run_id:
            validated = written_here
        elif VALIDATED_PARTITIONS in materialization.metadata:
            validated = _json(materialization.metadata[VALIDATED_PARTITIONS])
        else:
            return None
        if not isinstance(validated, dict):
            return None
        known.pop(materialization.partition, None)  # a partition written empty holds no rows
        if materialization.partition in validated:
            known[materialization.partition] = validated[materialization.partition]
    return known


def _check_partitioned(context, conn, database: str, check_key: AssetCheckKey, schema: str,
                       partition: str, sealed: bool) -> AssetCheckResult:
    key, contract = check_key.asset_key, contract_for(check_key.asset_key)
    current, read = (_sealed_partitions(context, check_key, schema) if sealed else None), SEALED
    if current is None:
        current = partition_contents(conn, StoredTable(database, schema, key.path[-1], partition), contract.name)
        read = HASHED
    fingerprint = hashlib.sha256(json.dumps(current, sort_keys=True).encode()).hexdigest()
    if _partitions_written_in_this_run(context, schema, key, current) or _partitions_verified(
            context, check_key, current):
        return AssetCheckResult(asset_key=key, check_name="contract", passed=True, metadata={
            "checked": "every partition unchanged since verified, or validated row by row when it was written",
            "partitions": len(current), VERIFIED_PARTITIONS: MetadataValue.json(current), CONTENT: fingerprint,
            CONTENT_READ: read})
    report, checked_in = _validate(conn, schema, key.path[-1], contract)
    return _result(key, schema, report, checked_in, fingerprint, partitions=current)


def _group_check(group: str, tables: list[tuple[AssetKey, str, str | None]]):
    schemas = {key: schema for key, schema, _ in tables}
    partitioned = {key: partition for key, _, partition in tables if partition}

    @multi_asset_check(
        name=f"contracts_{group}",
        specs=[AssetCheckSpec("contract", asset=key, blocking=True,
                              description=f"The stored table still holds its contract `{contract_for(key).name}` "
                              "(enforced before every write; fails if the stored table was changed outside the "
                              "pipeline).") for key, _, _ in tables],
        can_subset=True,
        required_resource_keys={"warehouse"},
    )
    def _check(context):
        selected = sorted(context.selected_asset_check_keys, key=lambda k: k.asset_key.path)
        # every result reads its table's latest materialization (Dagster, and the look-ups of what a
        # write validated): read for all of them at once
        with context.resources.warehouse.cursor() as conn, \
                prefetched_asset_records(context.instance, [k.asset_key for k in selected]):
            database, sealed = _database(conn), _sealed(context)
            for check_key in selected:
                key = check_key.asset_key
                if key in partitioned:
                    yield _check_partitioned(context, conn, database, check_key, schemas[key], partitioned[key],
                                             sealed)
                    continue
                fingerprint, read = _content(context, conn, database, key, schemas[key], contract_for(key), sealed)
                verified, how = _written_in_this_run(context, schemas[key], key, fingerprint), WRITTEN
                if verified is None:
                    verified = _verified_before(context, check_key, fingerprint)
                    how = "unchanged since verified row by row"
                if verified is None:
                    verified = _validated_at_write(context, key, fingerprint)
                    how = WRITTEN
                if verified is not None:
                    yield AssetCheckResult(asset_key=key, check_name="contract", passed=True, metadata={
                        "checked": how, VERIFIED_IN: verified, CONTENT: fingerprint, CONTENT_READ: read})
                    continue
                report, checked_in = _validate(conn, schemas[key], key.path[-1], contract_for(key))
                yield _result(key, schemas[key], report, checked_in, fingerprint)

    return _check


def contract_checks(assets: Iterable) -> list:
    """One `contract` check per stored table of `assets`, grouped into one step per asset group."""
    return [_group_check(group, tables) for group, tables in sorted(_stored_tables(assets).items())]
