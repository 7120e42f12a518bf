"""Magistrates' court defendant-case -> Crown Court defendant-on-case link.

    links = build_case_link(hocas, xhibit, person_link=xjs_lookup)
    # case_id, defendant_case_id[, estimated_defendant_id], defendant_on_case_id, case_number,
    # case_type, match_score, match_weight, keys_agreed

A Crown Court case starts in a magistrates' court: it is sent for trial, committed for
sentence, or appealed against. Both systems record the natural keys of the case (police case
reference URN, arrest summons number ASN, PNC id, committal date, originating court), each
with its own keying errors, and the defendant's identity.

Method:

1. **Candidates by blocking, never a cross join.** A (magistrates' row, Crown row) pair is
   scored only if it shares one of: the URN; the ASN; the PNC id; the court and a committal
   date within ``date_window`` days; the cross-justice person (``person_link``) with the
   Crown receipt within ``person_window_days`` of the magistrates' hearing, committal or
   sentence; for a Crown row without a committal date (appeals), the court and a
   magistrates' decision within ``receipt_window`` days before the Crown receipt. A case
   with a typo in its URN is still found through its ASN, PNC, court and
   date or person; all of them must fail for a link to be missed.
2. **Score**: a sum of log2 Bayes factors (Fellegi-Sunter with fixed, documented weights,
   :data:`CASE_LINK_WEIGHTS`) over the keys, each compared at levels (exact, near, differ,
   missing: missing is neutral). Case-level keys (URN, committal date, court) separate one
   case from another; defendant-level keys (ASN, PNC, person, date of birth, surname)
   separate co-defendants of one case and one person's other cases. The Crown case type
   must fit the magistrates' outcome (sent -> SENT_FOR_TRIAL, committed ->
   COMMITTED_FOR_SENTENCE, convicted -> APPEAL) and the Crown receipt must follow the
   magistrates' decision. ``match_score`` = 2^w / (1 + 2^w), w = prior + sum of weights.
   The weights were set from what each key means and the error rates documented for these
   systems (a few per cent of URN/ASN typos, ASN often missing, committal date off by days),
   not fitted to truth.
3. **One-to-one assignment**: pairs at or above ``min_score`` are taken best first; a
   Crown defendant-on-case gets at most one magistrates' defendant-case and vice versa (one
   magistrates' decision sends a defendant's case to the Crown Court once).

Which Crown cases come from the magistrates': in the simulator's truth every Crown row has
a magistrates' origin, APPEAL included (an appeal against a magistrates' conviction or
sentence); so all three case types are linked, and the case type/outcome agreement is
evidence, not a filter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import polars as pl

from datafirst_assets.raw.delivery import PARTITION_COLUMN

#: log2 Bayes factors per key and level. A missing value on either side is neutral (0).
CASE_LINK_WEIGHTS: dict[str, dict[str, float]] = {
    # police case reference: one per case, shared by co-defendants; "near" (<= 2 characters
    # differ) is weak: neighbouring cases of one force and year have near serials too
    "urn": {"exact": 12.0, "near": 3.0, "differ": -4.0},
    # arrest summons number: one per defendant per case
    "asn": {"exact": 14.0, "near": 4.0, "differ": -5.0},
    # PNC id: one per person (so also shared by the person's other cases)
    "pnc": {"exact": 8.0, "differ": -6.0},
    # committal date: the same event in both systems, off by a few days when rekeyed
    "committal_date": {"exact": 5.0, "near": 3.0, "differ": -3.0},
    "court": {"exact": 3.0, "differ": -2.0},
    # same cross-justice person (medium threshold) as the lookup judged them
    "person": {"exact": 6.0, "differ": -6.0},
    "dob": {"exact": 4.0, "differ": -3.0},
    "surname": {"exact": 3.0, "differ": -1.0},
    # Crown case type fits the magistrates' outcome
    "case_type": {"exact": 2.0, "differ": -6.0},
    # Crown receipt within the expected time after the magistrates' decision
    "timing": {"exact": 2.0, "differ": -4.0},
}
#: log2 prior odds that a candidate pair is a true link, before any key is compared
PRIOR_WEIGHT = -15.0
DEFAULT_MIN_SCORE = 0.5
OUTCOME_FOR_TYPE = {
    "SENT_FOR_TRIAL": ("SENT_TO_CROWN",),
    "COMMITTED_FOR_SENTENCE": ("COMMITTED_FOR_SENTENCE",),
    "APPEAL": ("CONVICTED",),
}
OUTPUT_COLUMNS = ("case_id", "defendant_case_id", "estimated_defendant_id", "defendant_on_case_id",
                  "case_number", "case_type", "match_score", "match_weight", "keys_agreed")


# ------------------------------------------------------------------------------- inputs


#: The columns `build_case_link` reads of each input (any other is never looked at): a caller may load
#: only these, those of them that the table has (a missing one is read as null, as before).
HOCAS_COLUMNS = (PARTITION_COLUMN, "defendant_case_id", "case_id", "estimated_defendant_id", "urn", "asn", "pnc_id",
                 "court_code", "committal_date", "first_hearing_date", "sentence_date", "outcome", "dob", "surname")
XHIBIT_COLUMNS = (PARTITION_COLUMN, "defendant_on_case_id", "case_number", "case_type", "urn", "asn", "pnc_id",
                  "originating_court_code", "committal_date", "receipt_date", "date_of_birth", "surname")
#: the cross-justice lookup's rows it reads: those of these two datasets, these columns (`person_column`'s default)
PERSON_LINK_SOURCES = ("magistrates", "crown_court")


def _latest(frame: pl.DataFrame, id_col: str) -> pl.DataFrame:
    """The latest delivered version of each row (a later extract may resend a row). The rows as they
    are when no id repeats (the linked tables hold one row per id): nothing downstream depends on
    the rows' order (pairs are grouped, the assignment orders them itself), and the sort and the
    order-keeping de-duplication were two thirds of preparing 1.3M magistrates' rows (0.5 of 0.7 s)."""
    if frame.get_column(id_col).n_unique() == frame.height:
        return frame
    if PARTITION_COLUMN in frame.columns:
        frame = frame.sort(PARTITION_COLUMN, maintain_order=True)
    return frame.unique(subset=[id_col], keep="last", maintain_order=True)


def _code(col: str) -> pl.Expr:
    e = pl.col(col).cast(pl.String).str.to_uppercase().str.replace_all(r"[^A-Z0-9/]", "")
    return pl.when(e.str.len_chars() > 0).then(e).otherwise(None)


def _col(frame: pl.DataFrame, name: str, dtype=pl.String) -> pl.Expr:
    return pl.col(name) if name in frame.columns else pl.lit(None, dtype=dtype)


def _magistrates(hocas: pl.DataFrame, person: pl.DataFrame | None) -> pl.DataFrame:
    h = _latest(hocas, "defendant_case_id")
    out = h.select(
        pl.col("defendant_case_id").cast(pl.String).alias("m_id"),
        pl.col("case_id").cast(pl.String),
        _col(h, "estimated_defendant_id", pl.Int64).alias("estimated_defendant_id"),
        _code("urn").alias("m_urn"), _code("asn").alias("m_asn"), _code("pnc_id").alias("m_pnc"),
        _code("court_code").alias("m_court"),
        _col(h, "committal_date", pl.Date).cast(pl.Date).alias("m_comm"),
        _col(h, "first_hearing_date", pl.Date).cast(pl.Date).alias("m_hearing"),
        _col(h, "sentence_date", pl.Date).cast(pl.Date).alias("m_sentence"),
        _col(h, "outcome").alias("m_outcome"),
        _col(h, "dob", pl.Date).cast(pl.Date).alias("m_dob"),
        (_code("surname") if "surname" in h.columns else pl.lit(None, pl.String)).alias("m_surname"),
    )
    return _with_person(out, person, "magistrates", "m_id", "m_person")


def _crown(xhibit: pl.DataFrame, person: pl.DataFrame | None) -> pl.DataFrame:
    x = _latest(xhibit, "defendant_on_case_id")
    out = x.select(
        pl.col("defendant_on_case_id").cast(pl.String).alias("c_id"),
        _col(x, "case_number").alias("case_number"),
        _col(x, "case_type").alias("case_type"),
        _code("urn").alias("c_urn"), _code("asn").alias("c_asn"), _code("pnc_id").alias("c_pnc"),
        _code("originating_court_code").alias("c_court"),
        _col(x, "committal_date", pl.Date).cast(pl.Date).alias("c_comm"),
        _col(x, "receipt_date", pl.Date).cast(pl.Date).alias("c_receipt"),
        _col(x, "date_of_birth", pl.Date).cast(pl.Date).alias("c_dob"),
        (_code("surname") if "surname" in x.columns else pl.lit(None, pl.String)).alias("c_surname"),
    )
    return _with_person(out, person, "crown_court", "c_id", "c_person")


def _with_person(frame: pl.DataFrame, person: pl.DataFrame | None, source: str, id_col: str,
                 out_col: str) -> pl.DataFrame:
    if person is None:
        return frame.with_columns(pl.lit(None, dtype=pl.String).alias(out_col))
    p = (person.filter(pl.col("source_dataset") == source)
         .select(pl.col("record_id").cast(pl.String).alias(id_col), pl.col("_person").alias(out_col))
         .unique(id_col))
    return frame.join(p, on=id_col, how="left")


def _person_link(person_link: pl.DataFrame | None, person_column: str) -> pl.DataFrame | None:
    if person_link is None:
        return None
    missing = [c for c in ("source_dataset", "record_id", person_column) if c not in person_link.columns]
    if missing:
        raise ValueError(f"person_link lacks column(s) {missing}")
    return person_link.select("source_dataset", pl.col("record_id").cast(pl.String),
                              pl.col(person_column).cast(pl.String).alias("_person"))


# ----------------------------------------------------------------------------- blocking


def candidate_pairs(mag: pl.DataFrame, crown: pl.DataFrame, *, date_window: int = 7,
                    receipt_window: int = 35, person_window_days: int = 90) -> pl.DataFrame:
    """(m_id, c_id, rule) for every blocking rule a pair satisfies (equi-joins only)."""
    m, c = mag.lazy(), crown.lazy()
    parts = []
    for key in ("urn", "asn", "pnc"):
        left = m.filter(pl.col(f"m_{key}").is_not_null()).select("m_id", pl.col(f"m_{key}").alias("_k"))
        right = c.filter(pl.col(f"c_{key}").is_not_null()).select("c_id", pl.col(f"c_{key}").alias("_k"))
        parts.append(left.join(right, on="_k").select("m_id", "c_id", _rule(key)))
    # same court, committal dates within the window: shift the Crown date over the window
    offsets = pl.LazyFrame({"_d": list(range(-date_window, date_window + 1))}, schema={"_d": pl.Int32})
    cw = (c.filter(pl.col("c_court").is_not_null() & pl.col("c_comm").is_not_null())
          .select("c_id", "c_court", "c_comm").join(offsets, how="cross")
          .select("c_id", pl.col("c_court").alias("_court"),
                  (pl.col("c_comm") + pl.duration(days=pl.col("_d"))).alias("_date")))
    parts.append(m.filter(pl.col("m_court").is_not_null() & pl.col("m_comm").is_not_null())
                 .select("m_id", pl.col("m_court").alias("_court"), pl.col("m_comm").alias("_date"))
                 .join(cw, on=["_court", "_date"]).select("m_id", "c_id", _rule("court_date")))
    # Crown rows without a committal date (appeals, or the date not keyed): same court and the
    # magistrates' decision (committal or sentence) in the weeks before the Crown receipt
    back = pl.LazyFrame({"_d": list(range(0, receipt_window + 1))}, schema={"_d": pl.Int32})
    cr = (c.filter(pl.col("c_court").is_not_null() & pl.col("c_comm").is_null()
                   & pl.col("c_receipt").is_not_null())
          .select("c_id", "c_court", "c_receipt").join(back, how="cross")
          .select("c_id", pl.col("c_court").alias("_court"),
                  (pl.col("c_receipt") - pl.duration(days=pl.col("_d"))).alias("_date")))
    parts.append(m.select("m_id", pl.col("m_court").alias("_court"),
                          pl.coalesce("m_comm", "m_sentence").alias("_date"))
                 .filter(pl.col("_court").is_not_null() & pl.col("_date").is_not_null())
                 .join(cr, on=["_court", "_date"])
                 .select("m_id", "c_id", _rule("court_decision")))
    # same cross-justice person, Crown receipt soon after the magistrates' decision
    if mag.get_column("m_person").null_count() < mag.height:
        decided = pl.coalesce("m_comm", "m_sentence", "m_hearing")
        left = m.filter(pl.col("m_person").is_not_null()).select(
            "m_id", pl.col("m_person").alias("_p"), decided.alias("_md"))
        right = c.filter(pl.col("c_person").is_not_null()).select(
            "c_id", pl.col("c_person").alias("_p"), "c_receipt")
        pairs = (left.join(right, on="_p")
                 .filter(((pl.col("c_receipt") - pl.col("_md")).dt.total_days().abs() <= person_window_days)
                         | pl.col("_md").is_null() | pl.col("c_receipt").is_null())
                 .select("m_id", "c_id", _rule("person")))
        parts.append(pairs)
    # a pair's rules as the sum of their distinct bits, named once per combination: the same text as
    # joining the sorted distinct rule names per pair, which was a third of finding 840,000 pairs at 1M
    return (pl.concat(parts).group_by("m_id", "c_id").agg(pl.col("rule").unique().sum())
            .select("m_id", "c_id", pl.col("rule").replace_strict(_RULE_NAMES, return_dtype=pl.String).alias("rules"))
            .collect())


_RULES = ("asn", "court_date", "court_decision", "person", "pnc", "urn")  # in name order
_RULE_NAMES = {mask: ",".join(r for i, r in enumerate(_RULES) if mask >> i & 1) for mask in range(1, 1 << len(_RULES))}


def _rule(name: str) -> pl.Expr:
    """A blocking rule as its bit (``_RULES``), for ``candidate_pairs`` to combine per pair."""
    return pl.lit(1 << _RULES.index(name), dtype=pl.Int64).alias("rule")


# ------------------------------------------------------------------------------ scoring


def hamming_near(a: pl.Series, b: pl.Series, width: int, k: int) -> pl.Series:
    """Per pair of normalised keys (``_code``: ASCII only, so a character is a byte): the same length
    and at most ``k`` differing characters among the first ``width`` (a typo, or a slipped digit with
    its check character); null where either key is null. Counted in numpy over the keys cut or padded
    to ``width`` bytes, one comparison of two byte matrices: comparing ``width`` one-character slices
    of each (as polars expressions) was a third of scoring 840,000 candidate pairs at 1M people."""
    if a.len() == 0:
        return pl.Series(a.name, [], dtype=pl.Boolean)
    both = a.is_not_null() & b.is_not_null()
    same_length = (a.str.len_bytes() == b.str.len_bytes()).fill_null(False)

    def matrix(keys: pl.Series) -> np.ndarray:
        fixed = keys.fill_null("").str.slice(0, width).str.pad_end(width, "\0")
        try:
            text = "".join(fixed.to_list()).encode("ascii")
        except UnicodeEncodeError as error:
            raise ValueError(f"hamming_near compares ASCII keys (as `_code` leaves them): {error}") from None
        return np.frombuffer(text, dtype=np.uint8).reshape(-1, width)

    differing = (matrix(a) != matrix(b)).sum(axis=1)
    near = same_length & pl.Series(differing <= k)
    return pl.select(pl.when(both).then(near).otherwise(None)).to_series().alias(a.name)


def _level(both: pl.Expr, exact: pl.Expr, near: pl.Expr | None = None) -> pl.Expr:
    e = pl.when(~both).then(pl.lit("missing")).when(exact).then(pl.lit("exact"))
    if near is not None:
        e = e.when(near).then(pl.lit("near"))
    return e.otherwise(pl.lit("differ"))


def score_pairs(pairs: pl.DataFrame, mag: pl.DataFrame, crown: pl.DataFrame, *,
                weights: Mapping[str, Mapping[str, float]] = CASE_LINK_WEIGHTS,
                prior_weight: float = PRIOR_WEIGHT, date_window: int = 7) -> pl.DataFrame:
    """Comparison level per key, match weight and score for candidate pairs."""
    j = pairs.join(mag, on="m_id", how="left").join(crown, on="c_id", how="left")
    near = {key: hamming_near(j.get_column(f"m_{key}"), j.get_column(f"c_{key}"), width, 2).alias(f"_near_{key}")
            for key, width in (("urn", 14), ("asn", 20))}
    j = j.with_columns(*near.values())

    def both(k: str) -> pl.Expr:
        return pl.col(f"m_{k}").is_not_null() & pl.col(f"c_{k}").is_not_null()

    comm_gap = (pl.col("c_comm") - pl.col("m_comm")).dt.total_days().abs()
    fits = pl.col("case_type").replace_strict(
        {t: list(o) for t, o in OUTCOME_FOR_TYPE.items()}, default=None, return_dtype=pl.List(pl.String))
    decided = pl.when(pl.col("case_type") == "APPEAL").then(pl.col("m_sentence")).otherwise(
        pl.coalesce("m_comm", "m_sentence", "m_hearing"))
    lag = (pl.col("c_receipt") - decided).dt.total_days()
    max_lag = pl.when(pl.col("case_type") == "APPEAL").then(pl.lit(60)).otherwise(pl.lit(45))
    levels = {
        "urn": _level(both("urn"), pl.col("m_urn") == pl.col("c_urn"), pl.col("_near_urn")),
        "asn": _level(both("asn"), pl.col("m_asn") == pl.col("c_asn"), pl.col("_near_asn")),
        "pnc": _level(both("pnc"), pl.col("m_pnc") == pl.col("c_pnc")),
        "committal_date": _level(both("comm"), comm_gap == 0, comm_gap <= date_window),
        "court": _level(both("court"), pl.col("m_court") == pl.col("c_court")),
        "person": _level(both("person"), pl.col("m_person") == pl.col("c_person")),
        "dob": _level(both("dob"), pl.col("m_dob") == pl.col("c_dob")),
        "surname": _level(both("surname"), pl.col("m_surname") == pl.col("c_surname")),
        "case_type": _level(pl.col("case_type").is_not_null() & pl.col("m_outcome").is_not_null(),
                            fits.list.contains(pl.col("m_outcome")).fill_null(False)),
        "timing": _level(lag.is_not_null(), (lag >= -1) & (lag <= max_lag)),
    }
    j = j.with_columns([e.alias(f"level_{k}") for k, e in levels.items()])
    terms = []
    for k in levels:
        w = weights.get(k, {})
        mapping = {lv: float(w.get(lv, 0.0)) for lv in ("exact", "near", "differ")} | {"missing": 0.0}
        terms.append(pl.col(f"level_{k}").replace_strict(mapping, default=0.0, return_dtype=pl.Float64))
    weight = pl.lit(prior_weight) + pl.sum_horizontal(terms)
    agreed = pl.concat_str(
        [pl.when(pl.col(f"level_{k}") == "exact").then(pl.lit(k))
         .when(pl.col(f"level_{k}") == "near").then(pl.lit(f"{k}~")).otherwise(None)
         for k in ("urn", "asn", "pnc", "committal_date", "court", "person", "dob", "surname")],
        separator=",", ignore_nulls=True)
    return j.with_columns(weight.alias("match_weight")).with_columns(
        (1.0 / (1.0 + (2.0 ** (-pl.col("match_weight"))))).alias("match_score"),
        agreed.alias("keys_agreed")).drop(*(s.name for s in near.values()))


def assign_one_to_one(scored: pl.DataFrame, *, left: str = "m_id", right: str = "c_id",
                      score: str = "match_weight") -> pl.DataFrame:
    """Greedy best-first one-to-one assignment: repeatedly keep the pairs that are the best
    remaining option for both ends (ties broken by ids), drop every other pair touching them.
    Equals processing pairs in descending score order and keeping those whose ends are free."""
    remaining = scored.sort([score, right, left], descending=[True, False, False])
    kept = []
    while remaining.height:
        best_r = remaining.group_by(right, maintain_order=True).first().select(left, right)
        best_l = remaining.group_by(left, maintain_order=True).first().select(left, right)
        mutual = best_r.join(best_l, on=[left, right], how="inner")
        if mutual.height == 0:  # cannot happen with a strict order, but never loop forever
            mutual = remaining.head(1).select(left, right)
        kept.append(mutual)
        remaining = (remaining.join(mutual.select(left), on=left, how="anti")
                     .join(mutual.select(right), on=right, how="anti"))
    if not kept:
        return scored.clear()
    chosen = pl.concat(kept)
    return scored.join(chosen, on=[left, right], how="semi")


# ---------------------------------------------------------------------------------- build


def build_case_link(
    hocas: pl.DataFrame,
    xhibit: pl.DataFrame,
    *,
    person_link: pl.DataFrame | None = None,
    person_column: str = "person_id_medium",
    min_score: float = DEFAULT_MIN_SCORE,
    date_window: int = 7,
    weights: Mapping[str, Mapping[str, float]] = CASE_LINK_WEIGHTS,
    prior_weight: float = PRIOR_WEIGHT,
    return_candidates: bool = False,
) -> pl.DataFrame | tuple[pl.DataFrame, pl.DataFrame]:
    """Link magistrates' defendant-cases (``hocas_flatfile``, staged) to Crown Court
    defendants-on-case (``xhibit_flatfile``, staged).

    ``person_link``: the cross-justice lookup (``source_dataset``, ``record_id``,
    ``person_column``), whose magistrates' and crown_court rows give each side's person.
    Returns one row per link (:data:`OUTPUT_COLUMNS`; ``estimated_defendant_id`` is null
    unless ``hocas`` carries it), sorted by ``defendant_on_case_id``. With
    ``return_candidates`` also every scored candidate pair and its comparison levels.
    """
    person = _person_link(person_link, person_column)
    mag, crown = _magistrates(hocas, person), _crown(xhibit, person)
    pairs = candidate_pairs(mag, crown, date_window=date_window)
    scored = score_pairs(pairs, mag, crown, weights=weights, prior_weight=prior_weight,
                         date_window=date_window)
    if not 0 < min_score < 1:
        raise ValueError(f"min_score is a probability in (0, 1), got {min_score}")
    cut = math.log2(min_score / (1 - min_score))
    chosen = assign_one_to_one(scored.filter(pl.col("match_weight") >= cut))
    links = (chosen.select(
        "case_id", pl.col("m_id").alias("defendant_case_id"), "estimated_defendant_id",
        pl.col("c_id").alias("defendant_on_case_id"), "case_number", "case_type",
        "match_score", "match_weight", "keys_agreed")
        .sort(pl.col("defendant_on_case_id").cast(pl.Int64, strict=False), "defendant_on_case_id"))
    if return_candidates:
        return links, scored
    return links
