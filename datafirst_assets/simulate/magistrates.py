"""Magistrates' courts (Libra): defendant-cases of the offender roster and their offences.

Every criminal journey starts here: a case is charged, pleaded, decided or sent to the Crown
Court, and sentenced. Steps: who is charged when, with what and where, the outcome, the sentence,
then the two tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from datafirst_assets.simulate import identifiers as ids
from datafirst_assets.simulate.criminal import (
    ACQUITTED,
    COMMITTED,
    CONVICTED,
    DISMISSED,
    GROUP_P,
    GUILTY,
    M_CO,
    M_CUSTODY,
    M_DISCHARGE,
    M_FINE,
    M_NONE,
    M_SENT,
    M_SSO,
    MAG_COURTS,
    MD,
    MO,
    NO_PLEA,
    NOT_GUILTY,
    PLEA_P,
    SEND_P,
    SENT,
    V_GUILTY,
    V_NONE,
    V_NOT_GUILTY,
    VERDICTS,
    WITHDRAWN,
    G,
    asn_series,
    lesser_disposal,
    offence_code_series,
    postcode_area_at,
    urn_series,
)
from datafirst_assets.simulate.steps import Journeys
from datafirst_assets.simulate.tables import BlankRule, Codes, Days, Flags, TableData, Text, person_columns
from datafirst_assets.simulate.util import (
    NULL_DAY,
    YEAR,
    categorical,
    expand,
    group_cumsum,
    lognormal_days,
    uniform_int,
    ymd,
    zipf_counts,
)
from datafirst_assets.simulate.world import World
from datafirst_assets.sources.registry import OFFENCE_GROUPS, PLEAS

SOURCE = "magistrates"


@dataclass
class CaseReferences:
    """Police references of each defendant-case, kept as parts so that the Crown Court can
    re-record them with its own slips: the URN is shared by a case's co-defendants, the ASN is
    the defendant's own."""

    force: np.ndarray
    yy: np.ndarray
    urn_l1: np.ndarray
    urn_l2: np.ndarray
    urn_serial: np.ndarray
    asn_l1: np.ndarray
    asn_l2: np.ndarray
    asn_station: np.ndarray
    asn_seq: np.ndarray

    def urn(self) -> pl.Series:
        return urn_series(self.force, self.urn_l1, self.urn_l2, self.urn_serial, self.yy)

    def asn(self) -> pl.Series:
        return asn_series(self.yy, self.force, self.asn_l1, self.asn_l2, self.asn_station, self.asn_seq)


@dataclass
class MagistratesCases:
    """One row per defendant-case, ordered by first hearing: what later systems start from."""

    person: np.ndarray
    day: np.ndarray  # first hearing
    seq: np.ndarray  # the defendant's earlier cases
    case_idx: np.ndarray  # co-defendants share a case
    youth: np.ndarray
    group: np.ndarray  # offence group of the main offence
    court: np.ndarray
    refs: CaseReferences
    plea: np.ndarray
    outcome: np.ndarray
    committal: np.ndarray  # day sent or committed to the Crown Court (NULL_DAY if not)
    sentence: np.ndarray  # day sentenced here (NULL_DAY if not)
    resolution: np.ndarray  # day the outcome was known
    disposal: np.ndarray
    custody_len: np.ndarray
    last_case: np.ndarray  # per person: day of their last case (nobody dies before it)
    off_code: pl.Series
    cls_pick: np.ndarray
    sub: np.ndarray

    @property
    def n(self) -> int:
        return len(self.person)


def build(w: World, journeys: Journeys) -> dict[str, TableData]:
    r = w.rng(SOURCE)
    person, day, seq, case_idx, lead = _defendant_cases(w, r)
    youth = (day - w.people.dob[person]) / YEAR < 18
    group, court, refs = _charges(w, r, person, day, lead, youth)
    plea, outcome, committal, sentence, resolution = _outcomes(w, r, group, youth, day)
    disposal, custody_len = _disposals(r, group, seq, youth, outcome)
    # day of each offender's last case: nobody dies or is deported before their last case
    last_case = np.full(w.people.n, NULL_DAY, dtype=np.int64)
    np.maximum.at(last_case, person, day)
    rec = w.recorder(SOURCE).record(person, day, w.rng("magistrates/record"))
    off_code, cls_pick, sub = offence_code_series(r, group)
    cases = MagistratesCases(
        person, day, seq, case_idx, youth, group, court, refs, plea, outcome, committal, sentence,
        resolution, disposal, custody_len, last_case, off_code, cls_pick, sub,
    )  # fmt: skip
    journeys.magistrates = cases
    return {
        "magistrates/hocas_flatfile": _flatfile(rec, cases),
        "magistrates/hocas_all_offence": _offences(r, cases),
    }


def _defendant_cases(w: World, r) -> tuple[np.ndarray, ...]:
    """(person, first hearing day, earlier cases, case index, row of the case's first defendant):
    each offender's cases at their own pace from their first, some joined as co-defendants to the
    case before."""
    cfg = w.cfg
    crim, t0 = w.rosters.crim, w.rosters.crim_t0
    k = zipf_counts(r, cfg.mag_cases_zipf, len(crim), cfg.mag_cases_max)
    g, pos = expand(k)
    speed = r.lognormal(0.0, 0.6, len(crim))
    gaps = r.exponential(cfg.mean_days_between_cases, len(g)) * speed[g]
    gaps[pos == 0] = 0
    day = (t0[g] + group_cumsum(gaps, pos)).astype(np.int64)
    keep = day <= w.horizon
    person, day, seq = crim[g][keep], day[keep], pos[keep]
    order = np.lexsort((person, day))
    person, day, seq = person[order], day[order], seq[order]
    n = len(person)
    join = r.random(n) < cfg.codefendant_rate
    if n:
        join[0] = False
    join[1:] &= person[1:] != person[:-1]
    case_idx = np.cumsum(~join) - 1
    first_row = np.flatnonzero(~join)
    lead = first_row[case_idx]
    return person, day[lead], seq, case_idx, lead


def _charges(w: World, r, person, day, lead, youth) -> tuple[np.ndarray, np.ndarray, CaseReferences]:
    """(offence group, court, police references): offenders tend to repeat their own kind of
    offence; co-defendants share the court and the URN of the case's first defendant (`lead`)."""
    n = len(person)
    primary = categorical(r, GROUP_P, w.people.n)
    group = np.where(r.random(n) < 0.5, primary[person], categorical(r, GROUP_P, n))
    group = np.where(youth & (group == G["MOTORING"]), G["THEFT"], group)
    area = postcode_area_at(w, person, day)
    court = (area * 2 + (r.random(n) < 0.35))[lead]
    force = (area % 43 + 1)[lead]
    yy = ymd(day)[0] % 100
    urn_l1 = r.integers(0, 26, n)[lead]
    urn_l2 = r.integers(0, 26, n)[lead]
    urn_serial = r.integers(0, 100_000, n)[lead]
    asn_l1, asn_l2 = r.integers(0, 26, n), r.integers(0, 26, n)
    asn_station, asn_seq = r.integers(1, 100, n), r.integers(0, 10_000_000, n)
    refs = CaseReferences(force, yy, urn_l1, urn_l2, urn_serial, asn_l1, asn_l2, asn_station, asn_seq)
    return group, court, refs


def _outcomes(w: World, r, group, youth, day):
    """(plea, outcome, committal day, sentence day, resolution day) of each defendant-case."""
    cfg = w.cfg
    n = len(group)
    plea = categorical(r, PLEA_P, n)
    send_p = np.clip(SEND_P[group] * cfg.sent_to_crown_scale * np.where(youth, 0.3, 1.0), 0, 1)
    sent = r.random(n) < send_p
    indictable_only = np.isin(group, [G["SEXUAL"], G["ROBBERY"]])
    outcome = np.full(n, CONVICTED)
    outcome[sent] = np.where((plea[sent] == GUILTY) & ~indictable_only[sent], COMMITTED, SENT)
    ng = ~sent & (plea == NOT_GUILTY)
    outcome[ng] = np.array([CONVICTED, ACQUITTED, DISMISSED, WITHDRAWN])[
        categorical(r, np.array([0.5, 0.25, 0.1, 0.15]), int(ng.sum()))
    ]
    npl = ~sent & (plea == NO_PLEA)
    outcome[npl] = np.array([WITHDRAWN, DISMISSED, CONVICTED])[
        categorical(r, np.array([0.45, 0.2, 0.35]), int(npl.sum()))
    ]
    gp = ~sent & (plea == GUILTY)
    cfs = gp & (SEND_P[group] > 0.05) & (r.random(n) < 0.03)
    outcome[cfs] = COMMITTED

    committal = np.full(n, NULL_DAY, dtype=np.int64)
    sentence = np.full(n, NULL_DAY, dtype=np.int64)
    m = outcome == SENT
    committal[m] = day[m] + np.where(r.random(m.sum()) < 0.75, 0, uniform_int(r, np.full(m.sum(), 7), 35))
    m = outcome == COMMITTED
    committal[m] = day[m] + np.where(r.random(m.sum()) < 0.6, 0, uniform_int(r, np.full(m.sum(), 14), 60))
    m = outcome == CONVICTED
    sentence[m] = day[m] + np.where(r.random(m.sum()) < 0.55, 0, uniform_int(r, np.full(m.sum(), 14), 56))
    resolution = np.where(committal != NULL_DAY, committal, sentence)
    other = resolution == NULL_DAY
    resolution[other] = day[other] + uniform_int(r, np.full(other.sum(), 14), 150)
    return plea, outcome, committal, sentence, resolution


def _disposals(r, group, seq, youth, outcome) -> tuple[np.ndarray, np.ndarray]:
    """(disposal, custody length) of convicted cases: custody grows with earlier cases."""
    n = len(group)
    base = np.tile(np.array([0.45, 0.10, 0.18, 0.10, 0.17]), (n, 1))
    base[group == G["MOTORING"]] = [0.80, 0.05, 0.07, 0.04, 0.04]
    base[group == G["VIOLENCE"]] = [0.20, 0.07, 0.30, 0.20, 0.23]
    base[group == G["THEFT"]] = [0.30, 0.12, 0.25, 0.10, 0.23]
    base[:, 4] *= (1 + 0.3 * np.minimum(seq, 6)) * np.where(youth, 0.3, 1.0)
    disposal = np.full(n, M_NONE)
    conv = outcome == CONVICTED
    disposal[conv] = categorical(r, base[conv])
    disposal[np.isin(outcome, [SENT, COMMITTED])] = M_SENT
    custody_len = lognormal_days(r, 56, 0.6, n, 7, 182)
    return disposal, custody_len


def _flatfile(rec, c: MagistratesCases) -> TableData:
    n = c.n
    cols = {
        "case_id": Text(pl.Series((1_000_000_000 + c.case_idx).astype(np.int64)).cast(pl.Utf8)),
        "defendant_id": Text(ids.zfill(10_000_000 + ids.affine_permutation(np.arange(n), 90_000_000, 17), 8)),
        **person_columns(
            rec,
            {
                "forename": "forename1",
                "mid1": "forename2",
                "mid2": "forename3",
                "surname": "surname",
                "dob": "dob",
                "sex": "sex",
                "ethnicity": "ethnicity",
                "postcode": "postcode",
                "address": "address_line1",
                "pnc": "pnc_id",
                "cro": "cro_number",
            },
        ),
        "asn": Text(c.refs.asn()),
        "urn": Text(c.refs.urn()),
        "court_code": Codes(c.court, MAG_COURTS),
        "first_hearing_date": Days(c.day.astype(np.int32)),
        "offence_code": Text(c.off_code),
        "offence_group": Codes(c.group, OFFENCE_GROUPS),
        "plea": Codes(c.plea, PLEAS),
        "outcome": Codes(c.outcome, MO),
        "committed_to_crown": Flags(np.isin(c.outcome, [SENT, COMMITTED]).astype(np.int8)),
        "committal_date": Days(c.committal.astype(np.int32)),
        "sentence_date": Days(c.sentence.astype(np.int32)),
    }
    return TableData(
        SOURCE,
        "hocas_flatfile",
        cols,
        event_day=c.day.astype(np.int32),
        person=c.person,
        blank_rules=[
            BlankRule(
                c.resolution,
                ("committal_date", "sentence_date"),
                {"outcome": "ADJOURNED", "committed_to_crown": "N"},
            )
        ],
    )


def _offences(r, c: MagistratesCases) -> TableData:
    """Every offence of each case: the first is the main one; the rest mostly follow its group,
    plea and outcome."""
    n = c.n
    n_off = np.minimum(r.geometric(0.55, n), 12)
    og, opos = expand(n_off)
    no = len(og)
    first = opos == 0
    ogroup = np.where(first | (r.random(no) < 0.5), c.group[og], categorical(r, GROUP_P, no))
    ocode, _, _ = offence_code_series(
        r,
        ogroup,
        np.where(first, c.cls_pick[og], r.random(no)),
        np.where(first, c.sub[og], 1 + np.minimum(r.geometric(0.3, no), 20)),
    )
    case_gap = uniform_int(r, np.ones(n), np.where(c.outcome == SENT, 300, 150))
    odate = c.day[og] - np.where(r.random(no) < 0.7, case_gap[og], uniform_int(r, np.ones(no), 150))
    oplea = np.where(first | (r.random(no) < 0.85), c.plea[og], categorical(r, PLEA_P, no))
    verdict = np.full(no, V_NONE)
    odisp = np.full(no, M_NONE)
    oc = c.outcome[og]
    conv = oc == CONVICTED
    u = r.random(no)
    verdict[conv] = np.where(
        first[conv] | (u[conv] < 0.85), V_GUILTY, np.where(u[conv] < 0.9, V_NOT_GUILTY, V_NONE)
    )
    sev = [M_DISCHARGE, M_FINE, M_CO, M_SSO, M_CUSTODY]
    lesser = lesser_disposal(r, c.disposal[og], sev)
    odisp[conv] = np.where(first[conv] | (r.random(conv.sum()) < 0.7), c.disposal[og][conv], lesser[conv])
    odisp[conv & (verdict != V_GUILTY)] = M_NONE
    odisp[np.isin(oc, [SENT, COMMITTED])] = M_SENT
    verdict[oc == COMMITTED] = V_GUILTY
    verdict[oc == ACQUITTED] = V_NOT_GUILTY
    return TableData(
        SOURCE,
        "hocas_all_offence",
        {
            "offence_code": Text(ocode),
            "offence_group": Codes(ogroup, OFFENCE_GROUPS),
            "offence_date": Days(odate.astype(np.int32)),
            "plea": Codes(oplea, PLEAS),
            "verdict": Codes(verdict, VERDICTS),
            "disposal": Codes(odisp, MD),
        },
        event_day=odate.astype(np.int32),
        parent_row=og,
        blank_rules=[BlankRule(c.resolution[og], (), {"verdict": "NONE", "disposal": "NONE"})],
    )
