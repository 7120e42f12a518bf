"""Each release table's summary, kept for the next run with the tables it was made from: a table
whose inputs did not change is not read or summarised again.

The summaries asset summarised every release table on every run, reading the whole release,
although an extract usually changes some datasets only. A table's summary is made from the table
itself and what `summaries.summarise_one` reads besides it (its parent; for the case lookup, Crown
Court's flatfile): the tables it reads are recorded as it runs (`_Recorded`). `save_parts` writes
each summary with the fingerprints of the tables it read (row counts, types and row hashes computed
in DuckDB, with the summary rules and the code: `warehouse.unchanged.inputs_fingerprint`) to
`<synthetic folder>/summary_parts.json`; the next run takes a table's stored summary when every
table it read has the same fingerprint, and summarises the others. The document is the one
summarising every table gives (JSON keeps the summary exactly). A full refresh summarises all.

With a refresh tolerance (`synthetic/refresh.py`), a table whose inputs changed is summarised again
and its fresh summary compared with the stored (approved) one: within the tolerance, the approved
summary is kept, with the fingerprints of the tables it was made from (so the synthetic table drawn
from it and its report rows are kept too), and the drift is recorded; beyond it, the fresh summary
replaces it. Tolerance 0 gives the document summarising every table gives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path

import polars as pl

from datafirst_assets.common.folders import write_text_atomically
from datafirst_assets.synthetic.refresh import drift
from datafirst_assets.synthetic.summaries import SummaryRules, summarise_one, summarise_release
from datafirst_assets.synthetic.tables import TableId, name_of
from datafirst_assets.warehouse.io_manager import StoredTable
from datafirst_assets.warehouse.unchanged import inputs_fingerprint

PARTS_FILE = "summary_parts.json"


class _Recorded(Mapping):
    """`tables`, remembering which keys were read."""

    def __init__(self, tables: Mapping[TableId, pl.DataFrame]):
        self._tables, self.read = tables, set()

    def __getitem__(self, key: TableId) -> pl.DataFrame:
        self.read.add(key)
        return self._tables[key]

    def __iter__(self) -> Iterator[TableId]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)

    def __contains__(self, key: object) -> bool:
        return key in self._tables


def table_fingerprints(stored: Mapping[TableId, StoredTable], rules: SummaryRules,
                       memo: dict | None = None) -> dict[str, str]:
    """Each table's fingerprint (by table name), with the summary rules and the code. `memo`: table
    fingerprints known already (`unchanged.recorded_fingerprints`), the others are hashed."""
    memo = {} if memo is None else memo
    return {name_of(tid): inputs_fingerprint({"table": table}, settings=asdict(rules), memo=memo)
            for tid, table in stored.items()}


def load_parts(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def summarise_keeping(tables: Mapping[TableId, pl.DataFrame], fingerprints: Mapping[str, str], rules: SummaryRules,
                      parts: Mapping, tolerance: float = 0.0) -> tuple[dict, dict]:
    """The summaries document, taking each stored summary (`parts`, as `load_parts` reads it) whose
    tables all have the same fingerprint now, or (`tolerance` > 0) whose fresh summary drifted from
    it by at most `tolerance`; and the parts to store for the next run (a kept-within-tolerance
    entry keeps the fingerprints it was made from and records its `drift`; `compared` holds every
    drift measured, kept or not)."""
    stored, made, compared = parts.get("tables", {}), {}, {}
    if parts.get("rules") != asdict(rules):
        tolerance = 0.0  # summaries approved under other rules (another k) are never "close enough"

    def same(read: Mapping | None) -> bool:
        return bool(read) and all(fingerprints.get(n) == f for n, f in read.items())

    def summarise(tid: TableId) -> dict:
        entry = stored.get(name_of(tid))
        # made from these very tables, or kept within the tolerance when they were as they are now
        if entry and same(entry.get("read")):  # the tables are again those it was made from: exact
            made[name_of(tid)] = {"read": entry["read"], "summary": entry["summary"]}
            return entry["summary"]
        if entry and tolerance > 0 and same(entry.get("checked")):  # kept within the tolerance for these tables
            made[name_of(tid)] = entry
            return entry["summary"]
        recorded = _Recorded(tables)
        summary = json.loads(json.dumps(summarise_one(tid, recorded, rules)))  # as it would be stored
        if entry and entry.get("read") and tolerance > 0:
            moved = compared[name_of(tid)] = drift(entry["summary"], summary)
            if moved <= tolerance:
                checked = {name_of(t): fingerprints.get(name_of(t)) for t in sorted(recorded.read)}
                made[name_of(tid)] = {"read": entry["read"], "summary": entry["summary"], "drift": moved,
                                      "checked": checked}
                return entry["summary"]
        made[name_of(tid)] = {"read": {name_of(t): fingerprints.get(name_of(t)) for t in sorted(recorded.read)},
                              "summary": summary}
        return summary

    doc = summarise_release(tables, rules, summarise=summarise)
    # through JSON, as the stored ones came: the same document whether a summary was kept or made
    return json.loads(json.dumps(doc)), {"rules": asdict(rules), "tables": made, "compared": compared}


def kept_within_tolerance(parts: Mapping) -> dict[str, float]:
    """Tables whose approved summary was kept although their inputs changed, with how far they drifted."""
    return {name: entry["drift"] for name, entry in parts.get("tables", {}).items() if "drift" in entry}


def drift_measured(parts: Mapping) -> dict[str, float]:
    """Every table whose fresh summary was compared with its approved one this run, with the drift
    (kept ones too): how close the tables beyond the tolerance came, to set it from evidence."""
    return dict(parts.get("compared", {}))


def summary_reads(parts: Mapping) -> dict[str, dict[str, str]]:
    """Per table: the fingerprints of the tables its summary in the document was made from."""
    return {name: dict(entry.get("read", {})) for name, entry in parts.get("tables", {}).items()}


def save_parts(path: Path, parts: dict) -> None:
    write_text_atomically(path, json.dumps(parts))
