"""The evaluation group: the only assets that read the simulator's truth.

linkage/<source>/clusters + scored_pairs + linkage/quality -> evaluation/linkage
linkage/xjs/lookup + linkage/criminal_courts/case_lookup    -> evaluation/xjs

The truth folder comes from the `truth` resource (``DATAFIRST_TRUTH_DIR``; unset: none). Nothing
outside this group takes that resource, so no release depends on truth. With no truth the assets
still materialise, say so, and their checks warn (never pass) naming the missing evidence.

No `from __future__ import annotations`: Dagster inspects annotations at runtime.
"""

import os
from pathlib import Path

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetIn,
    AssetKey,
    ConfigurableResource,
    MetadataValue,
    Output,
    asset,
)

from datafirst_assets.common.tables import bullet_list
from datafirst_assets.defs.linkage import QUALITY, LinkageSettings, linkage_key, stored_table
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.defs.xjs import CASE_LOOKUP, LOOKUP, XJS_THRESHOLDS
from datafirst_assets.linkage.guard import GUARD_COLUMNS
from datafirst_assets.evaluation.measure import measure_source, measured_table, subgroup_table
from datafirst_assets.evaluation.report import (
    estimate_failures,
    floor_failures,
    linkage_evaluation_markdown,
    write_report,
)
from datafirst_assets.evaluation.truth import TRUTH_DIR_ENV, case_link_truth, missing_truth, truth_with_subgroups, xjs_truth
from datafirst_assets.linkage.xjs_metrics import case_link_metrics, evaluate_xjs, xjs_markdown, xjs_sections, xjs_summary
from datafirst_assets.reporting import file_url
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.warehouse.io_manager import StoredTable

EVALUATION_GROUP = "evaluation"
TRUTH_RESOURCE = "truth"
LINKAGE_EVALUATION = AssetKey(["evaluation", "linkage"])
XJS_EVALUATION = AssetKey(["evaluation", "xjs"])
# Floors from the linking issue.
XJS_MEDIUM_BCUBED_FLOOR = 0.95
CASE_LINK_PRECISION_FLOOR, CASE_LINK_RECALL_FLOOR = 0.99, 0.97
NO_TRUTH_SCHEMA = {"status": pl.String}


class TruthFolder(ConfigurableResource):
    """The simulator's ground truth, for measuring only ("" = none, as with real extracts)."""

    path: str = ""

    def folder(self) -> Path | None:
        return Path(self.path) if self.path else None


def truth_from_env() -> TruthFolder:
    return TruthFolder(path=os.environ.get(TRUTH_DIR_ENV, ""))


def _no_truth(problem: str, checks: tuple[str, ...]):
    """What an evaluation asset stores and reports when there is nothing to measure against:
    a one-row status table, and every check not passed (a warning naming the missing truth)."""
    yield Output(pl.DataFrame({"status": [f"no truth available: {problem}"]}, schema=NO_TRUTH_SCHEMA),
                 metadata={"truth": f"no truth available: {problem}"})
    for check in checks:
        yield AssetCheckResult(check_name=check, passed=False, severity=AssetCheckSeverity.WARN,
                               metadata={"missing_evidence": f"no truth available: {problem}"})


def _warn_unless(check: str, problems: list[str]) -> AssetCheckResult:
    return AssetCheckResult(check_name=check, passed=not problems, severity=AssetCheckSeverity.WARN,
                            metadata={"problems": MetadataValue.md(bullet_list(problems))})


@asset(
    key=LINKAGE_EVALUATION,
    # handles, read only when there is truth to measure against: a production run has none, and
    # reading every dataset's clusters and pairs for nothing cost ~1 s of a 1M-people run
    ins={**{f"clusters__{s}": AssetIn(key=linkage_key(s, "clusters"), dagster_type=StoredTable) for s in SOURCES},
         **{f"pairs__{s}": AssetIn(key=linkage_key(s, "scored_pairs"), dagster_type=StoredTable) for s in SOURCES},
         "quality": AssetIn(key=QUALITY)},
    group_name=EVALUATION_GROUP,
    metadata={"schema": "evaluation"},
    kinds={"polars"},
    description="Per-dataset linkage accuracy measured against the simulator's truth, on records the clerical "
    "labels did not see; where each threshold came from; estimated vs measured; by subgroup.",
    check_specs=[
        AssetCheckSpec("accuracy_floors", asset=LINKAGE_EVALUATION,
                       description="Measured B-cubed F1 >= 0.97 (criminal justice) / 0.93 (family, civil)."),
        AssetCheckSpec("estimates_match_measured", asset=LINKAGE_EVALUATION,
                       description="Estimated precision and recall within 0.03 of the measured figures."),
    ],
)
def linkage_evaluation(truth: TruthFolder, linkage: LinkageSettings, warehouse: Warehouse, quality: pl.DataFrame,
                       **handles: StoredTable):
    problem = missing_truth(truth.folder())
    if problem:
        yield from _no_truth(problem, ("accuracy_floors", "estimates_match_measured"))
        return
    inputs = {name: table.to_polars() for name, table in handles.items()}
    estimates = {row["source"]: row for row in quality.iter_rows(named=True)}
    truths = {s: truth_with_subgroups(truth.folder(), s) for s in SOURCES}
    clusters = {s: inputs[f"clusters__{s}"] for s in SOURCES}
    measured = measured_table([
        measure_source(s, clusters[s], inputs[f"pairs__{s}"], truths[s], estimates[s], linkage.labels_file(s),
                       records=stored_table(warehouse, s, "person_records", GUARD_COLUMNS))
        for s in SOURCES if s in estimates])
    subgroups = subgroup_table(clusters, truths)
    report = write_report(linkage_evaluation_markdown(measured, subgroups),
                          {"": measured, "_subgroups": subgroups}, linkage.root / "reports", "linkage_evaluation",
                          title="Linkage accuracy measured against truth")
    yield Output(measured, metadata={"report": MetadataValue.url(file_url(report, linkage.root)),
                                     "summary": MetadataValue.md(report.with_suffix(".md").read_text()[:20_000])})
    yield _warn_unless("accuracy_floors", floor_failures(measured))
    yield _warn_unless("estimates_match_measured", estimate_failures(measured))


@asset(
    key=XJS_EVALUATION,
    ins={"lookup": AssetIn(key=LOOKUP, dagster_type=StoredTable),
         "case_links": AssetIn(key=CASE_LOOKUP, dagster_type=StoredTable)},  # read only with truth (above)
    group_name=EVALUATION_GROUP,
    metadata={"schema": "evaluation"},
    kinds={"polars"},
    description="Cross-dataset pairwise and B-cubed precision / recall / F1 per threshold, by dataset pair and "
    "subgroup, and case-link precision / recall, measured against the simulator's truth.",
    check_specs=[AssetCheckSpec(
        "accuracy_floors", asset=XJS_EVALUATION,
        description="Cross-justice B-cubed F1 >= 0.95 at medium; case link precision >= 0.99, recall >= 0.97.",
    )],
)
def xjs_evaluation(truth: TruthFolder, linkage: LinkageSettings, lookup: StoredTable, case_links: StoredTable):
    problem = missing_truth(truth.folder())
    if problem:
        yield from _no_truth(problem, ("accuracy_floors",))
        return
    lookup, case_links = lookup.to_polars(), case_links.to_polars()
    # the thresholds the lookup was cut at (defs.xjs builds it at these), shown in the report's threshold column
    evaluation = evaluate_xjs(lookup, xjs_truth(truth.folder()), thresholds=XJS_THRESHOLDS)
    case_metrics = case_link_metrics(case_links, case_link_truth(truth.folder()))
    report = write_report(xjs_markdown(evaluation, case_metrics),
                          {**{f"_{name}": frame for name, frame in evaluation.items()}, "_case_link": case_metrics},
                          linkage.root / "reports", "xjs_evaluation", title="Cross-justice linkage quality",
                          sections=xjs_sections(evaluation, case_metrics))
    headline = xjs_summary(evaluation, "medium")
    case_all = case_metrics.filter(pl.col("case_type") == "all").row(0, named=True)
    yield Output(evaluation["overall"], metadata={
        "report": MetadataValue.url(file_url(report, linkage.root)),
        "medium_bcubed_f1": headline["bcubed_f1"],
        "case_link_precision": case_all["precision"],
        "case_link_recall": case_all["recall"],
        "summary": MetadataValue.md(report.with_suffix(".md").read_text()[:20_000]),
    })
    yield _warn_unless("accuracy_floors", xjs_floor_failures(headline, case_all))


def xjs_floor_failures(headline: dict, case_all: dict) -> list[str]:
    failures = []
    if headline["bcubed_f1"] < XJS_MEDIUM_BCUBED_FLOOR:
        failures.append(f"cross-justice B-cubed F1 at medium {headline['bcubed_f1']:.4f} < {XJS_MEDIUM_BCUBED_FLOOR}")
    if (case_all["precision"] or 0) < CASE_LINK_PRECISION_FLOOR:
        failures.append(f"case link precision {case_all['precision']:.4f} < {CASE_LINK_PRECISION_FLOOR}")
    if (case_all["recall"] or 0) < CASE_LINK_RECALL_FLOOR:
        failures.append(f"case link recall {case_all['recall']:.4f} < {CASE_LINK_RECALL_FLOOR}")
    return failures


def evaluation_assets():
    return [linkage_evaluation, xjs_evaluation]
