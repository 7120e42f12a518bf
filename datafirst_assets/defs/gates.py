"""Gates that run before a table is stored: their check results, and refusing to store.

An asset computes its tables, runs its gates (PII scan, contract, disclosure risk), yields every
gate's check result, and only then yields its outputs; when a blocking gate failed it raises
`GateFailure` instead, so nothing is stored and no downstream asset runs, while the failing
check result (rule, count, sample) stays visible in the UI.
"""

from collections.abc import Iterable, Sequence

import polars as pl
from dagster import AssetCheckResult, AssetKey, Failure, MetadataValue

from datafirst_assets.common.tables import bullet_list
from datafirst_assets.contracts import validate_table
from datafirst_assets.contracts.registry import contract_for
from datafirst_assets.deidentify.pii_gate import Finding, findings_markdown


class GateFailure(Failure):
    """A blocking gate failed: the asset's tables were not stored."""


def pii_check(key: AssetKey, findings: Sequence[Finding], check_name: str = "no_identifiers") -> AssetCheckResult:
    classes = sorted({f.identifier for f in findings})
    return AssetCheckResult(
        asset_key=key, check_name=check_name, passed=not findings,
        metadata={"findings": MetadataValue.md(findings_markdown(list(findings))), "count": len(findings),
                  "identifier_classes": ", ".join(classes) or "none"},
    )


def contract_check(key: AssetKey, frame: pl.DataFrame, check_name: str = "schema_valid",
                   extra_problems: Sequence[str] = ()) -> AssetCheckResult:
    """The table's contract (and any extra problems, e.g. orphaned foreign keys) as a check result."""
    report = validate_table(frame, contract_for(key))
    problems = [str(f) for f in report.failures] + list(extra_problems)
    return AssetCheckResult(
        asset_key=key, check_name=check_name, passed=not problems,
        metadata={"problems": MetadataValue.md(bullet_list(problems)),
                  "report": MetadataValue.md(report.markdown()), "rows": frame.height,
                  "failing_rules": len(report.failures)},
    )


def refuse_if_failed(what: str, results: Iterable[AssetCheckResult], blocking: Iterable[str]) -> None:
    """Raise `GateFailure` naming every failed blocking check (call after yielding the results)."""
    blocking = set(blocking)
    failed = [r for r in results if not r.passed and r.check_name in blocking]
    if not failed:
        return
    lines = [f"- {r.asset_key.to_user_string()}: {r.check_name}" for r in failed]
    raise GateFailure(
        description=f"{what}: NOTHING STORED, {len(failed)} blocking gate(s) failed "
        "(see each check's result for the rule, count and sample):\n" + "\n".join(lines),
        metadata={"failed_gates": MetadataValue.md("\n".join(lines))},
    )
