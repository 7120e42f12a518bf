"""Malformed rows on request: what a real extract holds now and then.

`datafirst simulate --malformed-rate R` spoils a share R of the rows of each delivered file, one
fault per spoiled row, each one ingest must quarantine with a reason:

- bad date        an impossible date (30 February) in the source's own date format
- stray delimiter an unquoted delimiter inside a field: the row has one field too many
- junk code       a code outside the column's list (`Z_DUMMY`)
- overlong field  a text field run on to thousands of characters
- control char    a NUL byte inside a text or name field

Only tables no other table points at are spoiled: a quarantined parent row would leave its
children's references dangling, which is a different fault from the one being shown. With R = 0
nothing here runs, so the simulator's output is byte-for-byte what it was without this module.
Faults are drawn from their own random stream (seed, source, table, delivery, chunk), never from
the simulator's streams.
"""

from __future__ import annotations

import zlib

import numpy as np
import polars as pl

from datafirst_assets.sources.spec import ColumnSpec, SourceSpec, TableSpec

# Stands in for the delimiter until the CSV is written (the writer would quote a real one).
STRAY_DELIMITER_MARK = "\x1e"
OVERLONG_CHARACTERS = 5_000
JUNK_CODE = "Z_DUMMY"


def impossible_date(date_format: str) -> str:
    """30 February 2024 written in a strptime format (it cannot be formatted by strftime)."""
    return (date_format.replace("%Y", "2024").replace("%y", "24").replace("%m", "02")
            .replace("%d", "30").replace("%b", "Feb").replace("%B", "February"))


def _faults(table: TableSpec) -> dict[str, list[ColumnSpec]]:
    """Each fault this table can show, with the columns it can show it in."""
    texts = [c for c in table.columns if c.kind in ("text", "name")]
    faults = {
        "bad_date": [c for c in table.columns if c.kind == "date"],
        "stray_delimiter": [c for c in table.columns if c.kind not in ("id", "ref")],
        "junk_code": [c for c in table.columns if c.kind == "code" and c.codes],
        "overlong": texts,
        "control_char": texts,
    }
    return {fault: columns for fault, columns in faults.items() if columns}


def spoilable(source: SourceSpec, table: TableSpec) -> bool:
    return not any(t.parent == table.name for t in source.tables)


class Malformer:
    """Spoils rows of one delivered file, chunk by chunk."""

    def __init__(self, rate: float, seed: int, source: SourceSpec, table: TableSpec, delivery: int):
        self.rate = rate
        self.source = source
        self.table = table
        self.faults = _faults(table)
        self._rng = np.random.default_rng(
            [seed, zlib.crc32(f"{source.key}/{table.name}".encode()), delivery])
        self.spoiled: dict[str, int] = {}

    def spoil(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The frame with a share `rate` of its rows spoiled (all columns are text)."""
        rows = np.flatnonzero(self._rng.random(frame.height) < self.rate)
        if not len(rows) or not self.faults:
            return frame
        names = sorted(self.faults)
        columns = {name: frame[name].to_list() for name in frame.columns}
        for row in rows:
            fault = names[self._rng.integers(len(names))]
            candidates = self.faults[fault]
            column = candidates[self._rng.integers(len(candidates))].name
            columns[column][row] = self._spoiled_value(fault, columns[column][row])
            self.spoiled[fault] = self.spoiled.get(fault, 0) + 1
        return pl.DataFrame({name: pl.Series(name, values, dtype=pl.String) for name, values in columns.items()})

    def _spoiled_value(self, fault: str, value: str | None) -> str:
        value = value or "X"
        if fault == "bad_date":
            return impossible_date(self.source.date_format)
        if fault == "stray_delimiter":
            if self.source.delimiter in value or '"' in value:
                value = "XY"  # a value the writer would quote: the stray delimiter would be quoted too
            middle = max(len(value) // 2, 1)
            return value[:middle] + STRAY_DELIMITER_MARK + value[middle:]
        if fault == "junk_code":
            return JUNK_CODE
        if fault == "overlong":
            return (value + " ") * (OVERLONG_CHARACTERS // (len(value) + 1) + 1)
        return value[:1] + "\x00" + value[1:]

    def finish_bytes(self, data: bytes) -> bytes:
        """Turn the stray-delimiter marks into real, unquoted delimiters in the written CSV."""
        return data.replace(STRAY_DELIMITER_MARK.encode(), self.source.delimiter.encode())
