"""Synthetic release assets: summaries -> synthetic tables -> report.

deidentified/<source>/<table> (all)  -> synthetic/summaries        disclosure-checked marginals (JSON, reviewable)
synthetic/summaries                  -> synthetic/<source>/<table> one multi-asset per source
synthetic person tables + summaries  -> synthetic/linking/xjs_lookup, synthetic/linking/case_lookup
release + synthetic + summaries      -> synthetic/report           fidelity / privacy, with the floors as checks

Only the summaries asset reads the real release; the synthetic tables are made from the
summaries document alone, so what a reviewer approved in data/synthetic/summaries.json is all
that flows out. No `from __future__ import annotations`: Dagster inspects annotations at runtime.
"""

import json
from pathlib import Path

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    AssetSpec,
    ConfigurableResource,
    MetadataValue,
    Output,
    asset,
    multi_asset,
)

from datafirst_assets.defs.deidentify import deidentified_key
from datafirst_assets.defs.gates import contract_check, pii_check, refuse_if_failed
from datafirst_assets.defs.release import stored_release_table, table_key
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.deidentify.pii_gate import scan_table, shape_identifiers
from datafirst_assets.deidentify.release_spec import release_tables
from datafirst_assets.common.tables import bullet_list, markdown_table
from datafirst_assets.reporting import file_url, write_markdown_and_html
from datafirst_assets.synthetic.generate import linking_reads, synthesise_linking, synthesise_source
from datafirst_assets.synthetic.labels import SYNTHETIC_LABEL
from datafirst_assets.synthetic.notes import differences_note
from datafirst_assets.synthetic.report import evaluate_synthetic, report_html, report_markdown
from datafirst_assets.synthetic.report_parts import (PARTS_FILE, dataset_fingerprints, save_parts, stored_parts,
                                                     tables_held)
from datafirst_assets.synthetic import summary_parts
from datafirst_assets.synthetic.summaries import (
    FORMAT,
    SummaryRules,
    check_summaries,
    summaries_json,
    summaries_sha256,
)
from datafirst_assets.defs.linkage import LinkageSettings
from datafirst_assets.warehouse.unchanged import (FINGERPRINT, carried_over_checks, inputs_fingerprint,
                                                  keep_stored_outputs, kept_if_unchanged, latest_metadata,
                                                  known_fingerprints, unchanged)
from datafirst_assets.warehouse.io_manager import StoredTable
from datafirst_assets.warehouse.lazy_tables import LoadedOnUse
from datafirst_assets.synthetic.tables import (
    CASE_LOOKUP_ID,
    LINKING_IDS,
    XJS_LOOKUP_ID,
    TableId,
    name_of,
    person_table,
    source_tables,
    sources,
)

SUMMARIES = AssetKey(["synthetic", "summaries"])
REPORT = AssetKey(["synthetic", "report"])
GROUP = "synthetic"
SYNTHETIC_TAGS = {"synthetic": "true"}


class SyntheticSettings(ConfigurableResource):
    """Synthetic generation: where its files go, the disclosure rules of the summaries, seed and size."""

    data_dir: str = "data"
    seed: int = 0
    scale: float = 1.0  # synthetic population as a multiple of the real one
    k: int = 10
    clip_quantile: float = 0.01
    # Incremental runs: a table keeps its approved summary, and so its synthetic table and report
    # rows, while its fresh summary drifted from it by at most this much (synthetic/refresh.py:
    # relative rows, total variation / KS distance of each marginal); 0: always the fresh summary.
    # A full run summarises and draws every table again. 0.05: a 1% extract moved the 16 changed
    # tables 0.015-0.040 at 50,000 people (README, "What a new extract does to the synthetic release"),
    # so one such extract keeps them and the second or third draws them again; lo-fi marginals 5
    # points off are still lo-fi, and fewer redraws give fewer near-copies to difference.
    refresh_tolerance: float = 0.05

    @property
    def folder(self) -> Path:
        return Path(self.data_dir) / "synthetic"

    @property
    def reports(self) -> Path:
        return Path(self.data_dir) / "reports"

    def rules(self) -> SummaryRules:
        return SummaryRules(k=self.k, clip_quantile=self.clip_quantile)


def synthetic_key(source: str, table: str) -> AssetKey:
    return table_key("synthetic", source, table)


def _input_name(prefix: str, tid: TableId) -> str:
    return f"{prefix}__{tid[0]}__{tid[1]}"


def _label_metadata(doc_sha: str, settings: SyntheticSettings) -> dict:
    return {"synthetic": True, "label": SYNTHETIC_LABEL, "summaries_sha256": doc_sha,
            "seed": settings.seed, "scale": settings.scale}


def load_summaries(stored: pl.DataFrame) -> tuple[dict, str]:
    """The summaries document as stored by `synthetic/summaries` (one row: format, sha256, JSON text)."""
    row = stored.row(0, named=True)
    if row["format"] != FORMAT:
        raise ValueError(f"synthetic/summaries holds format {row['format']!r}, expected {FORMAT!r}: re-materialise it")
    return json.loads(row["summaries_json"]), row["sha256"]


@asset(
    key=SUMMARIES,
    deps=[deidentified_key(*tid) for tid in release_tables()],  # read by handle (`stored_release_table`)
    group_name=GROUP,
    metadata={"schema": "synthetic"},
    kinds={"polars", "duckdb"},
    description="Disclosure-checked marginal summaries of every column of every release table (small cells "
    "suppressed, ranges clipped), children per parent, rows per person and the cross-justice lookup's shape: "
    "the only input of synthetic generation. Readable JSON in data/synthetic/summaries.json.",
    check_specs=[AssetCheckSpec(
        "no_small_cells", asset=SUMMARIES, blocking=True,
        description="Before storing: no published category, bin, count or lookup shape holds fewer than k people.",
    )],
)
def synthetic_summaries(context: AssetExecutionContext, synthetic: SyntheticSettings, linkage: LinkageSettings,
                        warehouse: Warehouse):
    # Read from the warehouse table by table (a parent and a child at most at once), not all together;
    # a table whose inputs are as when it was last summarised keeps that summary and is not read.
    stored = {tid: stored_release_table(warehouse.database, "deidentified", *tid) for tid in release_tables()}
    tables = LoadedOnUse(stored, keep=2)
    rules, parts_path = synthetic.rules(), synthetic.folder / summary_parts.PARTS_FILE
    full = linkage.mode == "full"
    recorded = known_fingerprints(context, {deidentified_key(*tid): t for tid, t in stored.items()})
    doc, parts = summary_parts.summarise_keeping(
        tables, summary_parts.table_fingerprints(stored, rules, recorded), rules,
        summary_parts.load_parts(parts_path) if not full else {}, 0.0 if full else synthetic.refresh_tolerance)
    kept = summary_parts.kept_within_tolerance(parts)
    text = summaries_json(doc)
    sha = summaries_sha256(doc, text)
    overview = pl.DataFrame([
        {"table": name, "rows": t["rows"], "columns": len(t.get("columns", {})),
         "values_suppressed": sum(c.get("values_suppressed", 0) for c in t.get("columns", {}).values())}
        for name, t in doc["tables"].items()
    ])
    # The output rule (no published cell under k) is a gate: checked before the summaries are stored.
    problems = check_summaries(doc)
    result = AssetCheckResult(passed=not problems, asset_key=SUMMARIES, check_name="no_small_cells", metadata={
        "small_cells": len(problems), "sample": MetadataValue.md(bullet_list(problems[:50])),
    })
    yield result
    refuse_if_failed("synthetic/summaries", [result], ["no_small_cells"])
    synthetic.folder.mkdir(parents=True, exist_ok=True)
    path = synthetic.folder / "summaries.json"
    path.write_text(text, encoding="utf-8")
    summary_parts.save_parts(parts_path, parts)
    yield Output(pl.DataFrame({"format": [FORMAT], "sha256": [sha], "summaries_json": [text]}), metadata={
        "path": MetadataValue.path(str(path)), "sha256": sha, "k": synthetic.k, "tables_read": tables.loads,
        "clip_quantile": synthetic.clip_quantile, "bytes": len(text.encode("utf-8")),
        "refresh_tolerance": 0.0 if full else synthetic.refresh_tolerance,
        # approved summaries kept although their tables changed (within the tolerance), with their drift
        "kept_within_tolerance": MetadataValue.json({n: round(d, 6) for n, d in sorted(kept.items())}),
        # every changed table's drift from its approved summary, kept or drawn again: what a tolerance would keep
        "drift_from_approved": MetadataValue.json(
            {n: round(d, 6) for n, d in sorted(summary_parts.drift_measured(parts).items())}),
        "tables": MetadataValue.md(markdown_table(overview)),
    })


def _schema_check(tid: TableId, frame: pl.DataFrame) -> AssetCheckResult:
    expected = release_tables()[tid].schema()
    differences = [f"{c}: {frame.schema.get(c)} (release: {t})" for c, t in expected.items() if frame.schema.get(c) != t]
    extra = [c for c in frame.columns if c not in expected]
    in_order = list(frame.columns) == list(expected)
    return AssetCheckResult(
        asset_key=synthetic_key(*tid), check_name="matches_release_schema",
        passed=not differences and not extra and in_order,
        metadata={"differences": MetadataValue.md(bullet_list(differences + extra)),
                  "same_order": in_order},
    )


def _out(tid: TableId) -> AssetOut:
    spec = release_tables()[tid]
    return AssetOut(
        key=synthetic_key(*tid), group_name=GROUP, metadata={"schema": f"synthetic_{tid[0]}", "synthetic": True},
        tags=SYNTHETIC_TAGS, kinds={"polars", "duckdb"},
        description=f"SYNTHETIC `{tid[0]}.{tid[1]}` ({spec.grain}): same columns, types and joins as the release "
        "table, values drawn from its disclosure-checked summaries; relationships between columns not kept.",
    )


def _check_specs(tid: TableId) -> list[AssetCheckSpec]:
    return [
        AssetCheckSpec("matches_release_schema", asset=synthetic_key(*tid), blocking=True,
                       description="Before storing: exactly the release table's columns, in its order, with its "
                       "types, and the release table's contract (keys, hash shape, ranges)."),
        AssetCheckSpec("no_identifiers", asset=synthetic_key(*tid), blocking=True,
                       description="PII gate, before storing: no value shaped like a PNC, CRO, postcode, prison "
                       "number or CRN and no withheld identifier column."),
    ]


def _gated_outputs(tables: dict, tids, sha: str, settings: SyntheticSettings,
                   fingerprint: str | dict[TableId, str] | None = None):
    """Gate results for every table, then the tables, or nothing stored when a gate failed.
    `fingerprint`: the inputs' (recorded with every table), or each table's."""
    results = []
    for tid in tids:
        schema = _schema_check(tid, tables[tid])
        contract = contract_check(synthetic_key(*tid), tables[tid], check_name="matches_release_schema")
        results.append(schema if not schema.passed else contract)
        found = scan_table(name_of(tid), tables[tid], shape_identifiers(None if tid[0] == "linking" else tid[0]))
        results.append(pii_check(synthetic_key(*tid), found))
    yield from results
    refuse_if_failed(f"synthetic tables {', '.join(name_of(t) for t in tids)}", results,
                     ["matches_release_schema", "no_identifiers"])
    for tid in tids:
        own = fingerprint.get(tid) if isinstance(fingerprint, dict) else fingerprint
        yield Output(tables[tid], output_name=tid[1], metadata={
            **_label_metadata(sha, settings), **({FINGERPRINT: own} if own else {})})


def _synthetic_source_asset(source: str):
    tids = [(source, spec.name) for spec in source_tables(source)]

    @multi_asset(
        name=f"synthetic_{source}",
        ins={"summaries": AssetIn(key=SUMMARIES)},
        outs={tid[1]: _out(tid) for tid in tids},
        check_specs=[spec for tid in tids for spec in _check_specs(tid)],
    )
    def _asset(context: AssetExecutionContext, synthetic: SyntheticSettings, linkage: LinkageSettings,
               summaries: pl.DataFrame):
        doc, sha = load_summaries(summaries)
        # The source's tables are drawn from their own summaries alone: unchanged summaries, same tables.
        own = {name_of(tid): doc["tables"].get(name_of(tid)) for tid in tids}
        fingerprint = inputs_fingerprint({}, settings=(json.dumps(own, sort_keys=True), synthetic.seed, synthetic.scale))
        # kept tables are exactly what this document draws (same own summaries, seed and scale)
        if (kept := kept_if_unchanged(context, fingerprint, linkage.mode, _label_metadata(sha, synthetic))) is not None:
            yield from kept
            return
        tables = synthesise_source(doc, source, seed=synthetic.seed, scale=synthetic.scale)
        missing = [name_of(tid) for tid in tids if tid not in tables]
        if missing:
            raise ValueError(f"the summaries have no entry for {missing}: re-materialise synthetic/summaries")
        yield from _gated_outputs(tables, tids, sha, synthetic, fingerprint)

    return _asset


def _person_columns() -> dict[str, tuple[TableId, list[str]]]:
    """Only the columns the linking tables are built from: person ids, and the two flatfiles' row keys."""
    out = {}
    for source in sources():
        spec = person_table(source)
        columns = [spec.person_key]
        if (source, spec.name) in (("magistrates", "hocas_flatfile"), ("crown_court", "xhibit_flatfile")):
            columns.append(spec.primary_key)
        out[_input_name("persons", (source, spec.name))] = ((source, spec.name), columns)
    return out


def _person_inputs() -> dict[str, AssetIn]:
    # handles, read only when a linking table is drawn again (a kept one reads nothing)
    return {name: AssetIn(key=synthetic_key(*tid), metadata={"columns": columns}, dagster_type=StoredTable)
            for name, (tid, columns) in _person_columns().items()}


def _linking_fingerprints(context, warehouse: Warehouse, doc: dict, seed: int) -> dict[TableId, str]:
    """Per linking table, the fingerprint of what it is drawn from: its own summary, the seed and the
    synthetic person tables it reads (`linking_reads`; whole tables: their writes recorded their
    fingerprints, `unchanged.known_fingerprints`). One changed table does not draw the other again."""
    read = {synthetic_key(*tid): StoredTable(warehouse.database, f"synthetic_{tid[0]}", tid[1])
            for tid, _ in _person_columns().values()}
    memo = known_fingerprints(context, read)
    return {tid: inputs_fingerprint(
        {synthetic_key(*t).to_user_string(): read[synthetic_key(*t)] for t in linking_reads(tid)}, memo=memo,
        settings=(json.dumps({name_of(tid): doc["tables"].get(name_of(tid))}, sort_keys=True), seed))
        for tid in LINKING_IDS}


def _kept_linking(context, fingerprints: dict[TableId, str], mode: str, metadata: dict) -> tuple[list, set]:
    """The linking tables whose inputs are as when they were stored: their checks carried over and their
    stored tables kept (what `kept_if_unchanged` yields for a whole step, here per table)."""
    if mode == "full":
        return [], set()
    previous = latest_metadata(context.instance, [synthetic_key(*tid) for tid in LINKING_IDS])
    kept = {tid for tid in LINKING_IDS if unchanged({synthetic_key(*tid): previous[synthetic_key(*tid)]},
                                                    fingerprints[tid], mode)}
    events = []
    for tid in sorted(kept):
        key = synthetic_key(*tid)
        context.log.info(f"{name_of(tid)}: inputs unchanged since the stored table was made: kept, not recomputed")
        events += [*carried_over_checks(context, [c for c in context.selected_asset_check_keys if c.asset_key == key]),
                   *keep_stored_outputs(fingerprints[tid], [tid[1]], metadata, {tid[1]: previous[key]})]
    return events, kept


@multi_asset(
    name="synthetic_linking",
    ins={"summaries": AssetIn(key=SUMMARIES), **_person_inputs()},
    outs={tid[1]: _out(tid) for tid in LINKING_IDS},
    check_specs=[spec for tid in LINKING_IDS for spec in _check_specs(tid)],
)
def synthetic_linking(context: AssetExecutionContext, synthetic: SyntheticSettings, linkage: LinkageSettings,
                      warehouse: Warehouse, summaries: pl.DataFrame, **persons: StoredTable):
    doc, sha = load_summaries(summaries)
    # Each table is drawn from its own summary and the synthetic person tables it reads: both as
    # before, the same table, kept (a case lookup drawn again leaves the cross-justice lookup as it is).
    fingerprints = _linking_fingerprints(context, warehouse, doc, synthetic.seed)
    kept, kept_ids = _kept_linking(context, fingerprints, linkage.mode, _label_metadata(sha, synthetic))
    yield from kept
    drawn = tuple(tid for tid in (XJS_LOOKUP_ID, CASE_LOOKUP_ID) if tid not in kept_ids)
    if not drawn:
        return
    needed = {t for tid in drawn for t in linking_reads(tid)}
    tables = {t: persons[_input_name("persons", t)].to_polars() for t in (
        (s, person_table(s).name) for s in sources()) if t in needed}
    linking = synthesise_linking(doc, tables, seed=synthetic.seed, only=drawn)
    for tid in drawn:
        if tid not in linking:
            raise ValueError(f"the summaries have no entry for {name_of(tid)}: re-materialise synthetic/summaries")
    yield from _gated_outputs(linking, drawn, sha, synthetic, fingerprints)


REPORT_CHECKS = {
    "referential_integrity": "Every foreign key and lookup id of the synthetic release resolves (100%).",
    "key_uniqueness": "Every synthetic table's unique key is unique and present (100%).",
    "shape_similarity": "Mean column-shape similarity (KS / total-variation complement) >= 0.9.",
    "dcr_vs_random": "Synthetic records are not closer to real records than random records drawn from the "
    "approved summaries (mean distance to closest record, within 3 standard errors).",
}


def _report_side(stored: dict) -> LoadedOnUse:
    """One side of the report (real or synthetic tables) read on use: held whole when its rows are
    few, else a table and its parent at a time (`tables_held`; the heights are counted by DuckDB)."""
    return LoadedOnUse(stored, keep=tables_held({key: table.count() for key, table in stored.items()}))


@asset(
    key=REPORT,
    ins={"summaries": AssetIn(key=SUMMARIES)},
    # the real and synthetic tables, read by handle (`stored_release_table`)
    deps=[key(*tid) for key in (deidentified_key, synthetic_key) for tid in release_tables()],
    group_name=GROUP,
    metadata={"schema": "synthetic"},
    kinds={"polars", "duckdb"},
    description="Fidelity and privacy of the synthetic release: column shapes, structure, referential integrity, "
    "key uniqueness, distance to closest real record against random records, replicated unique "
    "quasi-identifier combinations (data/reports/synthetic_report.{md,html}); the note on how the synthetic "
    "data differs (data/synthetic/README.md).",
    check_specs=[AssetCheckSpec(name, asset=REPORT, description=text) for name, text in REPORT_CHECKS.items()],
)
def synthetic_report(context: AssetExecutionContext, synthetic: SyntheticSettings, linkage: LinkageSettings,
                     warehouse: Warehouse, summaries: pl.DataFrame):
    doc, sha = load_summaries(summaries)
    stored = {side: {tid: stored_release_table(warehouse.database, kind, *tid) for tid in release_tables()}
              for side, kind in (("real", "deidentified"), ("synthetic", "synthetic"))}
    # A dataset whose tables and summaries are as last time keeps its rows of the last report.
    # (each table's real side: the tables its approved summary was made from, see report_parts)
    reads = summary_parts.summary_reads(summary_parts.load_parts(synthetic.folder / summary_parts.PARTS_FILE))
    recorded = known_fingerprints(context, {
        key(*tid): table for key, side in ((deidentified_key, "real"), (synthetic_key, "synthetic"))
        for tid, table in stored[side].items()})
    fingerprints = dataset_fingerprints(stored["real"], stored["synthetic"], doc, synthetic.seed, reads, recorded)
    parts = synthetic.folder / PARTS_FILE
    earlier, only = stored_parts(parts, fingerprints) if linkage.mode != "full" else (None, None)
    context.log.info(f"compared again: {'every table' if only is None else f'{len(only)} table(s)'}")
    # Each pass of the report reads the tables it compares as it reaches them (a table and its
    # parent, real and synthetic), so a large release is never in memory twice over; a small one
    # is held whole, each table read once (`tables_held`).
    real, generated = _report_side(stored["real"]), _report_side(stored["synthetic"])
    report = evaluate_synthetic(real, generated, doc, seed=synthetic.seed, only=only, earlier=earlier)
    save_parts(parts, report, fingerprints)
    paths = write_markdown_and_html(synthetic.reports, "synthetic_report", report_markdown(report),
                                    report_html(report))
    synthetic.folder.mkdir(parents=True, exist_ok=True)
    note_path = synthetic.folder / "README.md"
    note_path.write_text(differences_note(doc, seed=synthetic.seed, scale=synthetic.scale, sha256=sha,
                                          rows={name_of(tid): n for tid, n in generated.heights().items()},
                                          tolerance=synthetic.refresh_tolerance),
                         encoding="utf-8")
    yield Output(report.shapes, metadata={
        "report": MetadataValue.url(file_url(paths["html"], synthetic.data_dir)),
        "report_markdown": MetadataValue.path(str(paths["markdown"])),
        "note": MetadataValue.url(file_url(note_path, synthetic.data_dir)),
        **_report_figures(report.summary),
        "tables_compared": len(release_tables()) if only is None else len(only),  # the others' rows were kept
        "tables_read": real.loads + generated.loads,
        "summary": MetadataValue.md(paths["markdown"].read_text(encoding="utf-8")[:20_000]),
    })
    for name, failures in report.failures().items():
        yield AssetCheckResult(check_name=name, passed=not failures, metadata={
            "failures": MetadataValue.md(bullet_list(failures[:50]))})


def _report_figures(s: dict) -> dict:
    """The synthetic report's headline figures, as the report asset's page shows them."""
    return {
        "mean_shape_similarity": round(s["mean_shape_similarity"], 4),
        "min_shape_similarity": round(s["min_shape_similarity"], 4),
        "mean_structure_similarity": round(s["mean_structure_similarity"], 4),
        "referential_integrity": s["referential_integrity"], "key_uniqueness": s["key_uniqueness"],
        "dcr_tables_ok": f"{s['dcr_tables_ok']} / {s['dcr_tables']}",
        "uniques_reproduced": round(s["uniques_reproduced"], 4),
    }


def release_placeholders(defined: set[AssetKey]) -> list[AssetSpec]:
    """Release tables nobody defines yet, as external assets read from the warehouse, so the synthetic
    assets load before (and without) the release assets; once those exist no placeholder is made."""
    return [
        AssetSpec(key=deidentified_key(*tid), group_name="deidentified", metadata={"schema": f"deidentified_{tid[0]}"},
                  description="De-identified release table (defined by the release stage; placeholder).")
        .with_io_manager_key("io_manager")
        for tid in release_tables() if deidentified_key(*tid) not in defined
    ]


def synthetic_assets(defined: set[AssetKey] | None = None) -> list:
    """The synthetic assets; `defined`: asset keys already in the code location (release placeholders
    are added for release tables not among them)."""
    return [synthetic_summaries, *(_synthetic_source_asset(s) for s in sources()), synthetic_linking,
            synthetic_report, *release_placeholders(defined or set())]


def synthetic_resources(data_dir: str) -> dict:
    return {"synthetic": SyntheticSettings(data_dir=data_dir)}
