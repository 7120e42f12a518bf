"""How close the synthetic release is to the real one in shape, and how far from real people.

    report = evaluate_synthetic(real, synthetic)     # both: (source, table) -> frame
    report.summary                                   # headline figures
    report.failures()                                # floors not met ([] when all hold)
    markdown, html = report_markdown(report), report_html(report)

Fidelity
    shape      per non-key column: 1 - Kolmogorov-Smirnov statistic (numbers, ages, dates) or
               1 - total variation distance (categories, flags, areas), on present values
    structure  children per parent, rows per person and persons per cross-justice id compared the same way
Integrity
    every foreign key of every synthetic table (and both linking tables) resolves to an existing
    row; the cross-justice lookup covers exactly the synthetic persons and its ids nest; every
    table's unique key is unique and present
Privacy (on tables with at least two quasi-identifiers: age, sex, ethnicity, area, offence group,
event date)
    DCR        distance from each record of a sample to the closest record of a sample of the real
               table (Gower: mismatch 0/1 for categories, |difference| / real range for numbers and
               dates, averaged over quasi-identifiers), for synthetic records and for random records
               whose every quasi-identifier is drawn on its own from the approved summaries (what anyone
               holding the summaries could make, with no link to any real record). Synthetic records
               must not be closer to real people than those: the floor fails when the synthetic mean is
               below the random mean by more than three standard errors of the difference (sampling
               noise; for independent sampling the two means are equal in expectation). For context,
               also the DCR of records drawn column by column from the real values (before disclosure
               control; rarer values make these a little farther).
    uniques    share of the real table's unique quasi-identifier combinations (event date as month)
               that appear in the synthetic table, next to the same share for as many random records
"""

from __future__ import annotations

from collections.abc import Collection, Container, Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from datafirst_assets.deidentify.release_spec import ReleaseTable, release_tables
from datafirst_assets.common.tables import markdown_table
from datafirst_assets.reporting import Section, bar_chart, render_report
from datafirst_assets.synthetic.generate import column_rng, generate_column
from datafirst_assets.synthetic.summaries import persons_per_id, summarise_release, xjs_shape_counts
from datafirst_assets.synthetic.tables import (
    CASE_LOOKUP_ID,
    KEY_ROLES,
    XJS_LOOKUP_ID,
    TableId,
    name_of,
    parent_key,
    person_table,
    quasi_identifiers,
    sources,
)

SHAPE_FLOOR = 0.9
INTEGRITY_FLOOR = 1.0
SAMPLE_VALUES = 200_000  # values per side for shape similarity
DCR_REAL_SAMPLE, DCR_QUERY_SAMPLE = 5_000, 2_000
DCR_TOLERANCE_SE = 3.0


@dataclass
class SyntheticReport:
    shapes: pl.DataFrame  # table, column, role, metric, similarity, missing_real, missing_synthetic
    structure: pl.DataFrame  # table, relation, similarity
    integrity: pl.DataFrame  # table, check, rows, passing, share
    privacy: pl.DataFrame  # table, quasi_identifiers, dcr_synthetic, dcr_random, ..., dcr_ok
    summary: dict = field(default_factory=dict)

    def failures(self) -> dict[str, list[str]]:
        """Floors not met, per check (each list empty when the floor holds)."""
        integrity = self.integrity.filter(pl.col("share") < INTEGRITY_FLOOR)
        return {
            "referential_integrity": [f"{r['table']}: {r['check']} {r['share']:.4%}" for r in
                                      integrity.filter(pl.col("kind") == "integrity").iter_rows(named=True)],
            "key_uniqueness": [f"{r['table']}: {r['check']} {r['share']:.4%}" for r in
                               integrity.filter(pl.col("kind") == "uniqueness").iter_rows(named=True)],
            "shape_similarity": [] if self.summary["mean_shape_similarity"] >= SHAPE_FLOOR else
            [f"mean column-shape similarity {self.summary['mean_shape_similarity']:.4f} < {SHAPE_FLOOR}"],
            "dcr_vs_random": [
                f"{r['table']}: synthetic mean DCR {r['dcr_synthetic']:.4f} < random {r['dcr_random']:.4f}"
                for r in self.privacy.filter(~pl.col("dcr_ok")).iter_rows(named=True)
            ],
        }


# -- fidelity -------------------------------------------------------------------------------------

def ks_complement(real: np.ndarray, synthetic: np.ndarray) -> float:
    if real.size == 0 or synthetic.size == 0:
        return float(real.size == synthetic.size)
    a, b = np.sort(real), np.sort(synthetic)
    points = np.concatenate([a, b])
    gap = np.abs(np.searchsorted(a, points, "right") / a.size - np.searchsorted(b, points, "right") / b.size)
    return float(1.0 - gap.max())


def tv_complement(real: pl.Series, synthetic: pl.Series) -> float:
    if real.len() == 0 or synthetic.len() == 0:
        return float(real.len() == synthetic.len())
    p = real.value_counts(normalize=True, name="p").rename({real.name: "v"})
    q = synthetic.value_counts(normalize=True, name="q").rename({synthetic.name: "v"})
    # in value order: value_counts' order varies from run to run, and with it the sum's last bits
    both = p.join(q, on="v", how="full", coalesce=True).fill_null(0.0).sort("v", nulls_last=True)
    # clipped: summing shares can leave 1 - 1.0000000000000009, a "similarity" under 0
    return min(max(float(1.0 - 0.5 * (both["p"] - both["q"]).abs().sum()), 0.0), 1.0)


def _numeric(values: pl.Series) -> np.ndarray:
    if values.dtype == pl.Date:
        values = values.cast(pl.Int32)
    return values.cast(pl.Float64).to_numpy()


def _sample(values: pl.Series, n: int, seed: int) -> pl.Series:
    return values.sample(n, seed=seed) if values.len() > n else values


def shape_similarity(real: pl.Series, synthetic: pl.Series, *, seed: int = 0) -> tuple[str, float]:
    real, synthetic = real.drop_nulls(), synthetic.drop_nulls()
    if real.dtype in (pl.String, pl.Boolean):
        return "tv_complement", tv_complement(real.cast(pl.String), synthetic.cast(pl.String))
    return "ks_complement", ks_complement(_numeric(_sample(real, SAMPLE_VALUES, seed)),
                                          _numeric(_sample(synthetic, SAMPLE_VALUES, seed)))


def column_shapes(real: Mapping[TableId, pl.DataFrame], synthetic: Mapping[TableId, pl.DataFrame],
                  only: Container[TableId] | None = None) -> pl.DataFrame:
    """`only`: the tables to compare (None: all); the same for every pass below."""
    rows = []
    for tid, spec in release_tables().items():
        if tid not in real or tid not in synthetic or (only is not None and tid not in only):
            continue
        for column in spec.columns:
            if column.role in KEY_ROLES:
                continue
            metric, score = shape_similarity(real[tid][column.name], synthetic[tid][column.name])
            rows.append({
                "table": name_of(tid), "column": column.name, "role": column.role, "metric": metric,
                "similarity": score, "missing_real": _null_share(real[tid][column.name]),
                "missing_synthetic": _null_share(synthetic[tid][column.name]),
            })
    schema = {"table": pl.String, "column": pl.String, "role": pl.String, "metric": pl.String,
              "similarity": pl.Float64, "missing_real": pl.Float64, "missing_synthetic": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def _null_share(values: pl.Series) -> float:
    return values.null_count() / values.len() if values.len() else 0.0


def _children_per_parent(child: pl.Series, parent: pl.Series) -> pl.Series:
    counts = child.drop_nulls().value_counts(name="n").rename({child.name: "k"})
    return (parent.alias("k").to_frame().join(counts, on="k", how="left")
            .select(pl.col("n").fill_null(0).cast(pl.String))["n"])


def structure_similarity(real: Mapping[TableId, pl.DataFrame], synthetic: Mapping[TableId, pl.DataFrame],
                         only: Container[TableId] | None = None) -> pl.DataFrame:
    """Children per parent, rows per person and persons per cross-justice id: real against synthetic."""
    rows = []

    def add(tid: TableId, relation: str, real_counts: pl.Series, synthetic_counts: pl.Series) -> None:
        rows.append({"table": name_of(tid), "relation": relation,
                     "similarity": tv_complement(real_counts.cast(pl.String), synthetic_counts.cast(pl.String))})

    for tid, spec in release_tables().items():
        if tid not in real or tid not in synthetic or (only is not None and tid not in only):
            continue
        link = parent_key(spec)
        parent_id = (spec.source, link[1]) if link else None
        if link and parent_id in real and parent_id in synthetic:
            add(tid, f"{link[0]}: rows per `{link[1]}` row",
                _children_per_parent(real[tid][link[0]], real[parent_id][link[2]]),
                _children_per_parent(synthetic[tid][link[0]], synthetic[parent_id][link[2]]))
        if spec.person_key and tid != XJS_LOOKUP_ID:
            add(tid, f"rows per {spec.person_key}",
                real[tid][spec.person_key].drop_nulls().value_counts()["count"],
                synthetic[tid][spec.person_key].drop_nulls().value_counts()["count"])
    if XJS_LOOKUP_ID in real and XJS_LOOKUP_ID in synthetic and (only is None or XJS_LOOKUP_ID in only):
        per_id = {side: persons_per_id(xjs_shape_counts(frames[XJS_LOOKUP_ID]))
                  for side, frames in (("real", real), ("synthetic", synthetic))}
        for level in ("high", "medium", "low"):
            series = {side: pl.Series(np.repeat([c["persons"] for c in per_id[side][level]],
                                                [c["ids"] for c in per_id[side][level]]))
                      for side in per_id}
            add(XJS_LOOKUP_ID, f"persons per xjs_person_id_{level}", series["real"], series["synthetic"])
    return pl.DataFrame(rows, schema={"table": pl.String, "relation": pl.String, "similarity": pl.Float64})


# -- integrity ------------------------------------------------------------------------------------

def _resolves(rows: pl.DataFrame, keys: pl.DataFrame, on: list[str]) -> tuple[int, int]:
    present = rows.select(on).drop_nulls()
    return present.height, present.join(keys.select(on).unique(), on=on, how="semi").height


def integrity_checks(tables: Mapping[TableId, pl.DataFrame], only: Container[TableId] | None = None) -> pl.DataFrame:
    """Every key relation and unique key of a release (synthetic or real), as shares that must be 1."""
    rows = []

    def add(tid: TableId, kind: str, check: str, total: int, passing: int) -> None:
        rows.append({"table": name_of(tid), "kind": kind, "check": check, "rows": total, "passing": passing,
                     "share": passing / total if total else 1.0})

    specs = release_tables()
    for tid in tables:
        if only is not None and tid not in only:
            continue
        frame, spec = tables[tid], specs[tid]
        for fk in spec.foreign_keys:
            parent_table, parent_col = fk.references
            parent_source = {"hocas_flatfile": "magistrates", "xhibit_flatfile": "crown_court"}.get(
                parent_table, spec.source) if tid == CASE_LOOKUP_ID else spec.source
            parent = tables.get((parent_source, parent_table))
            if parent is not None:
                total, passing = _resolves(frame.select(pl.col(fk.name).alias("k")),
                                           parent.select(pl.col(parent_col).alias("k")), ["k"])
                add(tid, "integrity", f"{fk.name} -> {parent_source}.{parent_table}", total, passing)
        keys = list(spec.unique_key) or ([spec.primary_key] if spec.primary_key else [])
        if keys:
            key_frame = frame.select(keys)
            passing = key_frame.select(
                (pl.all_horizontal(pl.all().is_not_null()) & ~pl.struct(keys).is_duplicated()).sum()).item()
            add(tid, "uniqueness", f"({', '.join(keys)}) unique and present", frame.height, passing)
        if spec.primary_key and spec.primary_key not in keys:
            add(tid, "uniqueness", f"{spec.primary_key} unique", frame.height, frame[spec.primary_key].n_unique())
    if XJS_LOOKUP_ID in tables and (only is None or XJS_LOOKUP_ID in only):
        rows.extend(_xjs_integrity(tables))
    return pl.DataFrame(rows, schema={"table": pl.String, "kind": pl.String, "check": pl.String,
                                      "rows": pl.Int64, "passing": pl.Int64, "share": pl.Float64})


def _xjs_integrity(tables: Mapping[TableId, pl.DataFrame]) -> list[dict]:
    lookup = tables[XJS_LOOKUP_ID]
    name = name_of(XJS_LOOKUP_ID)
    rows = []
    for source in sources():
        spec = person_table(source)
        if (source, spec.name) not in tables:
            continue
        persons = tables[(source, spec.name)].select(pl.col(spec.person_key).alias("dataset_person_id")).drop_nulls()
        in_lookup = lookup.filter(pl.col("source_dataset") == source).select("dataset_person_id")
        total, passing = _resolves(in_lookup, persons, ["dataset_person_id"])
        rows.append({"check": f"(source_dataset='{source}', dataset_person_id) -> {source}.{spec.name}",
                     "rows": total, "passing": passing})
        total, passing = _resolves(persons.unique(), in_lookup, ["dataset_person_id"])
        rows.append({"check": f"every {source}.{spec.person_key} in the lookup", "rows": total, "passing": passing})
    for inner, outer in (("high", "medium"), ("medium", "low")):
        ids = lookup.group_by(f"xjs_person_id_{inner}").agg(pl.col(f"xjs_person_id_{outer}").n_unique().alias("n"))
        rows.append({"check": f"xjs_person_id_{inner} nests in xjs_person_id_{outer}", "rows": ids.height,
                     "passing": ids.filter(pl.col("n") == 1).height})
    return [{"table": name, "kind": "integrity", **r, "share": r["passing"] / r["rows"] if r["rows"] else 1.0}
            for r in rows]


# -- privacy --------------------------------------------------------------------------------------

def _encode(frames: list[pl.DataFrame], spec: ReleaseTable, columns: list[str]) -> tuple[list[np.ndarray], list[float | None]]:
    """Each frame as one array per column: category codes (-1 missing) or numbers (NaN missing), and each
    numeric column's real range (None for categories); the first frame is the real one."""
    encoded: list[list[np.ndarray]] = [[] for _ in frames]
    ranges: list[float | None] = []
    for column in columns:
        values = [f[column] for f in frames]
        if values[0].dtype in (pl.String, pl.Boolean):
            domain = pl.concat([v.cast(pl.String) for v in values]).drop_nulls().unique().sort()
            lookup = {v: i for i, v in enumerate(domain.to_list())}
            for i, v in enumerate(values):
                encoded[i].append(v.cast(pl.String).replace_strict(lookup, default=-1, return_dtype=pl.Int64)
                                  .fill_null(-1).to_numpy())
            ranges.append(None)
        else:
            numbers = [_numeric(v) for v in values]
            present = numbers[0][~np.isnan(numbers[0])]
            ranges.append(float(present.max() - present.min()) if present.size else 0.0)
            for i, v in enumerate(numbers):
                encoded[i].append(v)
    return encoded, ranges


def _gower_columns(arrays: list[np.ndarray], span: float | None) -> list[np.ndarray]:
    """One column of every frame, ready for `_closest`: category codes as they are, numbers as float32
    divided by the real range, a missing number as one far-off value. Two missing values then
    differ by 0, one missing by more than 1 (capped at 1), as Gower distance treats them."""
    if span is None:
        return arrays
    if span <= 0:  # one value in the real data: same or different, missing as its own value
        return [np.where(np.isnan(a), np.inf, a) for a in arrays]
    scaled = [a.astype(np.float32) / np.float32(span) for a in arrays]
    far = np.float32(2.0 + max((np.nanmax(np.abs(a)) for a in scaled if a.size and not np.isnan(a).all()),
                               default=0.0))
    return [np.where(np.isnan(a), far, a) for a in scaled]


def _closest(queries: list[np.ndarray], reference: list[np.ndarray], ranges: list[float | None]) -> np.ndarray:
    """Gower distance from each query row to its closest reference row.

    float32 in place, one block of 512 queries at a time: the same distances as float64
    temporaries per column (to float32 rounding), at a third of the synthetic report's time."""
    n = queries[0].size
    best = np.empty(n)
    columns = [_gower_columns([q, r], span) for q, r, span in zip(queries, reference, ranges)]
    for start in range(0, n, 512):
        stop = min(n, start + 512)
        total = np.zeros((stop - start, reference[0].size), dtype=np.float32)
        diff = np.empty_like(total)
        for (q, r), span in zip(columns, ranges):
            a, b = q[start:stop, None], r[None, :]
            if span is None or span <= 0:
                total += a != b
                continue
            np.subtract(a, b, out=diff)
            np.abs(diff, out=diff)
            np.minimum(diff, 1.0, out=diff)
            total += diff
        best[start:stop] = total.min(axis=1) / len(queries)
    return best


def independent_random(real: pl.DataFrame, columns: list[str], n: int, seed: int) -> pl.DataFrame:
    """n records whose every column is drawn on its own from the real column's values."""
    return pl.DataFrame([real[c].sample(n, with_replacement=True, seed=seed + i).alias(c)
                         for i, c in enumerate(columns)])


def random_from_summaries(summary: dict, spec: ReleaseTable, columns: list[str], n: int, seed: int) -> pl.DataFrame:
    """n records whose every column is drawn on its own from the approved summaries: what anyone holding
    the summaries could make, with no link to any real record."""
    return pl.DataFrame([
        generate_column(summary["columns"][c], n, column_rng(seed, "random", spec.source, spec.name, c))
        .cast(spec.column(c).dtype).alias(c)
        for c in columns
    ])


def _month(frame: pl.DataFrame, spec: ReleaseTable, columns: list[str]) -> pl.DataFrame:
    return frame.select([pl.col(c).dt.truncate("1mo") if spec.column(c).dtype == pl.Date else pl.col(c)
                         for c in columns])


def privacy_metrics(real: Mapping[TableId, pl.DataFrame], synthetic: Mapping[TableId, pl.DataFrame],
                    doc: dict, *, seed: int = 0, only: Container[TableId] | None = None) -> pl.DataFrame:
    rows = []
    for tid, spec in release_tables().items():
        if only is not None and tid not in only:
            continue
        qi = quasi_identifiers(spec)
        summary = doc["tables"].get(name_of(tid))
        if (tid not in real or tid not in synthetic or summary is None or len(qi) < 2 or real[tid].is_empty()
                or synthetic[tid].is_empty()):
            continue
        r, s = real[tid].select(qi), synthetic[tid].select(qi)
        reference = r.sample(min(r.height, DCR_REAL_SAMPLE), seed=seed)
        queries = s.sample(min(s.height, DCR_QUERY_SAMPLE), seed=seed + 1)
        randoms = random_from_summaries(summary, spec, qi, queries.height, seed + 2)
        shuffled = independent_random(r, qi, queries.height, seed + 3)
        (ref_enc, syn_enc, rnd_enc, shf_enc), ranges = _encode([reference, queries, randoms, shuffled], spec, qi)
        dcr_s, dcr_r = _closest(syn_enc, ref_enc, ranges), _closest(rnd_enc, ref_enc, ranges)
        dcr_shuffled = _closest(shf_enc, ref_enc, ranges)
        se = float(np.sqrt(dcr_s.var(ddof=1) / dcr_s.size + dcr_r.var(ddof=1) / dcr_r.size)) if dcr_s.size > 1 else 0.0
        real_qi, syn_qi = _month(r, spec, qi), _month(s, spec, qi)
        uniques = real_qi.group_by(qi).len().filter(pl.col("len") == 1).drop("len")
        random_full = _month(random_from_summaries(summary, spec, qi, s.height, seed + 4), spec, qi)
        rows.append({
            "table": name_of(tid), "quasi_identifiers": ", ".join(qi),
            "dcr_synthetic": float(dcr_s.mean()), "dcr_random": float(dcr_r.mean()),
            "dcr_shuffled_real": float(dcr_shuffled.mean()),
            "exact_matches_synthetic": float((dcr_s == 0).mean()), "exact_matches_random": float((dcr_r == 0).mean()),
            "dcr_ok": bool(dcr_s.mean() >= dcr_r.mean() - DCR_TOLERANCE_SE * se),
            "real_uniques": uniques.height,
            "uniques_reproduced": _share_found(uniques, syn_qi, qi),
            "uniques_reproduced_random": _share_found(uniques, random_full, qi),
        })
    schema = {"table": pl.String, "quasi_identifiers": pl.String, "dcr_synthetic": pl.Float64,
              "dcr_random": pl.Float64, "dcr_shuffled_real": pl.Float64,
              "exact_matches_synthetic": pl.Float64, "exact_matches_random": pl.Float64, "dcr_ok": pl.Boolean,
              "real_uniques": pl.Int64, "uniques_reproduced": pl.Float64, "uniques_reproduced_random": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def _share_found(uniques: pl.DataFrame, other: pl.DataFrame, on: list[str]) -> float:
    if uniques.is_empty():
        return 0.0
    return uniques.join(other.unique(), on=on, how="semi", nulls_equal=True).height / uniques.height


# -- the report -----------------------------------------------------------------------------------

def evaluate_synthetic(real: Mapping[TableId, pl.DataFrame], synthetic: Mapping[TableId, pl.DataFrame],
                       doc: dict | None = None, *, seed: int = 0, only: Container[TableId] | None = None,
                       earlier: SyntheticReport | None = None) -> SyntheticReport:
    """`doc`: the approved summaries the synthetic tables were made from (default: summarise `real`).
    `only` and `earlier`: compare only the tables in `only`, and take every other table's rows from
    `earlier` (the same rows, in the same order, as comparing every table: see `merge_rows`)."""
    doc = doc if doc is not None else summarise_release(real)
    parts = [column_shapes(real, synthetic, only), structure_similarity(real, synthetic, only),
             integrity_checks(synthetic, only), privacy_metrics(real, synthetic, doc, seed=seed, only=only)]
    if earlier is not None:
        old = (earlier.shapes, earlier.structure, earlier.integrity, earlier.privacy)
        compared = {name_of(tid) for tid in only} if only is not None else set()
        parts = [merge_rows(before, now, compared) for before, now in zip(old, parts)]
    shapes, structure, integrity, privacy = parts
    summary = {
        "tables": len(synthetic),
        "rows_real": sum(_heights(real).values()),
        "rows_synthetic": sum(_heights(synthetic).values()),
        "mean_shape_similarity": float(shapes["similarity"].mean()) if shapes.height else 1.0,
        "min_shape_similarity": float(shapes["similarity"].min()) if shapes.height else 1.0,
        "mean_structure_similarity": float(structure["similarity"].mean()) if structure.height else 1.0,
        "referential_integrity": _min_share(integrity, "integrity"),
        "key_uniqueness": _min_share(integrity, "uniqueness"),
        "dcr_tables_ok": int(privacy["dcr_ok"].sum()), "dcr_tables": privacy.height,
        "uniques_reproduced": float(privacy["uniques_reproduced"].mean()) if privacy.height else 0.0,
        "uniques_reproduced_random": float(privacy["uniques_reproduced_random"].mean()) if privacy.height else 0.0,
    }
    return SyntheticReport(shapes, structure, integrity, privacy, summary)


def _heights(tables: Mapping[TableId, pl.DataFrame]) -> dict[TableId, int]:
    """Rows per table, counted where the tables live when they are read on use (none is loaded)."""
    heights = getattr(tables, "heights", None)
    return heights() if callable(heights) else {tid: frame.height for tid, frame in tables.items()}


def dataset_of(table_name: pl.Expr) -> pl.Expr:
    """The dataset of a report row's `table` (`source.table`)."""
    return table_name.str.split(".").list.first()


def merge_rows(earlier: pl.DataFrame, now: pl.DataFrame, compared: Collection[str] = ()) -> pl.DataFrame:
    """Rows kept from an earlier report (tables not compared again) and rows of the tables compared
    now, in release order: each pass lists its rows dataset by dataset, in release order within
    one, so a stable sort on the dataset gives a full comparison's row order. `earlier` rows of a
    table in `compared` (a dataset kept but for that table) are stale: the table's new rows take
    the place of the first of them (a pass lists a table's rows together), new rows of a table
    without earlier ones go after their dataset's kept rows."""
    order = {dataset: i for i, dataset in enumerate(dict.fromkeys(source for source, _ in release_tables()))}
    earlier = earlier.cast(now.schema).with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("_at"))
    stale = earlier.filter(pl.col("table").is_in(list(compared)))
    anchors = dict(stale.group_by("table").agg(pl.col("_at").min()).iter_rows())
    now = now.with_columns(pl.col("table").replace_strict(anchors, default=earlier.height, return_dtype=pl.Int64)
                           .alias("_at"))
    rows = pl.concat([earlier.filter(~pl.col("table").is_in(list(compared))), now])
    rank = dataset_of(pl.col("table")).replace_strict(order, default=len(order), return_dtype=pl.Int64)
    return rows.with_columns(rank.alias("_rank")).sort("_rank", "_at", maintain_order=True).drop("_rank", "_at")


def _min_share(integrity: pl.DataFrame, kind: str) -> float:
    shares = integrity.filter(pl.col("kind") == kind)["share"]
    return float(shares.min()) if shares.len() else 1.0


def _sections(report: SyntheticReport) -> list[tuple[str, str, pl.DataFrame | None]]:
    s = report.summary
    floors = report.failures()
    headline = pl.DataFrame({
        "measure": ["Mean column-shape similarity", "Lowest column-shape similarity", "Mean structure similarity",
                    "Referential integrity (lowest share)", "Key uniqueness (lowest share)",
                    "Tables with DCR not below random", "Real unique QI combinations reproduced (mean)",
                    "... by as many random records (mean)"],
        "value": [f"{s['mean_shape_similarity']:.4f}", f"{s['min_shape_similarity']:.4f}",
                  f"{s['mean_structure_similarity']:.4f}", f"{s['referential_integrity']:.4%}",
                  f"{s['key_uniqueness']:.4%}", f"{s['dcr_tables_ok']} / {s['dcr_tables']}",
                  f"{s['uniques_reproduced']:.4%}", f"{s['uniques_reproduced_random']:.4%}"],
        "floor": [f">= {SHAPE_FLOOR}", "", "", "100%", "100%", "all", "", ""],
        "met": ["yes" if not floors["shape_similarity"] else "NO", "", "",
                "yes" if not floors["referential_integrity"] else "NO",
                "yes" if not floors["key_uniqueness"] else "NO",
                "yes" if not floors["dcr_vs_random"] else "NO", "", ""],
    })
    per_table = report.shapes.group_by("table", maintain_order=True).agg(
        pl.len().alias("columns"), pl.col("similarity").mean().alias("mean_similarity"),
        pl.col("similarity").min().alias("lowest"),
        pl.col("column").sort_by("similarity").first().alias("lowest_column"))
    return [
        ("Headline", f"{s['tables']} synthetic tables, {s['rows_synthetic']:,} rows "
                     f"(real release: {s['rows_real']:,} rows).", headline),
        ("Column shapes per table", "1 - KS statistic for numbers, ages and dates; 1 - total variation "
                                    "distance for categories, flags and areas (present values only).", per_table),
        ("Structure", "Children per parent, rows per person and persons per cross-justice id, "
                      "real against synthetic (1 - total variation distance).", report.structure),
        ("Integrity and uniqueness", "Every key relation of the synthetic release and every unique key "
                                     "(share of rows that pass; must be 100%).", report.integrity),
        ("Privacy", "Mean distance to the closest real record (Gower over the quasi-identifiers, samples of "
                    f"{DCR_QUERY_SAMPLE:,} records against {DCR_REAL_SAMPLE:,} real ones) for synthetic records, "
                    "for random records drawn column by column from the approved summaries (the floor: "
                    "synthetic not closer, within 3 standard errors) and from the real values (context); "
                    "share of the real table's unique quasi-identifier combinations reproduced.", report.privacy),
        ("Every column", "", report.shapes),
    ]


def report_markdown(report: SyntheticReport) -> str:
    parts = ["# Synthetic release: fidelity and privacy", "",
             "SYNTHETIC DATA: every table compared here was generated; no row is a real record.", ""]
    for title, text, frame in _sections(report):
        parts += [f"## {title}", ""] + ([text, ""] if text else []) + [markdown_table(frame), ""]
    return "\n".join(parts)


SYNTHETIC_LABEL = "SYNTHETIC DATA: every table compared here was generated; no row is a real record."


def report_html(report: SyntheticReport) -> str:
    """The shared report style; column-shape similarity per table as a chart."""
    sections = []
    for title, text, frame in _sections(report):
        chart = None
        if title == "Column shapes per table":
            chart = bar_chart(frame, "table", "mean_similarity", title="Mean column-shape similarity per table",
                              y_title="similarity", horizontal=True, domain=(0.0, 1.0))
        sections.append(Section(title, [text] if text else [], frame, chart))
    return render_report("Synthetic release: fidelity and privacy", sections, label=SYNTHETIC_LABEL)

