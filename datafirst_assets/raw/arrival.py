"""Is a delivery in the landing zone complete, still arriving, or corrupt?

What the landing sensor asks of every `<landing>/<source>/<YYYY-MM-DD>/` folder. Senders copy the
data files first and write `manifest.json` last, so:

- complete: the manifest parses, names this source and date, lists every table of the source and
  no other, names only files inside the folder, and every listed file is there with the manifest's
  sha256 and record count (records, not lines: a quoted field may hold line breaks);
- incomplete (still copying; skipped and looked at again on the next tick): no manifest yet; a
  listed file not there yet; a file whose checksum does not match but which holds fewer records
  than the manifest declares, or ends inside a quoted field or without its final line break (a
  file being copied is a prefix of the final one), or was modified in the last `settle_seconds`; a manifest that does not parse and was modified in the last
  `settle_seconds` (caught mid-write);
- corrupt (reported, not run): a manifest that does not parse once it has settled, or names another
  source or date, lacks a table, names an unknown table or a file outside the folder; a complete-
  looking file with the wrong checksum once it has settled (altered, not truncated); a file whose
  checksum matches but whose record count differs from the manifest's (the manifest is wrong).

A file that stops growing short of its declared size stays incomplete: nothing can tell a slow
copy from an abandoned one, so the sensor calls it stalled (a warning) after a while instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from datafirst_assets.raw.delivery import (
    MANIFEST,
    DeliveryError,
    check_manifest,
    read_manifest,
    scan_records,
    sha256_file,
)
from datafirst_assets.sources.spec import SourceSpec

COMPLETE, INCOMPLETE, CORRUPT = "complete", "incomplete", "corrupt"


@dataclass(frozen=True)
class Arrival:
    source: str
    extract_date: str
    state: str
    problems: tuple[str, ...] = ()
    manifest_sha256: str | None = None
    # Newest modification time of anything in the folder: how long it has been quiet.
    last_change: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.source}/{self.extract_date}"

    @property
    def reason(self) -> str:
        return "; ".join(self.problems)


def folder_signature(folder: Path) -> str:
    """Names, sizes and modification times of everything in a delivery: changes when anything is touched."""
    entries = sorted(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).iterdir() if p.is_file()
    )
    return repr(entries)


def _last_change(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.iterdir() if p.is_file()), default=folder.stat().st_mtime)


def inspect_delivery(folder: Path, source_spec: SourceSpec, settle_seconds: float = 60.0,
                     now: float | None = None) -> Arrival:
    """Classify one delivery folder (see the module docstring)."""
    folder = Path(folder)
    source, extract_date = folder.parent.name, folder.name
    now = time.time() if now is None else now
    last_change = _last_change(folder)

    def arrival(state: str, *problems: str, **extra) -> Arrival:
        return Arrival(source, extract_date, state, tuple(problems), last_change=last_change, **extra)

    def settled(path: Path) -> bool:
        return now - path.stat().st_mtime >= settle_seconds

    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        return arrival(INCOMPLETE, f"no {MANIFEST} yet")
    try:
        manifest = read_manifest(folder)
    except DeliveryError as error:
        if not settled(manifest_path):
            return arrival(INCOMPLETE, f"{MANIFEST} is still being written")
        return arrival(CORRUPT, str(error))
    try:
        check_manifest(manifest, folder, source_spec)
    except DeliveryError as error:
        return arrival(CORRUPT, str(error))

    corrupt, incomplete = [], []
    for entry in manifest.tables.values():
        path = folder / entry.file
        if not path.exists():
            incomplete.append(f"{entry.file} not delivered yet")
            continue
        matches = sha256_file(path) == entry.sha256
        scan = scan_records(path, source_spec.delimiter)
        records = scan.records
        cut_short = scan.unterminated_quote_line is not None or not scan.ends_with_newline
        if matches and (records != entry.rows or scan.unterminated_quote_line is not None):
            corrupt.append(f"{path}: checksum matches but it holds {records} records"
                           + (f" and a quote opened on line {scan.unterminated_quote_line} never closes"
                              if scan.unterminated_quote_line else "")
                           + f"; the manifest says {entry.rows}")
        elif not matches and (records < entry.rows or cut_short or not settled(path)):
            incomplete.append(f"{entry.file}: {records} of {entry.rows} records so far")
        elif not matches:
            corrupt.append(f"{path}: sha256 does not match the manifest although all {entry.rows} records are "
                           f"there ({records}): altered or corrupt, not half-copied")
    if corrupt:
        return arrival(CORRUPT, *corrupt)
    if incomplete:
        return arrival(INCOMPLETE, *incomplete)
    return arrival(COMPLETE, manifest_sha256=manifest.checksum)
