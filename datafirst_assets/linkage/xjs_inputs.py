"""The cross-justice lookup's inputs built in DuckDB from the stored tables, not in polars.

    keys, variants, vmap = lookup_inputs(conn, {source: (records_table, clusters_table), ...})
    result = xjs.link_variants(keys, variants, vmap, ...)

The same inputs ``xjs.records_with_persons`` + ``xjs.person_variants`` build from polars frames
(the variant numbering differs; nothing outside the run sees it), but the person records and
clusters of the seven datasets are joined, concatenated and reduced to distinct variants by
DuckDB where they are stored: Python receives only each record's three keys and the distinct
variants, not every column of fourteen tables and their concatenation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import duckdb
import polars as pl

from datafirst_assets.linkage.settings import LINKAGE_FIELDS, SOURCE_DATASET, UNIQUE_ID
from datafirst_assets.linkage.xjs_incremental import (
    DIGEST_COLUMNS,
    KeysInDatabase,
    digest_halves_sql,
    variant_digest_sql,
    variants_hash_sql,
)
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.common.sql import quote_literal

PERSON = "person_id_dataset"
SEP = ":"  # as xjs.SEP
_NOT_PERSON = (UNIQUE_ID, "model_version", SOURCE_DATASET, "match_threshold", "record_hash")


def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return list(conn.sql(f"select * from {table} limit 0").columns)


def person_id_column_of(source: str, columns: Sequence[str]) -> str:
    """The per-dataset person id column of a stored clusters table (as ``xjs.person_id_column``)."""
    name = SOURCES[source].person_id_name if source in SOURCES else None
    if name and name in columns:
        return name
    others = [c for c in columns if c not in _NOT_PERSON]
    if len(others) != 1:
        raise ValueError(f"{source}: cannot tell the person id column of clusters {list(columns)}")
    return others[0]


def _source_sql(conn: duckdb.DuckDBPyConnection, source: str, records: str, clusters: str) -> str:
    """One source's records with their person key (null when its clusters give it none)."""
    pid = person_id_column_of(source, _columns(conn, clusters))
    fields = [c for c in LINKAGE_FIELDS if c in _columns(conn, records)]
    joined = (f"from {records} r left join {clusters} c on r.{UNIQUE_ID}::varchar = c.{UNIQUE_ID}::varchar")
    selected = ", ".join(f'r."{c}"' for c in fields)
    return (f"select {quote_literal(source)} as {SOURCE_DATASET}, r.{UNIQUE_ID}::varchar as {UNIQUE_ID}, "
            f"{quote_literal(source + SEP)} || c.\"{pid}\"::varchar as {PERSON}{', ' + selected if selected else ''} {joined}")


def _check_persons(conn: duckdb.DuckDBPyConnection, tables: Mapping[str, tuple[str, str]]) -> None:
    """Raises as ``records_with_persons`` does (the first source in order with a problem: a record
    with several person ids, else records with none), in two queries over every source instead of
    two per source (the records' keys are read from ``_xjs_records``, already joined)."""
    several = dict(conn.execute(" union all ".join(
        f"select {quote_literal(s)}, count(*) - count(distinct {UNIQUE_ID}::varchar) from {c}"
        for s, (_, c) in tables.items())).fetchall())
    missing = dict(conn.execute(f"select {SOURCE_DATASET}, count(*) from _xjs_records where {PERSON} is null "
                                f"group by {SOURCE_DATASET}").fetchall())
    for source in tables:
        if several.get(source):
            raise ValueError(f"{source}: a record has several person ids in clusters")
        if missing.get(source):
            raise ValueError(f"{source}: {missing[source]} person records have no per-dataset person id")


def lookup_inputs(conn: duckdb.DuckDBPyConnection, tables: Mapping[str, tuple[str, str]], *,
                  with_hashes: bool = False, ordered: bool = True, keys_into: str | None = None) -> tuple:
    """(keys, variants, vmap) of ``xjs.link_variants`` from stored tables: ``tables[source]`` is
    (person_records table, clusters table), names DuckDB resolves on ``conn``. ``with_hashes``:
    also each person's variants hash (``xjs_incremental.variants_hashes``), computed here where
    the variants are, instead of sending every variant to another database to be hashed.
    ``ordered``: the variants numbered (and listed) in the order of their dataset, person and
    fields, which training needs (it samples rows, so the numbering must not vary between runs);
    False numbers them as they come, skipping a sort of every variant, for a run that only scores
    with a saved model (an edge's score does not depend on its variants' numbers; see
    ``defs.xjs.lookup_inputs_for``). ``keys_into``: a table name (in a catalog that outlives
    ``conn``) the keys are stored in instead of being read into Python; ``keys`` is then a
    ``KeysInDatabase`` (``link_variants`` builds no lookup frame: it is joined where it is carried,
    ``xjs_incremental.RecordsAndPersons``)."""
    if not tables:
        raise ValueError("no person records given")
    union = " union all by name ".join(_source_sql(conn, s, r, c) for s, (r, c) in tables.items())
    conn.execute(f"create or replace temp table _xjs_records as {union}")
    try:
        _check_persons(conn, tables)
        fields = [c for c in LINKAGE_FIELDS if c in _columns(conn, "_xjs_records")]
        typed = [f'"{c}"::date as "{c}"' if c == "dob" else f'"{c}"' for c in fields]
        keys_sql = f"select {SOURCE_DATASET}, {UNIQUE_ID}, {PERSON} from _xjs_records"
        if keys_into is not None:
            conn.execute(f"create or replace table {keys_into} as {keys_sql}")
            keys = KeysInDatabase(keys_into, conn.execute(f"select count(*) from {keys_into}").fetchall()[0][0])
        else:
            keys = pl.from_arrow(conn.sql(keys_sql).to_arrow_table())
        listed = ", ".join([SOURCE_DATASET, PERSON, *(f'"{c}"' for c in fields)])
        # each variant's digest taken once: its halves go with the variant map, their sums make the hashes
        conn.execute(f"""create or replace temp table _xjs_variants as select *, {variant_digest_sql(fields)} as _digest
                         from (select distinct {SOURCE_DATASET}, {PERSON} {''.join(', ' + t for t in typed)}
                         from _xjs_records)""")
        distinct = pl.from_arrow(conn.sql(f"""
            select (row_number() over ({f'order by {listed}' if ordered else ''}) - 1)::varchar as variant_id,
                   * exclude (_digest), {digest_halves_sql('_digest')}
            from _xjs_variants
            """).to_arrow_table())
        hashes = pl.from_arrow(conn.sql(variants_hash_sql("_xjs_variants", fields, with_dataset=True, digest="_digest"))
                              .to_arrow_table()) if with_hashes else None
    finally:
        conn.execute("drop table if exists _xjs_records")
        conn.execute("drop table if exists _xjs_variants")
    variants = distinct.select(pl.col("variant_id").alias(UNIQUE_ID), SOURCE_DATASET, *fields)  # type: ignore[union-attr]
    vmap = distinct.select("variant_id", SOURCE_DATASET, PERSON, *DIGEST_COLUMNS)  # type: ignore[union-attr]
    if with_hashes:
        return keys, variants, vmap, hashes  # type: ignore[return-value]
    return keys, variants, vmap  # type: ignore[return-value]
