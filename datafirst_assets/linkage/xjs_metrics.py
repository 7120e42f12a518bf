"""Quality of the cross-justice lookup and the case link against truth (or clerical labels
turned into the same shape). Pure polars; reuses the per-dataset metrics in ``metrics.py``.

    truth = evaluation.truth.xjs_truth(truth_dir)      # source_dataset, record_id, person_id, subgroups
    ev = evaluate_xjs(result.lookup, truth)            # dict of polars tables (below)
    xjs_markdown(ev)                                   # the report section
    case_link_metrics(links, pl.read_parquet(truth_dir / "case_links.parquet"))

Definitions. Records are identified across datasets by (source_dataset, record_id); the
lookup at a level is a clustering of all records (cluster = cross-justice id).

* ``overall``: per level, B-cubed and pairwise precision / recall / F1 over all records
  (``scope = all_pairs``), and pairwise over the pairs of records of *different* datasets
  only (``scope = cross_dataset_pairs``: what the lookup adds to the per-dataset ids).
* ``by_dataset_pair``: per level and pair of datasets (A, B), pairwise metrics over record
  pairs with one record in A and one in B (A = B: pairs within A, i.e. the per-dataset
  dedupe as the lookup carries it), and B-cubed of the lookup restricted to the records of
  A and B (what a researcher joining A to B through the lookup sees).
* ``by_subgroup``: per level, B-cubed by sex, ethnic group and age band of the true person
  (each record's B-cubed scores against the whole lookup, averaged over the group).
* case link: a predicted link is correct when truth has the same (defendant_case_id,
  defendant_on_case_id); precision over predicted links, recall over true links, overall and
  by Crown Court case type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from datafirst_assets.linkage.metrics import (
    _f1,
    _pairwise_from_joined,
    bcubed_metrics,
    subgroup_metrics,
)
from datafirst_assets.common.tables import markdown_table
from datafirst_assets.linkage.quality import SUBGROUPS
from datafirst_assets.reporting import Section, bar_chart
from datafirst_assets.linkage.xjs import LEVELS

KEY = "_key"  # composite record key "<source>|<record_id>"
TRUE = "person_id"


def _key(source: str | pl.Expr = "source_dataset", record: str = "record_id") -> pl.Expr:
    src = pl.col(source) if isinstance(source, str) else source
    return pl.concat_str([src, pl.lit("|"), pl.col(record).cast(pl.String)]).alias(KEY)


def _joined(lookup: pl.DataFrame, truth: pl.DataFrame, level: str, extra: Sequence[str] = ()) -> pl.DataFrame:
    t = truth.select(_key(), pl.col(TRUE).cast(pl.String), *[c for c in extra if c in truth.columns])
    lk = lookup.select(_key(), "source_dataset",
                       pl.col(f"person_id_{level}").cast(pl.String).alias("cluster_id"))
    j = lk.join(t, on=KEY, how="inner")
    if j.height != lk.height:
        raise ValueError(f"{lk.height - j.height} lookup records have no truth")
    return j


def _cross_pairs(counts: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """Cross-dataset pairs per group from per-(group, dataset) counts ``n``:
    (sum n)^2 - sum n^2, halved."""
    return (counts.group_by(by).agg(((pl.col("n").sum() ** 2 - (pl.col("n") ** 2).sum()) // 2).alias("pairs"))
            .select(pl.col("pairs").sum()).item() or 0)


def _cross_dataset_pairwise(j: pl.DataFrame) -> dict[str, Any]:
    def count(by: list[str]) -> int:
        c = j.group_by([*by, "source_dataset"]).agg(pl.len().cast(pl.Int64).alias("n"))
        return int(_cross_pairs(c, by))

    tp, pp, tt = count(["cluster_id", TRUE]), count(["cluster_id"]), count([TRUE])
    p = tp / pp if pp else 1.0
    r = tp / tt if tt else 1.0
    return {"tp": tp, "fp": pp - tp, "fn": tt - tp, "predicted_pairs": pp, "true_pairs": tt,
            "precision": p, "recall": r, "f1": _f1(p, r), "n_records": j.height}


def _pair_counts_by_datasets(j: pl.DataFrame, by: list[str], datasets: Sequence[str]) -> dict[tuple[str, str], int]:
    """Record pairs with one record in dataset a and one in b (a pair of records of a when a is b)
    in the same group of ``by``, for every pair (a, b) of ``datasets`` (a not after b), from one grouping: the
    records of each group counted per dataset once, not the frame grouped again for each of the 28
    pairs of 7 datasets (252 groupings per evaluation). A group holding neither a nor b adds no pair
    either way."""
    counts = (j.group_by([*by, "source_dataset"]).agg(pl.len().cast(pl.Int64).alias("n"))
              .pivot(on="source_dataset", index=by, values="n").fill_null(0))
    column = {d: pl.col(d) if d in counts.columns else pl.lit(0, dtype=pl.Int64) for d in datasets}
    pairs = [(a, b) for i, a in enumerate(datasets) for b in datasets[i:]]
    sums = counts.select([
        ((column[a] * (column[a] - 1) // 2) if a == b else column[a] * column[b]).sum().alias(str(k))
        for k, (a, b) in enumerate(pairs)]).row(0) if pairs else ()
    return {pair: int(total or 0) for pair, total in zip(pairs, sums)}


_OVERALL_SCHEMA = {
    "level": pl.String, "threshold": pl.Float64, "scope": pl.String, "n_records": pl.Int64,
    "predicted_pairs": pl.Int64, "true_pairs": pl.Int64, "pairwise_precision": pl.Float64,
    "pairwise_recall": pl.Float64, "pairwise_f1": pl.Float64, "bcubed_precision": pl.Float64,
    "bcubed_recall": pl.Float64, "bcubed_f1": pl.Float64, "persons": pl.Int64,
}


def evaluate_xjs(lookup: pl.DataFrame, truth: pl.DataFrame, *, thresholds: Sequence[float] | None = None,
                 subgroups: Sequence[str] = SUBGROUPS, levels: Sequence[str] = LEVELS
                 ) -> dict[str, pl.DataFrame]:
    """Tables ``overall``, ``by_dataset_pair`` and ``by_subgroup`` (see the module doc)."""
    th = dict(zip(levels, thresholds)) if thresholds is not None else {}
    overall, pairs, groups = [], [], []
    datasets = sorted(lookup.get_column("source_dataset").unique().to_list())
    for lv in levels:
        j = _joined(lookup, truth, lv, subgroups)
        pw = _pairwise_from_joined(j, "cluster_id", TRUE)
        b3 = bcubed_metrics(j, j, id_col=KEY, pred_col="cluster_id", true_col=TRUE)
        cross = _cross_dataset_pairwise(j)
        persons = j.get_column("cluster_id").n_unique()
        for scope, m, b in (("all_pairs", pw, b3), ("cross_dataset_pairs", cross, None)):
            overall.append({
                "level": lv, "threshold": th.get(lv), "scope": scope, "n_records": m["n_records"],
                "predicted_pairs": m["predicted_pairs"], "true_pairs": m["true_pairs"],
                "pairwise_precision": m["precision"], "pairwise_recall": m["recall"], "pairwise_f1": m["f1"],
                "bcubed_precision": b and b["precision"], "bcubed_recall": b and b["recall"],
                "bcubed_f1": b and b["f1"], "persons": persons,
            })
        tps, pps, tts = (_pair_counts_by_datasets(j, by, datasets) for by in (["cluster_id", TRUE], ["cluster_id"], [TRUE]))
        for i, a in enumerate(datasets):
            for b in datasets[i:]:
                tp, pp, tt = tps[(a, b)], pps[(a, b)], tts[(a, b)]
                sub = j.filter(pl.col("source_dataset").is_in([a, b]))
                bb = bcubed_metrics(sub, sub, id_col=KEY, pred_col="cluster_id", true_col=TRUE)
                p = tp / pp if pp else None
                r = tp / tt if tt else None
                pairs.append({
                    "level": lv, "dataset_l": a, "dataset_r": b, "n_records": sub.height,
                    "true_pairs": tt, "predicted_pairs": pp, "tp": tp,
                    "pairwise_precision": p, "pairwise_recall": r, "pairwise_f1": _f1(p, r),
                    "bcubed_precision": bb["precision"], "bcubed_recall": bb["recall"], "bcubed_f1": bb["f1"],
                })
        present = [s for s in subgroups if s in j.columns]
        g = subgroup_metrics(j.select(KEY, "cluster_id"), j.select(KEY, TRUE, *present),
                             present, id_col=KEY, pred_col="cluster_id", true_col=TRUE)
        groups.append(g.with_columns(pl.lit(lv).alias("level")))
    by_subgroup = (pl.concat(groups).select("level", "subgroup", "group", pl.col("n_records").cast(pl.Int64),
                                            "precision", "recall", "f1")
                   .rename({"precision": "bcubed_precision", "recall": "bcubed_recall", "f1": "bcubed_f1"}))
    return {
        "overall": pl.DataFrame(overall, schema=_OVERALL_SCHEMA),
        "by_dataset_pair": pl.DataFrame(pairs, infer_schema_length=None),
        "by_subgroup": by_subgroup,
    }


def xjs_summary(ev: dict[str, pl.DataFrame], level: str = "medium") -> dict[str, Any]:
    """Headline figures at one level (for metadata and checks)."""
    o = ev["overall"].filter(pl.col("level") == level)
    allp = o.filter(pl.col("scope") == "all_pairs").row(0, named=True)
    cross = o.filter(pl.col("scope") == "cross_dataset_pairs").row(0, named=True)
    return {"level": level, "bcubed_precision": allp["bcubed_precision"],
            "bcubed_recall": allp["bcubed_recall"], "bcubed_f1": allp["bcubed_f1"],
            "cross_dataset_pairwise_precision": cross["pairwise_precision"],
            "cross_dataset_pairwise_recall": cross["pairwise_recall"],
            "cross_dataset_pairwise_f1": cross["pairwise_f1"]}


# ------------------------------------------------------------------------------ case link


_CASE_SCHEMA = {"case_type": pl.String, "true_links": pl.Int64, "predicted_links": pl.Int64,
                "correct_links": pl.Int64, "precision": pl.Float64, "recall": pl.Float64, "f1": pl.Float64}


def case_link_metrics(links: pl.DataFrame, truth_links: pl.DataFrame) -> pl.DataFrame:
    """Precision / recall / F1 of predicted case links, overall ("all") and by case type.

    ``links``: defendant_case_id, defendant_on_case_id [, case_type]; ``truth_links``: the
    simulator's case_links (defendant_case_id, defendant_on_case_id, case_type). A predicted
    link's case type is the Crown Court one from ``links`` (else from truth, else "unknown").
    """
    keys = ["defendant_case_id", "defendant_on_case_id"]
    t = truth_links.select(*[pl.col(k).cast(pl.String) for k in keys], pl.col("case_type").alias("_ttype"))
    p = links.select(*[pl.col(k).cast(pl.String) for k in keys],
                     *([pl.col("case_type").alias("_ptype")] if "case_type" in links.columns else []))
    j = p.join(t.with_columns(pl.lit(True).alias("_ok")), on=keys, how="left")
    ptype = pl.col("_ptype") if "_ptype" in j.columns else pl.lit(None, dtype=pl.String)
    j = j.with_columns(pl.coalesce(ptype, pl.col("_ttype"), pl.lit("unknown")).alias("case_type"),
                       pl.col("_ok").fill_null(False))
    rows = []
    types = ["all", *sorted(set(t.get_column("_ttype").drop_nulls().to_list())
                            | set(j.get_column("case_type").to_list()))]
    for ct in types:
        tj = t if ct == "all" else t.filter(pl.col("_ttype") == ct)
        pj = j if ct == "all" else j.filter(pl.col("case_type") == ct)
        correct = int(pj.get_column("_ok").sum())
        prec = correct / pj.height if pj.height else None
        # recall: true links of this type found (wherever the prediction's own type says)
        found = int(tj.join(p, on=keys, how="semi").height)
        rec = found / tj.height if tj.height else None
        rows.append({"case_type": ct, "true_links": tj.height, "predicted_links": pj.height,
                     "correct_links": correct, "precision": prec, "recall": rec, "f1": _f1(prec, rec)})
    return pl.DataFrame(rows, schema=_CASE_SCHEMA)


# ------------------------------------------------------------------------------- markdown


def _report_frames(ev: dict[str, pl.DataFrame]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Overall per level, cross-dataset pairs at medium, subgroups at medium: what the reports show."""
    overall = ev["overall"].drop("predicted_pairs", "true_pairs")
    pairs = ev["by_dataset_pair"].filter((pl.col("level") == "medium")
                                         & (pl.col("dataset_l") != pl.col("dataset_r"))).select(
        "dataset_l", "dataset_r", "true_pairs", "predicted_pairs", "pairwise_precision", "pairwise_recall",
        "pairwise_f1", "bcubed_f1")
    sub = ev["by_subgroup"].filter(pl.col("level") == "medium").drop("level")
    return overall, pairs, sub


def xjs_markdown(ev: dict[str, pl.DataFrame], case_link: pl.DataFrame | None = None,
                 *, floor: float | None = 0.95) -> str:
    """Report section: overall per level, by dataset pair (cross pairs, medium), subgroups."""
    overall, pairs, sub = _report_frames(ev)
    parts = ["## Cross-justice lookup", ""]
    if floor is not None:
        parts += [f"Floor: B-cubed F1 >= {floor} at the medium threshold.", ""]
    parts += [markdown_table(overall), ""]
    parts += ["### By dataset pair (medium threshold, cross-dataset record pairs)", "", markdown_table(pairs), ""]
    parts += ["### By subgroup (medium threshold, B-cubed)", "", markdown_table(sub), ""]
    if case_link is not None:
        parts += ["## Magistrates' to Crown Court case link", "", markdown_table(case_link), ""]
    return "\n".join(parts)


def xjs_sections(ev: dict[str, pl.DataFrame], case_link: pl.DataFrame | None = None,
                 *, floor: float | None = 0.95) -> list[Section]:
    """The same content as `xjs_markdown`, as sections of the shared HTML report, with charts."""
    overall, pairs, sub = _report_frames(ev)
    f1_chart = bar_chart(overall.filter(pl.col("scope") == "all_pairs"),
                         "level", "bcubed_f1", title="B-cubed F1 per threshold", y_title="B-cubed F1",
                         domain=(0.0, 1.0))
    sections = [Section("Cross-justice lookup", [
        "Cross-dataset pairwise and B-cubed precision, recall and F1 of the lookup at each threshold."
        + (f" Floor: B-cubed F1 >= {floor} at the medium threshold." if floor is not None else "")],
        overall, f1_chart)]
    sections.append(Section("By dataset pair (medium threshold, cross-dataset record pairs)", [], pairs,
                            bar_chart(pairs.with_columns(pair=pl.col("dataset_l") + " - " + pl.col("dataset_r")),
                                      "pair", "pairwise_f1", title="Pairwise F1 by dataset pair",
                                      horizontal=True, domain=(0.0, 1.0))))
    sections.append(Section("By subgroup (medium threshold, B-cubed)", [], sub))
    if case_link is not None:
        sections.append(Section("Magistrates' to Crown Court case link", [], case_link))
    return sections
