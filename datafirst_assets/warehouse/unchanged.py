"""Skipping a step whose inputs did not change: keep the stored tables instead of rebuilding them.

A new extract often touches only some datasets (a system that delivered no new rows, a dataset
whose records are all as before). A step of an unchanged dataset then computes exactly the tables
it stored last time. Each such step fingerprints its inputs where they live (DuckDB: row count,
column names and types, and an order-independent sum of every row's hash, so no row is read into
Python), together with the code and the settings that shape its output. The fingerprint is
recorded in the output's materialization metadata (`inputs_fingerprint`). When the next run's
fingerprint equals the one recorded with every output's latest materialization, the step yields
`KeepStored` for each output (the IO manager writes nothing and reports the stored table) and the
check results of that materialization, marked as carried over; otherwise it computes as usual.

Incremental mode only: a full run (`LinkageSettings.mode == "full"`, the weekly schedule)
recomputes everything, as does any change of the package's code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    Output,
)

from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.content import (ROWS_CHANGED, checked_fingerprints, code_version,
                                               fingerprint_recorded_for, table_fingerprint)
from datafirst_assets.warehouse.io_manager import KeepStored, StoredTable

FINGERPRINT = "inputs_fingerprint"
CARRIED_OVER = "carried_over_from_run"


def inputs_fingerprint(tables: Mapping[str, StoredTable], *, settings: object = "",
                       files: Iterable[Path] = (), memo: dict | None = None) -> str:
    """One fingerprint of a step's input tables, files it reads, its settings and the code.

    `memo`: table fingerprints already computed by this step ((database, query) -> fingerprint),
    filled as tables are hashed, for a step that fingerprints the same table for several outputs
    (the release: each table's gates, each dataset's staged tables, each dataset's catalogue)."""
    digest = hashlib.sha256(code_version().encode())
    digest.update(repr(settings).encode())
    for path in files:
        digest.update(f"{path}:{hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else '-'}".encode())
    memo = {} if memo is None else memo
    by_database: dict[str, list[tuple[str, StoredTable]]] = {}
    for name, table in sorted(tables.items()):
        by_database.setdefault(table.database, []).append((name, table))
    for database, named in by_database.items():
        missing = [table for _, table in named if (database, table.select_sql()) not in memo]
        if missing:
            with warehouse_cursor(database) as conn:
                for table in missing:
                    memo[(database, table.select_sql())] = table_fingerprint(conn, table)
        for name, table in named:
            # The rows, not the partition list: an extract that added no rows leaves a table unchanged.
            digest.update(f"{name}={table.name}:{memo[(database, table.select_sql())]}\n".encode())
    return digest.hexdigest()


def recorded_fingerprints(instance, tables: Mapping[AssetKey, StoredTable]) -> dict:
    """A `memo` for `inputs_fingerprint`: the fingerprint each whole table's latest write recorded
    (`content.TABLE_FINGERPRINT`, taken after it committed), for the tables whose latest
    materialization has one for this very table and database; the others are hashed as before. The
    release tables are fingerprinted by several steps of a run (summaries, report, journeys); each
    hashed every row of every table again, ~0.2 s of CPU per 750,000 rows."""
    memo = {}
    for key, metadata in latest_metadata(instance, tables).items():
        table = tables[key]
        if table.columns is not None or table.partitions is not None:
            continue  # not of the whole table
        recorded = fingerprint_recorded_for(metadata, table.database, table.schema, table.table)
        if recorded is not None:
            memo[(table.database, table.select_sql())] = recorded
    return memo


def known_fingerprints(context, tables: Mapping[AssetKey, StoredTable]) -> dict:
    """`recorded_fingerprints`, and over them the fingerprint this run's own `contract` check read from
    each table (`content.checked_fingerprints`: the table as it is now, read moments before by a
    blocking check). A table whose latest write recorded none for this database (a table kept by
    an earlier run of a warehouse since moved or restored elsewhere, or a write that recorded none)
    was hashed again by every step reading it, although the run's check had just hashed it."""
    memo = recorded_fingerprints(context.instance, tables)
    memo.update(checked_fingerprints(tables.values(), context.run.run_id))
    return memo


def recorded_inputs_fingerprint(instance, tables: Mapping[AssetKey, StoredTable], **options) -> str:
    """`inputs_fingerprint` of tables named by their asset keys, each whole table's fingerprint taken
    from what its write recorded (`recorded_fingerprints`), the others hashed; `options` as
    `inputs_fingerprint`'s (settings, files)."""
    return inputs_fingerprint({key.to_user_string(): table for key, table in tables.items()},
                              memo=recorded_fingerprints(instance, tables), **options)


def unchanged(previous: Mapping[AssetKey, Mapping], fingerprint: str, mode: str) -> bool:
    """Incremental mode, and every output's latest materialization (its metadata in `previous`) was
    made from these very inputs."""
    recorded = (getattr(m.get(FINGERPRINT), "value", m.get(FINGERPRINT)) for m in previous.values())
    return mode != "full" and all(value == fingerprint for value in recorded)


def latest_evaluation_record(context, key: AssetCheckKey):
    """The execution record of the latest completed evaluation of a check before this run (None:
    never evaluated), read by key from the event log's index (not by scanning a run's events)."""
    run_id = context.run.run_id
    for record in context.instance.event_log_storage.get_asset_check_execution_history(key, limit=3):
        if record.run_id != run_id and record.event is not None and record.event.asset_check_evaluation is not None:
            return record
    return None


def latest_evaluation(context, key: AssetCheckKey):
    """(run id, evaluation) of `latest_evaluation_record` ((None, None): never evaluated)."""
    record = latest_evaluation_record(context, key)
    return (record.run_id, record.event.asset_check_evaluation) if record is not None else (None, None)


def carried_over_checks(context: AssetExecutionContext, keys: Iterable[AssetCheckKey]) -> list[AssetCheckResult]:
    """The latest result of each check (that of the step that stored the kept tables), carried over
    to a step that keeps them; a check without one is reported failed, never passed by default."""
    results = []
    for key in keys:
        run_id, evaluation = latest_evaluation(context, key)
        if evaluation is None:
            results.append(AssetCheckResult(asset_key=key.asset_key, check_name=key.name, passed=False,
                                            metadata={"problem": "inputs unchanged, but no earlier result to carry"}))
            continue
        carried = evaluation.metadata.get(CARRIED_OVER)
        results.append(AssetCheckResult(
            asset_key=key.asset_key, check_name=key.name, passed=evaluation.passed,
            severity=evaluation.severity or AssetCheckSeverity.ERROR,
            metadata={**{k: v for k, v in evaluation.metadata.items() if k != CARRIED_OVER},
                      CARRIED_OVER: getattr(carried, "value", carried) or run_id}))
    return results


def latest_metadata(instance, keys: Iterable[AssetKey]) -> dict[AssetKey, dict]:
    """The metadata of each key's latest materialization (what the kept table was stored with; {}
    for a key never materialized), for all of a step's outputs in one look-up of the asset index
    instead of one per output (~4 ms each on SQLite)."""
    keys, found = list(keys), {}
    for key, event in instance.get_latest_materialization_events(keys).items():
        materialization = event.asset_materialization if event is not None else None
        found[key] = dict(materialization.metadata) if materialization is not None else {}
    return {key: found.get(key, {}) for key in keys}  # a key never stored: {} (never unchanged)


def keep_stored_outputs(fingerprint: str, output_names: Iterable[str], metadata: Mapping | None = None,
                        previous: Mapping[str, Mapping] | None = None) -> Iterator[Output]:
    """An output per name, each keeping its stored table (see `KeepStored`), with the metadata it was
    stored with (`previous`, by output name: the threshold, counts and reports stay on the asset's page)."""
    for name in output_names:
        yield Output(KeepStored(fingerprint), output_name=name, metadata={
            **(previous or {}).get(name, {}), **(metadata or {}), FINGERPRINT: fingerprint, ROWS_CHANGED: 0,
            "unchanged": "inputs unchanged: stored table kept"})


def kept_if_unchanged(context: AssetExecutionContext, fingerprint: str, mode: str,
                      metadata: Mapping | None = None) -> list | None:
    """What a step yields when its inputs are unchanged (its checks carried over, then every selected
    output kept, with `metadata`), or None when it must compute."""
    if mode == "full":
        return None
    previous = latest_metadata(context.instance, context.selected_asset_keys)
    if not unchanged(previous, fingerprint, mode):
        return None
    context.log.info("inputs unchanged since the stored tables were made: kept, not recomputed")
    by_output = {context.assets_def.get_output_name_for_asset_key(key): m for key, m in previous.items()}
    return [*carried_over_checks(context, context.selected_asset_check_keys),
            *keep_stored_outputs(fingerprint, sorted(by_output), metadata, by_output)]
