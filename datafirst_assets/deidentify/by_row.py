"""De-identification by row: a new extract re-derives only the rows whose input changed.

A dataset's de-identified tables are a row-by-row function of their input: each record's latest
version (person tables: with the per-dataset person id; tables aged at their parent's event: with
the parent's event date), de-identified column by column (keyed hashes, ages, areas). So the
warehouse keeps, per (dataset, table), a state table `deidentify_state.<dataset>__<table>`: the
released row next to the staged id it came from (`_staged_id`) and a hash of its input row
(`_input_hash`, computed by DuckDB over the input columns). An incremental run hashes the current
inputs in DuckDB, compares with the state, reads into Python only the new or changed records and
de-identifies them; inside one transaction the state drops changed and vanished rows, the kept
rows are scanned and the re-derived ones inserted. The stored tables are then changed only where
rows changed (`TableChange`, written by the IO manager as `ChangedRows`: deleted, updated where
they are, appended), which keeps the staged-id order a full rebuild gives; the IO manager rewrites
a table from the state, in that order, when the change cannot be applied exactly.

Gates stay complete: re-derived rows are scanned against every raw identifier of the dataset
(their values looked up in `deidentify_state.<dataset>___raw_identifiers`, every raw identifier of
the dataset's latest rows, built with the state and updated by row in the same transaction), kept rows against the
identifiers of the new or changed records (the only identifiers they were not scanned against
before: an unchanged row was scanned with every identifier of the records that are unchanged);
the contract, the foreign keys and the re-identification risk are evaluated on the whole table in
DuckDB (the risk from its key columns only). The transaction commits only after every gate
passed, so a refused row is never kept as "unchanged".

The state is tied to the code, the release rules and the key (`state_fingerprint`): any change,
a missing state, the "coarsen" disclosure policy (population-dependent values) or a full run
rebuilds every row (`release.deidentify_source`) and writes the state afresh (`write_state`).
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import duckdb
import polars as pl

from datafirst_assets.common.partitions import PARTITION_COLUMN
from datafirst_assets.deidentify.disclosure import DisclosureRule, RiskResult, RiskRule, reidentification_risk
from datafirst_assets.deidentify.disclosure import default_quasi_identifiers
from datafirst_assets.deidentify.pii_gate import (
    Finding,
    RawIdentifiers,
    identifier_columns,
    mask,
    raw_identifiers,
    scan_table,
    shape_findings,
)
from datafirst_assets.deidentify.release_spec import ReleaseTable, release_tables
from datafirst_assets.deidentify.transform import PARENT_EVENT_DATE, aged_at_parent_event, deidentify_table
from datafirst_assets.sources.spec import SourceSpec, TableSpec
from datafirst_assets.warehouse.content import code_version, fingerprint_by_partition, row_hash_sum, table_columns
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.io_manager import ONE_ROW_GROUP, StoredTable, catalog_name
from datafirst_assets.common.sql import quote_identifier, quote_literal

SCHEMA = "deidentify_state"
STAGED_ID, INPUT_HASH = "_staged_id", "_input_hash"
#: `deidentify_state.<dataset>__raw_identifiers`: every raw identifier of the dataset's latest rows
#: (no table of a source has this name), for the PII gate of re-derived rows
RAW_IDENTIFIERS = "_raw_identifiers"
#: `deidentify_state.<dataset>___input_dates`: per input table and extract date, the rows the state was
#: made from (``"rows|sum of row hashes"``, the per-dataset person id left out), so that the next run
#: compares only the records an extract date added (`touched_ids_sql`)
INPUT_DATES = "_input_dates"
META = "state_of"
#: Rows above which a stored released table keeps no order (`_unordered`): one DuckDB row group
UNORDERED_BEYOND = ONE_ROW_GROUP
# polars' strip_chars() strips whitespace; DuckDB's trim() only spaces unless told which characters
WHITESPACE = " \t\n\r\x0b\x0c\u00a0"


def released_sql(names: Names, spec: ReleaseTable, ordered: bool = True) -> str:
    """The stored released table: the state's released columns, in staged-id order (a full rebuild's)
    when `ordered`."""
    return (f"select {', '.join(quote_identifier(c) for c in spec.column_names)} from {names.state(spec.name)}"
            + (f" order by {STAGED_ID}" if ordered else ""))


def state_fingerprint(rules: Mapping[str, DisclosureRule], key_fingerprint: str) -> str:
    """What the stored rows depend on besides their input: the code, the release rules and the key."""
    return hashlib.sha256(f"{code_version()}|{sorted(rules.items())!r}|{key_fingerprint}".encode()).hexdigest()


@dataclass
class Names:
    """The warehouse names of one dataset's state tables and this run's scratch tables."""

    database: str
    dataset: str

    def _name(self, prefix: str, table: str) -> str:
        return f"{quote_identifier(catalog_name(self.database))}.{SCHEMA}.{quote_identifier(prefix + self.dataset + '__' + table)}"

    def state(self, table: str) -> str:
        return self._name("", table)

    def current(self, table: str) -> str:
        return self._name("__current_", table)

    def candidate(self, table: str) -> str:
        return self._name("__candidate_", table)

    def release_view(self, table: str) -> str:
        return self._name("__release_", table)

    def stale(self, table: str) -> str:
        return self._name("__stale_", table)

    def touched(self, table: str) -> str:
        return self._name("__touched_", table)

    @property
    def meta(self) -> str:
        return f"{quote_identifier(catalog_name(self.database))}.{SCHEMA}.{META}"


def _ensure_schema(conn: duckdb.DuckDBPyConnection, names: Names) -> None:
    conn.execute(f"create schema if not exists {quote_identifier(catalog_name(names.database))}.{SCHEMA}")
    conn.execute(f"create table if not exists {names.meta} (dataset varchar, fingerprint varchar)")


def state_matches(conn: duckdb.DuckDBPyConnection, names: Names, fingerprint: str, tables: Sequence[str]) -> bool:
    """Whether the stored state was made with `fingerprint` and holds every table."""
    _ensure_schema(conn, names)
    rows = conn.execute(f"select fingerprint from {names.meta} where dataset = ?", [names.dataset]).fetchall()
    return (rows == [(fingerprint,)]
            and all(table_columns(conn, SCHEMA, f"{names.dataset}__{t}") for t in [*tables, RAW_IDENTIFIERS]))


def needs_parent_date(source: SourceSpec, table: TableSpec, spec: ReleaseTable) -> bool:
    """As `deidentify_table` decides: ages taken at the parent's event date."""
    return table.parent is not None and aged_at_parent_event(spec, table.column_names)


def _latest_sql(conn: duckdb.DuckDBPyConnection, stored: StoredTable, id_column: str, wanted: Sequence[str],
                only: str | None = None) -> str:
    """Each record's latest version (`latest_versions`), with the columns `wanted` that the table has;
    `only`: a SELECT of the record ids to keep, applied before the window (a record's versions are
    kept or left out together, so its latest version is the same), so that its cost follows those ids."""
    present = table_columns(conn, stored.schema, stored.table)
    columns = ", ".join(quote_identifier(c) for c in wanted if c in present)
    rows = f"select * from ({stored.select_sql()}) _a"
    if only is not None:
        rows += f" where _a.{quote_identifier(id_column)} in ({only})"
    if PARTITION_COLUMN not in present:
        return f"select {columns} from ({rows}) _s"
    # a record's id is unique within an extract date (the staged contract), so the order is total
    return (f"select {columns} from (select *, row_number() over (partition by {quote_identifier(id_column)} "
            f"order by {quote_identifier(PARTITION_COLUMN)} desc) as _rn from ({rows}) _s) _l where _rn = 1")


def input_sql(conn: duckdb.DuckDBPyConnection, source: SourceSpec, table: TableSpec,
              stored: Mapping[str, StoredTable], spec: ReleaseTable, only: str | None = None) -> str:
    """The de-identification input of `table`: its latest rows, only the columns the release, the
    PII gate and the person id read (not the load's own columns), with the parent's event date
    when ages are taken at it. `only`: a SELECT of the record ids wanted (None: every record); the
    parent's latest versions are then those of these records' parents alone."""
    wanted = list(dict.fromkeys([*table.column_names, source.person_id_name, *([spec.person_key] if spec.person_key else [])]))
    latest = _latest_sql(conn, stored[table.name], table.id_column, wanted, only)
    if not needs_parent_date(source, table, spec):
        return latest
    parent = source.table(table.parent)  # type: ignore[arg-type]
    parent_id = quote_identifier(parent.id_column)
    parents = None if only is None else f"select _w.{parent_id} from ({latest}) _w"
    dates = _latest_sql(conn, stored[parent.name], parent.id_column, [parent.id_column, parent.event_date], parents)
    return (f"select _c.*, _p.{quote_identifier(parent.event_date)} as {PARENT_EVENT_DATE} from ({latest}) _c left join "
            f"({dates}) _p on _c.{parent_id} = _p.{parent_id}")


def hash_inputs(conn: duckdb.DuckDBPyConnection, names: Names, table: TableSpec, sql: str) -> None:
    """`__current_<dataset>__<table>`: each input row's staged id and the hash of the whole input row."""
    conn.execute(f"create or replace table {names.current(table.name)} as select _i.{quote_identifier(table.id_column)} as "
                 f"{STAGED_ID}, hash(_i) as {INPUT_HASH} from ({sql}) _i")


@dataclass
class RowCounts:
    kept: int = 0
    rederived: int = 0
    removed: int = 0

    def metadata(self) -> dict:
        return {"rows_kept": self.kept, "rows_rederived": self.rederived, "rows_removed": self.removed}


def changed_ids_sql(names: Names, table: str) -> str:
    return (f"select c.{STAGED_ID} from {names.current(table)} c left join {names.state(table)} s "
            f"on s.{STAGED_ID} = c.{STAGED_ID} where s.{STAGED_ID} is null or s.{INPUT_HASH} <> c.{INPUT_HASH}")


def row_counts(conn: duckdb.DuckDBPyConnection, names: Names, table: str) -> RowCounts:
    """Records kept, re-derived (new or changed input) and removed (no current input), after
    `mark_stale`: from the state's row count, the stale rows and this run's input hashes (the records
    compared), not a join of every record."""
    state_rows, stale, removed = conn.execute(
        f"select (select count(*) from {names.state(table)}), (select count(*) from {names.stale(table)}), "
        f"(select count(*) from {names.stale(table)} t anti join {names.current(table)} c "
        f"on c.{STAGED_ID} = t.{STAGED_ID})").fetchall()[0]
    changed = conn.execute(f"select count(*) from ({changed_ids_sql(names, table)})").fetchall()[0][0]
    return RowCounts(kept=state_rows - stale, rederived=changed, removed=removed)


def changed_input_rows(conn: duckdb.DuckDBPyConnection, names: Names, source: SourceSpec, table: TableSpec,
                       stored: Mapping[str, StoredTable], spec: ReleaseTable) -> pl.DataFrame:
    """The input rows of new or changed records, sorted by staged id, with their input hash. Only
    those records' latest versions are computed (`input_sql(only=...)`), not every record's again:
    `hash_inputs` did that once."""
    changed = changed_ids_sql(names, table.name)
    sql = input_sql(conn, source, table, stored, spec, only=changed)
    return pl.from_arrow(conn.sql(  # type: ignore[return-value]
        f"select _i.*, c.{INPUT_HASH} from ({sql}) _i join {names.current(table.name)} c "
        f"on c.{STAGED_ID} = _i.{quote_identifier(table.id_column)} order by _i.{quote_identifier(table.id_column)}"
    ).to_arrow_table())


def derive_rows(rows: pl.DataFrame, table: TableSpec, source: SourceSpec, spec: ReleaseTable,
                key: bytes | None, cache) -> pl.DataFrame:
    """The released rows of changed input `rows` (`deidentify_table`), with their staged id and hash."""
    parent = parent_id = parent_date = None
    if PARENT_EVENT_DATE in rows.columns:
        parent_spec = source.table(table.parent)  # type: ignore[arg-type]
        parent_id, parent_date = parent_spec.id_column, parent_spec.event_date
        parent = rows.select(pl.col(parent_id), pl.col(PARENT_EVENT_DATE).alias(parent_date))
        rows_in = rows.drop(PARENT_EVENT_DATE)
    else:
        rows_in = rows
    released = deidentify_table(rows_in, spec, key=key, cache=cache, parent=parent, parent_id=parent_id,
                                parent_event_date=parent_date)
    return released.with_columns(rows[table.id_column].alias(STAGED_ID), rows[INPUT_HASH].alias(INPUT_HASH))


def hashed_values(rows: Mapping[str, pl.DataFrame], specs: Mapping[str, ReleaseTable]) -> pl.DataFrame:
    """(namespace, value) of every value `derive_rows` will hash in `rows` (table -> input rows), for
    `KeyedHashCache.prefetch`: their stored digests looked up in one pass, not one per hashed column."""
    parts = [pl.DataFrame({"namespace": column.hash_namespace, "value": frame[column.staged].cast(pl.String)})
             for name, frame in rows.items() for column in specs[name].columns
             if column.treatment == "hash" and column.staged in frame.columns and frame.height]
    return pl.concat(parts) if parts else pl.DataFrame(schema={"namespace": pl.String, "value": pl.String})


def dropped_rows(conn: duckdb.DuckDBPyConnection, names: Names, spec: ReleaseTable) -> pl.DataFrame:
    """Staged id and unique key of the stored rows `drop_changed` removes (old versions of changed
    records, and vanished records): which stored rows of the released table change or go."""
    key = ", ".join(f"s.{quote_identifier(k)}" for k in spec.unique_key)
    return pl.from_arrow(conn.sql(  # type: ignore[return-value]
        f"select s.{STAGED_ID}, {key} from {names.state(spec.name)} s where {_stale(names, spec.name)}"
    ).to_arrow_table())


def _stale(names: Names, table: str) -> str:
    """Condition on a state row `s` of `table`: its record changed or vanished (`mark_stale`). One
    definition for what is dropped, released and unindexed."""
    return f"s.{STAGED_ID} in (select {STAGED_ID} from {names.stale(table)})"


def mark_stale(conn: duckdb.DuckDBPyConnection, names: Names, table: str, compared: str | None = None) -> None:
    """`__stale_<dataset>__<table>`: the staged ids of the state rows with no current input row of the
    same staged id and input hash (changed or vanished records), found once (one join of the state with
    this run's input hashes) for the three statements that read them (`_stale`), before the state changes.
    `compared`: a SELECT of the staged ids whose input was hashed this run (None: every record's was);
    the state's other rows are kept as they are (`touched_ids_sql`)."""
    among = f"semi join ({compared}) _t on _t.{STAGED_ID} = s.{STAGED_ID} " if compared is not None else ""
    conn.execute(f"create or replace table {names.stale(table)} as select s.{STAGED_ID} from {names.state(table)} s "
                 f"{among}anti join {names.current(table)} c on c.{STAGED_ID} = s.{STAGED_ID} "
                 f"and c.{INPUT_HASH} = s.{INPUT_HASH}")


# --- which records an extract date can have changed ------------------------------------------------

def input_dates(conn: duckdb.DuckDBPyConnection, source: SourceSpec, stored: StoredTable) -> tuple[str | None, dict[str, str] | None]:
    """Per extract date of a de-identification input table, its rows (``"rows|sum of row hashes"``,
    the per-dataset person id left out: linkage moves records between persons in every date), and the
    whole table's `table_fingerprint` when that same pass gives it (a table without the person id, as
    `fingerprint_by_partition`); (None, None) for a table without extract dates."""
    present = table_columns(conn, stored.schema, stored.table)
    if PARTITION_COLUMN not in present:
        return None, None
    if source.person_id_name not in present:
        return fingerprint_by_partition(conn, stored, PARTITION_COLUMN)
    columns = ", ".join(quote_identifier(c) for c in present if c != source.person_id_name)
    parts = conn.execute(f"select cast(_t.{quote_identifier(PARTITION_COLUMN)} as varchar), count(*), {row_hash_sum()} "
                         f"from (select {columns} from ({stored.select_sql()}) _s) _t group by 1").fetchall()
    return None, {str(part): f"{n}|{h}" for part, n, h in parts}


def recorded_input_dates(conn: duckdb.DuckDBPyConnection, names: Names) -> dict[str, dict[str, str]]:
    """`input_dates` of each input table as the state was last made from them ({} when none is
    recorded, e.g. a state stored before they were: then every record is compared once)."""
    if not table_columns(conn, SCHEMA, f"{names.dataset}__{INPUT_DATES}"):
        return {}
    recorded: dict[str, dict[str, str]] = {}
    for table, date, content in conn.execute(f"select _table, extract_date, content from {names.state(INPUT_DATES)}").fetchall():
        recorded.setdefault(table, {})[date] = content
    return recorded


def record_input_dates(conn: duckdb.DuckDBPyConnection, names: Names, dates: Mapping[str, dict[str, str] | None],
                       target: str | None = None) -> None:
    """Inside the caller's transaction: `dates` (table -> `input_dates`) as the state's record of its
    inputs (`target`: another table to write them to, the candidate of a full rebuild)."""
    rows = [(table, date, content) for table, parts in dates.items() for date, content in (parts or {}).items()]
    frame = pl.DataFrame(rows, schema={"_table": pl.String, "extract_date": pl.String, "content": pl.String}, orient="row")
    conn.register("_input_dates", frame.to_arrow())
    try:
        conn.execute(f"create or replace table {target or names.state(INPUT_DATES)} as select * from _input_dates")
    finally:
        conn.unregister("_input_dates")


def _moved_sql(names: Names, source: SourceSpec, table: TableSpec, stored: StoredTable, spec: ReleaseTable) -> str | None:
    """Staged ids whose per-dataset person id is not the one their state row was released with (linkage
    moved them), or that have no state row; None when the released table does not carry the person id."""
    person = source.person_id_name
    if person not in spec.column_names:
        return None
    record = quote_identifier(table.id_column)
    return (f"select _l.{record} as {STAGED_ID} from (select {record}, {quote_identifier(person)} from "
            f"({stored.select_sql()}) _k) _l left join {names.state(table.name)} s on s.{STAGED_ID} = _l.{record} "
            f"where s.{STAGED_ID} is null or s.{quote_identifier(person)} is distinct from _l.{quote_identifier(person)}")


def touched_ids_sql(conn: duckdb.DuckDBPyConnection, names: Names, source: SourceSpec, table: TableSpec,
                    stored: Mapping[str, StoredTable], spec: ReleaseTable, recorded: Mapping[str, dict[str, str]],
                    now: Mapping[str, dict[str, str] | None], touched: set[str]) -> str | None:
    """A SELECT of the staged ids (`_staged_id`) of every record whose de-identification input can differ
    from the one its state row was made from, when only new extract dates arrived since (`recorded`
    against `now`, `input_dates` by table): the records with a row in a new date, those linkage moved to
    another person id (`_moved_sql`), and, for parties aged at their parent's event, those whose parent
    is touched (`touched`: the tables whose `__touched_` table this run holds). Any other record has the
    same rows, person id and parent event date, so the same input. None (compare every record) when a
    recorded date changed or went (the records that had rows there are not known), or nothing is recorded."""
    before, current = recorded.get(table.name), now.get(table.name)
    if before is None or current is None or "None" in current or any(current.get(d) != c for d, c in before.items()):
        return None
    rows, record = stored[table.name].select_sql(), quote_identifier(table.id_column)
    new = ", ".join(quote_literal(d) for d in sorted(set(current) - set(before)))
    parts = [f"select {record} as {STAGED_ID} from ({rows}) _s where "
             + (f"cast({quote_identifier(PARTITION_COLUMN)} as varchar) in ({new})" if new else "false")]
    if source.person_id_name in table_columns(conn, stored[table.name].schema, stored[table.name].table):
        if (moved := _moved_sql(names, source, table, stored[table.name], spec)) is None:
            return None
        parts.append(moved)
    if needs_parent_date(source, table, spec):
        if table.parent not in touched:
            return None
        parent_id = quote_identifier(source.table(table.parent).id_column)  # type: ignore[arg-type]
        parts.append(f"select {record} as {STAGED_ID} from ({rows}) _s where {parent_id} in "
                     f"(select {STAGED_ID} from {names.touched(table.parent)})")  # type: ignore[arg-type]
    return " union ".join(parts)


@dataclass
class TableChange:
    """What changes in a stored released table (its rows by unique key): rows deleted, rows updated
    where they are (a record's new version, same staged id and key), rows appended (new records)."""

    deletes: pl.DataFrame   # unique key columns
    updates: pl.DataFrame   # released columns
    inserts: pl.DataFrame   # released columns, in staged-id order
    # the new rows may be appended: their staged ids sort after every other row's, or the table is
    # larger than one row group, whose order no write keeps (`_unordered`)
    appendable: bool


def table_change(conn: duckdb.DuckDBPyConnection, names: Names, spec: ReleaseTable, dropped: pl.DataFrame,
                 derived: pl.DataFrame) -> TableChange:
    """After `insert_derived`: the change from the stored released table (the state before this run)
    to the state now, from the rows dropped and the rows re-derived (`derived`, in staged-id order)."""
    same = [STAGED_ID, *spec.unique_key]
    dropped = dropped.select(same)
    update = derived.select(same).join(dropped, on=same, how="semi")
    updates = derived.join(update, on=same, how="semi", maintain_order="left")
    inserts = derived.join(update, on=same, how="anti", maintain_order="left")
    deletes = dropped.join(derived.select(same), on=same, how="anti").select(spec.unique_key)
    appendable = True
    if inserts.height and not _unordered(conn, names, spec.name):
        conn.register("_inserted_ids", inserts.select(STAGED_ID).to_arrow())
        try:
            appendable = bool(conn.execute(
                f"select coalesce((select min({STAGED_ID}) from _inserted_ids) > (select max(s.{STAGED_ID}) from "
                f"{names.state(spec.name)} s anti join _inserted_ids i on s.{STAGED_ID} = i.{STAGED_ID}), true)"
            ).fetchall()[0][0])
        finally:
            conn.unregister("_inserted_ids")
    return TableChange(deletes, updates.select(spec.column_names), inserts.select(spec.column_names), appendable)


def _unordered(conn: duckdb.DuckDBPyConnection, names: Names, table: str) -> bool:
    """Whether the released table (the state after this run's change) is larger than one DuckDB row group:
    it then has no stored order to keep (`io_manager.ONE_ROW_GROUP`: a full rebuild writes it from a frame
    without ORDER BY under `preserve_insertion_order=false`, its row groups in any order) and nothing reads
    it in order (the release sorts every table by its key), so new rows are appended even when their staged
    ids sort before stored ones. Staged ids are text: at 1,000,000 people the magistrates' new records
    (`1350537`...) sort before the stored `999999`, and each incremental run rewrote both magistrates tables
    from the state, sorted, and validated every row again (`write: rewritten whole`): 33-36 CPU s for the
    step, 14-15 appended."""
    return conn.execute(f"select count(*) from {names.state(table)}").fetchall()[0][0] > UNORDERED_BEYOND


def drop_changed(conn: duckdb.DuckDBPyConnection, names: Names, table: str) -> None:
    """Inside the caller's transaction: the state keeps only the rows whose input is unchanged."""
    conn.execute(f"delete from {names.state(table)} s where {_stale(names, table)}")


def insert_derived(conn: duckdb.DuckDBPyConnection, names: Names, spec: ReleaseTable, derived: pl.DataFrame) -> None:
    """Inside the caller's transaction: the re-derived rows join the kept ones; `__release_...` is the
    released columns of the result (the order is the output's: `order by _staged_id` when written)."""
    columns = [*spec.column_names, STAGED_ID, INPUT_HASH]
    conn.register("_derived_rows", derived.select(columns).to_arrow())
    try:
        conn.execute(f"insert into {names.state(spec.name)} by name select * from _derived_rows")
    finally:
        conn.unregister("_derived_rows")
    conn.execute(f"create or replace view {names.release_view(spec.name)} as select "
                 f"{', '.join(quote_identifier(c) for c in spec.column_names)} from {names.state(spec.name)}")


# --- gates on the whole updated tables ---------------------------------------------------------

def _normalised_sql(column: str) -> str:
    return f"upper(trim(cast({quote_identifier(column)} as varchar), {quote_literal(WHITESPACE)}))"


def identifiers_sql(table: TableSpec, rows_sql: str) -> str | None:
    """Each row's raw identifiers (`identifier_columns`), normalised as `raw_identifiers` normalises
    them, one row each: table, staged id (as text), kind, value. None: the table holds none."""
    branches = [f"select {quote_literal(table.name)} as _table, cast({quote_identifier(table.id_column)} as varchar) "
                f"as {STAGED_ID}, {quote_literal(kind)} as kind, {_normalised_sql(c)} as v, {shortest} as shortest from _l"
                for kind, (columns, shortest) in identifier_columns(table).items() for c in columns]
    if not branches:
        return None
    # materialised: the rows are computed once, not once per identifier column
    return (f"with _l as materialized ({rows_sql}) select _table, {STAGED_ID}, kind, v from "
            f"({' union all '.join(branches)}) where length(v) >= shortest")


def build_identifiers(conn: duckdb.DuckDBPyConnection, names: Names, source: SourceSpec,
                      inputs: Mapping[str, str]) -> None:
    """`<dataset>__raw_identifiers` afresh (as a candidate, see `commit_state`): every raw identifier
    of every latest row of the dataset (`inputs`: table -> its input SQL)."""
    parts = [sql for table in source.tables if (sql := identifiers_sql(table, inputs[table.name]))]
    empty = f"select ''::varchar as _table, ''::varchar as {STAGED_ID}, ''::varchar as kind, ''::varchar as v limit 0"
    conn.execute(f"create or replace table {names.candidate(RAW_IDENTIFIERS)} as "
                 f"{' union all '.join(f'({p})' for p in parts) or empty}")


def update_identifiers(conn: duckdb.DuckDBPyConnection, names: Names, source: SourceSpec,
                       rows: Mapping[str, pl.DataFrame]) -> None:
    """Inside the caller's transaction, before `drop_changed`: the stored raw identifiers lose those of
    changed and vanished records and gain those of the new or changed ones (`rows`: their input rows,
    as `changed_input_rows` read them). An unchanged input row has unchanged identifiers: its hash
    covers every column they are read from."""
    gone = " union all ".join(
        f"select {quote_literal(t.name)} as _table, cast(s.{STAGED_ID} as varchar) as {STAGED_ID} from "
        f"{names.state(t.name)} s where {_stale(names, t.name)}" for t in source.tables)
    conn.execute(f"delete from {names.state(RAW_IDENTIFIERS)} _r using ({gone}) _g "
                 f"where _r._table = _g._table and _r.{STAGED_ID} = _g.{STAGED_ID}")
    for table in source.tables:
        if not rows[table.name].height or (sql := identifiers_sql(table, "select * from _changed_rows")) is None:
            continue
        conn.register("_changed_rows", rows[table.name].to_arrow())
        try:
            conn.execute(f"insert into {names.state(RAW_IDENTIFIERS)} {sql}")
        finally:
            conn.unregister("_changed_rows")


def raw_identifiers_among(conn: duckdb.DuckDBPyConnection, names: Names, source: SourceSpec,
                          values: set[str]) -> RawIdentifiers:
    """`raw_identifiers` of every latest row of the dataset, less the values not among `values`:
    the same findings for a scan of rows whose normalised text values are `values`, looked up in
    the stored raw identifiers (kept up to date by `update_identifiers`), not read from every row."""
    found = raw_identifiers(source, {})  # the withheld column names
    if not values:
        return found
    conn.register("_scanned_values", pl.DataFrame({"v": sorted(values)}, schema={"v": pl.String}).to_arrow())
    targets = {"name": found.names, "address": found.addresses, "system_id": found.system_ids}
    try:
        hits = conn.execute(f"select distinct kind, v from {names.state(RAW_IDENTIFIERS)} "
                            "where v in (select v from _scanned_values)").fetchall()
    finally:
        conn.unregister("_scanned_values")
    for kind, v in hits:
        targets[kind].add(v)
    return found


def text_values(frame: pl.DataFrame, spec: ReleaseTable) -> set[str]:
    """The normalised text values of released rows, as `scan_table` compares them with raw values."""
    values: set[str] = set()
    for column in frame.columns:
        if frame[column].dtype == pl.String:
            normalised, _ = shape_findings("", column, frame[column].drop_nulls().unique(),
                                           spec.code_lists.get(column, ()), shapes=False)
            values.update(normalised.to_list())
    return values


def scan_derived(table: str, derived: pl.DataFrame, rows: pl.DataFrame, spec: ReleaseTable, known: RawIdentifiers,
                 dob: str | None) -> list[Finding]:
    """The full PII scan of re-derived rows (`rows`: their input, aligned) against `known`."""
    return scan_table(table, derived.select(spec.column_names), known,
                      dates_of_birth=rows[dob] if dob else None, codes=spec.code_lists)


def scan_kept(conn: duckdb.DuckDBPyConnection, names: Names, table: str, spec: ReleaseTable,
              new: RawIdentifiers) -> list[Finding]:
    """Kept rows' text values (the state after `drop_changed`) equal to an identifier of a new or
    changed record (the shapes and the other identifiers were scanned when the rows were stored): one
    query over every text column. A keyed-hash column (64 hex characters, its contract's shape rule,
    which kept rows passed) can equal only an identifier of that shape: it is read only if one is new."""
    known = pl.concat([pl.DataFrame({"kind": kind, "v": list(values)}, schema={"kind": pl.String, "v": pl.String})
                       for kind, values in (("name", new.names), ("address", new.addresses),
                                            ("system_id", new.system_ids))])
    hashed_shape = known.get_column("v").str.contains(r"^[0-9A-F]{64}$").any()
    texts = [c.name for c in spec.columns if c.dtype == pl.String and (c.treatment != "hash" or hashed_shape)]
    if not known.height or not texts:
        return []
    codes = pl.DataFrame([(c, str(code).upper()) for c in texts for code in spec.code_lists.get(c, ())],
                         schema={"col": pl.String, "code": pl.String}, orient="row")
    conn.register("_new_identifiers", known.to_arrow())
    conn.register("_declared_codes", codes.to_arrow())
    try:
        # distinct raw values first: most text columns are codes with a handful of values
        values = " union all ".join(f"select {quote_literal(c)} as col, {_normalised_sql('x')} as v from "
                                    f"(select distinct {quote_identifier(c)} as x from {names.state(table)})" for c in texts)
        hits = conn.execute(
            f"with _values as (select distinct col, v from ({values}) _u where v in (select v from _new_identifiers)) "
            "select _values.col, n.kind, count(*), min(_values.v) from _values join _new_identifiers n using (v) "
            "anti join _declared_codes d on d.col = _values.col and d.code = _values.v "
            "group by _values.col, n.kind").fetchall()
    finally:
        conn.unregister("_new_identifiers")
        conn.unregister("_declared_codes")
    order = {"name": 0, "address": 1, "system_id": 2}
    return [Finding(f"{spec.source}.{table}", column, kind, int(count), mask(first))
            for column, kind, count, first in sorted(hits, key=lambda h: (texts.index(h[0]), order[h[1]]))]


def orphans_in_database(conn: duckdb.DuckDBPyConnection, names: Names, specs: Mapping[str, ReleaseTable]) -> dict[str, int]:
    """`schemas.orphan_counts` over the updated tables, in DuckDB."""
    orphans = {}
    for name, spec in specs.items():
        for fk in spec.foreign_keys:
            parent_table, parent_column = fk.references
            if parent_table not in specs:
                continue
            orphans[f"{name}.{fk.name} -> {parent_table}.{parent_column}"] = conn.execute(
                f"select count(*) from (select {quote_identifier(fk.name)} as k from {names.release_view(name)} where {quote_identifier(fk.name)} "
                f"is not null) c anti join {names.release_view(parent_table)} p on c.k = p.{quote_identifier(parent_column)}"
            ).fetchall()[0][0]
    return orphans


def duplicate_keys(conn: duckdb.DuckDBPyConnection, names: Names, table: str, key_sets: Sequence[Sequence[str]]) -> list[str]:
    """Rows of the whole updated table sharing a key the contract says is unique (every copy counts).
    One pass first counts the distinct hashes of each key (cheaper than grouping by the key's text:
    64-character pseudonyms); only a key with fewer distinct hashes than rows, a duplicate or a hash
    collision, is grouped by its values to count the rows that share it."""
    if not key_sets:
        return []
    view = names.release_view(table)
    distinct = ", ".join(f"count(distinct hash({', '.join(map(quote_identifier, keys))}))" for keys in key_sets)
    rows, *hashes = conn.execute(f"select count(*), {distinct} from {view}").fetchall()[0]
    problems = []
    for keys, distinct_hashes in zip(key_sets, hashes):
        if distinct_hashes == rows:
            continue  # every key's hash differs, so every key does
        shared = conn.execute(f"select coalesce(sum(n), 0) from (select count(*) as n from {view} "
                              f"group by {', '.join(map(quote_identifier, keys))} having count(*) > 1)").fetchall()[0][0]
        if shared:
            problems.append(f"{', '.join(keys)}: {shared} row(s) share their key with another row")
    return problems


def risk_in_database(conn: duckdb.DuckDBPyConnection, names: Names, table: str, spec: ReleaseTable,
                     rule: RiskRule) -> RiskResult:
    """`reidentification_risk` of the whole updated table, reading only its key columns (and person)."""
    key = list(rule.key) if rule.key is not None else default_quasi_identifiers(spec)
    columns = [c for c in dict.fromkeys([*key, *([spec.person_key] if spec.person_key else [])])
               if c in spec.column_names]
    if columns:
        frame = pl.from_arrow(conn.sql(f"select {', '.join(map(quote_identifier, columns))} from {names.release_view(table)}")
                              .to_arrow_table())
    else:  # no key: only the row count is reported
        frame = pl.from_arrow(conn.sql(f"select 0 as _row from {names.release_view(table)}").to_arrow_table())
    return reidentification_risk(frame, spec, rule)  # type: ignore[arg-type]


# --- storing the state ---------------------------------------------------------------------------

def commit_state(conn: duckdb.DuckDBPyConnection, names: Names, tables: Sequence[str], fingerprint: str) -> None:
    """The candidates become the state (one transaction), after every gate passed."""
    conn.execute("begin")
    try:
        for table in tables:
            conn.execute(f"drop view if exists {names.release_view(table)}")
            conn.execute(f"drop table if exists {names.state(table)}")
            conn.execute(f"alter table {names.candidate(table)} rename to {quote_identifier(names.dataset + '__' + table)}")
            conn.execute(f"drop table if exists {names.current(table)}")
        conn.execute(f"delete from {names.meta} where dataset = ?", [names.dataset])
        conn.execute(f"insert into {names.meta} values (?, ?)", [names.dataset, fingerprint])
        conn.execute("commit")
    except BaseException:
        conn.execute("rollback")
        raise


def discard_scratch(conn: duckdb.DuckDBPyConnection, names: Names, tables: Sequence[str]) -> None:
    for table in tables:
        conn.execute(f"drop view if exists {names.release_view(table)}")
        conn.execute(f"drop table if exists {names.candidate(table)}")
        conn.execute(f"drop table if exists {names.current(table)}")
        conn.execute(f"drop table if exists {names.stale(table)}")
        conn.execute(f"drop table if exists {names.touched(table)}")


def forget_state(conn: duckdb.DuckDBPyConnection, names: Names) -> None:
    """No state for the dataset (its next incremental run rebuilds every row)."""
    _ensure_schema(conn, names)
    conn.execute(f"delete from {names.meta} where dataset = ?", [names.dataset])


def write_state(conn: duckdb.DuckDBPyConnection, names: Names, source: SourceSpec, stored: Mapping[str, StoredTable],
                released: Mapping[str, pl.DataFrame], fingerprint: str,
                dates: Mapping[str, dict[str, str] | None] | None = None) -> bool:
    """After a full rebuild whose gates passed: its rows as the state, each next to its staged id and
    input hash (released row i is the i-th record in staged-id order), and the inputs' extract dates
    (`input_dates`; `dates`: those already found, by table). False (and no state) when the rows do
    not line up with the inputs."""
    specs = release_tables()
    _ensure_schema(conn, names)
    frames = {}
    for table in source.tables:
        hash_inputs(conn, names, table, input_sql(conn, source, table, stored, specs[(source.key, table.name)]))
        ids = pl.from_arrow(conn.sql(f"select * from {names.current(table.name)}").to_arrow_table()).sort(STAGED_ID)
        if ids.height != released[table.name].height:
            forget_state(conn, names)
            discard_scratch(conn, names, source.table_names)
            return False
        frames[table.name] = released[table.name].with_columns(ids[STAGED_ID], ids[INPUT_HASH])  # type: ignore[index]
    for table, frame in frames.items():
        conn.register("_state_rows", frame.to_arrow())
        try:
            conn.execute(f"create or replace table {names.candidate(table)} as select * from _state_rows")
        finally:
            conn.unregister("_state_rows")
    build_identifiers(conn, names, source, {t.name: input_sql(conn, source, t, stored, specs[(source.key, t.name)])
                                            for t in source.tables})
    record_input_dates(conn, names, current_input_dates(conn, source, stored, dates), target=names.candidate(INPUT_DATES))
    commit_state(conn, names, [*frames, RAW_IDENTIFIERS, INPUT_DATES], fingerprint)
    return True


def current_input_dates(conn: duckdb.DuckDBPyConnection, source: SourceSpec, stored: Mapping[str, StoredTable],
                        known: Mapping[str, dict[str, str] | None] | None = None) -> dict[str, dict[str, str] | None]:
    """`input_dates` of every input table of `source`, those in `known` (found earlier this run) not again."""
    known = known or {}
    return {t.name: known[t.name] if t.name in known else input_dates(conn, source, stored[t.name])[1]
            for t in source.tables}


# --- one dataset, by row -------------------------------------------------------------------------

@dataclass
class ByRowRun:
    """An incremental de-identification: rows kept, re-derived and removed, and its gates' inputs."""

    names: Names
    counts: dict[str, RowCounts] = field(default_factory=dict)
    findings: dict[str, list[Finding]] = field(default_factory=dict)
    orphans: dict[str, int] = field(default_factory=dict)
    risks: dict[str, RiskResult] = field(default_factory=dict)
    derived: dict[str, pl.DataFrame] = field(default_factory=dict)  # the re-derived rows, released columns
    changes: dict[str, TableChange] = field(default_factory=dict)  # what changes in each stored table
    # records whose input was hashed and compared (None: every record, `touched_ids_sql` could not say)
    compared: dict[str, int | None] = field(default_factory=dict)
    new_identifiers: int = 0


def deidentify_by_row(conn: duckdb.DuckDBPyConnection, names: Names, source: SourceSpec,
                      stored: Mapping[str, StoredTable], risk_rules: Mapping[str, RiskRule], *,
                      key: bytes | None = None, cache=None,
                      dates: Mapping[str, dict[str, str] | None] | None = None) -> ByRowRun:
    """Inside the caller's transaction on `conn`: the state of every table of `source` updated in place
    (kept rows stay, new or changed records re-derived, vanished ones dropped), PII-scanned, with
    foreign keys and risk measured on the whole table. The caller commits when every gate passed
    and rolls back otherwise, so a refused row never becomes a kept one. Only the records an extract
    date or linkage can have changed since the state was made are hashed and compared
    (`touched_ids_sql`); `dates`: the inputs' `input_dates` the caller found already, by table."""
    specs = {t.name: release_tables()[(source.key, t.name)] for t in source.tables}
    run = ByRowRun(names)
    recorded, now = recorded_input_dates(conn, names), current_input_dates(conn, source, stored, dates)
    rows, derived, touched = {}, {}, set()
    for table in source.tables:
        compared = None  # every record's input hashed and compared, unless the change says which can differ
        if (sql := touched_ids_sql(conn, names, source, table, stored, specs[table.name], recorded, now, touched)) is not None:
            conn.execute(f"create or replace table {names.touched(table.name)} as {sql}")
            compared = f"select {STAGED_ID} from {names.touched(table.name)}"
            touched.add(table.name)
        hash_inputs(conn, names, table, input_sql(conn, source, table, stored, specs[table.name], only=compared))
        mark_stale(conn, names, table.name, compared)
        run.counts[table.name] = row_counts(conn, names, table.name)
        run.compared[table.name] = None if compared is None else conn.execute(
            f"select count(*) from {names.current(table.name)}").fetchall()[0][0]
        rows[table.name] = changed_input_rows(conn, names, source, table, stored, specs[table.name])
    update_identifiers(conn, names, source, rows)
    record_input_dates(conn, names, now)
    with cache.batched() if cache is not None else nullcontext():
        if cache is not None:
            cache.prefetch(hashed_values(rows, specs))
        for table in source.tables:
            derived[table.name] = derive_rows(rows[table.name], table, source, specs[table.name], key, cache)
    values = set().union(*(text_values(derived[t].select(specs[t].column_names), specs[t]) for t in derived))
    known = raw_identifiers_among(conn, names, source, values)
    new = raw_identifiers(source, rows)
    run.new_identifiers = len(new.names) + len(new.addresses) + len(new.system_ids)
    for table in source.tables:
        dob = next((c.name for c in table.columns if c.kind == "dob"), None)
        dropped = dropped_rows(conn, names, specs[table.name])
        drop_changed(conn, names, table.name)
        run.findings[table.name] = [
            *scan_derived(f"{source.key}.{table.name}", derived[table.name], rows[table.name], specs[table.name],
                          known, dob),
            *scan_kept(conn, names, table.name, specs[table.name], new)]
        insert_derived(conn, names, specs[table.name], derived[table.name])
        run.changes[table.name] = table_change(conn, names, specs[table.name], dropped,
                                               derived[table.name].select(*specs[table.name].column_names, STAGED_ID))
    for table in source.tables:
        run.risks[table.name] = risk_in_database(conn, names, table.name, specs[table.name],
                                                 risk_rules.get(table.name, RiskRule()))
    run.orphans = orphans_in_database(conn, names, specs)
    run.derived = {name: frame.select(specs[name].column_names) for name, frame in derived.items()}
    return run
