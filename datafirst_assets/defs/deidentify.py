"""De-identified research tables: one multi-asset per dataset, and the two linking tables.

linked/<source>/<person table> + staged/<source>/<other tables> -> deidentified/<source>/<table>
linkage/xjs/lookup + linkage/criminal_courts/case_lookup      -> deidentified/linking/<table>

Every table carries three blocking gates, run BEFORE anything is stored: `no_identifiers`
(the PII scan), `schema_valid` (the table's contract from the release spec, plus joins to parent
tables) and `disclosure_control` (re-identification risk on age band, sex, ethnic group and
region, against `ReleaseSettings.max_mean_risk`). When any fails, the asset yields the failing
check results and stores none of its tables; downstream assets do not run.

No `from __future__ import annotations`: Dagster inspects annotations at runtime.
"""

import secrets
from dataclasses import replace
from pathlib import Path

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    AssetsDefinition,
    MetadataValue,
    Output,
    multi_asset,
)

from datafirst_assets.defs.ingest import staged_key
from datafirst_assets.defs.linkage import LinkageSettings
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.defs.release import ReleaseSettings, catalogue_folder, stored_release_table, table_key
from datafirst_assets.defs.xjs import CASE_LOOKUP, LOOKUP
from datafirst_assets.defs.gates import contract_check, pii_check, refuse_if_failed
from datafirst_assets.deidentify.disclosure import RiskResult, reidentification_risk
from datafirst_assets.deidentify.hash_cache import KeyedHashCache
from datafirst_assets.deidentify.keys import key_fingerprint, key_label
from datafirst_assets.deidentify.release import (DatasetRelease, deidentify_linking, deidentify_source,
                                                linking_join_columns, lookup_columns)
from datafirst_assets.deidentify.release_spec import LINKING, ReleaseTable, release_datasets, release_tables
from datafirst_assets.common.tables import bullet_list, markdown_table
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.contracts import validate_table
from datafirst_assets.contracts.core import unique_sets
from datafirst_assets.contracts.registry import contract_for
from datafirst_assets.deidentify import by_row
from datafirst_assets.deidentify.by_row import (
    Names,
    deidentify_by_row,
    forget_state,
    state_fingerprint,
    state_matches,
    write_state,
)
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.content import VALIDATED_CONTENT, relation_columns
from datafirst_assets.warehouse.io_manager import ChangedRows, StoredTable, changes_to, table_columns
from datafirst_assets.warehouse.unchanged import (
    FINGERPRINT,
    inputs_fingerprint,
    kept_if_unchanged,
    latest_metadata,
    recorded_fingerprints,
)

GROUP = "deidentified"
CHECKS = {
    "no_identifiers": ("PII gate, before storing: no column holds a name, date of birth, PNC, CRO, postcode, "
                       "prison number, CRN or raw system id.", True),
    "schema_valid": ("Contract, before storing: rows satisfy the release schema (types, keys, hash shape, ages) "
                     "and every foreign key finds its parent.", True),
    "disclosure_control": ("Re-identification risk, before storing: per-record risk 1 / (people sharing the "
                           "record's age band, sex, ethnic group and region); fails when the mean exceeds "
                           "`max_mean_risk`. Sample uniques reported.", True),
}


def catalogue_path(linkage: LinkageSettings, dataset: str) -> Path:
    """Where catalogue/<dataset> writes its HTML page (linked from every table's metadata)."""
    return catalogue_folder(linkage.root, GROUP) / f"{dataset}.html"


def deidentified_key(source: str, table: str) -> AssetKey:
    return table_key(GROUP, source, table)


def _outs(dataset: str, tables: list[ReleaseTable]) -> dict[str, AssetOut]:
    return {
        spec.name: AssetOut(
            key=deidentified_key(dataset, spec.name), group_name=GROUP, metadata={"schema": f"{GROUP}_{dataset}"},
            kinds={"polars", "duckdb"},
            description=f"Research-ready `{spec.name}` ({spec.grain}): no names, dates of birth or addresses; "
            "system ids as keyed hashes; age at the event; postcode area.",
        )
        for spec in tables
    }


def _check_specs(dataset: str, tables: list[ReleaseTable]) -> list[AssetCheckSpec]:
    return [
        AssetCheckSpec(name, asset=deidentified_key(dataset, spec.name), blocking=blocking, description=description)
        for spec in tables for name, (description, blocking) in CHECKS.items()
    ]


def _risk_check(key: AssetKey, risk: RiskResult | None) -> AssetCheckResult:
    if risk is None or not risk.key:
        return AssetCheckResult(asset_key=key, check_name="disclosure_control", passed=True,
                                metadata={"note": "no attribute of a person (ids or events only): no risk key"})
    cells = risk.riskiest_cells
    return AssetCheckResult(
        asset_key=key, check_name="disclosure_control", passed=risk.passed,
        metadata={
            **{k: v for k, v in risk.summary().items() if k not in ("table", "passed")},
            "riskiest_cells": MetadataValue.md(markdown_table(cells, "{}") if cells.height else "none"),
        },
    )


def _gate_results(dataset: str, release: DatasetRelease, risks: dict[str, RiskResult]) -> list[AssetCheckResult]:
    specs, results = release_tables(), []
    for name, frame in release.tables.items():
        key = deidentified_key(dataset, name)
        orphans = [f"{join}: {count} orphan row(s)" for join, count in release.orphans.items()
                   if count and (join.startswith(f"{name}.") or join.startswith(f"{name}["))]
        assert (dataset, name) in specs, f"{dataset}.{name} has no release spec"
        results += [pii_check(key, release.findings.get(name, [])),
                    contract_check(key, frame, extra_problems=orphans),
                    _risk_check(key, risks.get(name))]
    return results


def _emit(dataset: str, release: DatasetRelease, catalogue_html: Path, risks: dict[str, RiskResult],
          fingerprint: str | None = None, before_store=None, mode: dict | None = None, stored_as=None):
    """Gates first, then the tables, or nothing at all when a gate failed. `before_store`: called
    once every gate passed, before any table is stored (the by-row state of a full rebuild).
    `stored_as(name, frame)`: what is written for a table (the frame, or its change to the stored one)."""
    specs = release_tables()
    results = _gate_results(dataset, release, risks)
    yield from results
    refuse_if_failed(f"deidentified/{dataset}", results, [n for n, (_, blocking) in CHECKS.items() if blocking])
    if before_store is not None:
        before_store()
    for name, frame in release.tables.items():
        yield Output(frame if stored_as is None else stored_as(name, frame), output_name=name, metadata=_table_metadata(
            specs[(dataset, name)], frame.height, catalogue_html, risks.get(name), fingerprint, mode))


def _table_metadata(spec: ReleaseTable, rows: int, catalogue_html: Path, risk: RiskResult | None,
                    fingerprint: str | None, mode: dict | None) -> dict:
    """What every stored de-identified table reports, rebuilt whole or by row."""
    return {
        "rows": rows,
        "columns": len(spec.column_names),
        "withheld": ", ".join(spec.dropped) or "none",
        "pseudonymisation_key": key_label(),
        "key_fingerprint": key_fingerprint(),
        "catalogue": MetadataValue.path(str(catalogue_html.resolve())),
        **({"mean_reidentification_risk": round(risk.mean_risk, 4), "sample_uniques": risk.sample_uniques}
           if risk is not None and risk.key else {}),
        **({FINGERPRINT: fingerprint} if fingerprint else {}),
        **(mode or {}),
    }


def _full_rebuild_reason(names: Names, state: str, rules: dict, mode: str, tables: list[str]) -> str | None:
    """Why every row is de-identified again (None: by row, only the rows whose input changed)."""
    if mode == "full":
        return "full mode"
    if any(rule.policy == "coarsen" for rule in rules.values()):
        return "disclosure policy 'coarsen' (coarsened values depend on the whole population)"
    with warehouse_cursor(names.database) as conn:
        if not state_matches(conn, names, state, tables):
            return "no row state for this code, release rules and key"
    return None


def _contract_by_row(key: AssetKey, conn, names: Names, table: str, derived: pl.DataFrame,
                     orphans: list[str]) -> AssetCheckResult:
    """`contract_check` of a table updated by row: every row rule on the re-derived rows (kept rows met
    them when stored, under the same code: the state is tied to it), the unique keys and the foreign
    keys on the whole table, in DuckDB. The IO manager validates the whole table again as it writes."""
    contract = contract_for(key)
    report = validate_table(derived, contract)
    problems = ([str(f) for f in report.failures] + by_row.duplicate_keys(conn, names, table, unique_sets(contract))
                + orphans)
    rows = conn.execute(f"select count(*) from {names.release_view(table)}").fetchall()[0][0]
    return AssetCheckResult(
        asset_key=key, check_name="schema_valid", passed=not problems,
        metadata={"problems": MetadataValue.md(bullet_list(problems)),
                  "report": MetadataValue.md(f"re-derived rows: {report.markdown()}"),
                  "rows": rows, "rows_validated": derived.height, "failing_rules": len(problems)})


def _deidentify_by_row(context: AssetExecutionContext, source, stored: dict[str, StoredTable], risk_rules: dict,
                       cache: KeyedHashCache, names: Names, catalogue_html: Path, fingerprint: str, dates: dict):
    """Incremental mode: only new or changed records de-identified and scanned (`deidentify.by_row`);
    the gates run on the whole updated tables in DuckDB; the state commits only when they pass."""
    specs = release_tables()
    with warehouse_cursor(names.database) as conn:
        conn.execute("begin")  # the state is updated in place: committed only when every gate passed
        try:
            run = deidentify_by_row(conn, names, source, stored, risk_rules, cache=cache, dates=dates)
            results = []
            for table in source.tables:
                key = deidentified_key(source.key, table.name)
                orphans = [f"{join}: {count} orphan row(s)" for join, count in run.orphans.items()
                           if count and join.startswith(f"{table.name}.")]
                results += [pii_check(key, run.findings[table.name]),
                            _contract_by_row(key, conn, names, table.name, run.derived[table.name], orphans),
                            _risk_check(key, run.risks[table.name])]
            for name, findings in run.findings.items():
                for finding in findings:
                    context.log.error(f"PII gate: {finding}")
            failed = [r for r in results if not r.passed and CHECKS[r.check_name][1]]
            if failed:
                conn.execute("rollback")  # a refused row never becomes a kept one
            else:
                by_row.discard_scratch(conn, names, source.table_names)
                conn.execute("commit")
        except BaseException:
            conn.execute("rollback")
            raise
    yield from results
    refuse_if_failed(f"deidentified/{source.key}", results, [n for n, (_, blocking) in CHECKS.items() if blocking])
    context.log.info(f"by row: {run.new_identifiers:,} identifiers of new or changed records; keyed hashes: "
                     f"{cache.found:,} found, {cache.hashed:,} hashed")
    previous = latest_metadata(context.instance, [deidentified_key(source.key, t.name) for t in source.tables])
    for table in source.tables:
        spec, counts, risk = specs[(source.key, table.name)], run.counts[table.name], run.risks[table.name]
        rows = counts.kept + counts.rederived
        compared = run.compared[table.name]
        mode = {"deidentify_mode": "by row: only new or changed records de-identified and scanned",
                **counts.metadata(),
                "records_compared": "every record" if compared is None else f"{compared:,} (of new dates, moved, or parties of touched cases)"}
        yield Output(_changed_rows(names, spec, run.changes[table.name], previous[deidentified_key(source.key, table.name)]),
                     output_name=table.name, metadata=_table_metadata(spec, rows, catalogue_html, risk, fingerprint, mode))


def _staged_dates(source, stored: dict[str, StoredTable], memo: dict) -> dict[str, dict[str, str] | None]:
    """`by_row.input_dates` of the dataset's staged tables (those without the person id), and, from the
    same pass, their fingerprints into `memo` (for `inputs_fingerprint`: each table read once)."""
    dates = {}
    with warehouse_cursor(next(iter(stored.values())).database) as conn:
        for table in source.tables:
            if table.is_person_table:
                continue  # the linked table: its fingerprint recorded, its dates only needed by row
            whole, dates[table.name] = by_row.input_dates(conn, source, stored[table.name])
            if whole is not None:
                memo.setdefault((stored[table.name].database, stored[table.name].select_sql()), whole)
    return dates


def _changed_rows(names: Names, spec: ReleaseTable, change: by_row.TableChange, previous: dict) -> ChangedRows:
    """Only the changed rows for the IO manager to write in place; the stored table must still hold
    what its last write validated whole (else it is rewritten from the state)."""
    validated = previous.get(VALIDATED_CONTENT)
    return ChangedRows(key=tuple(spec.unique_key), deletes=change.deletes, updates=change.updates,
                       inserts=change.inserts, expected=by_row.released_sql(names, spec, ordered=False),
                       rewrite=by_row.released_sql(names, spec),
                       validated_before=getattr(validated, "value", validated), appendable=change.appendable)


def build_deidentify_assets(source_key: str) -> AssetsDefinition:
    source = SOURCES[source_key]
    tables = release_datasets()[source_key]

    def input_key(table) -> AssetKey:
        return AssetKey(["linked", source.key, table.name]) if table.is_person_table else staged_key(source.key, table.name)

    @multi_asset(
        name=f"deidentify_{source.key}",
        ins={t.name: AssetIn(key=input_key(t), dagster_type=StoredTable) for t in source.tables},
        outs=_outs(source.key, tables),
        check_specs=_check_specs(source.key, tables),
    )
    def _deidentify(context: AssetExecutionContext, release_settings: ReleaseSettings, linkage: LinkageSettings,
                    **stored: StoredTable):
        rules = {t.name: release_settings.rule_for(source.key, t.name) for t in source.tables}
        # the linked person table's fingerprint as its write recorded it (not every row hashed again)
        memo = recorded_fingerprints(context.instance, {input_key(t): stored[t.name] for t in source.tables})
        dates = _staged_dates(source, stored, memo)
        fingerprint = inputs_fingerprint(stored, settings=(rules, release_settings.risk_key, release_settings.max_mean_risk,
                                                           release_settings.risk_age_band, key_fingerprint()), memo=memo)
        if (kept := kept_if_unchanged(context, fingerprint, linkage.mode)) is not None:
            yield from kept
            return
        database = next(iter(stored.values())).database
        cache = KeyedHashCache(database, reuse=linkage.mode != "full")
        names, state = Names(database, source.key), state_fingerprint(rules, key_fingerprint())
        reason = _full_rebuild_reason(names, state, rules, linkage.mode, source.table_names)
        if reason is None:
            risk_rules = {t.name: release_settings.risk_rule_for(source.key, t.name) for t in source.tables}
            yield from _deidentify_by_row(context, source, stored, risk_rules, cache, names,
                                          catalogue_path(linkage, source.key), fingerprint, dates)
            return
        release = deidentify_source(source, {name: table.to_polars() for name, table in stored.items()}, rules,
                                    cache=cache)
        context.log.info(f"keyed hashes: {cache.found:,} distinct values stored by earlier runs, {cache.hashed:,} hashed")
        for name, findings in release.findings.items():
            for finding in findings:
                context.log.error(f"PII gate: {finding}")
        risks = {name: reidentification_risk(frame, release_tables()[(source.key, name)],
                                              release_settings.risk_rule_for(source.key, name))
                 for name, frame in release.tables.items()}

        def store_state() -> None:
            with warehouse_cursor(database) as conn:
                if any(rule.policy == "coarsen" for rule in rules.values()):
                    forget_state(conn, names)  # coarsened values depend on the population: no row state
                else:
                    write_state(conn, names, source, stored, release.tables, state, dates)

        yield from _emit(source.key, release, catalogue_path(linkage, source.key), risks, fingerprint,
                         before_store=store_state, mode={"deidentify_mode": f"full rebuild: {reason}"})

    return _deidentify


@multi_asset(
    name="deidentify_linking",
    ins={
        "lookup": AssetIn(key=LOOKUP, metadata={"columns": list(lookup_columns())}),
        "case_links": AssetIn(key=CASE_LOOKUP),
        # Only the columns the lookups' joins are checked on (`linking_orphans`): the person tables are
        # the largest release tables, and the rest of their columns was read for nothing.
        **{f"persons__{s.key}": AssetIn(key=deidentified_key(s.key, s.person_table.name),
                                        metadata={"columns": list(linking_join_columns(s.key))})
           for s in SOURCES.values()},
    },
    outs=_outs(LINKING, release_datasets()[LINKING]),
    check_specs=_check_specs(LINKING, release_datasets()[LINKING]),
)
def deidentify_linking_tables(context: AssetExecutionContext, linkage: LinkageSettings, warehouse: Warehouse,
                              lookup: pl.DataFrame, case_links: pl.DataFrame, **persons: pl.DataFrame):
    released = {name.removeprefix("persons__"): frame for name, frame in persons.items()}
    cache = KeyedHashCache(warehouse.database, reuse=linkage.mode != "full")
    with cache.batched():
        release = deidentify_linking(lookup, case_links, released, cache=cache)
    validated = latest_metadata(context.instance, [deidentified_key(LINKING, n) for n in release.tables])
    yield from _emit(LINKING, release, catalogue_path(linkage, LINKING), {}, stored_as=lambda name, frame: (
        frame if linkage.mode == "full" else
        _as_change_to_stored(warehouse, name, frame, validated[deidentified_key(LINKING, name)].get(VALIDATED_CONTENT))))


def _as_change_to_stored(warehouse: Warehouse, name: str, frame: pl.DataFrame, validated) -> pl.DataFrame | ChangedRows:
    """A linking table as its change to the stored one (`io_manager.changes_to`: the rows that differ,
    found in DuckDB): a new extract changes a few per cent of the cross-justice lookup's persons, and
    the whole table (1.9 million rows at 1,000,000 people) was validated and written again, its write
    replayed from the log at close. The frame itself when there is no stored table of its columns, or no
    record of its content being validated whole (the IO manager then writes it whole)."""
    spec = release_tables()[(LINKING, name)]
    stored = stored_release_table(warehouse.database, "deidentified", LINKING, name)
    validated = getattr(validated, "value", validated)
    if validated is None or not spec.unique_key:
        return frame
    view = f"_released_{name}_{secrets.token_hex(4)}"
    with warehouse_cursor(warehouse.database) as conn:
        stored_columns = table_columns(conn, stored.schema, stored.table)
        conn.register(view, frame.to_arrow())
        try:
            if list(stored_columns) != frame.columns or list(relation_columns(conn, view).items()) != list(stored_columns.items()):
                return frame
            change = changes_to(conn, stored.name, f"select * from {view}", list(spec.unique_key), validated)
        finally:
            conn.unregister(view)
    # rows are appended in place even when they sort before stored ones: a table this size is stored
    # in no set order (`io_manager.ONE_ROW_GROUP`), and every reader orders it (the release by its key)
    return replace(change, expected=frame, rewrite=frame, order=tuple(spec.unique_key))


def deidentify_assets() -> list[AssetsDefinition]:
    return [build_deidentify_assets(s) for s in SOURCES] + [deidentify_linking_tables]
