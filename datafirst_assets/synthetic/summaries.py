"""Disclosure-checked summaries of the release: the only thing synthetic generation reads.

    doc = summarise_release(release)            # (source, table) -> de-identified frame
    problems = check_summaries(doc)             # [] when no published cell is small
    text = summaries_json(doc)                  # what a reviewer reads and approves

Per column (by its role in the release spec):

    categorical, area, flag   rows and people per value; values seen for fewer than k people dropped
    age, numeric, score       clipped to the [q, 1-q] quantiles (q >= k / n, so at least k values lie
                              beyond each bound), then a histogram: one bin per value for narrow
                              integer ranges, about `bins` equal-count bins otherwise; bins with
                              fewer than k people merged with their neighbours; equal-count bin
                              edges of amounts and lengths rounded outwards to 3 significant figures
    date                      clipped likewise, monthly histogram, small months merged
    system_id, primary_key    shape only: length, share distinct, share missing
    person_key                rows per person (histogram, small counts merged)
    foreign_key               children per parent row, zero included (histogram, small counts merged)
    every column              share missing (nulls from fewer than k people are not published)

"People" are the row's per-dataset person, reached through the parent for child tables;
rows that reach no person (cases, companies) count one each. The cross-justice lookup is
summarised as the nested shape of each cross-justice person (which datasets, grouped how at
the high / medium / low thresholds); a shape seen fewer than k times loses one person at a
time (to an id of its own) until it is a shape seen at least k times. Count histograms keep the mean of merged bins
(so row totals survive) and leave the top bin open, so no one's maximum is published.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cache
from datetime import date

import numpy as np
import polars as pl

from datafirst_assets.deidentify.release_spec import ReleaseColumn, ReleaseTable, release_tables
from datafirst_assets.synthetic.tables import (
    CASE_LOOKUP_ID,
    XJS_LOOKUP_ID,
    TableId,
    name_of,
    parent_key,
    parent_rows,
    table_id,
    units,
)

FORMAT = "datafirst-synthetic-summaries/1"
LEVELS = ("high", "medium", "low")
# Separators of a cross-justice shape: datasets of one high-threshold id, high ids of one medium
# id, medium ids of one low id.
HIGH_SEP, MEDIUM_SEP, LOW_SEP = "+", ",", " | "


@dataclass(frozen=True)
class SummaryRules:
    k: int = 10  # smallest number of people (or rows without a person) a published cell may hold
    clip_quantile: float = 0.01
    bins: int = 100  # equal-count bins for wide numeric ranges
    max_exact_range: int = 200  # integer columns whose clipped range is narrower keep one bin per value


def summarise_release(tables: Mapping[TableId, pl.DataFrame], rules: SummaryRules = SummaryRules(),
                      summarise=None) -> dict:
    """The summaries document for every release table present in `tables`. `summarise(tid)`: the
    summary of one table (default `summarise_one(tid, tables, rules)`; see `summary_parts`)."""
    doc: dict = {"format": FORMAT, "rules": asdict(rules), "tables": {}}
    for tid in release_tables():
        if tid in tables:
            doc["tables"][name_of(tid)] = summarise(tid) if summarise else summarise_one(tid, tables, rules)
    return doc


def summarise_one(tid: TableId, tables: Mapping[TableId, pl.DataFrame], rules: SummaryRules) -> dict:
    """One release table's summary (it may also read its parent and, for the case lookup, Crown Court's flatfile)."""
    if tid == XJS_LOOKUP_ID:
        return summarise_xjs_lookup(tables[tid], rules)
    summary = summarise_table(release_tables()[tid], tables, rules)
    if tid == CASE_LOOKUP_ID and ("crown_court", "xhibit_flatfile") in tables:
        summary["linked_share_of_crown_court"] = _share(
            tables[tid].height, tables[("crown_court", "xhibit_flatfile")].height)
    return summary


def summaries_json(doc: dict) -> str:
    return json.dumps(doc, indent=1, sort_keys=False, ensure_ascii=False) + "\n"


def summaries_sha256(doc: dict, text: str | None = None) -> str:
    """The document's sha256 (of `summaries_json(doc)`; pass `text` when it is already encoded:
    the JSON encoder with an indent runs in Python, ~0.1 s for the demo's document)."""
    return hashlib.sha256((summaries_json(doc) if text is None else text).encode("utf-8")).hexdigest()


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def summarise_table(spec: ReleaseTable, tables: Mapping[TableId, pl.DataFrame], rules: SummaryRules) -> dict:
    frame = tables[table_id(spec)]
    parents = parent_rows(spec, tables)
    unit = units(spec, tables, parents)
    by_person = bool((unit % 2 == 0).any())
    columns = {}
    for column in spec.columns:
        columns[column.name] = summarise_column(column, frame[column.name], unit, spec, tables, rules, parents)
    return {
        "source": spec.source, "table": spec.name, "grain": spec.grain, "rows": frame.height,
        "units": "people" if by_person else "rows", "columns": columns,
    }


def summarise_column(column: ReleaseColumn, values: pl.Series, unit: pl.Series, spec: ReleaseTable,
                     tables: Mapping[TableId, pl.DataFrame], rules: SummaryRules,
                     parents: pl.Series | None = None) -> dict:
    out: dict = {"role": column.role, "dtype": str(column.dtype)}
    role = column.role
    if role == "primary_key":
        return {**out, "kind": "primary_key", "length": _length(values)}
    if role == "foreign_key":
        out.update(kind="foreign_key", references=list(column.references), missing=_missing(values, unit, rules.k))
        link = parent_key(spec)
        if link and link[0] == column.name and (spec.source, link[1]) in tables:
            parent_spec = release_tables()[(spec.source, link[1])]
            parent_height = tables[(spec.source, link[1])].height
            parents = parents if parents is not None else parent_rows(spec, tables)
            counts = pl.Series(np.bincount(parents.drop_nulls().to_numpy(), minlength=parent_height), dtype=pl.Int64)
            out["children_per_parent"] = count_histogram(counts, units(parent_spec, tables), rules.k)
        return out
    missing = _missing(values, unit, rules.k)
    out["missing"] = missing
    if role == "system_id":
        return {**out, "kind": "hash", "length": _length(values), "distinct_share": distinct_share(values)}
    if role == "person_key":
        per_person = values.drop_nulls().value_counts(name="_n")["_n"].cast(pl.Int64)
        return {**out, "kind": "person_key", "rows_per_person": count_histogram(per_person, None, rules.k)}
    if missing == 1.0:
        return {**out, "kind": "suppressed"}
    present = values.is_not_null()
    values, unit = values.filter(present), unit.filter(present)
    if role in ("categorical", "area", "flag"):
        kept, dropped = value_counts(values.cast(pl.String), unit, rules.k)
        kind = "flag" if role == "flag" else "categorical"
        return {**out, "kind": kind, "values": kept, "values_suppressed": dropped}
    if column.dtype == pl.Date:
        return {**out, "kind": "date", **_date_histogram(values, unit, rules)}
    if column.dtype.is_integer():
        return {**out, "kind": "integer", **_numeric_histogram(values.cast(pl.Int64), unit, rules, integer=True,
                                                               round_edges=role == "numeric")}
    return {**out, "kind": "continuous", **_numeric_histogram(values.cast(pl.Float64), unit, rules, integer=False,
                                                              round_edges=role == "numeric")}


def distinct_share(values: pl.Series) -> float:
    """Distinct share of the present values, to 4 decimals, counted by their 64-bit hashes: four
    times faster than comparing the strings (hashed ids; 1.2 s of a 1,000,000-people extract's
    summaries in a profile). Two different values share a hash with probability under
    n**2 / 2**65 (5e-8 for 1.3M values), and one shared hash moves the share by 1/n, seen only at
    a rounding boundary; the share is a generator's target (`generate.hash_pool`), not a count
    researchers read."""
    present = values.drop_nulls()
    return round(present.hash(seed=0).n_unique() / present.len(), 4) if present.len() else 1.0


def _length(values: pl.Series) -> int:
    lengths = values.drop_nulls().str.len_bytes()
    return int(lengths.mode().max()) if lengths.len() else 64


def _missing(values: pl.Series, unit: pl.Series, k: int) -> float:
    """Share of rows missing; 0 when the missing rows belong to fewer than k people, 1 when the present ones do."""
    nulls = values.is_null()
    if not nulls.any():
        return 0.0
    if _fewer_units_than(unit.filter(~nulls), k):
        return 1.0
    if _fewer_units_than(unit.filter(nulls), k):
        return 0.0
    return round(nulls.sum() / values.len(), 6)


def _fewer_units_than(unit: pl.Series, k: int) -> bool:
    """``unit.n_unique() < k``, answered from the first rows when they already hold k units: counting
    every distinct unit of a column's present (or missing) rows, for each column with a missing value,
    was a fifth of the summaries' distinct counts at 1M people."""
    return unit.len() < k or (unit.head(64 * k).n_unique() < k and unit.n_unique() < k)


def value_counts(values: pl.Series, unit: pl.Series, k: int) -> tuple[list[dict], int]:
    stats = (
        pl.DataFrame({"value": values, "unit": unit})
        .group_by("value").agg(rows=pl.len(), units=pl.col("unit").n_unique())
    )
    kept = stats.filter(pl.col("units") >= k).sort(["rows", "value"], descending=[True, False])
    return kept.to_dicts(), stats.height - kept.height


def _clip_bounds(values: pl.Series, rules: SummaryRules) -> tuple | None:
    """[q, 1-q] quantiles, with q large enough that at least k values lie at or beyond each bound."""
    n = values.len()
    if n < 2 * rules.k:
        return None
    q = max(rules.clip_quantile, rules.k / n)
    return values.quantile(q, interpolation="lower"), values.quantile(1 - q, interpolation="higher")


def _numeric_histogram(values: pl.Series, unit: pl.Series, rules: SummaryRules, *, integer: bool,
                       round_edges: bool) -> dict:
    bounds = _clip_bounds(values, rules)
    if bounds is None:
        return {"bins": [], "note": "fewer than 2k values: not published"}
    clipped = values.clip(*bounds)
    exact = integer and bounds[1] - bounds[0] <= rules.max_exact_range
    bins = histogram(clipped, unit, rules.k, bins=None if exact else rules.bins)
    if round_edges and not exact:
        # Equal-count bins end on recorded values (an amount, a sentence length): publish them rounded
        # outwards to 3 significant figures instead.
        bins = [{**b, "lo": round_significant(b["lo"], down=True), "hi": round_significant(b["hi"], down=False)}
                for b in bins]
    out: dict = {"bins": [{"lo": b["lo"], "hi": b["hi"], "rows": b["rows"], "units": b["units"]} for b in bins]}
    if integer:
        out["bins"] = [{**b, "lo": int(b["lo"]), "hi": int(b["hi"])} for b in out["bins"]]
    else:
        out["decimals"] = _decimals(values)
    return out


def round_significant(value: float, *, down: bool, digits: int = 3) -> float:
    if value == 0:
        return 0.0
    exponent = math.floor(math.log10(abs(value))) - digits + 1
    scaled = value / 10**exponent
    rounded = (math.floor(scaled) if down else math.ceil(scaled)) * 10**exponent
    return round(rounded, max(0, -exponent))


def _decimals(values: pl.Series) -> int | None:
    for decimals in range(5):
        scaled = values * 10**decimals
        if ((scaled - scaled.round(0)).abs() < 1e-6).all():
            return decimals
    return None


def _date_histogram(values: pl.Series, unit: pl.Series, rules: SummaryRules) -> dict:
    bounds = _clip_bounds(values, rules)
    if bounds is None:
        return {"bins": [], "note": "fewer than 2k values: not published"}
    clipped = values.clip(*bounds)
    months = (clipped.dt.year().cast(pl.Int64) * 12 + clipped.dt.month().cast(pl.Int64) - 1).alias("v")
    bins = histogram(months, unit, rules.k, bins=None)
    return {"bins": [{"lo": _month(b["lo"]), "hi": _month(b["hi"]), "rows": b["rows"], "units": b["units"]}
                     for b in bins]}


def _month(index: int) -> str:
    return f"{int(index) // 12:04d}-{int(index) % 12 + 1:02d}"


def month_start(label: str) -> date:
    year, month = label.split("-")
    return date(int(year), int(month), 1)


def count_histogram(counts: pl.Series, unit: pl.Series | None, k: int) -> list[dict]:
    """Histogram of a count per parent (children, rows per person): merged bins keep their mean, the top bin is open."""
    unit = unit if unit is not None else pl.int_range(0, counts.len(), dtype=pl.Int64, eager=True)
    bins = histogram(counts.cast(pl.Int64), unit, k, bins=None)
    out = [{"lo": int(b["lo"]), "hi": int(b["hi"]), "mean": round(b["mean"], 4), "rows": b["rows"],
            "units": b["units"]} for b in bins]
    if out and out[-1]["lo"] != out[-1]["hi"]:
        out[-1]["hi"] = None
    return out


def histogram(values: pl.Series, unit: pl.Series, k: int, *, bins: int | None) -> list[dict]:
    """Bins of sorted values, each holding at least k units: one start bin per distinct value
    (`bins=None`) or about `bins` equal-count bins (ties never split), then small bins merged
    with their neighbours. [] when all values together hold fewer than k units."""
    frame = pl.DataFrame({"v": values, "unit": unit}).sort("v")
    n = frame.height
    if n == 0:
        return []
    start = pl.col("v").rank("dense") if bins is None else (pl.col("v").rank("min") - 1) * bins // n
    frame = frame.with_columns(start.cast(pl.Int64).alias("bin"))
    stats = frame.group_by("bin").agg(pl.col("unit").n_unique().alias("units")).sort("bin")
    labels, acc, group = [], 0, 0
    for units_in_bin in stats["units"].to_list():
        labels.append(group)
        acc += units_in_bin
        if acc >= k:
            group, acc = group + 1, 0
    if acc and group == 0:
        return []
    if acc:  # the last bins hold fewer than k: they join the group before
        labels = [min(label, group - 1) for label in labels]
    mapping = pl.DataFrame({"bin": stats["bin"], "group": pl.Series(labels, dtype=pl.Int64)})
    frame = frame.join(mapping, on="bin", how="left")
    distinct_units = None  # counted only when a merged bin is short of k people (then: can they be?)
    while True:
        merged = (
            frame.group_by("group")
            .agg(lo=pl.col("v").min(), hi=pl.col("v").max(), mean=pl.col("v").cast(pl.Float64).mean(),
                 rows=pl.len(), units=pl.col("unit").n_unique())
            .sort("group")
        )
        small = merged.filter(pl.col("units") < k)["group"].to_list()
        if small and distinct_units is None:
            distinct_units = frame["unit"].n_unique() == n
        if distinct_units or not small:
            return merged.drop("group").to_dicts()
        if merged.height == 1:
            return []
        # A person in several bins was counted in each: merge a bin still short of k into a neighbour.
        groups = merged["group"].to_list()
        at = groups.index(small[0])
        into = groups[at + 1] if at + 1 < len(groups) else groups[at - 1]
        frame = frame.with_columns(pl.col("group").replace(small[0], into))


# -- the cross-justice lookup -------------------------------------------------------------------

def xjs_shapes(lookup: pl.DataFrame) -> pl.DataFrame:
    """The shape of every cross-justice person (low-threshold id), e.g. `crown_court+magistrates,prison | civil`:
    medium ids separated by ` | `, high ids within a medium id by `,`, datasets within a high id by `+`
    (each level sorted, so a shape is spelt one way). Columns `xjs_person_id_low`, `shape`."""
    # Sorting once and joining in order is much faster than sorting inside every group.
    high = (
        lookup.sort("xjs_person_id_high", "source_dataset").group_by("xjs_person_id_high", maintain_order=True)
        .agg(pl.col("source_dataset").str.join(HIGH_SEP).alias("shape"),
             pl.col("xjs_person_id_medium").first(), pl.col("xjs_person_id_low").first())
    )
    medium = (
        high.sort("xjs_person_id_medium", "shape").group_by("xjs_person_id_medium", maintain_order=True)
        .agg(pl.col("shape").str.join(MEDIUM_SEP), pl.col("xjs_person_id_low").first())
    )
    return (
        medium.sort("xjs_person_id_low", "shape").group_by("xjs_person_id_low", maintain_order=True)
        .agg(pl.col("shape").str.join(LOW_SEP))
    )


def xjs_shape_counts(lookup: pl.DataFrame) -> Counter:
    """How many cross-justice persons (low-threshold ids) have each shape.

    Shapes are strings, and building one per id is slow on millions of rows; ids are grouped by a
    numeric signature of their shape first (per high id: datasets as base-64 digits; per medium and
    low id: a sum of hashes of the parts, which does not depend on order), and only one id per
    signature is spelt out."""
    mask = (1 << 55) - 1  # sums of a few dozen parts stay inside Int64
    datasets = sorted(lookup["source_dataset"].unique().drop_nulls().to_list())
    digit = pl.col("source_dataset").replace_strict({d: 64**i for i, d in enumerate(datasets)}, return_dtype=pl.Int64)
    high = lookup.group_by("xjs_person_id_high").agg(
        digit.sum().alias("sig"), pl.col("xjs_person_id_medium").first(), pl.col("xjs_person_id_low").first())
    part = (pl.col("sig").hash(seed=1) & mask).cast(pl.Int64)
    medium = high.group_by("xjs_person_id_medium").agg(part.sum().alias("sig"), pl.col("xjs_person_id_low").first())
    low = medium.group_by("xjs_person_id_low").agg(part.sum().alias("sig"))
    signatures = low.group_by("sig").agg(pl.len().alias("n"), pl.col("xjs_person_id_low").min().alias("example"))
    examples = lookup.filter(pl.col("xjs_person_id_low").is_in(signatures["example"].implode()))
    named = dict(xjs_shapes(examples).iter_rows())
    counts: Counter = Counter()
    for example, n in signatures.select("example", "n").iter_rows():
        counts[named[example]] += n
    return counts


def _parse(shape: str) -> list[list[list[str]]]:
    return [[high.split(HIGH_SEP) for high in medium.split(MEDIUM_SEP)] for medium in shape.split(LOW_SEP)]


def _format(nested: list[list[list[str]]]) -> str:
    mediums = [sorted(HIGH_SEP.join(sorted(high)) for high in medium if high) for medium in nested]
    return LOW_SEP.join(sorted(MEDIUM_SEP.join(medium) for medium in mediums if medium))


@cache
def _size(shape: str) -> int:
    """Per-dataset persons in a shape."""
    return sum(len(high) for medium in _parse(shape) for high in medium)


def _reductions(shape: str) -> set[tuple[str, str]]:
    """(shape without one of its persons, that person's dataset) for every person of a shape."""
    nested = _parse(shape)
    out = set()
    for m, medium in enumerate(nested):
        for h, high in enumerate(medium):
            for d, dataset in enumerate(high):
                reduced = [[list(hh) for hh in mm] for mm in nested]
                del reduced[m][h][d]
                out.add((_format(reduced), dataset))
    return out


def suppress_shapes(counts: Counter, k: int) -> tuple[Counter, int]:
    """Coarsen shapes seen fewer than k times: the largest rare shape loses the one person whose removal
    leaves the most common shape (the person gets a cross-justice id of its own), until no shape of two
    or more persons is rarer than k. Returns the new counts and how many ids were coarsened."""
    counts = Counter({shape: n for shape, n in counts.items() if n})
    rare = {shape for shape, n in counts.items() if n < k and _size(shape) > 1}
    coarsened = 0
    while rare:
        shape = max(rare, key=lambda s: (_size(s), s))
        rare.discard(shape)
        n = counts.pop(shape)
        reduced, dataset = max(_reductions(shape), key=lambda c: (counts.get(c[0], 0), c[0], c[1]))
        for part in (reduced, dataset):
            counts[part] += n
            if counts[part] >= k or _size(part) == 1:
                rare.discard(part)
            else:
                rare.add(part)
        coarsened += n
    return counts, coarsened


def shape_persons(shape: str) -> list[tuple[int, int, str]]:
    """(medium index, high index, dataset) of every per-dataset person in a shape."""
    return [
        (m, h, dataset)
        for m, medium in enumerate(shape.split(LOW_SEP))
        for h, high in enumerate(medium.split(MEDIUM_SEP))
        for dataset in high.split(HIGH_SEP)
    ]


def persons_per_id(shapes: Mapping[str, int]) -> dict[str, list[dict]]:
    """How many per-dataset persons share one cross-justice id, per threshold, from shape counts."""
    per_level: dict[str, Counter] = {level: Counter() for level in LEVELS}
    for shape, n in shapes.items():
        mediums = shape.split(LOW_SEP)
        per_level["low"][sum(len(m.replace(MEDIUM_SEP, HIGH_SEP).split(HIGH_SEP)) for m in mediums)] += n
        for medium in mediums:
            highs = medium.split(MEDIUM_SEP)
            per_level["medium"][sum(len(h.split(HIGH_SEP)) for h in highs)] += n
            for high in highs:
                per_level["high"][len(high.split(HIGH_SEP))] += n
    return {level: [{"persons": p, "ids": c} for p, c in sorted(counter.items())]
            for level, counter in per_level.items()}


def summarise_xjs_lookup(lookup: pl.DataFrame, rules: SummaryRules) -> dict:
    shapes, coarsened = suppress_shapes(xjs_shape_counts(lookup), rules.k)
    ordered = sorted(shapes.items(), key=lambda item: (-item[1], item[0]))
    return {
        "source": "linking", "table": "xjs_lookup", "rows": lookup.height, "units": "cross-justice persons",
        "persons_per_dataset": dict(sorted(lookup["source_dataset"].value_counts().iter_rows())),
        "shapes": [{"shape": shape, "ids": n} for shape, n in ordered],
        "ids_coarsened_for_disclosure": coarsened,
        "persons_per_id": persons_per_id(shapes),
    }


def check_summaries(doc: dict) -> list[str]:
    """Every published cell of a summaries document, checked against its own k: [] when none is small."""
    k = doc["rules"]["k"]
    problems = []
    for name, table in doc["tables"].items():
        for shape in table.get("shapes", []):
            if shape["ids"] < k and _size(shape["shape"]) > 1:
                problems.append(f"{name}: shape {shape['shape']!r} seen {shape['ids']} times")
        for column, summary in table.get("columns", {}).items():
            cells = [*summary.get("values", []), *summary.get("bins", []),
                     *summary.get("children_per_parent", []), *summary.get("rows_per_person", [])]
            for cell in cells:
                if cell["units"] < k:
                    label = cell.get("value", (cell.get("lo"), cell.get("hi")))
                    problems.append(f"{name}.{column}: {label!r} holds {cell['units']} < {k}")
    return problems
