"""Offender assessments (OASys): assessments in custody and in the community, and their sections.

Steps: when each person is assessed (a first assessment, then reviews, sometimes a termination
assessment), the identifiers an assessor records, then the metadata table and its sections:
needs, core risk scores, sentence plan objectives, RM2000 for sexual offences, risk of serious
harm and its risk management plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from datafirst_assets.simulate import identifiers as ids
from datafirst_assets.simulate.criminal import G
from datafirst_assets.simulate.prison import Custody
from datafirst_assets.simulate.probation import ProbationEvents
from datafirst_assets.simulate.steps import Journeys
from datafirst_assets.simulate.tables import (
    Codes,
    Days,
    Flags,
    Ints,
    TableData,
    Text,
    null_where,
    person_columns,
)
from datafirst_assets.simulate.util import FAR_DAY, categorical, expand, uniform_int
from datafirst_assets.simulate.world import World
from datafirst_assets.sources.registry import RISK_LEVELS

SOURCE = "oasys"
NEEDS = ("accommodation_need", "employment_need", "finance_need", "health_need", "drug_need", "alcohol_need")


@dataclass
class Assessments:
    """One row per assessment; `custody_rows` / `community_rows` name the prison spell or
    probation event each came from (custody assessments first)."""

    person: np.ndarray
    day: np.ndarray
    type: np.ndarray  # registry order: FULL REVIEW TERMINATION TRANSFER
    setting: np.ndarray  # CUSTODY COMMUNITY
    group: np.ndarray
    custody_rows: np.ndarray
    community_rows: np.ndarray

    @property
    def n(self) -> int:
        return len(self.person)


def build(w: World, journeys: Journeys) -> dict[str, TableData]:
    p, e = journeys.prison, journeys.probation
    r = w.rng(SOURCE)
    a = _assessments(w, r, p, e)
    metadata, status = _metadata(w, r, a, p, e)
    tables = {
        "oasys/assessments_metadata": metadata,
        "oasys/oasys_assessments_details_bcs": _needs(r, w.people.n, a),
        "oasys/oasys_assessments_details_core_risk": _core_risk(r, w.people.n, a, status),
        "oasys/oasys_assessments_details_isp": _sentence_plan(w, r, a, status),
        "oasys/oasys_assessments_details_rm2000": _rm2000(r, a, status),
    }
    rosh, rosh_rows, overall = _risk_of_serious_harm(r, w.people.n, a, status)
    tables["oasys/oasys_assessments_details_rosh"] = rosh
    tables["oasys/oasys_assessments_details_rmp"] = _risk_management_plans(w, r, rosh_rows, overall)
    return tables


def _assessments(w: World, r, p: Custody, e: ProbationEvents) -> Assessments:
    """Custody: a first assessment within weeks of reception on longer spells, a review yearly.
    Community: most orders and licences, reviews every 8-13 months, some termination assessments."""
    J_type, J_len, J_reception, J_release = p.type, p.length, p.reception, p.release
    custody_src = np.flatnonzero(
        ((J_type == 1) & (J_len >= 180)) | (J_type == 2) | ((J_type == 3) & (J_release - J_reception >= 180))
    )
    c_first = J_reception[custody_src] + uniform_int(r, np.full(len(custody_src), 10), 60)
    ok = c_first < J_release[custody_src]
    custody_src, c_first = custody_src[ok], c_first[ok]
    c_n = 1 + np.minimum(np.maximum(0, (J_release[custody_src] - c_first - 1) // 365), 8)
    cg, cpos = expand(c_n)
    a1_day = c_first[cg] + cpos * 365
    a1_src = custody_src[cg]
    comm_keep = r.random(e.n) < np.select([e.is_order, e.type == 2], [0.85, 0.9], 0.1)
    comm_src = np.flatnonzero(comm_keep)
    m_first = e.referral[comm_src] + uniform_int(r, np.full(len(comm_src), 3), 40)
    ok = m_first <= e.termination[comm_src]
    comm_src, m_first = comm_src[ok], m_first[ok]
    gap = uniform_int(r, np.full(len(comm_src), 240), 400)
    m_n = 1 + np.minimum(
        np.maximum(0, (np.minimum(e.termination[comm_src], w.horizon + 3650) - m_first - 1) // gap), 8
    )
    term_a = (e.termination[comm_src] < FAR_DAY) & (r.random(len(comm_src)) < 0.45)
    mg2, mpos2 = expand(m_n + term_a)
    is_term = mpos2 == m_n[mg2]
    a2_day = np.where(is_term, e.termination[comm_src][mg2], m_first[mg2] + mpos2 * gap[mg2])
    a2_src = comm_src[mg2]
    a_type = np.concatenate([np.where(cpos == 0, 0, 1), np.where(is_term, 2, np.where(mpos2 == 0, 0, 1))])
    a_type = np.where((a_type == 1) & (r.random(len(a_type)) < 0.03), 3, a_type)
    return Assessments(
        person=np.concatenate([p.person[a1_src], e.person[a2_src]]),
        day=np.concatenate([a1_day, a2_day]),
        type=a_type,
        setting=np.concatenate([np.zeros(len(a1_src), np.int64), np.ones(len(a2_src), np.int64)]),
        group=np.concatenate([p.group[a1_src], e.group[a2_src]]),
        custody_rows=a1_src,
        community_rows=a2_src,
    )


def _metadata(w: World, r, a: Assessments, p: Custody, e: ProbationEvents) -> tuple[TableData, np.ndarray]:
    """The assessment table and each assessment's status (COMPLETE or LOCKED_INCOMPLETE). The
    offender key is sometimes duplicated; CRN and prison number are recorded when the assessor
    has them."""
    people, na = w.people, a.n
    a1_src, a2_src, a_person = a.custody_rows, a.community_rows, a.person
    pk_dup = r.random(people.n) < w.cfg.offender_pk_duplicate_rate
    use_dup = pk_dup[a_person] & (r.random(na) < 0.5)
    pk = 1_000_000 + np.where(
        use_dup,
        ids.affine_permutation(people.n + a_person, 9_000_000, 13),
        ids.affine_permutation(a_person, 9_000_000, 13),
    )
    crn_all = ids.crn_strings(
        np.concatenate([ids.affine_permutation(p.person[a1_src], ids.CRN_SPACE, 9), e.crn_code[a2_src]])
    )
    crn_show = np.where(a.setting == 0, r.random(na) < 0.5, r.random(na) < 0.93)
    pn_all = ids.prison_number_strings(
        np.concatenate(
            [p.pn_code[a1_src], ids.affine_permutation(e.person[a2_src], ids.PRISON_NUMBER_SPACE, 7)]
        )
    )
    first_reception = np.full(people.n, FAR_DAY, dtype=np.int64)
    np.minimum.at(first_reception, p.person, p.reception)
    been_inside = first_reception[a_person] <= a.day
    pn_show = np.where(a.setting == 0, r.random(na) < 0.95, been_inside & (r.random(na) < 0.25))
    status = np.where(r.random(na) < 0.93, 0, 1)  # COMPLETE LOCKED_INCOMPLETE
    arec = w.recorder(SOURCE).record(a_person, a.day, w.rng("oasys/record"))
    table = TableData(
        SOURCE,
        "assessments_metadata",
        {
            "offender_pk": Text(pl.Series(pk.astype(np.int64)).cast(pl.Utf8)),
            **person_columns(
                arec,
                {
                    "forename": "forename1",
                    "mid1": "forename2",
                    "surname": "surname",
                    "dob": "dob",
                    "sex": "gender",
                    "ethnicity": "ethnicity",
                    "pnc": "pnc_id",
                    "cro": "cro_number",
                },
            ),
            "crn": Text(null_where(crn_all, ~crn_show)),
            "prison_number": Text(null_where(pn_all, ~pn_show)),
            "assessment_date": Days(a.day.astype(np.int32)),
            "assessment_type": Codes(a.type, w.codes(SOURCE, "assessments_metadata", "assessment_type")),
            "setting": Codes(a.setting, w.codes(SOURCE, "assessments_metadata", "setting")),
            "status": Codes(status, w.codes(SOURCE, "assessments_metadata", "status")),
        },
        event_day=a.day.astype(np.int32),
        person=a_person,
    )
    return table, status


def _needs(r, n_people: int, a: Assessments) -> TableData:
    """Basic custody screening: each person's latent needs, recorded with some noise."""
    need_base = np.array([0.35, 0.55, 0.40, 0.30, 0.45, 0.30])
    need_latent = r.random((n_people, 6)) if a.n else np.zeros((n_people, 6))
    bcs = np.flatnonzero((a.setting == 0) & (a.type <= 1))
    flags = (need_latent[a.person[bcs]] < need_base).astype(np.int8)
    flip = r.random(flags.shape) < 0.1
    flags = np.where(flip, 1 - flags, flags)
    return TableData(
        SOURCE,
        "oasys_assessments_details_bcs",
        {c: Flags(flags[:, i]) for i, c in enumerate(NEEDS)},
        parent_row=bcs,
    )


def _core_risk(r, n_people: int, a: Assessments, status: np.ndarray) -> TableData:
    """Reoffending scores (OGRS3, OGP, OVP) around each person's latent risk."""
    risk_base = r.beta(2.0, 2.5, n_people)
    core = np.flatnonzero((status == 0) | (r.random(a.n) < 0.5))
    ogrs = np.clip(np.round(100 * risk_base[a.person[core]] + r.normal(0, 5, len(core))), 1, 99).astype(
        np.int64
    )
    ogp = np.clip(np.round(ogrs + r.normal(-5, 8, len(core))), 1, 99).astype(np.int64)
    ovp = np.clip(np.round(0.6 * ogrs + r.normal(0, 8, len(core))), 1, 99).astype(np.int64)
    level = np.select([ogrs < 50, ogrs < 75, ogrs < 90], [0, 1, 2], 3)
    return TableData(
        SOURCE,
        "oasys_assessments_details_core_risk",
        {
            "ogrs3_score": Ints(ogrs),
            "ogp_score": Ints(ogp),
            "ovp_score": Ints(ovp),
            "risk_level": Codes(level, RISK_LEVELS),
        },
        parent_row=core,
    )


def _sentence_plan(w: World, r, a: Assessments, status: np.ndarray) -> TableData:
    """Objectives of completed full and review assessments; open at a first assessment."""
    plan = np.flatnonzero((a.type <= 1) & (status == 0))
    n_obj = np.minimum(r.poisson(2.0, len(plan)), 8)
    ig2, _ = expand(n_obj)
    isp_parent = plan[ig2]
    OBJ = w.codes(SOURCE, "oasys_assessments_details_isp", "objective_code")
    OS = w.codes(SOURCE, "oasys_assessments_details_isp", "objective_status")  # OPEN ACHIEVED NOT_ACHIEVED
    ostat = np.where(a.type[isp_parent] == 0, 0, categorical(r, np.array([0.55, 0.3, 0.15]), len(isp_parent)))
    return TableData(
        SOURCE,
        "oasys_assessments_details_isp",
        {
            "objective_code": Codes(r.integers(0, len(OBJ), len(isp_parent)), OBJ),
            "objective_status": Codes(ostat, OS),
        },
        parent_row=isp_parent,
    )


def _rm2000(r, a: Assessments, status: np.ndarray) -> TableData:
    """Risk Matrix 2000, for completed assessments of sexual offences."""
    sexual = np.flatnonzero((a.group == G["SEXUAL"]) & (status == 0))
    score = np.minimum(r.poisson(2.5, len(sexual)), 10)
    return TableData(
        SOURCE,
        "oasys_assessments_details_rm2000",
        {
            "rm2000_score": Ints(score),
            "rm2000_category": Codes(
                np.select([score <= 1, score <= 3, score <= 5], [0, 1, 2], 3), RISK_LEVELS
            ),
        },
        parent_row=sexual,
    )


def _risk_of_serious_harm(r, n_people: int, a: Assessments, status: np.ndarray):
    """(table, assessment rows, overall rating): harm to public, known adults, children, staff
    around each person's latent level; the overall rating is the highest."""
    harm_base = categorical(r, np.array([0.35, 0.45, 0.17, 0.03]), n_people)
    rosh_rows = np.flatnonzero(status == 0)
    hb = harm_base[a.person[rosh_rows]]
    ratings = np.clip(hb[:, None] + r.choice([-1, 0, 0, 0, 0, 0, 0, 1], size=(len(rosh_rows), 4)), 0, 3)
    ratings[:, 1] = np.minimum(ratings[:, 1], hb)  # known adults
    overall = ratings.max(axis=1)
    table = TableData(
        SOURCE,
        "oasys_assessments_details_rosh",
        {
            "rosh_public": Codes(ratings[:, 0], RISK_LEVELS),
            "rosh_known_adult": Codes(ratings[:, 1], RISK_LEVELS),
            "rosh_children": Codes(ratings[:, 2], RISK_LEVELS),
            "rosh_staff": Codes(ratings[:, 3], RISK_LEVELS),
            "rosh_overall": Codes(overall, RISK_LEVELS),
        },
        parent_row=rosh_rows,
    )
    return table, rosh_rows, overall


def _risk_management_plans(w: World, r, rosh_rows: np.ndarray, overall: np.ndarray) -> TableData:
    """Plan items for high and very high harm ratings, and for some medium ones."""
    n_items = np.where(
        overall >= 2,
        1 + r.integers(0, 4, len(rosh_rows)),
        np.where((overall == 1) & (r.random(len(rosh_rows)) < 0.4), 1 + r.integers(0, 2, len(rosh_rows)), 0),
    )
    rg, _ = expand(n_items)
    rmp_parent = rosh_rows[rg]
    PA = w.codes(SOURCE, "oasys_assessments_details_rmp", "plan_area")
    AG = w.codes(SOURCE, "oasys_assessments_details_rmp", "agency")
    return TableData(
        SOURCE,
        "oasys_assessments_details_rmp",
        {
            "plan_area": Codes(r.integers(0, len(PA), len(rmp_parent)), PA),
            "agency": Codes(categorical(r, np.array([0.5, 0.2, 0.15, 0.1, 0.05]), len(rmp_parent)), AG),
        },
        parent_row=rmp_parent,
    )
