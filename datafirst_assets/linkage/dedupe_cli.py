"""Command-line entry points for linkage: ``dedupe``, ``review-sample`` and ``evaluate``.

Each command is a plain function (testable, no argparse needed) plus an
``add_*_parser(subparsers)`` helper that registers an argparse sub-command whose
``func(args) -> int`` default runs it. Wiring into the ``datafirst`` CLI::

    sub = parser.add_subparsers(dest="command")
    add_dedupe_parser(sub); add_review_sample_parser(sub); add_evaluate_parser(sub)
    args = parser.parse_args(); sys.exit(args.func(args))

``datafirst dedupe INPUT [INPUT ...] --id COL --map FIELD=COL [--map ...] [--extra COL ...]
[--dob-format FMT] --out OUT.parquet [--threshold P]``
    Deduplicate one person file, or link several and deduplicate within each, with a
    model trained unsupervised on the files themselves. Inputs are CSV or Parquet. OUT
    has one row per input record: ``source`` (file stem), ``record_id`` (the id as
    text), ``person_id`` (integer, the same for records judged to be one person).
    Without ``--threshold`` records are linked at match probability >=
    :data:`~datafirst_assets.linkage.dedupe.DEFAULT_THRESHOLD` (0.9).

``datafirst review-sample --pairs PAIRS.parquet --records RECORDS.parquet --out SAMPLE.csv
[--threshold P] [--n 200] [--seed 0]``
    PAIRS: scored pairs written by the pipeline (``record_id_l``, ``record_id_r``,
    ``match_weight``[, ``match_probability``]); RECORDS: the person records
    (``record_id`` plus linkage fields). Writes pairs around the threshold with both
    records side by side and an empty ``clerical_match_score`` column to fill in.

``datafirst evaluate --labels FILE [--pairs PAIRS.parquet] [--clusters CLUSTERS.parquet]
[--threshold P] [--out REPORT.json]``
    FILE: labels (CSV or Parquet: ``record_id_l``, ``record_id_r``,
    ``clerical_match_score`` in [0, 1]; blank scores are skipped). With PAIRS, chooses
    the F1-maximising threshold over the labels (and scores the given threshold); with
    CLUSTERS (``record_id`` + ``cluster_id`` or ``person_id``), precision / recall / F1 of
    the clustering on the labelled pairs. Prints a JSON report (also to REPORT.json).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from datafirst_assets.linkage.dedupe import DEFAULT_THRESHOLD, deduplicate
from datafirst_assets.linkage.metrics import evaluate_labels, read_labels, review_sample, write_review_sample
from datafirst_assets.linkage.settings import LINKAGE_FIELDS, LinkageConfigError
from datafirst_assets.sources.identifiers import (
    clean_name,
    junk_pnc,
    normalise_cro,
    normalise_pnc,
    normalise_postcode,
)

#: Date formats recognised without --dob-format (ISO, YYYYMMDD, DD/MM/YYYY).
DOB_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%d/%m/%Y")
READABLE = (".csv", ".parquet", ".pq")


class DedupeConfigError(ValueError):
    """A bad command: unknown field or column, missing id, no usable fields, bad input."""


# ----------------------------------------------------------------------- input handling


def parse_maps(maps: Sequence[str] | dict[str, str]) -> dict[str, str]:
    """``["forename=first_name", ...]`` -> {field: column}; validates field names."""
    if isinstance(maps, dict):
        pairs = list(maps.items())
    else:
        pairs = []
        for m in maps:
            if "=" not in m:
                raise DedupeConfigError(f"--map {m!r}: expected FIELD=COLUMN")
            f, c = m.split("=", 1)
            pairs.append((f.strip(), c.strip()))
    out: dict[str, str] = {}
    for f, c in pairs:
        if f not in LINKAGE_FIELDS:
            raise DedupeConfigError(f"unknown field {f!r} in --map; fields are: {', '.join(LINKAGE_FIELDS)}")
        if not c:
            raise DedupeConfigError(f"--map {f}=: no column given")
        if f in out:
            raise DedupeConfigError(f"field {f!r} mapped twice ({out[f]!r} and {c!r})")
        out[f] = c
    return out


def _columns_of(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pl.scan_csv(path, infer_schema=False).collect_schema().names()
    return list(pl.read_parquet_schema(path))


def validate_inputs(inputs: Sequence[Path], id_col: str, maps: dict[str, str], extras: Sequence[str]) -> None:
    """Every check that needs only file headers, so a bad command fails before any work."""
    if not inputs:
        raise DedupeConfigError("no input files given")
    usable = [f for f in maps if f != "sex"]
    if not usable and not extras:
        raise DedupeConfigError(
            "no usable fields: map at least one identifying field (e.g. --map surname=COL --map dob=COL);"
            " sex alone cannot identify people")
    clash = [x for x in extras if x in maps.values() or x == id_col]
    if clash:
        raise DedupeConfigError(f"--extra column(s) {clash} are already the id or a mapped field")
    for path in inputs:
        if not path.exists():
            raise DedupeConfigError(f"input file not found: {path}")
        if path.suffix.lower() not in READABLE:
            raise DedupeConfigError(f"{path}: only CSV (.csv) and Parquet (.parquet) inputs are supported")
        try:
            cols = _columns_of(path)
        except Exception as exc:  # noqa: BLE001
            raise DedupeConfigError(f"{path}: cannot read header ({exc})") from exc
        if id_col not in cols:
            raise DedupeConfigError(f"{path.name}: id column {id_col!r} not found; columns are {cols}")
        for f, c in maps.items():
            if c not in cols:
                raise DedupeConfigError(f"{path.name}: column {c!r} (mapped to {f}) not found; columns are {cols}")
        for x in extras:
            if x not in cols:
                raise DedupeConfigError(f"{path.name}: --extra column {x!r} not found; columns are {cols}")


def _read(path: Path, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """``columns``: only those (a wide file costs no memory for the columns not linked on)."""
    columns = list(dict.fromkeys(columns)) if columns is not None else None
    if path.suffix.lower() == ".csv":
        return pl.read_csv(path, infer_schema=False, columns=columns)
    return pl.read_parquet(path, columns=columns)


# ---------------------------------------------------------------- light standardisation


def _clean_text(e: pl.Expr) -> pl.Expr:
    """Upper case, hyphens/underscores to spaces, other punctuation removed, spaces
    collapsed, empty -> null."""
    e = (e.cast(pl.String).str.to_uppercase().str.replace_all(r"[-_/]", " ")
         .str.replace_all(r"[^\p{L}\p{N} ]", "").str.replace_all(r"\s+", " ").str.strip_chars())
    return pl.when(e.str.len_chars() > 0).then(e).otherwise(None)


def _clean_id(e: pl.Expr) -> pl.Expr:
    e = e.cast(pl.String).str.to_uppercase().str.replace_all(r"\s+", "").str.strip_chars()
    return pl.when(e.str.len_chars() > 0).then(e).otherwise(None)


def _clean_sex(e: pl.Expr) -> pl.Expr:
    s = e.cast(pl.String).str.to_uppercase().str.strip_chars()
    return (pl.when(s.is_in(["M", "MALE", "1", "MAN"])).then(pl.lit("M"))
            .when(s.is_in(["F", "FEMALE", "2", "WOMAN"])).then(pl.lit("F"))
            .otherwise(None))


def parse_dates(values: pl.Series, dob_format: str | None = None) -> pl.Series:
    """Dates from text: ``dob_format`` if given, else ISO, YYYYMMDD or DD/MM/YYYY (each
    value parsed by the first that fits; a trailing time is ignored). Unparseable ->
    null. Date/datetime columns pass through."""
    if values.dtype == pl.Date:
        return values
    if values.dtype == pl.Datetime or isinstance(values.dtype, pl.Datetime):
        return values.dt.date()
    s = values.cast(pl.String).str.strip_chars()
    if dob_format:
        return s.str.to_date(dob_format, strict=False)
    s = s.str.replace(r"[T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?.*$", "")
    parsed = [s.str.to_date(fmt, strict=False, exact=True) for fmt in DOB_FORMATS]
    out = pl.select(pl.coalesce(parsed)).to_series()
    return out.alias(values.name)


def on_distinct(clean: Callable[[pl.Expr], pl.Expr]) -> Callable[[pl.Expr], pl.Expr]:
    """``clean`` (an element-wise expression) computed once per distinct value and joined back:
    names and postcodes repeat, so at 1M records this is 3-5x less work than cleaning every row."""
    def per_value(values: pl.Series) -> pl.Series:
        mapping = values.unique().to_frame("value").with_columns(clean(pl.col("value")).alias("clean"))
        return (values.to_frame("value").join(mapping, on="value", how="left", nulls_equal=True,
                                              maintain_order="left").get_column("clean").alias(values.name))

    return lambda expr: expr.map_batches(per_value, return_dtype=pl.String)


def standardise(df: pl.DataFrame, *, id_col: str, maps: dict[str, str], extras: Sequence[str],
                source: str, dob_format: str | None = None) -> pl.DataFrame:
    """An outside person file -> the person-records contract (record_id, source_dataset,
    linkage fields, extras), with light cleaning since it was never staged."""
    exprs: list[pl.Expr] = [pl.col(id_col).cast(pl.String).str.strip_chars().alias("record_id"),
                            pl.lit(source).alias("source_dataset")]
    # names, postcodes, PNC and CRO follow staging's rules (sources/identifiers.py): what the
    # pipeline would null as invalid is null here too
    staged_rules = {"forename": clean_name, "middle_names": clean_name, "surname": clean_name,
                    "postcode": normalise_postcode, "pnc": normalise_pnc, "cro": normalise_cro}
    for f, c in maps.items():
        col = pl.col(c)
        if f in staged_rules:
            exprs.append(on_distinct(staged_rules[f])(col.cast(pl.String)).alias(f))
        elif f == "address":
            exprs.append(on_distinct(_clean_text)(col.cast(pl.String)).alias(f))
        elif f == "sex":
            exprs.append(_clean_sex(col).alias(f))
        elif f == "other_id":
            exprs.append(_clean_id(col).alias(f))
        elif f == "dob":
            exprs.append(col.map_batches(lambda s: parse_dates(s, dob_format), return_dtype=pl.Date).alias("dob"))
    for x in extras:
        exprs.append(on_distinct(_clean_text)(pl.col(x).cast(pl.String)).alias(x))
    out = df.select(exprs)
    if "forename" in out.columns and "middle_names" not in maps:
        # "JOHN PAUL" in a forename column: first word is the forename, rest middle names
        parts = pl.col("forename").str.splitn(" ", 2)
        out = out.with_columns(parts.struct.field("field_0").alias("forename"),
                               parts.struct.field("field_1").alias("middle_names"))
    if "pnc" in out.columns:  # placeholder PNCs and one PNC on many dates of birth: null, as in staging
        junk = junk_pnc("pnc", "dob" if "dob" in out.columns else None)
        out = out.with_columns(pl.when(junk).then(None).otherwise(pl.col("pnc")).alias("pnc"))
    return out


def _unique_stems(inputs: Sequence[Path]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for p in inputs:
        stem = p.stem
        if stem in seen:
            seen[stem] += 1
            stem = f"{stem}_{seen[stem]}"
        else:
            seen[stem] = 1
        out.append(stem)
    return out


# --------------------------------------------------------------------------- dedupe


def run_dedupe(
    inputs: Sequence[Path | str],
    id_col: str,
    maps: dict[str, str] | Sequence[str],
    extras: Sequence[str],
    dob_format: str | None,
    out: Path | str,
    threshold: float | None,
    progress: bool | Callable[[str], None] = True,
    *,
    db_api=None,
    training=None,
) -> pl.DataFrame:
    """Deduplicate (one input) or link and deduplicate (several) person files.

    Returns and writes ``out`` (parquet): ``source``, ``record_id``, ``person_id``, one row
    per input record in input order. Raises :class:`DedupeConfigError` before any work for
    a bad mapping (unknown field or column, missing id column, no usable fields).
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    if callable(progress):
        say = progress
    elif progress:
        def say(msg: str) -> None:  # CPU time too: on a shared machine it is the steadier figure
            print(f"[dedupe {time.perf_counter() - t0:6.1f}s, CPU {time.process_time() - cpu0:5.1f}s] {msg}",
                  file=sys.stderr, flush=True)
    else:
        def say(msg: str) -> None:
            return None

    paths = [Path(p) for p in inputs]
    fmap = parse_maps(maps)
    extras = list(extras or [])
    if threshold is not None and not 0 < threshold < 1:
        raise DedupeConfigError(f"--threshold must be a match probability in (0, 1), got {threshold}")
    validate_inputs(paths, id_col, fmap, extras)
    out = Path(out)

    stems = _unique_stems(paths)
    frames = []
    for path, stem in zip(paths, stems):
        say(f"reading {path.name}")
        df = standardise(_read(path, [id_col, *fmap.values(), *extras]), id_col=id_col, maps=fmap, extras=extras,
                         source=stem, dob_format=dob_format)
        ids = df.get_column("record_id")
        if ids.null_count():
            raise DedupeConfigError(f"{path.name}: {ids.null_count()} row(s) have no {id_col!r}")
        dup = ids.filter(ids.is_duplicated()) if ids.n_unique() < ids.len() else ids.clear()
        if dup.len():
            raise DedupeConfigError(
                f"{path.name}: id column {id_col!r} is not unique ({dup.n_unique()} repeated values,"
                f" e.g. {dup.head(3).to_list()})")
        frames.append(df)
    n = sum(f.height for f in frames)
    say(f"{n:,} records from {len(frames)} file(s)")
    if "dob" in fmap:
        bad = sum(f.get_column("dob").null_count() for f in frames)
        if bad == n and n:
            say(f"warning: no dates of birth could be parsed from column {fmap['dob']!r}"
                + ("" if dob_format else "; give --dob-format"))

    # Splink sees each record by its row number: integer ids make its clustering about twice as fast
    # as text ids, and turn the way back to the input's ids into a gather instead of string joins
    allrec = pl.concat([f.select("source_dataset", "record_id") for f in frames])
    offsets = [0, *itertools.accumulate(f.height for f in frames)]
    numbered = [f.with_columns(pl.int_range(start, start + f.height, dtype=pl.Int64).alias("record_id"))
                for f, start in zip(frames, offsets)]
    try:
        result = deduplicate(numbered[0] if len(numbered) == 1 else numbered, db_api=db_api, extras=extras,
                             threshold_match_probability=threshold, training=training, progress=say)
    except LinkageConfigError as exc:
        raise DedupeConfigError(f"no usable fields: {exc}") from exc

    res = allrec.select(pl.col("source_dataset").alias("source"), "record_id",
                        person_ids_in_input_order(result.clusters, allrec.height))
    out.parent.mkdir(parents=True, exist_ok=True)
    res.write_parquet(out)
    say(f"{res.get_column('person_id').n_unique():,} people among {res.height:,} records "
        f"(threshold {result.threshold_match_probability}); model {result.model.version}; wrote {out}")
    return res


def person_ids_in_input_order(clusters: pl.DataFrame, n_records: int) -> pl.Series:
    """``person_id`` for records numbered 0..n-1 (``clusters``: record_id = that number, cluster_id):
    1, 2, 3... in the order each person first appears in the input; a record the clustering did
    not return is a person of its own."""
    numbers = pl.DataFrame({"_i": pl.int_range(n_records, dtype=pl.Int64, eager=True)})
    cl = clusters.select(pl.col("record_id").cast(pl.Int64).alias("_i"), "cluster_id")
    first = (numbers.join(cl, on="_i", how="left", maintain_order="left")
             .select(pl.when(pl.col("cluster_id").is_null()).then(pl.col("_i"))
                     .otherwise(pl.col("_i").min().over("cluster_id")).alias("first")))
    return first.get_column("first").rank("dense").cast(pl.Int64).alias("person_id")


def add_dedupe_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "dedupe", help="deduplicate / link person files (CSV or Parquet) with Splink",
        description="Deduplicate one person file, or link several and deduplicate within each. "
                    "The model is trained unsupervised from the files given. "
                    f"FIELD is one of: {', '.join(LINKAGE_FIELDS)}. Dates in ISO, YYYYMMDD or "
                    "DD/MM/YYYY are recognised without --dob-format.")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    p.add_argument("--id", dest="id_col", required=True, metavar="COL", help="record id column")
    p.add_argument("--map", dest="maps", action="append", default=[], metavar="FIELD=COL",
                   help="map a linkage field to a column (repeat)")
    p.add_argument("--extra", dest="extras", action="append", default=[], metavar="COL",
                   help="extra column compared exactly, with term-frequency adjustment (repeat)")
    p.add_argument("--dob-format", default=None, metavar="FMT", help="strptime format of dob, e.g. %%d.%%m.%%Y")
    p.add_argument("--out", required=True, type=Path, metavar="OUT.parquet")
    p.add_argument("--threshold", type=float, default=None, metavar="P",
                   help=f"match probability to link at (default {DEFAULT_THRESHOLD})")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=_dedupe_main)
    return p


def _dedupe_main(args: argparse.Namespace) -> int:
    try:
        run_dedupe(args.inputs, args.id_col, args.maps, args.extras, args.dob_format, args.out,
                   args.threshold, progress=not args.quiet)
    except DedupeConfigError as exc:
        print(f"datafirst dedupe: error: {exc}", file=sys.stderr)
        return 2
    return 0


# -------------------------------------------------------------------- review sample


def run_review_sample(pairs: Path | str, records: Path | str, out: Path | str, *,
                      threshold: float | None = None, n: int = 200, seed: int = 0) -> pl.DataFrame:
    """Write a clerical review sample (CSV) from a scored-pairs and a records parquet."""
    pairs_df = _read(Path(pairs))
    rec = _read(Path(records))
    for need, df, name in ((("record_id_l", "record_id_r", "match_weight"), pairs_df, "pairs"),
                           (("record_id",), rec, "records")):
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise DedupeConfigError(f"{name} file lacks column(s) {missing}")
    sample = review_sample(pairs_df, rec, threshold_match_probability=threshold or DEFAULT_THRESHOLD,
                           n=n, seed=seed)
    write_review_sample(sample, out)
    return sample


def add_review_sample_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("review-sample", help="write pairs around the threshold for clerical review",
                              description=run_review_sample.__doc__)
    p.add_argument("--pairs", required=True, type=Path, metavar="PAIRS.parquet")
    p.add_argument("--records", required=True, type=Path, metavar="RECORDS.parquet")
    p.add_argument("--out", required=True, type=Path, metavar="SAMPLE.csv")
    p.add_argument("--threshold", type=float, default=None, metavar="P")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_review_main)
    return p


def _review_main(args: argparse.Namespace) -> int:
    try:
        s = run_review_sample(args.pairs, args.records, args.out, threshold=args.threshold, n=args.n,
                              seed=args.seed)
    except (DedupeConfigError, ValueError) as exc:
        print(f"datafirst review-sample: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {s.height} pairs to {args.out}: fill in clerical_match_score (1 match, 0 non-match)")
    return 0


# ------------------------------------------------------------------------- evaluate


def run_evaluate(labels: Path | str, *, pairs: Path | str | None = None, clusters: Path | str | None = None,
                 threshold: float | None = None, out: Path | str | None = None) -> dict[str, Any]:
    """Evaluate from a clerical labels file (see module docstring)."""
    if pairs is None and clusters is None:
        raise DedupeConfigError("give --pairs and/or --clusters to evaluate against the labels")
    lab = read_labels(labels)
    pairs_df = _read(Path(pairs)) if pairs else None
    cl = _read(Path(clusters)) if clusters else None
    pred_col = "cluster_id"
    if cl is not None and "cluster_id" not in cl.columns:
        cands = [c for c in cl.columns if c == "person_id" or (c.endswith("_id") and c != "record_id")]
        if not cands:
            raise DedupeConfigError("clusters file needs record_id and a cluster_id / person_id column")
        pred_col = cands[0]
    report = evaluate_labels(lab, pairs=pairs_df, clusters=cl, threshold_match_probability=threshold,
                             pred_col=pred_col)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2, default=str))
    return report


def add_evaluate_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help="precision / recall / F1 from a clerical labels file",
                              description=run_evaluate.__doc__)
    p.add_argument("--labels", required=True, type=Path, metavar="FILE")
    p.add_argument("--pairs", type=Path, default=None, metavar="PAIRS.parquet")
    p.add_argument("--clusters", type=Path, default=None, metavar="CLUSTERS.parquet")
    p.add_argument("--threshold", type=float, default=None, metavar="P")
    p.add_argument("--out", type=Path, default=None, metavar="REPORT.json")
    p.set_defaults(func=_evaluate_main)
    return p


def _evaluate_main(args: argparse.Namespace) -> int:
    try:
        report = run_evaluate(args.labels, pairs=args.pairs, clusters=args.clusters, threshold=args.threshold,
                              out=args.out)
    except (DedupeConfigError, ValueError) as exc:
        print(f"datafirst evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2, default=str))
    return 0

