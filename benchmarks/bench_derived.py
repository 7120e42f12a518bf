"""Benchmark the derived step (person journeys + repeat-offending profile) on release-shaped tables.

    python benchmarks/bench_derived.py --people 1000000 [--io] [--repeats N]

Fabricates every release table from the release spec at the row counts a simulated population
of `--people` produces (rows per person measured on the 10,000-person demo; about 15 rows per
person in all, linking tables included), with keys that join: children reference their
parents, person ids are in the cross-justice lookup, Crown Court cases are linked to
magistrates' cases. Values are drawn independently (like the synthetic release), so it
measures the work, not the findings.

Prints the wall and CPU seconds of each part of the step as the assets run it (journeys, their
schema check, the profile, its check, the report; with --io also loading the declared input
columns from DuckDB and storing the two tables, as the IO manager does) and, as a baseline in
the same run, the irreducible part of the work: joining every person table to the lookup and
counting rows per person. The ratio says how much the derived logic costs on top of touching
every input row once.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

# Rows per simulated person, from the 10,000-person demo (3 extracts, seed 42).
ROWS_PER_PERSON = {
    ("magistrates", "hocas_flatfile"): 1.2787, ("magistrates", "hocas_all_offence"): 2.3439,
    ("crown_court", "xhibit_flatfile"): 0.0876, ("crown_court", "xhibit_all_off_disp"): 0.1716,
    ("prison", "nomis_flatfile"): 0.2515, ("prison", "nomis_movements"): 0.6375,
    ("prison", "nomis_safety_in_custody"): 0.0569,
    ("probation", "delius_flatfile"): 0.5202, ("probation", "delius_rqmnt"): 0.3723,
    ("probation", "delius_lic_condition"): 0.3877, ("probation", "delius_psr"): 0.2004,
    ("probation", "delius_pss"): 0.15,
    ("family", "family_cases"): 0.0791, ("family", "family_people"): 0.234,
    ("civil", "cases"): 0.2414, ("civil", "case_events"): 0.8437, ("civil", "hearings"): 0.1342,
    ("civil", "judgments"): 0.1718, ("civil", "warrants"): 0.0336, ("civil", "parties"): 0.5079,
    ("oasys", "assessments_metadata"): 0.8418, ("oasys", "oasys_assessments_details_bcs"): 0.0948,
    ("oasys", "oasys_assessments_details_core_risk"): 0.81, ("oasys", "oasys_assessments_details_isp"): 1.2612,
    ("oasys", "oasys_assessments_details_rm2000"): 0.0447, ("oasys", "oasys_assessments_details_rmp"): 0.8464,
    ("oasys", "oasys_assessments_details_rosh"): 0.7793,
}
# Per-dataset persons per simulated person (clusters in the demo), and cross-justice persons.
PERSONS_PER_PERSON = {"magistrates": 0.7266, "crown_court": 0.0778, "prison": 0.1695, "probation": 0.2762,
                      "family": 0.1367, "civil": 0.1889, "oasys": 0.2682}
XJS_PER_PERSON = 0.99
VOCAB = {"sex": ["M", "F"], "gender": ["M", "F"],
         "ethnicity": ["W1", "W2", "W9", "M1", "A1", "A2", "B1", "B2", "O9"]}


def _keys(index: np.ndarray) -> pl.Series:
    """64-character key of row `index` (digits are valid hex; the step only joins on equality)."""
    return pl.Series(index, dtype=pl.Int64).cast(pl.String).str.zfill(64)


def _with_nulls(series: pl.Series, rng: np.random.Generator, share: float) -> pl.Series:
    mask = pl.Series(rng.random(len(series)) < share)
    return pl.select(pl.when(mask).then(None).otherwise(series)).to_series().alias(series.name)


def fabricate(people: int, seed: int = 0) -> dict[tuple[str, str], pl.DataFrame]:
    from datafirst_assets.deidentify.release_spec import LINKING, release_tables

    rng = np.random.default_rng(seed)
    specs = release_tables()
    sizes = {key: max(1, round(rate * people)) for key, rate in ROWS_PER_PERSON.items()}
    persons = {d: max(1, round(rate * people)) for d, rate in PERSONS_PER_PERSON.items()}
    days0 = np.datetime64("2010-01-01")
    release: dict[tuple[str, str], pl.DataFrame] = {}
    for key, spec in specs.items():
        if spec.source == LINKING:
            continue
        n = sizes[key]
        one_to_one = next((c for c in spec.foreign_keys if spec.unique_key == (c.name,)), None)
        if one_to_one is not None:  # each parent at most once
            n = min(n, sizes[(spec.source, one_to_one.references[0])])
        columns = {}
        for c in spec.columns:
            if c.role == "primary_key":
                columns[c.name] = _keys(np.arange(n))
            elif c.role == "foreign_key":
                parent_rows = sizes[(spec.source, c.references[0])]
                index = rng.permutation(parent_rows)[:n] if c is one_to_one else rng.integers(0, parent_rows, n)
                columns[c.name] = _keys(index)
            elif c.role == "system_id":
                columns[c.name] = _with_nulls(_keys(rng.integers(0, n, n)), rng, 0.1)
            elif c.role == "person_key":
                columns[c.name] = pl.Series(rng.integers(1, persons[spec.source] + 1, n), dtype=pl.Int64)
            elif c.role == "date":
                dates = pl.Series((days0 + rng.integers(0, 14 * 365, n)).astype("datetime64[D]"))
                columns[c.name] = _with_nulls(dates, rng, 0.05)
            elif c.role == "age":
                columns[c.name] = _with_nulls(pl.Series(rng.integers(10, 80, n), dtype=pl.Int32), rng, 0.02)
            elif c.role in ("categorical", "area"):
                vocab = VOCAB.get(c.name, ["A", "B", "C", "D"])
                columns[c.name] = _with_nulls(pl.Series(np.array(vocab)[rng.integers(0, len(vocab), n)]), rng, 0.05)
            elif c.role == "numeric":
                values = pl.Series(rng.integers(1, 100, n), dtype=pl.Int64) if c.dtype == pl.Int64 else pl.Series(
                    rng.uniform(0, 5000, n))
                columns[c.name] = _with_nulls(values, rng, 0.05)
            elif c.role == "flag":
                columns[c.name] = pl.Series(rng.random(n) < 0.3)
            elif c.role == "score":
                columns[c.name] = pl.Series(rng.random(n))
            else:
                raise AssertionError(f"no fabricator for role {c.role}")
        release[key] = pl.DataFrame({name: s.alias(name) for name, s in columns.items()}).cast(spec.schema())
    xjs_people = max(1, round(XJS_PER_PERSON * people))
    lookup = pl.concat([
        pl.DataFrame({
            "source_dataset": [dataset] * count,
            "dataset_person_id": np.arange(1, count + 1),
            "xjs_person_id_high": np.arange(1, count + 1) + 10_000_000 * (i + 1),
            "xjs_person_id_medium": rng.integers(1, xjs_people + 1, count),
        }).with_columns(pl.col("xjs_person_id_medium").alias("xjs_person_id_low"))
        for i, (dataset, count) in enumerate(persons.items())
    ])
    release[(LINKING, "xjs_lookup")] = lookup.cast(specs[(LINKING, "xjs_lookup")].schema())
    crown = sizes[("crown_court", "xhibit_flatfile")]
    release[(LINKING, "case_lookup")] = pl.DataFrame({
        "defendant_case_id_hash": _keys(rng.integers(0, sizes[("magistrates", "hocas_flatfile")], crown)),
        "defendant_on_case_id_hash": _keys(np.arange(crown)),
        "case_type": ["SENT_FOR_TRIAL"] * crown, "match_score": rng.random(crown), "keys_agreed": ["URN"] * crown,
    }).cast(specs[(LINKING, "case_lookup")].schema())
    return release


def baseline(release) -> pl.DataFrame:
    """Rows per cross-justice person per dataset: every person table joined to the lookup once."""
    from datafirst_assets.derived.person_journeys import CONTACTS, LOOKUP, PERSON

    lookup = release[LOOKUP]
    parts = []
    for c in CONTACTS:
        ids = lookup.filter(pl.col("source_dataset") == c.dataset).select(
            pl.col("dataset_person_id").alias(c.person), PERSON)
        parts.append(release[(c.dataset, c.table)].select(c.person).join(ids, on=c.person).group_by(PERSON).len())
    return pl.concat(parts).group_by(PERSON).agg(pl.col("len").sum())


def store(release, database: Path) -> None:
    """Write the release into a DuckDB file the way the IO manager does (schema `<source>`)."""
    import duckdb

    with duckdb.connect(str(database)) as conn:
        for (source, table), frame in release.items():
            conn.execute(f"create schema if not exists {source}")
            arrow = frame.to_arrow()  # noqa: F841 (read by name in the SQL)
            conn.execute(f"create table {source}.{table} as select * from arrow")


def load(database: Path) -> dict[tuple[str, str], pl.DataFrame]:
    """What the asset's inputs cost: the declared columns of each input table, DuckDB -> polars."""
    import duckdb

    from datafirst_assets.derived.person_journeys import COLUMNS_READ

    with duckdb.connect(str(database), read_only=True) as conn:
        return {(s, t): pl.from_arrow(conn.sql(f"select {', '.join(cols)} from {s}.{t}").to_arrow_table())
                for (s, t), cols in COLUMNS_READ.items()}


def write(frames: dict[str, pl.DataFrame], database: Path) -> None:
    import duckdb

    with duckdb.connect(str(database)) as conn:
        conn.execute("create schema if not exists derived")
        for name, frame in frames.items():
            arrow = frame.to_arrow()  # noqa: F841
            conn.execute(f"create or replace table derived.{name} as select * from arrow")


def _timed(label: str, fn, timings: dict):
    """Wall and CPU seconds (CPU of all the process's threads: on a shared machine wall time includes waiting)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    timings[label] = (time.perf_counter() - wall, time.process_time() - cpu)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="time the step this many times, report the best")
    ap.add_argument("--io", action="store_true",
                    help="also time loading the inputs from and storing the outputs in a DuckDB file, as the "
                    "assets do (the release is written to a temporary DuckDB file first, untimed)")
    args = ap.parse_args(argv)

    from datafirst_assets.derived import DERIVED_TABLES
    from datafirst_assets.derived.person_journeys import PERSON_JOURNEYS, person_journeys
    from datafirst_assets.derived.repeat_offending_profile import REPEAT_OFFENDING_PROFILE, profile_from_journeys
    from datafirst_assets.derived.report import profile_report

    start = time.perf_counter()
    release = fabricate(args.people, args.seed)
    fabricate_s = time.perf_counter() - start
    rows = sum(f.height for f in release.values())
    read = sum(f.height for k, f in release.items() if k in PERSON_JOURNEYS.inputs)

    workdir = tempfile.TemporaryDirectory(prefix="bench-derived-")
    database = Path(workdir.name) / "release.duckdb"
    if args.io:
        store(release, database)
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeats):
        timings: dict[str, float] = {}
        _timed("baseline (join + count)", lambda: baseline(release), timings)
        if args.io:
            loaded = _timed("load inputs (DuckDB)", lambda: load(database), timings)
            release = {**release, **loaded}
        journeys = _timed("person_journeys", lambda: person_journeys(release), timings)
        _timed("  schema check", lambda: PERSON_JOURNEYS.pandera_schema().validate(journeys, lazy=True), timings)
        profile = _timed("repeat_offending_profile", lambda: profile_from_journeys(journeys), timings)
        _timed("  schema check ", lambda: REPEAT_OFFENDING_PROFILE.pandera_schema().validate(profile, lazy=True),
               timings)
        if args.io:
            _timed("store outputs (DuckDB)", lambda: write(
                {"person_journeys": journeys, "repeat_offending_profile": profile}, database), timings)
        with tempfile.TemporaryDirectory() as folder:
            _timed("report (md + html + svg)", lambda: profile_report(
                profile, variant="synthetic", as_of=journeys["as_of_date"][0], tables=DERIVED_TABLES).write(
                Path(folder)), timings)
        best = {k: min(v, best.get(k, (float("inf"), 0.0))) for k, v in timings.items()}

    workdir.cleanup()
    step = [sum(v[i] for k, v in best.items() if not k.startswith("baseline")) for i in (0, 1)]
    base = best["baseline (join + count)"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"people                    {args.people:>12,}")
    print(f"release rows (all tables) {rows:>12,}   ({len(release)} tables, fabricated in {fabricate_s:.1f} s)")
    print(f"rows the step reads       {read:>12,}   ({len(PERSON_JOURNEYS.inputs)} tables)")
    print(f"persons out               {journeys.height:>12,}   (with a criminal case: "
          f"{int((journeys['criminal_cases'] > 0).sum()):,})")
    print(f"{'':<26}{'wall s':>10}{'CPU s':>10}")
    for label, (wall, cpu) in best.items():
        print(f"{label:<26}{wall:>10.2f}{cpu:>10.2f}")
    print(f"{'derived step total':<26}{step[0]:>10.2f}{step[1]:>10.2f}   "
          f"({step[0] / base[0]:.1f}x the baseline wall, {step[1] / base[1]:.1f}x CPU)")
    print(f"peak RSS                  {peak:>10.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
