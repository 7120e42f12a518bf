"""The synthetic report's rows per dataset, kept for the next run: a dataset whose real and synthetic
tables and approved summaries did not change is not compared again.

Each report pass (column shapes, structure, integrity, privacy) gives rows per table, and a
dataset's rows depend only on its own real and synthetic tables and its summaries (the linking
tables' rows also read every dataset's synthetic person table and the two flatfiles: their
fingerprint covers those). A table's real side is the real tables its approved summary was made
from (kept within the refresh tolerance: the report keeps comparing the synthetic table with the
data it was drawn from). After each
report, `save_parts` writes every dataset's rows with the fingerprint of those inputs (row counts,
types and row hashes computed in DuckDB, the summaries, the seed and the code;
`warehouse.unchanged.inputs_fingerprint`) to `<synthetic folder>/report_parts.json`. The next
report takes the rows of each dataset whose fingerprint is unchanged (`stored_parts`) and compares
only the others; `report.merge_rows` puts the rows back in a full comparison's order, so the report
is the one a full comparison makes. A full refresh compares every table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from datafirst_assets.common.folders import write_text_atomically
from datafirst_assets.deidentify.release_spec import LINKING, release_tables
from datafirst_assets.synthetic.report import SyntheticReport, dataset_of
from datafirst_assets.synthetic.tables import CASE_LOOKUP_ID, XJS_LOOKUP_ID, TableId, name_of, person_table, sources
from datafirst_assets.warehouse.io_manager import StoredTable
from datafirst_assets.warehouse.unchanged import inputs_fingerprint

PARTS_FILE = "report_parts.json"
PASSES = ("shapes", "structure", "integrity", "privacy")
#: A side (real or synthetic) of at most this many rows in all is held whole by the report: each
#: table read once instead of once a pass (~180 bytes a row: ~90 MB at most; the demo's 153,000
#: rows a side are 27 MB). Larger releases are read two tables at a time, as they reach a pass.
HOLD_WHOLE_ROWS = 500_000


def tables_held(heights: Mapping[TableId, int], max_rows: int = HOLD_WHOLE_ROWS) -> int:
    """How many of a side's tables the report keeps in memory (`LoadedOnUse`'s ``keep``): all of them
    when their rows are few (the four passes re-read every table otherwise: 171 reads of 58 tables
    in the demo, ~0.5 s), else two (a table and its parent)."""
    return max(len(heights), 2) if sum(heights.values()) <= max_rows else 2


#: The report part of the case lookup's rows: kept with the linking dataset's other rows, and compared
#: again alone when only its inputs changed (the cross-justice lookup's rows, ~all of the linking
#: dataset's cost, are then kept). The case lookup's rows sit together in every pass, so its new
#: rows take the old ones' place (`report.merge_rows`); the cross-justice lookup's do not.
CASE_PART = f"{LINKING}.{CASE_LOOKUP_ID[1]}"


def _synthetic_read(dataset: str, tids: list[TableId]) -> list[TableId]:
    """The synthetic tables a dataset's (or part's) report rows read: its own, for the cross-justice
    lookup every dataset's person table, for the case lookup the two flatfiles it pairs."""
    if tids == [XJS_LOOKUP_ID]:
        return [*tids, *((s, person_table(s).name) for s in sources())]
    if tids == [CASE_LOOKUP_ID]:
        return [*tids, ("magistrates", "hocas_flatfile"), ("crown_court", "xhibit_flatfile")]
    return tids


def _parts() -> dict[str, list[TableId]]:
    """The report's parts: each dataset, the linking dataset's two tables apart (`CASE_PART`)."""
    parts: dict[str, list[TableId]] = {}
    for tid in release_tables():
        parts.setdefault(CASE_PART if tid == CASE_LOOKUP_ID else tid[0], []).append(tid)
    return parts


def dataset_fingerprints(real: Mapping[TableId, StoredTable], synthetic: Mapping[TableId, StoredTable],
                         doc: dict, seed: int, reads: Mapping[str, Mapping[str, str]] | None = None,
                         recorded: Mapping | None = None) -> dict[str, str]:
    """Per dataset (the linking dataset's case lookup apart, `CASE_PART`): the fingerprint of what its
    report rows are made from.

    `reads` (`summary_parts.summary_reads`): per table, the fingerprints of the real tables its
    approved summary was made from. A table's real side is those: a summary kept within the refresh
    tolerance keeps its synthetic table, and its report rows, which compare that table with the real
    tables the summary was made from. Without them the real tables are fingerprinted as they are.
    `recorded`: table fingerprints known already (`unchanged.recorded_fingerprints`): not hashed again."""
    # memo: a person table read by two datasets is hashed once
    fingerprints, reads, memo = {}, reads or {}, dict(recorded or {})
    for dataset, tids in _parts().items():
        recorded = {name_of(tid): reads[name_of(tid)] for tid in tids if reads.get(name_of(tid))}
        tables = {**{f"real.{tid[1]}": real[tid] for tid in tids if tid in real and name_of(tid) not in recorded},
                  **{f"synthetic.{name_of(tid)}": synthetic[tid]
                     for tid in dict.fromkeys(_synthetic_read(dataset, tids)) if tid in synthetic}}
        own = json.dumps({name_of(tid): doc.get("tables", {}).get(name_of(tid)) for tid in tids}, sort_keys=True)
        fingerprints[dataset] = inputs_fingerprint(
            tables, settings=(own, seed, json.dumps(recorded, sort_keys=True)), memo=memo)
    return fingerprints


def stored_parts(path: Path, fingerprints: Mapping[str, str]) -> tuple[SyntheticReport | None, set[TableId] | None]:
    """The stored rows of the datasets whose fingerprint is unchanged, and the tables to compare now
    (None, None: nothing stored to use, compare every table). The linking dataset's rows are kept
    when its cross-justice lookup's part is unchanged; its case lookup's rows among them, when
    that part changed, are compared again and take the stale rows' place (`report.merge_rows`)."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    kept = {d for d, fingerprint in fingerprints.items()
            if stored.get("datasets", {}).get(d, {}).get("fingerprint") == fingerprint}
    if not kept - {CASE_PART}:
        return None, None
    frames = {}
    for name in PASSES:
        schema = {column: getattr(pl, dtype) for column, dtype in stored["schemas"][name].items()}
        rows = [row for d in sorted(kept - {CASE_PART}) for row in stored["datasets"][d][name]]
        frames[name] = pl.DataFrame(rows, schema=schema, orient="row")
    only = {tid for tid in release_tables() if tid[0] not in kept}
    if LINKING in kept and CASE_PART not in kept:
        only.add(CASE_LOOKUP_ID)
    return SyntheticReport(frames["shapes"], frames["structure"], frames["integrity"], frames["privacy"]), only


def save_parts(path: Path, report: SyntheticReport, fingerprints: Mapping[str, str]) -> None:
    """Every dataset's rows of `report` with its fingerprint (written whole, then renamed into place)."""
    frames = {name: getattr(report, name) for name in PASSES}
    datasets = {}
    for dataset, fingerprint in fingerprints.items():
        datasets[dataset] = {"fingerprint": fingerprint, **{
            name: frame.filter(dataset_of(pl.col("table")) == dataset).rows() for name, frame in frames.items()}}
    document = {"schemas": {name: {c: str(t.base_type()) for c, t in frame.schema.items()}
                            for name, frame in frames.items()}, "datasets": datasets}
    write_text_atomically(path, json.dumps(document))
