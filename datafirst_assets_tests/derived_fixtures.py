"""A hand-built release (every release table, exactly the spec's columns) for the derived-table tests.

Five cross-justice persons, as of 2020-01-01:

A (xjs 100)  magistrates 1: cases M1 2015-03-01 (offences 2015-01-10, 2015-01-20), M2 2015-09-01, M3 2018-01-01
             crown court 11: C1 2015-10-01 (case_lookup -> M2, same person: not a new case), C2 2019-05-01
             prison 21: P1 2015-10-15..2016-01-15, P2 2016-01-01..2016-02-01 (overlaps P1), P3 2019-06-01..open
             probation 31: E1 (2 requirements), E2 (1 requirement)
             oasys 41: 2016-02-10 OGRS3 45, 2017-01-01 no score, 2018-03-01 OGRS3 60
             civil 51: party to a case issued 2014-06-01 at 16 (first contact)
             sex M M M (mags) F (prison) M (probation); ethnicity B1
B (xjs 200)  magistrates 2: M4 2019-06-01 at 30 (offence 2019-05-01), F, W1
             family 61: party to a case issued 2010-01-01 at 21, F, A1 (first contact; ethnicity tie -> A1)
C (xjs 300)  crown court 12: C3 2012-01-01 at 25 (case_lookup -> M5, which is D's: stays C's own case),
             C4 2013-06-01
D (xjs 400)  magistrates 3: M5 2011-12-01, no offences
E (xjs 500)  civil 52 only
plus a magistrates' row of defendant 99, who is not in the lookup.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random

import polars as pl

from datafirst_assets.deidentify.release_spec import release_tables

AS_OF = dt.date(2020, 1, 1)
D = dt.date


def h(label: str) -> str:
    """A 64-hex stand-in for a keyed hash."""
    return hashlib.sha256(label.encode()).hexdigest()


def frame(source: str, table: str, rows: list[dict]) -> pl.DataFrame:
    spec = release_tables()[(source, table)]
    return pl.DataFrame([{c: row.get(c) for c in spec.column_names} for row in rows], schema=spec.schema())


def empty_release() -> dict[tuple[str, str], pl.DataFrame]:
    return {key: pl.DataFrame(schema=spec.schema()) for key, spec in release_tables().items()}


def hand_built_release() -> dict[tuple[str, str], pl.DataFrame]:
    release = empty_release()

    def mags(case, person, hearing, age, sex="M", eth="B1"):
        return dict(defendant_case_id_hash=h(case), estimated_defendant_id=person, first_hearing_date=hearing,
                    age_at_first_hearing=age, sex=sex, ethnicity=eth)

    release[("magistrates", "hocas_flatfile")] = frame("magistrates", "hocas_flatfile", [
        mags("M1", 1, D(2015, 3, 1), 17), mags("M2", 1, D(2015, 9, 1), 17), mags("M3", 1, D(2018, 1, 1), 20),
        mags("M4", 2, D(2019, 6, 1), 30, "F", "W1"), mags("M5", 3, D(2011, 12, 1), 40, None, None),
        mags("M9", 99, D(2012, 1, 1), 50),
    ])
    release[("magistrates", "hocas_all_offence")] = frame("magistrates", "hocas_all_offence", [
        dict(offence_id_hash=h(f"O{i}"), defendant_case_id_hash=h(case), offence_date=day)
        for i, (case, day) in enumerate([("M1", D(2015, 1, 20)), ("M1", D(2015, 1, 10)), ("M2", D(2015, 8, 1)),
                                         ("M4", D(2019, 5, 1)), ("M9", D(2000, 1, 1))])
    ])
    release[("crown_court", "xhibit_flatfile")] = frame("crown_court", "xhibit_flatfile", [
        dict(defendant_on_case_id_hash=h(case), estimated_defendant_id=person, receipt_date=day,
             age_at_receipt=age, gender=sex, ethnicity=eth)
        for case, person, day, age, sex, eth in [
            ("C1", 11, D(2015, 10, 1), 17, "M", "B1"), ("C2", 11, D(2019, 5, 1), 21, "M", None),
            ("C3", 12, D(2012, 1, 1), 25, "M", "O9"), ("C4", 12, D(2013, 6, 1), 26, "M", "O9"),
        ]
    ])
    release[("linking", "case_lookup")] = frame("linking", "case_lookup", [
        dict(defendant_case_id_hash=h("M2"), defendant_on_case_id_hash=h("C1"), match_score=1.0),
        dict(defendant_case_id_hash=h("M5"), defendant_on_case_id_hash=h("C3"), match_score=0.9),
    ])
    release[("prison", "nomis_flatfile")] = frame("prison", "nomis_flatfile", [
        dict(custodial_journey_id_hash=h(j), estimated_offender_id=21, reception_date=start, release_date=end,
             age_at_reception=age, sex=sex, ethnicity="B1")
        for j, start, end, age, sex in [("P1", D(2015, 10, 15), D(2016, 1, 15), 17, "F"),
                                        ("P2", D(2016, 1, 1), D(2016, 2, 1), 17, None),
                                        ("P3", D(2019, 6, 1), None, 21, None)]
    ])
    release[("probation", "delius_flatfile")] = frame("probation", "delius_flatfile", [
        dict(event_id_hash=h("E1"), estimated_offender_id=31, referral_date=D(2016, 2, 1), age_at_referral=18,
             gender="M"),
        dict(event_id_hash=h("E2"), estimated_offender_id=31, referral_date=D(2018, 2, 1), age_at_referral=20),
    ])
    release[("probation", "delius_rqmnt")] = frame("probation", "delius_rqmnt", [
        dict(requirement_id_hash=h(f"R{i}"), event_id_hash=h(event)) for i, event in enumerate(["E1", "E1", "E2"])
    ])
    release[("oasys", "assessments_metadata")] = frame("oasys", "assessments_metadata", [
        dict(assessment_id_hash=h(a), estimated_offender_id=41, assessment_date=day, age_at_assessment=age)
        for a, day, age in [("A1", D(2016, 2, 10), 18), ("A2", D(2017, 1, 1), 19), ("A3", D(2018, 3, 1), 20)]
    ])
    release[("oasys", "oasys_assessments_details_core_risk")] = frame("oasys", "oasys_assessments_details_core_risk", [
        dict(assessment_id_hash=h("A3"), ogrs3_score=60), dict(assessment_id_hash=h("A1"), ogrs3_score=45),
        dict(assessment_id_hash=h("A2"), ogrs3_score=None),
    ])
    release[("family", "family_cases")] = frame("family", "family_cases", [
        dict(case_id_hash=h("F1"), issue_date=D(2010, 1, 1))])
    release[("family", "family_people")] = frame("family", "family_people", [
        dict(party_id_hash=h("FP1"), estimated_party_id=61, case_id_hash=h("F1"), age_at_issue=21, sex="F",
             ethnicity="A1")])
    release[("civil", "cases")] = frame("civil", "cases", [
        dict(case_id_hash=h("V1"), issue_date=D(2014, 6, 1)), dict(case_id_hash=h("V2"), issue_date=D(2016, 6, 1))])
    release[("civil", "parties")] = frame("civil", "parties", [
        dict(party_id_hash=h("VP1"), estimated_party_id=51, case_id_hash=h("V1"), age_at_issue=16),
        dict(party_id_hash=h("VP2"), estimated_party_id=52, case_id_hash=h("V2"), age_at_issue=44),
    ])
    lookup = [("magistrates", 1, 100), ("crown_court", 11, 100), ("prison", 21, 100), ("probation", 31, 100),
              ("oasys", 41, 100), ("civil", 51, 100), ("magistrates", 2, 200), ("family", 61, 200),
              ("crown_court", 12, 300), ("magistrates", 3, 400), ("civil", 52, 500)]
    release[("linking", "xjs_lookup")] = frame("linking", "xjs_lookup", [
        dict(source_dataset=s, dataset_person_id=p, xjs_person_id_high=p * 7, xjs_person_id_medium=x,
             xjs_person_id_low=x) for s, p, x in lookup
    ])
    return release


def relabelled_release(release: dict[tuple[str, str], pl.DataFrame], seed: int = 1) -> dict[tuple[str, str], pl.DataFrame]:
    """The same events under new keys, as a synthetic release has: every hash re-hashed with another
    salt, per-dataset and cross-justice person ids renumbered, and rows shuffled."""
    out = {}
    for key, frame in release.items():
        spec = release_tables()[key]
        exprs = []
        for c in spec.columns:
            if c.role in ("primary_key", "foreign_key", "system_id"):
                exprs.append(pl.col(c.name).map_elements(lambda v: h(f"salt{seed}:{v}"), return_dtype=pl.String))
            elif c.role == "person_key":
                exprs.append(pl.col(c.name) * 1000 + 17)
            elif c.role == "xjs_key":
                exprs.append(pl.col(c.name) * 13 + 5)
        out[key] = frame.with_columns(exprs).sample(fraction=1.0, shuffle=True, seed=seed) if frame.height else frame
    return out


def random_release(people: int = 60, seed: int = 0) -> dict[tuple[str, str], pl.DataFrame]:
    """A synthetic-like release: the spec's columns and joins, every value drawn independently.

    Dates in any order (releases before receptions), missing values everywhere, unknown codes,
    persons missing from the lookup, lookup persons with no rows: what lo-fi synthetic data does
    to code written against the real release.
    """
    from datafirst_assets.sources.registry import ETHNICITY_CODES

    rng = random.Random(seed)
    specs = release_tables()
    done: dict[tuple[str, str], pl.DataFrame] = {}

    def maybe(value, missing=0.1):
        return None if rng.random() < missing else value

    def value(spec, column, n, i):
        role = column.role
        if role == "primary_key":
            return h(f"{spec.source}.{spec.name}.{i}.{seed}")
        if role == "system_id":
            return maybe(h(f"sys{rng.randrange(n)}"))
        if role == "person_key":
            return maybe(rng.randrange(1, people), 0.03)
        if role == "categorical":
            if column.name in ("sex", "gender"):
                return rng.choice(["M", "F", None])
            if column.name == "ethnicity":
                return rng.choice([*ETHNICITY_CODES, None, None])
            return rng.choice(["A", "B", "C", None])
        if role == "date":
            return maybe(D(2008, 1, 1) + dt.timedelta(days=rng.randrange(17 * 365)))
        if role == "age":
            return maybe(rng.randrange(0, 100))
        if role == "numeric":
            return maybe(rng.randrange(0, 100) if column.dtype == pl.Int64 else rng.uniform(0, 5000))
        if role == "flag":
            return maybe(rng.random() < 0.3)
        if role == "area":
            return rng.choice(["LS", "M", "B"])
        if role == "score":
            return rng.random()
        raise AssertionError(f"no generator for {role}")

    for key, spec in specs.items():
        if spec.source == "linking":
            continue
        n = rng.randrange(people // 2, 2 * people)
        rows = [{} for _ in range(n)]
        for column in spec.columns:
            if column.role == "foreign_key":
                parent_table, parent_column = column.references
                parents = done[(spec.source, parent_table)][parent_column].to_list()
                if spec.unique_key == (column.name,):  # one-to-one child: each parent at most once
                    rng.shuffle(parents)
                    rows, values = rows[:len(parents)], parents
                else:
                    values = [maybe(rng.choice(parents), 0.02) for _ in rows]
            else:
                values = [value(spec, column, n, i) for i in range(len(rows))]
            for row, v in zip(rows, values):
                row[column.name] = v
        done[key] = frame(*key, rows)

    lookup = []
    for (source, _), spec in specs.items():
        if spec.source == "linking" or not spec.person_key:
            continue
        for pid in sorted(set(done[(source, spec.name)][spec.person_key].drop_nulls().to_list())):
            if rng.random() < 0.95:  # some persons are unlinked
                x = rng.randrange(1, people)
                lookup.append(dict(source_dataset=source, dataset_person_id=pid, xjs_person_id_high=x * 10 + 1,
                                   xjs_person_id_medium=x, xjs_person_id_low=x // 3 + 1))
        # ...and the lookup holds persons the dataset has no rows for
        lookup.append(dict(source_dataset=source, dataset_person_id=people + 1000, xjs_person_id_high=1,
                           xjs_person_id_medium=people + 5, xjs_person_id_low=1))
    done[("linking", "xjs_lookup")] = frame("linking", "xjs_lookup", lookup)
    mags = done[("magistrates", "hocas_flatfile")]["defendant_case_id_hash"].to_list()
    crown = done[("crown_court", "xhibit_flatfile")]["defendant_on_case_id_hash"].to_list()
    done[("linking", "case_lookup")] = frame("linking", "case_lookup", [
        dict(defendant_case_id_hash=rng.choice(mags), defendant_on_case_id_hash=c, match_score=rng.random())
        for c in crown if rng.random() < 0.7
    ])
    return done
