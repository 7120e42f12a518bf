"""Low-fidelity synthetic release tables, generated from the summaries document alone.

    tables = synthesise_release(doc, seed=0, scale=1.0)    # (source, table) -> frame

Each table has exactly the release's columns, order and types. Keys are made up and wired
so every join of the real release works: parents are generated before children, each parent
gets a number of children drawn from the real children-per-parent distribution and its
children carry its key; per-dataset person ids are dealt to rows following the rows-per-person
distribution; the cross-justice lookup groups the synthetic persons into cross-justice ids of
the published shapes; the case lookup pairs synthetic magistrates' and Crown Court rows one to
one. Every other column is drawn on its own from its published marginal (stratified: each
value gets its share of rows, in random order), so relationships between columns are not kept.

Deterministic: every column has its own random stream, seeded by `seed` and the column's name,
so a table does not change when another one is added. `scale` multiplies the row counts of the
tables without a parent (1.0: as many as in the real release); children follow their parents.
"""

from __future__ import annotations

import zlib
from collections.abc import Container, Mapping
from datetime import date

import numpy as np
import polars as pl
import pyarrow as pa

from datafirst_assets.deidentify.release_spec import ReleaseTable, release_tables
from datafirst_assets.synthetic.summaries import month_start, shape_persons
from datafirst_assets.synthetic.tables import (
    CASE_LOOKUP_ID,
    XJS_LOOKUP_ID,
    TableId,
    is_one_to_one,
    name_of,
    parent_key,
    person_table,
    source_tables,
    sources,
)

EPOCH = date(1970, 1, 1)


def column_rng(seed: int, *names: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(".".join(names).encode("utf-8"))])


def synthesise_release(doc: dict, *, seed: int = 0, scale: float = 1.0) -> dict[TableId, pl.DataFrame]:
    """Every table the document summarises (a table whose parent is not summarised is skipped)."""
    tables: dict[TableId, pl.DataFrame] = {}
    for source in sources():
        tables.update(synthesise_source(doc, source, seed=seed, scale=scale))
    tables.update(synthesise_linking(doc, tables, seed=seed))
    return tables


def synthesise_source(doc: dict, source: str, *, seed: int = 0, scale: float = 1.0) -> dict[TableId, pl.DataFrame]:
    out: dict[TableId, pl.DataFrame] = {}
    for spec in source_tables(source):
        summary = doc["tables"].get(name_of((source, spec.name)))
        link = parent_key(spec)
        parent = out.get((source, link[1])) if link else None
        if summary is None or (link and parent is None):
            continue
        out[(source, spec.name)] = synthesise_table(spec, summary, parent, seed=seed, scale=scale)
    return out


def synthesise_table(spec: ReleaseTable, summary: dict, parent: pl.DataFrame | None, *,
                     seed: int = 0, scale: float = 1.0) -> pl.DataFrame:
    link = parent_key(spec)
    columns: dict[str, pl.Series] = {}
    if link is not None:
        fk, _, parent_col = link
        fk_summary = summary["columns"][fk]
        rng = column_rng(seed, spec.source, spec.name, fk)
        children = draw_counts(fk_summary.get("children_per_parent", []), parent.height, rng)
        if is_one_to_one(spec):
            children = np.minimum(children, 1)
        keys = parent[parent_col].gather(np.repeat(np.arange(parent.height), children))
        extra = _null_rows(keys.len(), fk_summary.get("missing", 0.0))
        columns[fk] = pl.concat([keys, pl.Series(fk, [None] * extra, dtype=pl.String)]).alias(fk)
        n = columns[fk].len()
    else:
        n = int(round(summary["rows"] * scale))
    for column in spec.columns:
        if column.name in columns:
            continue
        rng = column_rng(seed, spec.source, spec.name, column.name)
        columns[column.name] = generate_column(summary["columns"][column.name], n, rng).alias(column.name)
    return pl.DataFrame([columns[c] for c in spec.column_names]).cast(spec.schema()).select(spec.column_names)


def _null_rows(present: int, missing: float) -> int:
    """Rows to add so that `missing` of all rows are null."""
    return int(round(present * missing / (1 - missing))) if 0 < missing < 1 else 0


def generate_column(summary: dict, n: int, rng: np.random.Generator) -> pl.Series:
    kind = summary["kind"]
    if kind == "primary_key":
        return random_hex(n, summary["length"], rng)
    if kind == "foreign_key":
        raise ValueError("foreign keys are made from their parent's keys (synthesise_table, the linking tables)")
    nulls = null_positions(n, summary.get("missing", 0.0), rng)
    present = n - nulls.size
    if kind == "hash":
        values = hash_pool(present, summary["distinct_share"], summary["length"], rng)
    elif kind == "person_key":
        values = assign_persons(present, summary["rows_per_person"], rng)
    elif kind in ("categorical", "flag"):
        values = sample_values(summary["values"], present, rng, flag=kind == "flag")
    elif kind in ("integer", "continuous", "date") and summary["bins"]:
        values = sample_bins(summary, present, rng)
    else:  # suppressed, or no bin published
        return pl.Series([None] * n, dtype=_null_dtype(summary))
    return with_nulls(values, nulls, n)


def _null_dtype(summary: dict) -> pl.DataType:
    return {"date": pl.Date, "integer": pl.Int64, "continuous": pl.Float64, "flag": pl.Boolean}.get(
        summary["kind"], pl.String)


def null_positions(n: int, missing: float, rng: np.random.Generator) -> np.ndarray:
    count = int(round(n * missing))
    return np.sort(rng.choice(n, size=count, replace=False)) if count else np.empty(0, dtype=np.int64)


def with_nulls(values: pl.Series, nulls: np.ndarray, n: int) -> pl.Series:
    if nulls.size == 0:
        return values
    keep = np.ones(n, dtype=bool)
    keep[nulls] = False
    # Present values fill the non-null positions in order.
    position = np.cumsum(keep) - 1
    index = pl.Series(np.where(keep, position, 0)).set(pl.Series(~keep), None)
    return values.gather(index)


def quota(weights: list[float] | np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Rows per cell: each cell gets its share of n, the remainder going to the largest fractions."""
    w = np.asarray(weights, dtype=np.float64)
    if n <= 0 or w.size == 0 or w.sum() <= 0:
        return np.zeros(w.size, dtype=np.int64)
    raw = w / w.sum() * n
    counts = np.floor(raw).astype(np.int64)
    short = n - int(counts.sum())
    if short:
        order = np.lexsort((rng.random(w.size), -(raw - counts)))
        counts[order[:short]] += 1
    return counts


def stratified(weights, n: int, rng: np.random.Generator) -> np.ndarray:
    """Cell index of each of n rows, cells in proportion to `weights`, rows in random order."""
    counts = quota(weights, n, rng)
    return rng.permutation(np.repeat(np.arange(counts.size), counts))


def sample_values(values: list[dict], n: int, rng: np.random.Generator, *, flag: bool = False) -> pl.Series:
    if not values:
        return pl.Series([None] * n, dtype=pl.Boolean if flag else pl.String)
    labels = [v["value"] == "true" for v in values] if flag else [v["value"] for v in values]
    return pl.Series(labels).gather(stratified([v["rows"] for v in values], n, rng))


def sample_bins(summary: dict, n: int, rng: np.random.Generator) -> pl.Series:
    bins = summary["bins"]
    cell = stratified([b["rows"] for b in bins], n, rng)
    if summary["kind"] == "date":
        lo = np.array([(month_start(b["lo"]) - EPOCH).days for b in bins], dtype=np.int64)
        hi = np.array([(_next_month(month_start(b["hi"])) - EPOCH).days - 1 for b in bins], dtype=np.int64)
        days = rng.integers(lo[cell], hi[cell] + 1)
        return pl.Series(days.astype(np.int32)).cast(pl.Date)
    lo = np.array([b["lo"] for b in bins], dtype=np.float64)[cell]
    hi = np.array([b["hi"] for b in bins], dtype=np.float64)[cell]
    if summary["kind"] == "integer":
        return pl.Series(rng.integers(lo.astype(np.int64), hi.astype(np.int64) + 1))
    drawn = lo + (hi - lo) * rng.random(n)
    if summary.get("decimals") is not None:
        drawn = np.clip(np.round(drawn, summary["decimals"]), lo, hi)
    return pl.Series(drawn)


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def draw_counts(histogram: list[dict], n: int, rng: np.random.Generator) -> np.ndarray:
    """n counts from a count histogram; a merged bin gives the two whole numbers around its mean."""
    if not histogram or n <= 0:
        return np.zeros(max(n, 0), dtype=np.int64)
    cell = stratified([b["rows"] for b in histogram], n, rng)
    means = np.array([b["mean"] for b in histogram], dtype=np.float64)[cell]
    base = np.floor(means)
    return (base + (rng.random(n) < means - base)).astype(np.int64)


def assign_persons(n: int, rows_per_person: list[dict], rng: np.random.Generator) -> pl.Series:
    """Per-dataset person ids for n rows, each person holding a number of rows drawn from the histogram."""
    if not rows_per_person or n == 0:
        return pl.Series([None] * n, dtype=pl.Int64)
    mean = sum(b["rows"] * b["mean"] for b in rows_per_person) / sum(b["rows"] for b in rows_per_person)
    counts = np.maximum(draw_counts(rows_per_person, max(1, int(round(n / mean))), rng), 1)
    while counts.sum() < n:
        counts = np.concatenate([counts, np.maximum(draw_counts(rows_per_person, len(counts) // 10 + 1, rng), 1)])
    ids = rng.permutation(counts.size).astype(np.int64) + 1
    return pl.Series(rng.permutation(np.repeat(ids, counts)[:n]))


def random_hex(n: int, length: int, rng: np.random.Generator) -> pl.Series:
    """n random lower-case hex strings of `length` characters (the shape of the release's keyed hashes)."""
    width = length + length % 2
    text = rng.bytes(n * width // 2).hex().encode("ascii")
    offsets = np.arange(0, n * width + 1, width, dtype=np.int64)
    array = pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text)])
    series = pl.from_arrow(array)
    return series.str.slice(0, length) if width != length else series


def hash_pool(n: int, distinct_share: float, length: int, rng: np.random.Generator) -> pl.Series:
    """n hashes of which about `distinct_share` are distinct (shared case numbers, a person's PNC, ...)."""
    distinct = min(n, max(1, int(round(n * distinct_share)))) if n else 0
    pool = random_hex(distinct, length, rng)
    if distinct == n:
        return pool
    # Every pool value is used at least once, the rest repeat at random.
    index = np.concatenate([np.arange(distinct), rng.integers(0, distinct, n - distinct)])
    return pool.gather(rng.permutation(index))


# -- the linking tables ----------------------------------------------------------------------------

def synthesise_linking(doc: dict, tables: Mapping[TableId, pl.DataFrame], *, seed: int = 0,
                       only: Container[TableId] | None = None) -> dict[TableId, pl.DataFrame]:
    """The cross-justice lookup over the synthetic persons and the case lookup over the synthetic cases.
    `only`: the linking tables to draw (None: both). Each is drawn from its own summary, its own random
    stream and its own inputs (`linking_reads`), so one drawn alone is the one drawn with the other."""
    out: dict[TableId, pl.DataFrame] = {}
    specs = release_tables()
    xjs_summary = doc["tables"].get(name_of(XJS_LOOKUP_ID))
    if xjs_summary is not None and (only is None or XJS_LOOKUP_ID in only):
        persons = {}
        for source in sources():
            spec = person_table(source)
            if (source, spec.name) in tables:
                persons[source] = tables[(source, spec.name)][spec.person_key].drop_nulls().unique().sort()
        out[XJS_LOOKUP_ID] = synthesise_xjs_lookup(xjs_summary, persons, seed=seed).cast(
            specs[XJS_LOOKUP_ID].schema())
    case_summary = doc["tables"].get(name_of(CASE_LOOKUP_ID))
    hocas, xhibit = tables.get(("magistrates", "hocas_flatfile")), tables.get(("crown_court", "xhibit_flatfile"))
    if case_summary is not None and hocas is not None and xhibit is not None and (only is None or CASE_LOOKUP_ID in only):
        out[CASE_LOOKUP_ID] = synthesise_case_lookup(
            case_summary, hocas["defendant_case_id_hash"], xhibit["defendant_on_case_id_hash"], seed=seed)
    return out


def linking_reads(tid: TableId) -> list[TableId]:
    """The synthetic person tables a linking table is drawn from (`synthesise_linking`): the
    cross-justice lookup every dataset's persons, the case lookup the two flatfiles' rows."""
    if tid == XJS_LOOKUP_ID:
        return [(source, person_table(source).name) for source in sources()]
    return [("magistrates", "hocas_flatfile"), ("crown_court", "xhibit_flatfile")]

def synthesise_xjs_lookup(summary: dict, persons: Mapping[str, pl.Series], *, seed: int = 0) -> pl.DataFrame:
    """Deal the synthetic per-dataset persons into cross-justice ids of the published shapes.

    Shape counts are scaled to the number of synthetic persons; a shape slot whose dataset has run
    out of persons stays empty, a person left over gets a cross-justice id of its own. Ids at the
    three thresholds are nested because they are parts of one shape.
    """
    rng = column_rng(seed, "linking", "xjs_lookup")
    shapes = summary["shapes"]
    real_persons = sum(summary["persons_per_dataset"].values()) or 1
    synthetic_persons = sum(s.len() for s in persons.values())
    counts = quota([s["ids"] for s in shapes], int(round(sum(s["ids"] for s in shapes)
                                                          * synthetic_persons / real_persons)), rng)
    template = pl.DataFrame(
        [(i, m, h, dataset) for i, s in enumerate(shapes) for m, h, dataset in shape_persons(s["shape"])],
        schema={"shape": pl.Int64, "m": pl.Int64, "h": pl.Int64, "source_dataset": pl.String}, orient="row",
    )
    ids = pl.DataFrame({"shape": np.repeat(np.arange(len(shapes), dtype=np.int64), counts)}).with_row_index("cluster")
    # Joins do not keep row order: sort before random numbers are dealt by position.
    slots = (ids.with_columns(pl.col("cluster").cast(pl.Int64)).join(template, on="shape").drop("shape")
             .sort("cluster", "m", "h", "source_dataset"))
    slots = (
        slots.with_columns(pl.Series("_u", rng.random(slots.height)))
        .sort("_u").drop("_u")
        .with_columns(pl.int_range(pl.len(), dtype=pl.Int64).over("source_dataset").alias("slot"))
    )
    dealt = pl.concat([
        pl.DataFrame({"dataset_person_id": ids_.gather(rng.permutation(ids_.len())).cast(pl.Int64)})
        .with_columns(pl.lit(source, pl.String).alias("source_dataset"),
                      pl.int_range(pl.len(), dtype=pl.Int64).alias("slot"))
        for source, ids_ in persons.items()
    ], how="vertical_relaxed") if persons else pl.DataFrame(
        schema={"source_dataset": pl.String, "dataset_person_id": pl.Int64, "slot": pl.Int64})
    joined = dealt.join(slots, on=["source_dataset", "slot"], how="left")
    joined = joined.sort("source_dataset", "slot")
    placed, left_over = joined.filter(pl.col("cluster").is_not_null()), joined.filter(pl.col("cluster").is_null())
    left_over = left_over.with_columns(
        (ids.height + pl.int_range(pl.len(), dtype=pl.Int64)).alias("cluster"), m=pl.lit(0, pl.Int64),
        h=pl.lit(0, pl.Int64))
    joined = pl.concat([placed, left_over])
    for level, key in (("low", ["cluster"]), ("medium", ["cluster", "m"]), ("high", ["cluster", "m", "h"])):
        numbered = joined.select(key).unique().sort(key)
        numbered = numbered.with_columns(
            pl.Series(f"xjs_person_id_{level}", rng.permutation(numbered.height).astype(np.int64) + 1))
        joined = joined.join(numbered, on=key, how="left")
    return joined.select(
        "source_dataset", "dataset_person_id", "xjs_person_id_high", "xjs_person_id_medium", "xjs_person_id_low",
    ).sort("source_dataset", "dataset_person_id")


def synthesise_case_lookup(summary: dict, hocas_keys: pl.Series, xhibit_keys: pl.Series, *,
                           seed: int = 0) -> pl.DataFrame:
    """One-to-one pairs of synthetic magistrates' and Crown Court rows, as many as the real share linked."""
    spec = release_tables()[CASE_LOOKUP_ID]
    rng = column_rng(seed, "linking", "case_lookup")
    # Drawn from the keys in their sorted order, not as read: the warehouse does not preserve the
    # order of a scan (`preserve_insertion_order=false`), and at 300,000 people two reads of the same
    # stored flatfile came back in different orders, so the draw, and the release id, varied.
    hocas_keys, xhibit_keys = hocas_keys.sort(), xhibit_keys.sort()
    share = summary.get("linked_share_of_crown_court", 0.0)
    n = min(int(round(share * xhibit_keys.len())), hocas_keys.len(), xhibit_keys.len())
    columns = {
        "defendant_case_id_hash": hocas_keys.gather(rng.permutation(hocas_keys.len())[:n]),
        "defendant_on_case_id_hash": xhibit_keys.gather(rng.permutation(xhibit_keys.len())[:n]),
    }
    for column in spec.columns:
        if column.name not in columns:
            columns[column.name] = generate_column(summary["columns"][column.name], n,
                                                   column_rng(seed, "linking", "case_lookup", column.name))
    return pl.DataFrame([columns[c].alias(c) for c in spec.column_names]).cast(spec.schema())
