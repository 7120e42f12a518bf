"""How the release tables hang together, as far as synthetic generation and its report need it.

Everything here is read from the release spec (`deidentify/release_spec.py`): which table is a
parent of which, which column is a table's person, and which columns are quasi-identifiers.
"""

from __future__ import annotations

import polars as pl

from datafirst_assets.deidentify.release_spec import LINKING, ReleaseTable, release_tables

TableId = tuple[str, str]  # (source, table)
CASE_LOOKUP_ID: TableId = (LINKING, "case_lookup")
XJS_LOOKUP_ID: TableId = (LINKING, "xjs_lookup")
LINKING_IDS = (XJS_LOOKUP_ID, CASE_LOOKUP_ID)
# Roles that carry no information about anybody: generated, never summarised by value.
KEY_ROLES = frozenset({"primary_key", "foreign_key", "system_id", "person_key", "xjs_key"})
# Quasi-identifiers (what an outsider could know about a person), as the release's disclosure
# control uses them: age, sex, ethnicity, area, offence group and the month of the table's event.
QI_NAMED = ("sex", "gender", "ethnicity", "offence_group")
QI_ROLES = ("age", "area")


def table_id(spec: ReleaseTable) -> TableId:
    return (spec.source, spec.name)


def name_of(tid: TableId) -> str:
    """`source.table`: the key of a table in the summaries document and the report."""
    return f"{tid[0]}.{tid[1]}"


def research_tables() -> dict[TableId, ReleaseTable]:
    return {tid: spec for tid, spec in release_tables().items() if tid[0] != LINKING}


def sources() -> list[str]:
    return list(dict.fromkeys(source for source, _ in research_tables()))


def source_tables(source: str) -> list[ReleaseTable]:
    """A source's tables, parents before children."""
    tables = [spec for (s, _), spec in research_tables().items() if s == source]
    ordered: list[ReleaseTable] = []
    while len(ordered) < len(tables):
        placed = {t.name for t in ordered}
        for spec in tables:
            if spec.name not in placed and (spec.parent is None or spec.parent in placed):
                ordered.append(spec)
    return ordered


def person_table(source: str) -> ReleaseTable:
    return next(spec for spec in source_tables(source) if spec.person_key)


def parent_key(spec: ReleaseTable) -> tuple[str, str, str] | None:
    """(foreign key column, parent table, parent column) of a research table with a parent."""
    fks = spec.foreign_keys
    if not fks:
        return None
    fk = fks[0]
    return fk.name, fk.references[0], fk.references[1]


def is_one_to_one(spec: ReleaseTable) -> bool:
    """A child keyed on its parent's id (OASys detail tables): at most one row per parent."""
    link = parent_key(spec)
    return link is not None and spec.unique_key == (link[0],)


def quasi_identifiers(spec: ReleaseTable) -> list[str]:
    columns = [c.name for c in spec.columns if c.role in QI_ROLES or (c.role == "categorical" and c.name in QI_NAMED)]
    if spec.event_date and spec.event_date in spec.column_names:
        columns.append(spec.event_date)
    return columns


def parent_rows(spec: ReleaseTable, tables: dict[TableId, pl.DataFrame]) -> pl.Series | None:
    """Row number of each row's parent in the parent table (null for an orphan); None without a parent."""
    link = parent_key(spec)
    if link is None or (spec.source, link[1]) not in tables:
        return None
    fk, parent_name, parent_col = link
    # Keys are compared by a 64-bit hash of the text: one join on integers instead of strings.
    keyed = tables[(spec.source, parent_name)].select(pl.col(parent_col).hash().alias("_k")).with_row_index("_row")
    rows = tables[table_id(spec)].select(pl.col(fk).hash().alias("_k"), pl.col(fk).is_null().alias("_null"))
    joined = rows.join(keyed.unique("_k", keep="first"), on="_k", how="left", maintain_order="left")
    return joined.select(pl.when(~pl.col("_null")).then(pl.col("_row")))["_row"]


def units(spec: ReleaseTable, tables: dict[TableId, pl.DataFrame], parents: pl.Series | None = None) -> pl.Series:
    """Who each row is about, for counting people: the row's person (directly or through its parent).

    Rows without a person (cases, companies, rows whose person is unknown) count as one unit each,
    so a small cell is small whether it is made of people or of cases. `parents`: `parent_rows`, if
    already known.
    """
    frame = tables[table_id(spec)]
    # Persons are even numbers, rows without a person odd ones: the two never collide.
    row_unit = pl.int_range(0, pl.len(), dtype=pl.Int64) * 2 + 1
    if spec.person_key:
        return frame.select(pl.coalesce(pl.col(spec.person_key).cast(pl.Int64) * 2, row_unit).alias("unit"))["unit"]
    parents = parents if parents is not None else parent_rows(spec, tables)
    if parents is None:
        return frame.select(row_unit.alias("unit"))["unit"]
    parent_spec = release_tables()[(spec.source, parent_key(spec)[1])]
    inherited = units(parent_spec, tables).gather(parents)
    return pl.DataFrame({"_p": inherited}).select(
        pl.coalesce(pl.when(pl.col("_p") % 2 == 0).then(pl.col("_p")), row_unit).alias("unit"))["unit"]
