"""Measure what the simulator produced against its truth (for tests, benchmarks and tuning).

`load_person_records(out, truth_out, source)` reads every delivery of a source's person table,
standardises the linkage fields lightly (upper case, trimmed, dates parsed, postcodes without
spaces, PNCs in YYYY/NNNNNNNA form) and attaches the true person. `agreement_report` gives, per
source, how often two records of the same person agree (the m-probabilities a Splink model
learns; DOMAIN.md gives the calibration targets) and how often each record matches the truth.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from datafirst_assets.sources.registry import SOURCES


def _read_table(out: Path, source: str, table: str) -> pl.DataFrame:
    spec = SOURCES[source]
    frames = []
    for d in sorted(p for p in (Path(out) / source).iterdir() if p.is_dir()):
        f = d / f"{table}.csv"
        if f.exists():
            df = pl.read_csv(
                f,
                separator=spec.delimiter,
                encoding="utf8-lossy" if spec.encoding != "utf-8" else "utf8",
                infer_schema=False,
            )
            frames.append(df.with_columns(pl.lit(d.name).alias("_extract_date")))
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame()


def _clean_name(col: str) -> pl.Expr:
    return pl.col(col).str.strip_chars().str.to_uppercase().str.replace_all(r"\s+", " ")


def _pnc_norm(col: str) -> pl.Expr:
    s = pl.col(col).str.strip_chars().str.to_uppercase()
    yy = s.str.extract(r"^(\d{2})/", 1)
    full = (
        pl.when(yy.is_not_null())
        .then(pl.when(yy.cast(pl.Int32) > 30).then(pl.lit("19") + s).otherwise(pl.lit("20") + s))
        .otherwise(s)
    )
    return full


def load_person_records(out: Path, truth_out: Path, source: str) -> pl.DataFrame:
    """Person-table records of `source` with standardised fields and the true `person_id`."""
    spec = SOURCES[source]
    t = spec.person_table
    df = _read_table(out, source, t.name)
    pf = t.person_fields
    fmt = spec.date_format
    sex_map = spec.sex_codes

    def col(field: str) -> str | None:
        cols = pf.get(field)
        return cols[0] if cols else None

    exprs = [pl.col(t.id_column).alias("record_id"), pl.col("_extract_date").alias("extract_date")]
    for field in ("forename", "surname"):
        c = col(field)
        exprs.append(_clean_name(c).alias(field) if c else pl.lit(None, pl.Utf8).alias(field))
    mids = pf.get("middle_names", ())
    if mids:
        exprs.append(
            pl.concat_str([_clean_name(c) for c in mids], separator=" ", ignore_nulls=True).alias(
                "middle_names"
            )
        )
    c = col("dob")
    exprs.append(
        pl.col(c).str.strptime(pl.Date, fmt, strict=False).alias("dob")
        if c
        else pl.lit(None, pl.Date).alias("dob")
    )
    c = col("sex")
    exprs.append(
        pl.col(c).replace_strict(sex_map, default=None).alias("sex")
        if c
        else pl.lit(None, pl.Utf8).alias("sex")
    )
    c = col("postcode")
    exprs.append(
        pl.col(c).str.to_uppercase().str.replace_all(" ", "").alias("postcode")
        if c
        else pl.lit(None, pl.Utf8).alias("postcode")
    )
    c = col("pnc")
    exprs.append(_pnc_norm(c).alias("pnc") if c else pl.lit(None, pl.Utf8).alias("pnc"))
    if "ethnicity" in t.column_names:
        exprs.append(pl.col("ethnicity"))
    recs = df.select(exprs)
    pr = (
        pl.read_parquet(Path(truth_out) / "person_records.parquet")
        .filter((pl.col("source") == source) & (pl.col("table") == t.name))
        .select("record_id", "person_id")
    )
    return recs.join(pr, on="record_id", how="left")


def _levenshtein(a: str, b: str) -> int:
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def pair_agreement(recs: pl.DataFrame) -> dict[str, float]:
    """Agreement between consecutive records (by id) of the same true person."""
    r = recs.with_columns(pl.col("record_id").cast(pl.Int64)).sort("person_id", "record_id")
    cols = ["forename", "surname", "dob", "postcode", "pnc"]
    nxt = r.select([pl.col(c).shift(-1).over("person_id").alias(f"{c}_b") for c in cols])
    p = pl.concat([r.select(cols), nxt], how="horizontal").filter(
        pl.col("forename_b").is_not_null() | pl.col("surname_b").is_not_null() | pl.col("dob_b").is_not_null()
    )
    res: dict[str, float] = {"pairs": float(p.height)}

    def rate(expr: pl.Expr, cond: pl.Expr) -> float:
        q = p.filter(cond)
        return float(q.select(expr.mean()).item()) if q.height else float("nan")

    def both(c: str) -> pl.Expr:
        return pl.col(c).is_not_null() & pl.col(f"{c}_b").is_not_null()

    res["dob_exact"] = rate(pl.col("dob") == pl.col("dob_b"), both("dob"))
    d = p.filter(both("dob") & (pl.col("dob") != pl.col("dob_b")))
    if d.height and p.filter(both("dob")).height:
        a, b = d["dob"], d["dob_b"]
        same = (
            (a.dt.year() == b.dt.year()).cast(pl.Int8)
            + (a.dt.month() == b.dt.month()).cast(pl.Int8)
            + (a.dt.day() == b.dt.day()).cast(pl.Int8)
        )
        swapped = (a.dt.year() == b.dt.year()) & (a.dt.month() == b.dt.day()) & (a.dt.day() == b.dt.month())
        near = ((same == 2) | swapped | ((a - b).dt.total_days().abs() <= 3)).sum()
        res["dob_near_miss"] = near / p.filter(both("dob")).height
    else:
        res["dob_near_miss"] = 0.0
    res["forename_exact"] = rate(pl.col("forename") == pl.col("forename_b"), both("forename"))
    fd = p.filter(both("forename") & (pl.col("forename") != pl.col("forename_b")))
    small = sum(
        1
        for x, y in zip(fd["forename"].to_list(), fd["forename_b"].to_list(), strict=True)
        if _levenshtein(x, y) <= 2
    )
    nb = p.filter(both("forename")).height
    res["forename_small_edit"] = small / nb if nb else float("nan")
    res["surname_exact"] = rate(pl.col("surname") == pl.col("surname_b"), both("surname"))
    res["full_name_exact"] = rate(
        (pl.col("forename") == pl.col("forename_b")) & (pl.col("surname") == pl.col("surname_b")),
        both("forename") & both("surname"),
    )
    res["pnc_agree"] = rate(pl.col("pnc") == pl.col("pnc_b"), both("pnc"))
    res["postcode_differs"] = rate(pl.col("postcode") != pl.col("postcode_b"), both("postcode"))
    return res


def agreement_report(out: Path, truth_out: Path, sources: list[str] | None = None) -> pl.DataFrame:
    """One row per source: pairwise agreement (same person) and per-record missingness."""
    rows = []
    for source in sources or list(SOURCES):
        recs = load_person_records(out, truth_out, source)
        companies = pl.read_parquet(Path(truth_out) / "people.parquet", columns=["person_id", "is_company"])
        recs = recs.join(companies, on="person_id", how="left").filter(~pl.col("is_company").fill_null(False))
        row: dict[str, float | str] = {
            "source": source,
            "records": float(recs.height),
            "people": float(recs["person_id"].n_unique()),
        }
        row.update(pair_agreement(recs))
        for c in ("forename", "surname", "dob", "postcode", "pnc"):
            row[f"{c}_missing"] = float(recs[c].is_null().mean())
        rows.append(row)
    return pl.DataFrame(rows)
