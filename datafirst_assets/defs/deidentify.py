"""De-identified research tables: one multi-asset per dataset, and the two linking tables.

linked/<source>/<person table> + staged/<source>/<other tables> -> deidentified/<source>/<table>
linkage/xjs/lookup + linkage/criminal_courts/case_lookup      -> deidentified/linking/<table>

Every table carries three checks: `no_identifiers` (the PII gate, blocking: nothing is
published past a finding), `schema_valid` (pandera schema from the release spec, plus joins to
parent tables) and `disclosure_control` (k-anonymity / l-diversity, a warning).

No `from __future__ import annotations`: Dagster inspects annotations at runtime.
"""

from pathlib import Path

import pandera.polars as pa
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    AssetsDefinition,
    ConfigurableResource,
    MetadataValue,
    Output,
    multi_asset,
)

from datafirst_assets.defs.ingest import staged_key
from datafirst_assets.defs.linkage import LinkageSettings
from datafirst_assets.defs.release import catalogue_folder, table_key
from datafirst_assets.defs.xjs import CASE_LOOKUP, LOOKUP
from datafirst_assets.deidentify.disclosure import DisclosureResult, DisclosureRule
from datafirst_assets.deidentify.keys import key_is_development
from datafirst_assets.deidentify.pii_gate import findings_markdown
from datafirst_assets.deidentify.release import DatasetRelease, deidentify_linking, deidentify_source
from datafirst_assets.deidentify.release_spec import LINKING, ReleaseTable, release_datasets, release_tables
from datafirst_assets.deidentify.schemas import release_schema
from datafirst_assets.common.tables import markdown_table
from datafirst_assets.reporting import file_url
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.common.checks import failure_summary

GROUP = "deidentified"
CHECKS = {
    "no_identifiers": ("PII gate: no column holds a name, date of birth, PNC, CRO, postcode, prison number, "
                       "CRN or raw system id.", True),
    "schema_valid": ("Rows satisfy the release schema (types, keys, hash shape, ages) and every foreign key "
                     "finds its parent.", True),
    "disclosure_control": ("k-anonymity and l-diversity on the table's quasi-identifiers (report of small "
                           "cells; coarsened or suppressed under the `coarsen` policy).", False),
}


class ReleaseSettings(ConfigurableResource):
    """Disclosure control of the release: the rule of thumb is no cell under 10 people."""

    k: int = 10
    l: int = 2
    # "warn": report small cells; "coarsen": generalise quasi-identifiers, then suppress, until k holds.
    disclosure_policy: str = "warn"
    max_suppressed_share: float = 0.05
    # "<source>.<table>" -> quasi-identifier columns / sensitive column; unset tables use the defaults.
    quasi_identifiers: dict[str, list[str]] = {}
    sensitive: dict[str, str] = {}

    def rule_for(self, source: str, table: str) -> DisclosureRule:
        name = f"{source}.{table}"
        if self.disclosure_policy not in ("warn", "coarsen"):
            raise ValueError(f"disclosure_policy must be 'warn' or 'coarsen', not {self.disclosure_policy!r}")
        qis = self.quasi_identifiers.get(name)
        return DisclosureRule(
            k=self.k, l=self.l, policy=self.disclosure_policy, max_suppressed_share=self.max_suppressed_share,
            quasi_identifiers=tuple(qis) if qis is not None else None, sensitive=self.sensitive.get(name),
        )


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


def _disclosure_check(key: AssetKey, result: DisclosureResult) -> AssetCheckResult:
    small = result.small_cells.head(20)
    return AssetCheckResult(
        asset_key=key, check_name="disclosure_control",
        passed=(result.k_anonymous and result.l_diverse) or not result.quasi_identifiers,
        severity=AssetCheckSeverity.WARN,
        metadata={
            **{k: v for k, v in result.summary().items() if v is not None and k != "table"},
            "small_cells_sample": MetadataValue.md(
                markdown_table(small.drop("rows"), "{}") if small.height else "none"),
        },
    )


def _schema_check(key: AssetKey, spec: ReleaseTable, frame: pl.DataFrame, orphans: dict[str, int]) -> AssetCheckResult:
    mine = {join: count for join, count in orphans.items() if join.startswith(f"{spec.name}.")
            or join.startswith(f"{spec.name}[")}
    detail: list[str] = [f"{join}: {count} orphan row(s)" for join, count in mine.items() if count]
    try:
        release_schema(spec).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as error:
        detail += failure_summary(error)["detail"]
    return AssetCheckResult(
        asset_key=key, check_name="schema_valid", passed=not detail,
        metadata={"problems": MetadataValue.md("\n".join(f"- {d}" for d in detail) or "none"),
                  "joins_checked": MetadataValue.md("\n".join(f"- {j}" for j in mine) or "none")},
    )


def _emit(dataset: str, release: DatasetRelease, catalogue_html: Path, data_root: Path):
    specs = release_tables()
    for name, frame in release.tables.items():
        spec, key = specs[(dataset, name)], deidentified_key(dataset, name)
        findings = release.findings.get(name, [])
        yield Output(frame, output_name=name, metadata={
            "rows": frame.height,
            "columns": len(frame.columns),
            "withheld": ", ".join(spec.dropped) or "none",
            "pseudonymisation_key": "DEVELOPMENT key (set DATAFIRST_PSEUDONYMISATION_KEY)"
            if key_is_development() else "from environment",
            "catalogue": MetadataValue.url(file_url(catalogue_html, data_root)),
        })
        yield AssetCheckResult(
            asset_key=key, check_name="no_identifiers", passed=not findings,
            metadata={"findings": MetadataValue.md(findings_markdown(findings)), "count": len(findings)},
        )
        yield _schema_check(key, spec, frame, release.orphans)
        if name in release.disclosure:
            yield _disclosure_check(key, release.disclosure[name])
        else:
            yield AssetCheckResult(asset_key=key, check_name="disclosure_control", passed=True,
                                   metadata={"note": "linking table: ids only, no quasi-identifiers"})


def build_deidentify_assets(source_key: str) -> AssetsDefinition:
    source = SOURCES[source_key]
    tables = release_datasets()[source_key]

    def input_key(table) -> AssetKey:
        return AssetKey(["linked", source.key, table.name]) if table.is_person_table else staged_key(source.key, table.name)

    @multi_asset(
        name=f"deidentify_{source.key}",
        ins={t.name: AssetIn(key=input_key(t)) for t in source.tables},
        outs=_outs(source.key, tables),
        check_specs=_check_specs(source.key, tables),
    )
    def _deidentify(context: AssetExecutionContext, release_settings: ReleaseSettings, linkage: LinkageSettings,
                    **staged: pl.DataFrame):
        rules = {t.name: release_settings.rule_for(source.key, t.name) for t in source.tables}
        release = deidentify_source(source, staged, rules)
        for name, findings in release.findings.items():
            for finding in findings:
                context.log.error(f"PII gate: {finding}")
        yield from _emit(source.key, release, catalogue_path(linkage, source.key), linkage.root)

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
    yield from _emit(LINKING, release, catalogue_path(linkage, LINKING), linkage.root)


def deidentify_assets() -> list[AssetsDefinition]:
    return [build_deidentify_assets(s) for s in SOURCES] + [deidentify_linking_tables]
