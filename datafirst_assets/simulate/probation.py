"""Probation (nDelius): community and suspended sentence orders from both courts, licences and
post-sentence supervision after custody.

Steps: which sentences become probation events, when each starts and ends, case reference
numbers (CRNs, sometimes duplicated), then the event table and its requirements, licence
conditions, pre-sentence reports and supervision requirements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datafirst_assets.simulate import identifiers as ids
from datafirst_assets.simulate import names as N
from datafirst_assets.simulate.criminal import (
    C_CO,
    C_SSO,
    M_CO,
    M_SSO,
    ORA_START,
    offence_code_series,
    postcode_area_at,
)
from datafirst_assets.simulate.crown_court import CrownCases
from datafirst_assets.simulate.magistrates import MagistratesCases
from datafirst_assets.simulate.prison import Custody
from datafirst_assets.simulate.steps import Journeys
from datafirst_assets.simulate.tables import BlankRule, Codes, Days, Ints, TableData, Text, person_columns
from datafirst_assets.simulate.util import FAR_DAY, categorical, expand, uniform_int
from datafirst_assets.simulate.world import World
from datafirst_assets.sources.registry import OFFENCE_GROUPS

SOURCE = "probation"


@dataclass
class EventSources:
    """The rows each probation event came from: magistrates' orders, Crown Court orders,
    licences after release, and post-sentence supervision after a short sentence."""

    mag_orders: np.ndarray
    crown_orders: np.ndarray
    licences: np.ndarray
    supervision: np.ndarray


@dataclass
class ProbationEvents:
    """One row per probation event: what OASys starts from."""

    person: np.ndarray
    type: np.ndarray  # registry order: COMMUNITY_ORDER SUSPENDED_SENTENCE LICENCE PSS
    sent: np.ndarray
    group: np.ndarray
    referral: np.ndarray | None = None
    termination: np.ndarray | None = None
    term_reason: np.ndarray | None = None
    crn_code: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.person)

    @property
    def is_order(self) -> np.ndarray:
        return self.type <= 1


def build(w: World, journeys: Journeys) -> dict[str, TableData]:
    m, c, p = journeys.magistrates, journeys.crown_court, journeys.prison
    r = w.rng(SOURCE)
    sources, e = _events(m, c, p)
    e.referral, e.termination, e.term_reason = _starts_and_ends(w, r, m, p, sources, e)
    e.crn_code = _crn_codes(w, r, e)
    journeys.probation = e
    return {
        "probation/delius_flatfile": _flatfile(w, r, e),
        "probation/delius_rqmnt": _requirements(w, r, e),
        "probation/delius_lic_condition": _licence_conditions(w, r, e),
        "probation/delius_psr": _pre_sentence_reports(w, r, e),
        "probation/delius_pss": _supervision_requirements(w, r, e),
    }


def _events(m: MagistratesCases, c: CrownCases, p: Custody) -> tuple[EventSources, ProbationEvents]:
    j, rel = p.committals, p.releases
    mo_src = np.flatnonzero(np.isin(m.disposal, [M_CO, M_SSO]))
    co_src = np.flatnonzero(np.isin(c.disposal, [C_CO, C_SSO]))
    lic_src = np.flatnonzero(rel.licence)
    pss_src = lic_src[
        (j.length[lic_src] < 730)
        & (rel.release[lic_src] >= ORA_START)
        & ~rel.recall[lic_src]
        & (j.type[lic_src] == 1)
    ]
    e_person = np.concatenate([m.person[mo_src], c.person[co_src], j.person[lic_src], j.person[pss_src]])
    e_type = np.concatenate(
        [
            np.where(m.disposal[mo_src] == M_CO, 0, 1),
            np.where(c.disposal[co_src] == C_CO, 0, 1),
            np.full(len(lic_src), 2),
            np.full(len(pss_src), 3),
        ]
    )
    e_sent = np.concatenate(
        [m.sentence[mo_src], c.disp_day[co_src], j.sent_day[lic_src], j.sent_day[pss_src]]
    )
    e_group = np.concatenate([m.group[mo_src], c.group[co_src], j.group[lic_src], j.group[pss_src]])
    return EventSources(mo_src, co_src, lic_src, pss_src), ProbationEvents(e_person, e_type, e_sent, e_group)


def _starts_and_ends(w: World, r, m: MagistratesCases, p: Custody, s: EventSources, e: ProbationEvents):
    """(referral, termination, termination reason): orders run their length or end early (revoked,
    breached, death after the last case); licences end at sentence end or recall; supervision a
    year after release."""
    j, rel = p.committals, p.releases
    TR = w.codes(SOURCE, "delius_flatfile", "termination_reason")
    lic_src, pss_src = s.licences, s.supervision
    n_courts = len(s.mag_orders) + len(s.crown_orders)
    ne, e_type = e.n, e.type
    is_order = e.is_order
    referral = np.select(
        [is_order, e_type == 2],
        [
            e.sent + uniform_int(r, np.zeros(ne), 7),
            np.concatenate(
                [np.zeros(n_courts, np.int64), rel.release[lic_src], np.zeros(len(pss_src), np.int64)]
            ),
        ],
        np.concatenate([np.zeros(ne - len(pss_src), np.int64), rel.lic_end[pss_src]]),
    )
    order_len = np.where(
        e_type == 0, uniform_int(r, np.full(ne, 180), 1095), uniform_int(r, np.full(ne, 180), 730)
    )
    o_reason = categorical(
        r, np.array([0.66, 0.14, 0.12, 0.07, 0.01]), ne
    )  # COMPLETED REVOKED BREACH EXPIRED DECEASED
    o_codes = np.array([TR.index(x) for x in ("COMPLETED", "REVOKED", "BREACH", "EXPIRED", "DECEASED")])
    final = e.sent >= m.last_case[e.person]
    o_reason = np.where((o_reason == 4) & ~final, 0, o_reason)  # deaths only after the last case
    early = np.isin(o_reason, [1, 2, 4])
    o_term = referral + np.where(early, uniform_int(r, np.full(ne, 30), np.maximum(31, order_len)), order_len)
    lic_term = np.concatenate(
        [
            np.zeros(n_courts, np.int64),
            np.where(rel.recall[lic_src], rel.recall_day[lic_src], rel.lic_end[lic_src]),
            np.zeros(len(pss_src), np.int64),
        ]
    )
    lic_reason = np.concatenate(
        [
            np.zeros(n_courts, np.int64),
            np.where(
                rel.recall[lic_src],
                TR.index("RECALL"),
                np.where(
                    (r.random(len(lic_src)) < 0.005)
                    & (j.sent_day[lic_src] >= m.last_case[j.person[lic_src]]),
                    TR.index("DECEASED"),
                    TR.index("EXPIRED"),
                ),
            ),
            np.zeros(len(pss_src), np.int64),
        ]
    )
    pss_term = np.concatenate(
        [
            np.zeros(ne - len(pss_src), np.int64),
            np.maximum(rel.release[pss_src] + 365, rel.lic_end[pss_src] + 30),
        ]
    )
    pss_reason = np.array([TR.index(x) for x in ("COMPLETED", "BREACH", "EXPIRED")])[
        categorical(r, np.array([0.75, 0.1, 0.15]), ne)
    ]
    termination = np.select([is_order, e_type == 2], [o_term, lic_term], pss_term)
    term_reason = np.select([is_order, e_type == 2], [o_codes[o_reason], lic_reason], pss_reason)
    return referral, np.where(termination >= FAR_DAY, FAR_DAY, termination), term_reason


def _crn_codes(w: World, r, e: ProbationEvents) -> np.ndarray:
    """One CRN per person, except for people given a second one by mistake."""
    people = w.people
    crn_dup = r.random(people.n) < w.cfg.crn_duplicate_rate
    use_dup = crn_dup[e.person] & (r.random(e.n) < 0.5)
    return np.where(
        use_dup,
        ids.affine_permutation(people.n + e.person, ids.CRN_SPACE, 9),
        ids.affine_permutation(e.person, ids.CRN_SPACE, 9),
    )


def _flatfile(w: World, r, e: ProbationEvents) -> TableData:
    e_area = postcode_area_at(w, e.person, e.referral)
    ecode, _, _ = offence_code_series(r, e.group)
    drec = w.recorder(SOURCE).record(e.person, e.referral, w.rng("probation/record"))
    return TableData(
        SOURCE,
        "delius_flatfile",
        {
            "crn": Text(ids.crn_strings(e.crn_code)),
            **person_columns(
                drec,
                {
                    "forename": "forename",
                    "mid1": "second_forename",
                    "surname": "surname",
                    "dob": "date_of_birth",
                    "sex": "gender",
                    "ethnicity": "ethnicity",
                    "postcode": "postcode",
                    "pnc": "pnc_id",
                    "cro": "cro_number",
                },
            ),
            "referral_date": Days(e.referral.astype(np.int32)),
            "event_type": Codes(e.type, w.codes(SOURCE, "delius_flatfile", "event_type")),
            "sentence_date": Days(e.sent.astype(np.int32)),
            "termination_date": Days(e.termination.astype(np.int32)),
            "termination_reason": Codes(
                e.term_reason, w.codes(SOURCE, "delius_flatfile", "termination_reason")
            ),
            "offence_code": Text(ecode),
            "offence_group": Codes(e.group, OFFENCE_GROUPS),
            "provider_code": Codes(e_area % len(N.PROBATION_PROVIDERS), N.PROBATION_PROVIDERS),
        },
        event_day=e.referral.astype(np.int32),
        person=e.person,
        blank_rules=[BlankRule(e.termination, ("termination_date", "termination_reason"))],
    )


def _requirements(w: World, r, e: ProbationEvents) -> TableData:
    """Requirements of community and suspended sentence orders (unpaid work, programmes, ...)."""
    TR = w.codes(SOURCE, "delius_flatfile", "termination_reason")
    orders = np.flatnonzero(e.is_order)
    nq = 1 + (r.random(len(orders)) < 0.45) + (r.random(len(orders)) < 0.15)
    qg, _ = expand(nq)
    qe = orders[qg]
    nqr = len(qe)
    RT = w.codes(SOURCE, "delius_rqmnt", "requirement_type")
    rtype = categorical(r, np.array([0.35, 0.33, 0.10, 0.06, 0.05, 0.07, 0.04]), nqr)
    qstart = e.referral[qe] + uniform_int(r, np.zeros(nqr), 21)
    lo_hi = {0: (4, 30), 1: (5, 60), 2: (30, 180), 3: (6, 36), 4: (6, 12), 5: (20, 40), 6: (6, 12)}
    lo = np.array([lo_hi[i][0] for i in range(7)])[rtype]
    hi = np.array([lo_hi[i][1] for i in range(7)])[rtype]
    length = uniform_int(r, lo, hi)
    length = np.where(rtype == 0, length * 10, length)  # unpaid work hours in tens
    per_unit = np.array([3, 7, 1, 30, 30, 7, 30])[rtype]
    qend = np.minimum(qstart + length * per_unit, np.maximum(qstart + 1, e.termination[qe]))
    QR = w.codes(SOURCE, "delius_rqmnt", "termination_reason")
    ev_reason = np.array(TR)[e.term_reason[qe]]
    qreason = np.where(
        (qend >= e.termination[qe]) & np.isin(ev_reason, ["BREACH", "REVOKED"]),
        np.where(ev_reason == "BREACH", QR.index("BREACH"), QR.index("REVOKED")),
        np.where(r.random(nqr) < 0.85, QR.index("COMPLETED"), QR.index("EXPIRED")),
    )
    return TableData(
        SOURCE,
        "delius_rqmnt",
        {
            "requirement_type": Codes(rtype, RT),
            "start_date": Days(qstart.astype(np.int32)),
            "end_date": Days(qend.astype(np.int32)),
            "length": Ints(length),
            "termination_reason": Codes(qreason, QR),
        },
        event_day=qstart.astype(np.int32),
        parent_row=qe,
        blank_rules=[BlankRule(qend, ("end_date", "termination_reason"))],
    )


def _licence_conditions(w: World, r, e: ProbationEvents) -> TableData:
    lics = np.flatnonzero(e.type == 2)
    nlc = 1 + np.minimum(r.poisson(1.3, len(lics)), 5)
    lg, _ = expand(nlc)
    le = lics[lg]
    nl = len(le)
    CT = w.codes(SOURCE, "delius_lic_condition", "condition_type")
    ltype = categorical(r, np.array([0.30, 0.25, 0.12, 0.10, 0.13, 0.10]), nl)
    lend = np.where(
        r.random(nl) < 0.15, e.referral[le] + uniform_int(r, np.full(nl, 30), 365), e.termination[le]
    )
    lend = np.minimum(lend, e.termination[le])
    return TableData(
        SOURCE,
        "delius_lic_condition",
        {
            "condition_type": Codes(ltype, CT),
            "start_date": Days(e.referral[le].astype(np.int32)),
            "end_date": Days(lend.astype(np.int32)),
        },
        event_day=e.referral[le].astype(np.int32),
        parent_row=le,
        blank_rules=[BlankRule(lend, ("end_date",))],
    )


def _pre_sentence_reports(w: World, r, e: ProbationEvents) -> TableData:
    e_type = e.type
    ne = e.n
    has_psr = (e.is_order & (r.random(ne) < 0.55)) | ((e_type == 2) & (r.random(ne) < 0.4))
    pe = np.flatnonzero(has_psr)
    npr = len(pe)
    RPT = w.codes(SOURCE, "delius_psr", "report_type")  # FAST_DELIVERY STANDARD ORAL
    PP = w.codes(SOURCE, "delius_psr", "proposal")  # CUSTODY SSO CO OTHER
    rpt = categorical(r, np.array([0.55, 0.25, 0.20]), npr)
    lead = np.where(rpt == 1, uniform_int(r, np.full(npr, 14), 21), 0)
    requested = e.sent[pe] - lead
    completed = requested + np.select([rpt == 0, rpt == 1], [uniform_int(r, np.zeros(npr), 1), lead], 0)
    match = np.select(
        [e_type[pe] == 0, e_type[pe] == 1],
        [PP.index("COMMUNITY_ORDER"), PP.index("SUSPENDED_SENTENCE")],
        PP.index("CUSTODY"),
    )
    proposal = np.where(r.random(npr) < 0.65, match, r.integers(0, len(PP), npr))
    return TableData(
        SOURCE,
        "delius_psr",
        {
            "report_type": Codes(rpt, RPT),
            "requested_date": Days(requested.astype(np.int32)),
            "completed_date": Days(completed.astype(np.int32)),
            "proposal": Codes(proposal, PP),
        },
        event_day=requested.astype(np.int32),
        parent_row=pe,
        blank_rules=[BlankRule(completed, ("completed_date", "proposal"))],
    )


def _supervision_requirements(w: World, r, e: ProbationEvents) -> TableData:
    pss_e = np.flatnonzero(e.type == 3)
    extra = (r.random(len(pss_e)) < 0.15).astype(np.int64) + (r.random(len(pss_e)) < 0.10)
    sg, spos = expand(1 + extra)
    se = pss_e[sg]
    PT = w.codes(SOURCE, "delius_pss", "requirement_type")  # DRUG_APPOINTMENT DRUG_TESTING SUPERVISION
    ptype = np.where(
        spos == 0,
        PT.index("SUPERVISION"),
        np.where(spos == 1, PT.index("DRUG_TESTING"), PT.index("DRUG_APPOINTMENT")),
    )
    return TableData(
        SOURCE,
        "delius_pss",
        {
            "requirement_type": Codes(ptype, PT),
            "start_date": Days(e.referral[se].astype(np.int32)),
            "end_date": Days(e.termination[se].astype(np.int32)),
        },
        event_day=e.referral[se].astype(np.int32),
        parent_row=se,
        blank_rules=[BlankRule(e.termination[se], ("end_date",))],
    )
