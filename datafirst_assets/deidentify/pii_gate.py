"""The PII gate: scan every column of a release table for anything that identifies a person.

A release table fails if any column
  * is named like a withheld identifier (surname, dob, postcode, pnc_id, ...),
  * holds values shaped like a PNC id, CRO number, full postcode, prison number or probation CRN,
  * holds values equal to a raw name, address or raw system id of the same dataset,
  * holds, in any date column, a row's own date of birth.

Hashes (64 hex characters), codes and ages pass. The gate names table, column and identifier
class, with a count and a masked example, so a failure can be traced without printing PII.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache

import duckdb
import polars as pl

from datafirst_assets.common.partitions import PARTITION_COLUMN
from datafirst_assets.common.sql import quote_identifier, quote_literal

from datafirst_assets.deidentify.release_spec import SYSTEM_ID_TEXT_COLUMNS
from datafirst_assets.sources.spec import SourceSpec, TableSpec
from datafirst_assets.warehouse.content import row_hash_sum

# Shapes of identifiers as they appear in raw extracts (before or after normalisation).
IDENTIFIER_PATTERNS = {
    "pnc": r"\b\d{2}(?:\d{2})?/\d{1,7}[A-Z]\b",
    "cro": r"\b\d{1,6}/\d{2}[A-Z]\b",
    "postcode": r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b",
    "prison_number": r"\b[A-Z]\d{4}[A-Z]{2}\b",
    "crn": r"\b[A-Z]\d{6}\b",
}
#: The raw-value comparison of a table's text columns takes whole columns until it holds this many
#: distinct values (at a million people a table's hashed ids alone run to millions).
SCAN_BATCH_VALUES = 2_000_000
#: A value with any of the shapes (the patterns joined: a value matches it when it matches one).
ANY_IDENTIFIER_PATTERN = "|".join(f"(?:{pattern})" for pattern in IDENTIFIER_PATTERNS.values())
IDENTIFIER_KINDS = {"name": "name", "dob": "date_of_birth", "postcode": "postcode", "pnc": "pnc", "cro": "cro"}
# Raw values this short are codes as often as names or ids ("ALI", "101"): comparing them would
# flag category codes, so equality checks start at these lengths.
MIN_NAME_LENGTH = 4
# Column names that say "identifier" whatever the source calls its own columns.
ALWAYS_WITHHELD_NAMES = ("address_line1", "dob", "date_of_birth", "birth_date", "forename", "surname")
MIN_SYSTEM_ID_LENGTH = 5


@dataclass(frozen=True)
class Finding:
    table: str
    column: str
    identifier: str  # class: name, date_of_birth, pnc, cro, postcode, prison_number, crn, system_id, address
    rows: int
    example: str  # masked

    def __str__(self) -> str:
        return f"{self.table}.{self.column}: {self.identifier} in {self.rows} row(s) (e.g. {self.example})"


@dataclass
class RawIdentifiers:
    """The identifying values of one dataset's raw rows, to compare release values against.

    `series_only`: the values are held as their `series` only and the three sets are left empty
    (`raw_identifiers(..., sets=False)`, for a scan, which reads the series: at 300,000 people
    making the sets was a fifth of reading a dataset's identifiers); such identifiers cannot be merged."""

    names: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)
    system_ids: set[str] = field(default_factory=set)
    column_names: set[str] = field(default_factory=set)
    _series: dict = field(default_factory=dict, repr=False, compare=False)
    series_only: bool = False

    def series(self, kind: str) -> pl.Series:
        """One kind ("name", "address", "system_id") as a polars Series, built once: scanning
        every column against a set rebuilt as a list each time took most of the
        de-identification's time (54 of 93 s for magistrates at 100,000 people)."""
        cached = self._series.get(kind)
        if self.series_only:
            return cached[1] if cached is not None else pl.Series(kind, [], dtype=pl.String)
        values = {"name": self.names, "address": self.addresses, "system_id": self.system_ids}[kind]
        if cached is None or cached[0] != len(values):
            cached = (len(values), pl.Series(kind, list(values), dtype=pl.String))
            self._series[kind] = cached
        return cached[1]

    def update(self, other: "RawIdentifiers") -> "RawIdentifiers":
        if self.series_only or other.series_only:
            raise ValueError("identifiers held as series only cannot be merged")
        self.names |= other.names
        self.addresses |= other.addresses
        self.system_ids |= other.system_ids
        self._series.clear()
        self.column_names |= other.column_names
        return self


def mask(value: object) -> str:
    text = str(value)
    return text[:1] + "*" * max(len(text) - 2, 1) + text[-1:] if len(text) > 2 else "**"


def identifying_columns(table) -> list[str]:
    """The staged columns `raw_identifiers` reads from a table (names, address, system ids)."""
    return [c.name for c in table.columns
            if c.kind in ("name", "id", "ref") or c.name == "address_line1" or c.name in SYSTEM_ID_TEXT_COLUMNS]


def identifier_columns(table: TableSpec) -> dict[str, tuple[list[str], int]]:
    """Per identifier kind ("name", "address", "system_id"), the columns of `table` whose values are
    raw identifiers of that kind, and the shortest value kept as one."""
    kinds = {c.name: c.kind for c in table.columns}
    return {"name": ([n for n, k in kinds.items() if k == "name"], MIN_NAME_LENGTH),
            "address": (["address_line1"] if "address_line1" in kinds else [], MIN_NAME_LENGTH),
            "system_id": ([n for n, k in kinds.items() if k in ("id", "ref") or n in SYSTEM_ID_TEXT_COLUMNS],
                          MIN_SYSTEM_ID_LENGTH)}


def raw_identifiers(source: SourceSpec, staged: Mapping[str, pl.DataFrame], *, sets: bool = True) -> RawIdentifiers:
    """Names, addresses and system ids found in a dataset's staged tables (all columns of those kinds).

    Each kind's values are gathered as one polars Series first, made distinct, and kept as the
    kind's `series` too: a set per column, then the set made a Series again for the scans, cost
    most of reading a dataset's identifiers (the release reads every dataset's on each run).
    `sets=False`: the series only (`RawIdentifiers.series_only`), for a caller that only scans."""
    found = RawIdentifiers(column_names=set(ALWAYS_WITHHELD_NAMES), series_only=not sets)
    parts: dict[str, list[pl.Series]] = {"name": [], "address": [], "system_id": []}
    for table in source.tables:
        frame = staged.get(table.name)
        found.column_names |= {c.name for c in table.columns
                               if c.kind in IDENTIFIER_KINDS or c.name in SYSTEM_ID_TEXT_COLUMNS}
        if frame is None:
            continue
        for kind, (columns, shortest) in identifier_columns(table).items():
            parts[kind] += [_normalised(frame[c], shortest) for c in columns if c in frame.columns]
    targets = {"name": found.names, "address": found.addresses, "system_id": found.system_ids}
    for kind, series in parts.items():
        if series:
            values = pl.concat(series).unique().alias(kind)
            if sets:
                targets[kind].update(values.to_list())
            found._series[kind] = (len(targets[kind]), values)  # the same values: `series` needs not rebuild it
    return found


def _normalised(values: pl.Series, min_length: int) -> pl.Series:
    """A column's non-null values as the gate compares them: stripped, upper case, at least `min_length`
    characters (a Python test per value took most of the time: the length is filtered in polars)."""
    series = values.cast(pl.String).str.strip_chars().str.to_uppercase().drop_nulls()
    return series.filter(series.str.len_chars() >= min_length).alias("v")


def _members(values: pl.Series, known: pl.Series) -> pl.Series:
    """The `values` found in `known`, in `values`' order: `values.filter(values.is_in(known))`, but
    with the hash table built on the smaller side. `is_in` hashes `known` on every call, and a
    dataset's raw ids run to hundreds of thousands: one build per scanned column (a two-value `sex`
    column included) was most of the PII scan's time (0.2 s a column at 50,000 people)."""
    if values.len() >= known.len():
        return values.filter(values.is_in(known))
    shared = known.filter(known.is_in(values))
    return values.filter(values.is_in(shared))


def shape_findings(table: str, column: str, values: pl.Series, codes: Iterable[str] = (),
                    shapes: bool = True) -> tuple[pl.Series, list[Finding]]:
    """A column's distinct ``values`` normalised as they are compared with raw values (less its
    declared ``codes``, which are not compared with raw names, addresses or ids), and the
    identifier shapes found in them (none when not ``shapes``)."""
    findings = []
    normalised = values.cast(pl.String).str.strip_chars().str.to_uppercase()
    # A whole 64-hex hash is one word: no pattern (each bounded by \b, shorter) can match inside
    # it, so hashed columns skip the pattern scan (most of its time at scale).
    unhashed = normalised.filter(~normalised.str.contains(r"^[0-9A-F]{64}$")) if shapes else normalised.head(0)
    # one pass for every shape first: most columns hold none, and then need no pass per shape
    if unhashed.len() and unhashed.str.contains(ANY_IDENTIFIER_PATTERN).any():
        for identifier, pattern in IDENTIFIER_PATTERNS.items():
            hits = unhashed.filter(unhashed.str.contains(pattern))
            if hits.len():
                findings.append(Finding(table, column, identifier, hits.len(), mask(hits[0])))
    declared = [str(c).upper() for c in codes]
    if declared:
        normalised = normalised.filter(~normalised.is_in(declared))
    return normalised, findings


def raw_value_findings(labels: list[tuple[str, str]], values: pl.DataFrame, raw: RawIdentifiers) -> dict[int, list[Finding]]:
    """The raw names, addresses and system ids among normalised values (``values``: ``g``, the
    position in ``labels`` of the (table, column) a value ``v`` is from): per position, one finding
    per kind found (name, address, system_id, in that order), counting the values and showing the
    first. One pass per kind over every column at once: a pass per column and kind, each probing
    a dataset's raw values, was most of the scans' time (1,100 passes in the demo's releases)."""
    found: dict[int, list[Finding]] = {}
    for identifier in ("name", "address", "system_id"):
        known = raw.series(identifier)
        if not known.len() or values.is_empty():
            continue
        hits = values.filter(pl.col("v").is_in(_members(known, values.get_column("v")).implode()))
        for g, rows, first in hits.group_by("g", maintain_order=True).agg(pl.len(), pl.col("v").first()).iter_rows():
            table, column = labels[g]
            found.setdefault(g, []).append(Finding(table, column, identifier, rows, mask(first)))
    return found


def scan_table(table: str, released: pl.DataFrame, raw: RawIdentifiers, *,
               dates_of_birth: pl.Series | None = None,
               codes: Mapping[str, Iterable[str]] | None = None, shapes: bool = True) -> list[Finding]:
    """Every identifier found in `released`; `dates_of_birth` is aligned row by row with it; `codes`:
    each code column's declared values (a code equal to a raw name is not a name). `shapes=False`
    leaves out the identifier shapes (for values already scanned for them against other raw values).
    Findings column by column: withheld column names, then per column its shapes, raw values
    (`raw_value_findings`) and dates of birth."""
    findings = [
        Finding(table, column, "withheld column name", released.height, column)
        for column in released.columns if column.lower() in raw.column_names
    ]
    per_column: list[list[Finding]] = []
    texts: list[pl.DataFrame] = []
    labels = [(table, c) for c in released.columns]
    by_column: dict[int, list[Finding]] = {}
    for column in released.columns:
        series, found = released[column], []
        if series.dtype == pl.String:
            normalised, found = shape_findings(table, column, series.drop_nulls().unique(),
                                                (codes or {}).get(column, ()), shapes)
            texts.append(pl.DataFrame({"g": len(per_column), "v": normalised}, schema={"g": pl.Int64, "v": pl.String}))
            if sum(t.height for t in texts) >= SCAN_BATCH_VALUES:  # whole columns, a bounded number of values at once
                by_column |= raw_value_findings(labels, pl.concat(texts), raw)
                texts = []
        elif series.dtype in (pl.Date, pl.Datetime) and dates_of_birth is not None:
            if dates_of_birth.len() != released.height:
                raise ValueError(f"{table}: dates of birth are not aligned with the released rows")
            same = (series.cast(pl.Date) == dates_of_birth.cast(pl.Date)).fill_null(False)
            if same.any():
                found = [Finding(table, column, "date_of_birth", int(same.sum()), mask(series.filter(same)[0]))]
        per_column.append(found)
    if texts:
        by_column |= raw_value_findings(labels, pl.concat(texts), raw)
    for g, found in enumerate(per_column):
        findings += found + by_column.get(g, [])
    return findings


def findings_markdown(findings: list[Finding]) -> str:
    if not findings:
        return "No identifier found."
    return "\n".join(f"- {f}" for f in findings)


def shape_identifiers(dataset: str | None = None) -> RawIdentifiers:
    """What a table made without raw rows (synthetic, derived) is scanned for: identifier shapes
    (always) and the withheld column names of `dataset` (all datasets when None)."""
    from datafirst_assets.sources.registry import SOURCES  # the registry imports nothing from here

    found = RawIdentifiers(column_names=set(ALWAYS_WITHHELD_NAMES))
    for source in SOURCES.values():
        if dataset not in (None, source.key):
            continue
        for table in source.tables:
            found.column_names |= {c.name for c in table.columns
                                   if c.kind in IDENTIFIER_KINDS or c.name in SYSTEM_ID_TEXT_COLUMNS}
    return found


# ---------------------------------------------------------------- raw identifiers stored for the gate
# Each dataset's raw identifiers as the publish gate compares them, kept in the warehouse and
# extended by each new extract instead of made again from every staged row on every release.
#
# The publish gate compares released values with a dataset's raw names, addresses and system ids:
# every value of those columns of its staged tables, normalised (`pii_gate.raw_identifiers`) and
# made distinct. Read and normalised from every staged row, that cost each release in proportion to
# everything ever staged (at 300,000 people a sixth of an incremental de-identified release, and most
# of a synthetic one whose tables had not changed: the catalogues are scanned against every dataset).
#
# The distinct normalised values are kept in `release_gate.identifiers` (dataset, kind, value), with
# the staged partitions they were made from in `release_gate.identifier_parts` (dataset, table,
# partition, content: the version of the normalising code (`_normalising_version`), the columns read
# and the partition's row count and sum of row hashes over those columns only, in DuckDB). A dataset's
# identifiers are then:
#
# * every recorded partition still staged with the same content: the stored values, with those of the
#   partitions staged since (read, normalised and added; then recorded);
# * otherwise (a partition changed or gone, or other normalising code): made again from every staged row.
#
# Exact, not approximate: normalising is value by value, so the distinct values of all partitions are
# the union of each partition's distinct values; a recorded partition is reused only while its
# identifying columns hold the same rows (the same row-count-and-hash-sum test by which unchanged
# steps keep their tables, `warehouse.content`). The table holds raw identifiers, as the staged tables
# beside it do; it is never released.

STORED_SCHEMA = "release_gate"
STORED_VALUES = f"{STORED_SCHEMA}.identifiers"
STORED_PARTS = f"{STORED_SCHEMA}.identifier_parts"
KINDS = ("name", "address", "system_id")


@cache
def _normalising_version() -> str:
    """What the stored values depend on besides the staged rows: the code that reads and normalises
    them, its lengths and the polars that normalises (stripping and upper-casing are polars'); not
    the package's whole code version, which any change of any module changes: the first release
    after every change would make every dataset's values again (~5 s more at 300,000 people)."""
    code = "".join(inspect.getsource(f) for f in (identifying_columns, identifier_columns, raw_identifiers, _normalised))
    return hashlib.sha256(f"{code}|{MIN_NAME_LENGTH}|{MIN_SYSTEM_ID_LENGTH}|{pl.__version__}".encode()).hexdigest()


def _staged(source: SourceSpec, table) -> str:
    return f"staged_{source.key}.{quote_identifier(table.name)}"


#: (database file, run id, dataset) -> `partition_contents` as a release step of that run hashed them in
#: this process (`stored_identifiers(..., verified=...)`); only the latest run's are kept.
_VERIFIED_PARTS: dict[tuple[str, str, str], dict[tuple[str, str], str]] = {}


def _verified_partition_contents(conn: duckdb.DuckDBPyConnection, source: SourceSpec,
                                 verified: tuple[str, str] | None) -> dict[tuple[str, str], str]:
    """`partition_contents`, taken from an earlier call of the same run (`verified`: database file and
    run id) in this process instead of hashing every staged row again. Both releases of a run compare
    with every dataset's raw identifiers (the synthetic one for its catalogues), and each hashed every
    staged partition's identifying columns: ~0.5 CPU s at 300,000 people, the same staged rows twice.
    Within a run they cannot differ: the staged tables are upstream of both releases, so the run stages
    before either release starts and writes no staged row after (the premise of
    `warehouse.content.checked_fingerprints`); another run, or no run given, hashes them again."""
    if verified is None:
        return partition_contents(conn, source)
    key = (*verified, source.key)
    if key not in _VERIFIED_PARTS:
        _remember_verified_parts(verified, source, partition_contents(conn, source))
    return dict(_VERIFIED_PARTS[key])


def _remember_verified_parts(verified: tuple[str, str], source: SourceSpec, parts: dict[tuple[str, str], str]) -> None:
    database, run_id = verified
    for other in [k for k in _VERIFIED_PARTS if k[:2] != (database, run_id)]:
        del _VERIFIED_PARTS[other]  # an earlier run's: never valid again
    _VERIFIED_PARTS[(database, run_id, source.key)] = dict(parts)


def partition_contents(conn: duckdb.DuckDBPyConnection, source: SourceSpec) -> dict[tuple[str, str], str]:
    """(staged table, partition) -> what its identifying columns hold (with the code version), in one
    pass per staged table in DuckDB; tables never staged are left out (as `raw_identifiers` leaves them)."""
    return _partition_contents(conn, source)[0]


def _partition_contents(conn: duckdb.DuckDBPyConnection, source: SourceSpec, *,
                        whole: bool = False) -> tuple[dict[tuple[str, str], str], dict[str, tuple[int, int]]]:
    """`partition_contents` and, with `whole`, from the same pass, each staged table's row count and sum
    of whole-row hashes (`warehouse.content.content_sums` of the table: a row's hash is its struct's,
    field names aside, so the partitions' sums add up to the table's)."""
    found, sums = {}, {}
    for table in source.tables:
        names = [PARTITION_COLUMN, *identifying_columns(table)]
        columns = ", ".join(map(quote_identifier, names[1:]))
        if whole:
            query = (f"select cast({PARTITION_COLUMN} as varchar), count(*), "
                     f"coalesce(sum(hash(row({', '.join(f'_t.{quote_identifier(n)}' for n in names)}))::hugeint), 0), "
                     f"{row_hash_sum('_t')} from (select * from {_staged(source, table)}) _t group by 1")
        else:
            query = (f"select cast({PARTITION_COLUMN} as varchar), count(*), {row_hash_sum('_t')} "
                     f"from (select {PARTITION_COLUMN}, {columns} from {_staged(source, table)}) _t group by 1")
        try:
            parts = conn.execute(query).fetchall()
        except duckdb.CatalogException:  # never staged (partial graphs in tests)
            continue
        head = f"{_normalising_version()}|{identifier_columns(table)}|{columns}"
        for part, rows, hashes, *_ in parts:
            found[(table.name, str(part))] = hashlib.sha256(f"{head}|{part}|{rows}|{hashes}".encode()).hexdigest()
        if whole:
            sums[table.name] = (sum(int(r[1]) for r in parts), sum(int(r[3]) for r in parts))
    return found, sums


def staged_sums(conn: duckdb.DuckDBPyConnection, source: SourceSpec, *,
                verified: tuple[str, str] | None = None) -> dict[str, tuple[int, int]]:
    """Each staged table's row count and sum of row hashes (`warehouse.content.content_sums`), in the
    pass that also finds its partitions' identifying contents, kept for `stored_identifiers` of the run
    `verified` (database file, run id) as `_verified_partition_contents` keeps them: the release's gate
    fingerprints hash every staged table, and its raw identifiers hashed every staged table's
    partitions again, a second pass over the same rows (~0.4 CPU s at 300,000 people)."""
    parts, sums = _partition_contents(conn, source, whole=True)
    if verified is not None:
        _remember_verified_parts(verified, source, parts)
    return sums


def _read_parts(conn: duckdb.DuckDBPyConnection, source: SourceSpec,
                parts: list[tuple[str, str]]) -> dict[str, pl.DataFrame]:
    """The identifying columns of the staged rows of `parts` ((table, partition)), by table."""
    frames = {}
    for table in source.tables:
        wanted = sorted(p for t, p in parts if t == table.name)
        if not wanted:
            continue
        columns = ", ".join(map(quote_identifier, identifying_columns(table)))
        frames[table.name] = pl.from_arrow(conn.sql(
            f"select {columns} from {_staged(source, table)} where cast({PARTITION_COLUMN} as varchar) in "
            f"({', '.join(map(quote_literal, wanted))})").to_arrow_table())
    return frames


def _store(conn: duckdb.DuckDBPyConnection, dataset: str, found: RawIdentifiers, parts: dict[tuple[str, str], str],
           rebuild: bool) -> None:
    """Add `found`'s values (those not stored yet) and record `parts`, in one transaction (a failure
    leaves what was stored: values and the partitions they came from always agree)."""
    new = pl.concat([pl.DataFrame({"kind": kind, "v": found.series(kind)}, schema={"kind": pl.String, "v": pl.String})
                     for kind in KINDS])
    recorded = pl.DataFrame({"table_name": [t for t, _ in parts], "part": [p for _, p in parts],
                             "content": list(parts.values())},
                            schema={"table_name": pl.String, "part": pl.String, "content": pl.String})
    conn.register("_new_identifiers", new.to_arrow())
    conn.register("_new_parts", recorded.to_arrow())
    conn.execute("begin")
    try:
        if rebuild:
            conn.execute(f"delete from {STORED_VALUES} where dataset = ?", [dataset])
            conn.execute(f"delete from {STORED_PARTS} where dataset = ?", [dataset])
        conn.execute(f"insert into {STORED_VALUES} select distinct ?, n.kind, n.v from _new_identifiers n where not exists "
                     f"(select 1 from {STORED_VALUES} s where s.dataset = ? and s.kind = n.kind and s.v = n.v)",
                     [dataset, dataset])
        conn.execute(f"insert into {STORED_PARTS} select ?, table_name, part, content from _new_parts", [dataset])
        conn.execute("commit")
    except BaseException:
        conn.execute("rollback")
        raise
    finally:
        conn.unregister("_new_identifiers")
        conn.unregister("_new_parts")


def stored_identifiers(conn: duckdb.DuckDBPyConnection, source: SourceSpec, *,
                       verified: tuple[str, str] | None = None) -> tuple[RawIdentifiers, int]:
    """`raw_identifiers(source, <every staged table>, sets=False)`: the same values (series only), from
    the stored ones and the partitions staged since they were stored (see the comment above). Also how
    many staged partitions were read (0: none changed since the last release). `verified`: (database
    file, run id) of the calling step, whose run's staged partitions are hashed once in this process
    (`_verified_partition_contents`)."""
    conn.execute(f"create schema if not exists {STORED_SCHEMA}")
    conn.execute(f"create table if not exists {STORED_VALUES} (dataset varchar, kind varchar, v varchar)")
    conn.execute(f"create table if not exists {STORED_PARTS} (dataset varchar, table_name varchar, part varchar, "
                 "content varchar)")
    current = _verified_partition_contents(conn, source, verified)
    recorded = {(t, p): c for t, p, c in conn.execute(
        f"select table_name, part, content from {STORED_PARTS} where dataset = ?", [source.key]).fetchall()}
    rebuild = not recorded or any(current.get(key) != content for key, content in recorded.items())
    new = list(current) if rebuild else [key for key in current if key not in recorded]
    found = raw_identifiers(source, _read_parts(conn, source, new), sets=False)  # the column names, and new values
    if new or rebuild:
        _store(conn, source.key, found, {key: current[key] for key in new}, rebuild)
    for kind in KINDS:
        # one kind at a time: the kind column of every value converted and filtered in polars was a
        # quarter of reading them (2.3 million values of magistrates' at 300,000 people)
        values = pl.from_arrow(conn.sql(f"select v from {STORED_VALUES} where dataset = ? and kind = ?",
                                        params=[source.key, kind]).to_arrow_table()).get_column("v").alias(kind)
        if values.len():
            found._series[kind] = (0, values)  # as `raw_identifiers(..., sets=False)` holds them
        else:
            found._series.pop(kind, None)
    return found, len(new)
