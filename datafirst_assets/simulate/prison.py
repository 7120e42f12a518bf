"""Custody (P-NOMIS): custodial sentences and remands from both courts, releases, recalls.

Steps: who goes into custody and when, when and why they leave (licence, recall), the recall
spells, prison numbers, then the journey table, the movements within each spell and the safety
incidents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from datafirst_assets.simulate import identifiers as ids
from datafirst_assets.simulate import names as N
from datafirst_assets.simulate.criminal import (
    C_CUSTODY,
    ESTABLISHMENTS,
    M_CUSTODY,
    N_FEMALE_EST,
    ORA_START,
    PLACES,
    offence_code_series,
    postcode_area_at,
)
from datafirst_assets.simulate.crown_court import CrownCases
from datafirst_assets.simulate.magistrates import MagistratesCases
from datafirst_assets.simulate.steps import Journeys
from datafirst_assets.simulate.tables import BlankRule, Codes, Days, Ints, TableData, Text, person_columns
from datafirst_assets.simulate.util import FAR_DAY, NULL_DAY, YEAR, expand, uniform_int
from datafirst_assets.simulate.world import World
from datafirst_assets.sources.registry import OFFENCE_GROUPS

SOURCE = "prison"
REASONS_OF_RELEASE = (
    "CONDITIONAL_RELEASE",
    "END_OF_SENTENCE",
    "HDC",
    "REMAND_ENDED",
    "DECEASED",
    "TRANSFER_ABROAD",
)
MOVEMENT_REASONS = (
    "Sentenced",
    "Remanded",
    "Recalled to prison",
    "Allocation",
    "Overcrowding draft",
    "Security",
    "Closer to home",
    "Production to court",
    "Resettlement day release",
    "Conditional release",
    "Home detention curfew",
    "End of sentence",
    "Released from remand",
    "Death in custody",
    "Deported",
)


@dataclass
class Committals:
    """Custodial sentences and remands as the courts passed them (before any recall)."""

    person: np.ndarray
    sent_day: np.ndarray
    length: np.ndarray
    type: np.ndarray  # sentence type, registry order: REMAND DETERMINATE INDETERMINATE RECALL
    group: np.ndarray
    court: np.ndarray
    reception: np.ndarray

    @property
    def n(self) -> int:
        return len(self.person)


@dataclass
class Releases:
    """How each committal ended, and the licence that followed."""

    release: np.ndarray
    reason: np.ndarray
    sent_end: np.ndarray
    licence: np.ndarray
    lic_end: np.ndarray
    recall: np.ndarray
    recall_day: np.ndarray


@dataclass
class Custody:
    """Every spell in custody (committals, then recalls): what probation and OASys start from."""

    committals: Committals
    releases: Releases
    person: np.ndarray
    reception: np.ndarray
    release: np.ndarray
    reason: np.ndarray
    type: np.ndarray
    length: np.ndarray
    length_known: np.ndarray
    group: np.ndarray
    court: np.ndarray
    pn_code: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.person)


def build(w: World, journeys: Journeys) -> dict[str, TableData]:
    m, c = journeys.magistrates, journeys.crown_court
    r = w.rng(SOURCE)
    committals = _committals(w, r, m, c)
    releases = _releases(w, r, m, committals)
    custody = _with_recalls(w, r, committals, releases)
    custody.pn_code = _prison_numbers(w, r, custody)
    female = w.people.sex[custody.person] == 1
    est0 = _first_establishment(w, custody, female)
    journeys.prison = custody
    return {
        "prison/nomis_flatfile": _flatfile(w, r, custody, est0),
        "prison/nomis_movements": _movements(w, r, custody, female, est0),
        "prison/nomis_safety_in_custody": _incidents(w, r, custody, female),
    }


def _committals(w: World, r, m: MagistratesCases, c: CrownCases) -> Committals:
    """Magistrates' and Crown Court custody, and remands awaiting Crown Court trial."""
    mag_c = np.flatnonzero(m.disposal == M_CUSTODY)
    crown_c = np.flatnonzero(c.disposal == C_CUSTODY)
    committal = m.committal[c.src]
    remanded = (c.ctype == 0) & (r.random(c.n) < w.cfg.remand_rate) & (committal != NULL_DAY)
    remand_only = np.flatnonzero(remanded & (c.disposal != C_CUSTODY))
    j_person = np.concatenate([m.person[mag_c], c.person[crown_c], c.person[remand_only]])
    j_sent_day = np.concatenate([m.sentence[mag_c], c.disp_day[crown_c], c.disp_day[remand_only]])
    j_len = np.concatenate([m.custody_len[mag_c], c.length[crown_c], np.zeros(len(remand_only), np.int64)])
    j_type = np.concatenate(
        [
            np.full(len(mag_c), 1),
            np.where(c.indeterminate[crown_c], 2, 1),
            np.zeros(len(remand_only), np.int64),
        ]
    )
    j_group = np.concatenate([m.group[mag_c], c.group[crown_c], c.group[remand_only]])
    j_court = np.concatenate([m.court[mag_c], m.court[c.src][crown_c], m.court[c.src][remand_only]])
    j_remand = np.concatenate(
        [np.zeros(len(mag_c), bool), remanded[crown_c], np.ones(len(remand_only), bool)]
    )
    j_reception = np.where(
        j_remand,
        np.concatenate([np.full(len(mag_c), NULL_DAY), committal[crown_c], committal[remand_only]]),
        j_sent_day,
    )
    return Committals(j_person, j_sent_day, j_len, j_type, j_group, j_court, j_reception)


def _releases(w: World, r, m: MagistratesCases, j: Committals) -> Releases:
    """Release at half-time (earlier on home detention curfew), remands ending at sentence, a few
    deaths and deportations after the last case; licences and recalls from them."""
    cfg = w.cfg
    RR = w.codes(SOURCE, "nomis_flatfile", "release_reason")
    REL_COND, REL_EOS, REL_HDC, REL_REMAND, REL_DEAD, REL_ABROAD = (RR.index(x) for x in REASONS_OF_RELEASE)
    nj = j.n
    j_sent_day, j_reception, j_len, j_type = j.sent_day, j.reception, j.length, j.type
    half = (j_len + 1) // 2
    release = np.maximum(j_sent_day + 1, j_reception + half)
    reason = np.full(nj, REL_COND)
    hdc = (j_type == 1) & (j_len >= 84) & (j_len <= 1460) & (r.random(nj) < cfg.hdc_rate)
    release = np.where(
        hdc,
        np.maximum(j_sent_day + 1, release - uniform_int(r, np.full(nj, 14), np.minimum(135, j_len // 4))),
        release,
    )
    reason[hdc] = REL_HDC
    short = (j_type == 1) & (j_len <= 14)
    release[short] = j_reception[short] + j_len[short]
    reason[short] = REL_EOS
    indet = j_type == 2
    release[indet] = j_reception[indet] + uniform_int(r, np.full(indet.sum(), 1500), 5000)
    rem = j_type == 0
    release[rem] = np.maximum(j_reception[rem] + 1, j_sent_day[rem])
    reason[rem] = REL_REMAND
    foreign = np.isin(
        w.people.origin[j.person],
        [N.NAME_ORIGINS.index(o) for o in ("east_european", "somali_arabic", "west_african", "east_asian")],
    )
    u = r.random(nj)
    final = j_sent_day >= m.last_case[j.person]
    dead = ~rem & final & (u < 0.002)
    abroad = ~rem & final & ~dead & (u < 0.002 + 0.005 * np.where(foreign, 4, 1))
    cut = j_reception + uniform_int(r, np.ones(nj), np.maximum(2, release - j_reception))
    release = np.where(dead | abroad, np.minimum(cut, release), release)
    reason[dead] = REL_DEAD
    reason[abroad] = REL_ABROAD
    sent_end = np.where(j_type == 1, j_sent_day + j_len, FAR_DAY)
    licence = (
        np.isin(reason, [REL_COND, REL_HDC])
        & np.isin(j_type, [1, 2])
        & ~((release < ORA_START) & (j_len < 365))
    )
    lic_end = np.where(j_type == 2, FAR_DAY, sent_end)
    recall = licence & (r.random(nj) < cfg.licence_recall_rate) & (lic_end - release > 14)
    recall_day = np.where(
        recall,
        release + uniform_int(r, np.full(nj, 7), np.minimum(lic_end, release + 3000) - release - 1),
        FAR_DAY,
    )
    return Releases(release, reason, sent_end, licence, lic_end, recall, recall_day)


def _with_recalls(w: World, r, j: Committals, rel: Releases) -> Custody:
    """Every committal plus a spell for each recall: a fixed 28 days or to the sentence's end."""
    rc = np.flatnonzero(rel.recall)
    rr_reception = rel.recall_day[rc] + uniform_int(r, np.zeros(len(rc)), 5)
    fixed = r.random(len(rc)) < 0.5
    rr_release = np.where(
        fixed | (j.type[rc] == 2), rr_reception + 28, np.maximum(rr_reception + 1, rel.sent_end[rc])
    )
    RR = w.codes(SOURCE, "nomis_flatfile", "release_reason")
    rel_cond, rel_eos = RR.index("CONDITIONAL_RELEASE"), RR.index("END_OF_SENTENCE")
    rr_reason = np.where(fixed | (j.type[rc] == 2), rel_cond, rel_eos)
    return Custody(
        committals=j,
        releases=rel,
        person=np.concatenate([j.person, j.person[rc]]),
        reception=np.concatenate([j.reception, rr_reception]),
        release=np.concatenate([rel.release, rr_release]),
        reason=np.concatenate([rel.reason, rr_reason]),
        type=np.concatenate([j.type, np.full(len(rc), 3)]),
        length=np.concatenate([j.length, j.length[rc]]),
        length_known=np.concatenate([j.type == 1, j.type[rc] == 1]),
        group=np.concatenate([j.group, j.group[rc]]),
        court=np.concatenate([j.court, np.full(len(rc), -1)]),
    )


def _prison_numbers(w: World, r, s: Custody) -> np.ndarray:
    """Prison number codes: usually one per person, sometimes re-issued on a later spell."""
    NJ = s.n
    porder = np.lexsort((s.reception, s.person))
    jseq = np.empty(NJ, dtype=np.int64)
    sp = s.person[porder]
    st = np.r_[0, np.flatnonzero(np.diff(sp)) + 1] if NJ else np.zeros(0, np.int64)
    jseq[porder] = np.arange(NJ) - np.repeat(st, np.diff(np.r_[st, NJ])) if NJ else jseq
    reissue = (jseq > 0) & (r.random(NJ) < w.cfg.prison_number_reissue_rate)
    return np.where(
        reissue,
        ids.affine_permutation(w.people.n + np.arange(NJ), ids.PRISON_NUMBER_SPACE, 7),
        ids.affine_permutation(s.person, ids.PRISON_NUMBER_SPACE, 7),
    )


def _first_establishment(w: World, s: Custody, female: np.ndarray) -> np.ndarray:
    """The establishment that receives each spell: near home, for the person's sex."""
    j_area = postcode_area_at(w, s.person, s.reception)
    return np.where(female, j_area % N_FEMALE_EST, N_FEMALE_EST + j_area % len(N.MALE_ESTABLISHMENTS))


def _flatfile(w: World, r, s: Custody, est0: np.ndarray) -> TableData:
    NJ = s.n
    bk = ids.affine_permutation(np.arange(NJ), 676 * 10_000, 19)
    booking = pl.select(
        pl.concat_str(
            [
                ids.alpha_series(bk // 260_000 % 26),
                ids.alpha_series(bk // 10_000 % 26),
                ids.zfill(bk % 10_000, 4),
            ]
        )
    ).to_series()
    jcode, _, _ = offence_code_series(r, s.group)
    prec = w.recorder(SOURCE).record(s.person, s.reception, w.rng("prison/record"))
    return TableData(
        SOURCE,
        "nomis_flatfile",
        {
            "prison_number": Text(ids.prison_number_strings(s.pn_code)),
            "booking_number": Text(booking),
            **person_columns(
                prec,
                {
                    "forename": "first_name",
                    "mid1": "second_name",
                    "surname": "surname",
                    "dob": "birth_date",
                    "sex": "sex",
                    "ethnicity": "ethnicity",
                    "pnc": "pnc_id",
                    "cro": "cro_number",
                },
            ),
            "reception_date": Days(s.reception.astype(np.int32)),
            "release_date": Days(s.release.astype(np.int32)),
            "release_reason": Codes(s.reason, w.codes(SOURCE, "nomis_flatfile", "release_reason")),
            "establishment_code": Codes(est0, ESTABLISHMENTS),
            "sentence_type": Codes(s.type, w.codes(SOURCE, "nomis_flatfile", "sentence_type")),
            "sentence_length_days": Ints(s.length, ~s.length_known),
            "offence_code": Text(jcode),
            "offence_group": Codes(s.group, OFFENCE_GROUPS),
        },
        event_day=s.reception.astype(np.int32),
        person=s.person,
        blank_rules=[BlankRule(s.release, ("release_date", "release_reason"))],
    )


def _movements(w: World, r, s: Custody, female: np.ndarray, est0: np.ndarray) -> TableData:
    """Admission, transfers, court productions, temporary release and release of each spell, in
    date order, each row naming where from and where to."""
    NJ = s.n
    J_reception, J_release, J_type = s.reception, s.release, s.type
    stay = np.maximum(1, J_release - J_reception)
    n_trn = np.minimum(r.poisson(stay / YEAR * 0.9), 8)
    n_crt = np.where(J_type == 0, 1 + r.integers(0, 3, NJ), r.poisson(0.15, NJ))
    n_tap = np.where(stay > 365, np.minimum(r.poisson(stay / YEAR * 0.15), 4), 0)
    MT = w.codes(SOURCE, "nomis_movements", "movement_type")  # ADM REL TRN TAP CRT
    ADM, REL, TRN, TAP, CRT = (MT.index(x) for x in ("ADM", "REL", "TRN", "TAP", "CRT"))
    cnt = 2 + n_trn + n_crt + n_tap
    mg, mpos = expand(cnt)
    nm = len(mg)
    mk = np.full(nm, TRN)
    mk[mpos == 0] = ADM
    mk[mpos == cnt[mg] - 1] = REL
    off1 = mpos - 1
    mk[(off1 >= n_trn[mg]) & (off1 < n_trn[mg] + n_crt[mg]) & (mpos > 0) & (mpos < cnt[mg] - 1)] = CRT
    mk[(off1 >= n_trn[mg] + n_crt[mg]) & (mpos > 0) & (mpos < cnt[mg] - 1)] = TAP
    mday = J_reception[mg] + 1 + (r.random(nm) * np.maximum(1, stay[mg] - 1)).astype(np.int64)
    mday[mk == ADM] = J_reception[mg][mk == ADM]
    mday[mk == REL] = J_release[mg][mk == REL]
    kind_rank = np.select([mk == ADM, mk == REL], [0, 2], 1)
    mo = np.lexsort((kind_rank, mday, mg))
    mg, mk, mday = mg[mo], mk[mo], mday[mo]
    new_est = np.where(
        female[mg],
        r.integers(0, N_FEMALE_EST, nm),
        N_FEMALE_EST + r.integers(0, len(N.MALE_ESTABLISHMENTS), nm),
    )
    is_trn = mk == TRN
    last_trn = np.maximum.accumulate(np.where(is_trn, np.arange(nm), -1))
    gstart = np.r_[0, np.flatnonzero(np.diff(mg)) + 1] if nm else np.zeros(0, np.int64)
    gfirst = np.repeat(gstart, np.diff(np.r_[gstart, nm])) if nm else np.zeros(0, np.int64)
    cur = np.where(
        last_trn >= gfirst, new_est[np.maximum(last_trn, 0)], est0[mg]
    )  # establishment after this row
    prev = np.r_[-1, cur[:-1]] if nm else cur
    before = np.where(np.arange(nm) == gfirst, est0[mg], prev)  # establishment before this row
    court_place = np.where(s.court[mg] >= 0, len(ESTABLISHMENTS) + s.court[mg], -1)
    m_from = np.select([mk == ADM, mk == TRN], [court_place, before], before)
    m_to = np.select([mk == ADM, mk == TRN, mk == CRT], [est0[mg], cur, court_place], -1)
    adm_reason = np.array([1, 0, 0, 2])[J_type[mg]]
    rel_reason = np.array([9, 11, 10, 12, 13, 14])[s.reason[mg]]
    m_reason = np.select(
        [mk == ADM, mk == TRN, mk == CRT, mk == TAP, mk == REL],
        [adm_reason, 3 + r.integers(0, 4, nm), 7, 8, rel_reason],
        -1,
    )
    return TableData(
        SOURCE,
        "nomis_movements",
        {
            "movement_date": Days(mday.astype(np.int32)),
            "movement_type": Codes(mk, MT),
            "from_establishment": Codes(m_from, PLACES),
            "to_establishment": Codes(m_to, PLACES),
            "reason": Codes(m_reason, MOVEMENT_REASONS),
        },
        event_day=mday.astype(np.int32),
        parent_row=mg,
    )


def _incidents(w: World, r, s: Custody, female: np.ndarray) -> TableData:
    """Self-harm and assaults: more for the young, the frail and over longer stays."""
    people = w.people
    stay = np.maximum(1, s.release - s.reception)
    frailty = r.gamma(0.4, 2.5, people.n)
    jage = (s.reception - people.dob[s.person]) / YEAR
    lam = 0.5 * frailty[s.person] * stay / YEAR * np.where(jage < 25, 1.5, 1.0)
    n_inc = np.minimum(r.poisson(lam), 40)
    ig, _ = expand(n_inc)
    ni = len(ig)
    iday = s.reception[ig] + 1 + (r.random(ni) * np.maximum(1, stay[ig] - 1)).astype(np.int64)
    self_harm = r.random(ni) < np.where(female[ig], 0.7, 0.35)
    IT = w.codes(SOURCE, "nomis_safety_in_custody", "incident_type")
    RO = w.codes(SOURCE, "nomis_safety_in_custody", "role")
    SV = w.codes(SOURCE, "nomis_safety_in_custody", "severity")
    itype = np.where(self_harm, IT.index("SELF_HARM"), IT.index("ASSAULT"))
    role = np.where(
        self_harm,
        RO.index("SELF"),
        np.where(r.random(ni) < 0.55, RO.index("PERPETRATOR"), RO.index("VICTIM")),
    )
    sevr = np.where(r.random(ni) < np.where(self_harm, 0.05, 0.08), SV.index("SERIOUS"), SV.index("MINOR"))
    return TableData(
        SOURCE,
        "nomis_safety_in_custody",
        {
            "incident_date": Days(iday.astype(np.int32)),
            "incident_type": Codes(itype, IT),
            "role": Codes(role, RO),
            "severity": Codes(sevr, SV),
        },
        event_day=iday.astype(np.int32),
        parent_row=ig,
    )
