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
from datafirst_assets.defs.release import ReleaseSettings, catalogue_folder, table_key
from datafirst_assets.defs.xjs import CASE_LOOKUP, LOOKUP
from datafirst_assets.defs.gates import contract_check, pii_check, refuse_if_failed
from datafirst_assets.deidentify.disclosure import RiskResult, reidentification_risk
from datafirst_assets.deidentify.hash_cache import KeyedHashCache
from datafirst_assets.deidentify.keys import key_fingerprint, key_label
from datafirst_assets.deidentify.release import DatasetRelease, deidentify_linking, deidentify_source
from datafirst_assets.deidentify.release_spec import LINKING, ReleaseTable, release_datasets, release_tables
from datafirst_assets.common.tables import markdown_table
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.warehouse.io_manager import StoredTable
from datafirst_assets.warehouse.unchanged import (
    FINGERPRINT,
    inputs_fingerprint,
    kept_if_unchanged,
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
          fingerprint: str | None = None):
    """Gates first, then the tables, or nothing at all when a gate failed."""
    specs = release_tables()
    results = _gate_results(dataset, release, risks)
    yield from results
    refuse_if_failed(f"deidentified/{dataset}", results, [n for n, (_, blocking) in CHECKS.items() if blocking])
    for name, frame in release.tables.items():
        spec = specs[(dataset, name)]
        risk = risks.get(name)
        yield Output(frame, output_name=name, metadata={
            "rows": frame.height,
            "columns": len(frame.columns),
            "withheld": ", ".join(spec.dropped) or "none",
            "pseudonymisation_key": key_label(),
            "key_fingerprint": key_fingerprint(),
            "catalogue": MetadataValue.path(str(catalogue_html.resolve())),
            **({"mean_reidentification_risk": round(risk.mean_risk, 4), "sample_uniques": risk.sample_uniques}
               if risk is not None and risk.key else {}),
            **({FINGERPRINT: fingerprint} if fingerprint else {}),
        })


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
        fingerprint = inputs_fingerprint(stored, settings=(rules, release_settings.risk_key, release_settings.max_mean_risk,
                                                           release_settings.risk_age_band, key_fingerprint()))
        if (kept := kept_if_unchanged(context, fingerprint, linkage.mode)) is not None:
            yield from kept
            return
        cache = KeyedHashCache(next(iter(stored.values())).database, reuse=linkage.mode != "full")
        release = deidentify_source(source, {name: table.to_polars() for name, table in stored.items()}, rules,
                                    cache=cache)
        context.log.info(f"keyed hashes: {cache.found:,} distinct values stored by earlier runs, {cache.hashed:,} hashed")
        for name, findings in release.findings.items():
            for finding in findings:
                context.log.error(f"PII gate: {finding}")
        risks = {name: reidentification_risk(frame, release_tables()[(source.key, name)],
                                              release_settings.risk_rule_for(source.key, name))
                 for name, frame in release.tables.items()}
        yield from _emit(source.key, release, catalogue_path(linkage, source.key), risks, fingerprint)

    return _deidentify


@multi_asset(
    name="deidentify_linking",
    ins={
        "lookup": AssetIn(key=LOOKUP),
        "case_links": AssetIn(key=CASE_LOOKUP),
        **{f"persons__{s.key}": AssetIn(key=deidentified_key(s.key, s.person_table.name)) for s in SOURCES.values()},
    },
    outs=_outs(LINKING, release_datasets()[LINKING]),
    check_specs=_check_specs(LINKING, release_datasets()[LINKING]),
)
def deidentify_linking_tables(context: AssetExecutionContext, linkage: LinkageSettings, lookup: pl.DataFrame,
                              case_links: pl.DataFrame, **persons: pl.DataFrame):
    released = {name.removeprefix("persons__"): frame for name, frame in persons.items()}
    release = deidentify_linking(lookup, case_links, released)
    yield from _emit(LINKING, release, catalogue_path(linkage, LINKING), {})


def deidentify_assets() -> list[AssetsDefinition]:
    return [build_deidentify_assets(s) for s in SOURCES] + [deidentify_linking_tables]
