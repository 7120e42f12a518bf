"""Family court (FamilyMan): cases about family units (two adults and their children)."""

from __future__ import annotations

import numpy as np
import polars as pl

from datafirst_assets.simulate import identifiers as ids
from datafirst_assets.simulate.steps import Journeys
from datafirst_assets.simulate.tables import BlankRule, Codes, Days, TableData, Text, person_columns
from datafirst_assets.simulate.util import (
    FAR_DAY,
    categorical,
    expand,
    group_cumsum,
    lognormal_days,
    ymd,
    zipf_counts,
)
from datafirst_assets.simulate.world import World

SOURCE = "family"
FAMILY_COURTS = tuple(f"{a}F{j}" for a, _, _ in ids.POSTCODE_AREAS for j in (1, 2))
PUBLIC, PRIVATE, DIVORCE, ADOPTION, DV = range(5)  # case types, registry order


def build(w: World, journeys: Journeys) -> dict[str, TableData]:
    r = w.rng(SOURCE)
    cases, units, day, ctype = _cases(w, r)
    return {"family/family_cases": cases, "family/family_people": _parties(w, r, units, day, ctype)}


def _cases(w: World, r) -> tuple[TableData, np.ndarray, np.ndarray, np.ndarray]:
    """(table, family unit, issue day, case type): each unit's cases over time; the first about
    the children or the couple, later ones of any kind the unit allows."""
    ro, cfg, people = w.rosters, w.cfg, w.people
    _, hi = w.window(SOURCE)
    U = len(ro.fam_a)
    k = zipf_counts(r, cfg.family_cases_zipf, U, 8)
    cg, cpos = expand(k)
    gaps = r.exponential(500.0, len(cg))
    gaps[cpos == 0] = 0
    day = (ro.fam_t0[cg] + group_cumsum(gaps, cpos)).astype(np.int64)
    keep = day <= hi
    cg, cpos, day = cg[keep], cpos[keep], day[keep]
    n = len(cg)

    CT = w.codes(SOURCE, "family_cases", "case_type")  # PUBLIC PRIVATE DIVORCE ADOPTION DV
    kids = ro.fam_kids[cg]
    has_kids = (kids >= 0).any(axis=1)
    has_b = ro.fam_b[cg] >= 0
    first = cpos == 0
    later_kids = np.array([PUBLIC, PRIVATE, DIVORCE, ADOPTION, DV])[
        categorical(r, np.array([0.15, 0.45, 0.2, 0.05, 0.15]), n)
    ]
    later_kids = np.where(~has_b & np.isin(later_kids, [DIVORCE, DV]), PRIVATE, later_kids)
    ctype = np.select(
        [first & has_kids, first & has_b, has_kids, has_b],
        [
            np.where(r.random(n) < 0.65, PRIVATE, PUBLIC),
            np.where(r.random(n) < 0.6, DIVORCE, DV),
            later_kids,
            np.where(r.random(n) < 0.5, DIVORCE, DV),
        ],
        DV,
    )
    median = np.array([250, 150, 200, 180, 20])[ctype]
    disposal = day + lognormal_days(r, median, 0.7, n, 1, 1500)
    OC = w.codes(SOURCE, "family_cases", "outcome")  # ORDER_MADE WITHDRAWN DISMISSED ONGOING
    outcome = categorical(r, np.array([0.72, 0.16, 0.07, 0.05]), n)
    disposal = np.where(outcome == 3, FAR_DAY, disposal)
    a = ro.fam_a[cg]
    slot = people.address_slot(a, day)
    area = people.addr_pc[a, slot] // 1_000_000
    court = area * 2 + (r.random(n) < 0.3)
    yy = ymd(day)[0] % 100
    order = np.lexsort((np.arange(n), day))
    serial = np.empty(n, dtype=np.int64)
    serial[order] = np.arange(n)
    type_letter = np.array(["C", "P", "D", "A", "F"])[ctype]
    case_number = pl.select(
        pl.concat_str(
            [
                pl.Series(np.array(FAMILY_COURTS)[court]).str.slice(0, 2),
                ids.zfill(yy, 2),
                pl.Series(type_letter),
                ids.zfill(serial + 1, 5),
            ]
        )
    ).to_series()
    cases = TableData(
        SOURCE,
        "family_cases",
        {
            "case_number": Text(case_number),
            "court_code": Codes(court, FAMILY_COURTS),
            "case_type": Codes(ctype, CT),
            "issue_date": Days(day.astype(np.int32)),
            "disposal_date": Days(np.minimum(disposal, FAR_DAY).astype(np.int32)),
            "outcome": Codes(outcome, OC),
        },
        event_day=day.astype(np.int32),
        blank_rules=[BlankRule(disposal, ("disposal_date",), {"outcome": "ONGOING"})],
    )
    return cases, cg, day, ctype


def _parties(w: World, r, cg: np.ndarray, day: np.ndarray, ctype: np.ndarray) -> TableData:
    """Parties of each case from the unit's slots (adult A, adult B, children 1-3): children on
    public and private law cases while minors, roles from the kind of case."""
    ro, people = w.rosters, w.people
    n = len(cg)
    a = ro.fam_a[cg]
    kids = ro.fam_kids[cg]
    has_b = ro.fam_b[cg] >= 0
    RL = w.codes(SOURCE, "family_people", "role")  # APPLICANT RESPONDENT CHILD OTHER
    APP, RES, CHILD, OTHER = range(4)
    slots = np.column_stack([a, ro.fam_b[cg], kids])
    include = np.zeros((n, 5), dtype=bool)
    include[:, 0] = True
    include[:, 1] = has_b
    kid_cases = np.isin(ctype, [PUBLIC, PRIVATE])
    kid_age = (day[:, None] - people.dob[np.maximum(kids, 0)]) / 365.25
    minor = (kids >= 0) & (kid_age < 18)
    include[:, 2:] = minor & kid_cases[:, None]
    include[:, 2] |= (ctype == ADOPTION) & minor[:, 0]
    a_applies = np.select(
        [ctype == PRIVATE, ctype == DIVORCE, ctype == DV],
        [r.random(n) < 0.7, r.random(n) < 0.6, r.random(n) < 0.9],
        False,
    )
    role = np.full((n, 5), CHILD)
    role[:, 0] = np.where(a_applies, APP, RES)
    role[:, 1] = np.where(
        np.isin(ctype, [PUBLIC, ADOPTION]),
        np.where(r.random(n) < 0.15, OTHER, RES),
        np.where(a_applies, RES, APP),
    )
    role[:, 0] = np.where(~has_b & np.isin(ctype, [DV, DIVORCE]), APP, role[:, 0])
    rows, cols = np.nonzero(include)
    person = slots[rows, cols]
    rec = w.recorder(SOURCE).record(person, day[rows], w.rng("family/record"), criminal_ids=False)
    return TableData(
        SOURCE,
        "family_people",
        {
            "role": Codes(role[rows, cols], RL),
            **person_columns(
                rec,
                {
                    "forename": "forename",
                    "mid1": "middle_name",
                    "surname": "surname",
                    "dob": "dob",
                    "sex": "sex",
                    "ethnicity": "ethnicity",
                    "postcode": "postcode",
                    "address": "address_line1",
                },
            ),
        },
        parent_row=rows,
        person=person,
    )
