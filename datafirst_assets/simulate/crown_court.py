"""Crown Court (Xhibit): cases sent or committed by the magistrates, and appeals against them.

Steps: which magistrates' cases arrive and when, their case numbers, the references as the Crown
Court recorded them (with its own slips: what case linking has to see through), the charge and
sentence, then the two tables. Leaves the true case links on the journeys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from datafirst_assets.simulate import identifiers as ids
from datafirst_assets.simulate.criminal import (
    C_ACQUITTED,
    C_CO,
    C_CUSTODY,
    C_DISCHARGE,
    C_FINE,
    C_OTHER,
    C_SSO,
    CD,
    COMMITTED,
    CONVICTED,
    GROUP_P,
    GUILTY,
    MAG_COURTS,
    NOT_GUILTY,
    SENT,
    V_GUILTY,
    V_NONE,
    V_NOT_GUILTY,
    VERDICTS,
    G,
    asn_series,
    lesser_disposal,
    offence_code_series,
    urn_series,
)
from datafirst_assets.simulate.magistrates import MagistratesCases
from datafirst_assets.simulate.steps import CaseLinks, Journeys
from datafirst_assets.simulate.tables import (
    BlankRule,
    Codes,
    Days,
    Ints,
    TableData,
    Text,
    null_where,
    person_columns,
)
from datafirst_assets.simulate.util import (
    NULL_DAY,
    categorical,
    digit_slip,
    expand,
    lognormal_days,
    uniform_int,
    ymd,
)
from datafirst_assets.simulate.world import World
from datafirst_assets.sources.registry import OFFENCE_GROUPS, PLEAS

SOURCE = "crown_court"


@dataclass
class CrownCases:
    """One row per Crown Court defendant-on-case: what prison and probation start from."""

    src: np.ndarray  # the magistrates' row each case came from
    ctype: np.ndarray  # case type, registry order: TRIAL, SENTENCE, APPEAL
    person: np.ndarray
    receipt: np.ndarray
    disp_day: np.ndarray
    disposal: np.ndarray
    length: np.ndarray  # custodial length in days
    indeterminate: np.ndarray
    susp_term: np.ndarray
    group: np.ndarray
    code: pl.Series

    @property
    def n(self) -> int:
        return len(self.src)


@dataclass
class RecordedReferences:
    """Case-link keys as the Crown Court recorded them."""

    urn: pl.Series
    asn: pl.Series
    committal: np.ndarray
    originating_court: np.ndarray


def build(w: World, journeys: Journeys) -> dict[str, TableData]:
    m = journeys.magistrates
    r = w.rng(SOURCE)
    src, ctype, receipt = _arrivals(w, r, m)
    case_number = _case_numbers(m, src, ctype, receipt)
    refs = _recorded_references(w, r, m, src, receipt)
    c = _sentences(r, m, src, ctype, receipt)
    rec = w.recorder(SOURCE).record(c.person, receipt, w.rng("crown_court/record"))
    tables = {
        "crown_court/xhibit_flatfile": _flatfile(w, rec, c, case_number, refs),
        "crown_court/xhibit_all_off_disp": _offences(r, c),
    }
    journeys.crown_court = c
    journeys.case_links = CaseLinks(
        mag_rows=src,
        crown_rows=np.arange(c.n),
        case_type=ctype,
        case_type_codes=w.codes(SOURCE, "xhibit_flatfile", "case_type"),
    )
    return tables


def _arrivals(w: World, r, m: MagistratesCases) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(magistrates' row, case type, receipt day): cases sent for trial or committed for sentence,
    and appeals against conviction."""
    appeal = (m.outcome == CONVICTED) & (m.plea != GUILTY) & (r.random(m.n) < w.cfg.appeal_rate)
    src = np.flatnonzero(np.isin(m.outcome, [SENT, COMMITTED]) | appeal)
    nc = len(src)
    ctype = np.where(m.outcome[src] == SENT, 0, np.where(m.outcome[src] == COMMITTED, 1, 2))  # registry order
    receipt = np.where(
        ctype == 2,
        m.sentence[src] + uniform_int(r, np.full(nc, 7), 28),
        m.committal[src]
        + np.where(
            ctype == 0,
            np.where(
                r.random(nc) < 0.75, uniform_int(r, np.zeros(nc), 3), uniform_int(r, np.full(nc, 4), 14)
            ),
            uniform_int(r, np.zeros(nc), 14),
        ),
    )
    return src, ctype, receipt


def _case_numbers(m: MagistratesCases, src, ctype, receipt) -> pl.Series:
    """`T2024 0001`-style case numbers, shared by co-defendants of one magistrates' case and
    numbered per prefix and year in order of receipt."""
    cyear = ymd(receipt)[0]
    key = m.case_idx[src] * 3 + ctype
    uk, first_of_key, inv = np.unique(key, return_index=True, return_inverse=True)
    case_receipt = receipt[first_of_key]
    case_prefix = ctype[first_of_key]
    case_year = cyear[first_of_key]
    corder = np.lexsort((uk, case_receipt, case_year, case_prefix))
    serial = np.empty(len(uk), dtype=np.int64)
    grp = case_prefix[corder] * 10_000 + case_year[corder]
    starts = np.r_[0, np.flatnonzero(np.diff(grp)) + 1]
    serial[corder] = np.arange(len(uk)) - np.repeat(starts, np.diff(np.r_[starts, len(uk)])) + 1
    prefix = np.array(["T", "S", "A"])[case_prefix]
    return (
        pl.select(
            pl.concat_str([pl.Series(prefix), pl.Series(case_year).cast(pl.Utf8), ids.zfill(serial, 4)])
        )
        .to_series()
        .gather(pl.Series(inv))
    )


def _recorded_references(w: World, r, m: MagistratesCases, src, receipt) -> RecordedReferences:
    """URN, ASN, committal date and originating court as keyed in again at the Crown Court:
    digit slips, missing values, shifted dates, wrong courts (rates in the config)."""
    cfg = w.cfg
    nc = len(src)
    mr = m.refs
    u_force, u_l1, u_l2, u_serial, u_yy = (
        mr.force[src],
        mr.urn_l1[src],
        mr.urn_l2[src],
        mr.urn_serial[src].copy(),
        mr.yy[src],
    )
    ut = r.random(nc) < cfg.crown_urn_typo
    kind = r.integers(0, 3, nc)
    u_serial = np.where(ut & (kind == 0), digit_slip(u_serial, 5, r), u_serial)
    u_l2 = np.where(ut & (kind == 1), (u_l2 + r.integers(1, 26, nc)) % 26, u_l2)
    u_force = np.where(ut & (kind == 2), (u_force % 62) + 1, u_force)
    urn = null_where(urn_series(u_force, u_l1, u_l2, u_serial, u_yy), r.random(nc) < cfg.crown_urn_missing)
    a_seq = mr.asn_seq[src].copy()
    at = r.random(nc) < cfg.crown_asn_typo
    a_seq[at] = digit_slip(a_seq[at], 7, r)
    asn = null_where(
        asn_series(mr.yy[src], mr.force[src], mr.asn_l1[src], mr.asn_l2[src], mr.asn_station[src], a_seq),
        r.random(nc) < cfg.crown_asn_missing,
    )
    c_comm = m.committal[src].copy()
    shift = (c_comm != NULL_DAY) & (r.random(nc) < cfg.crown_committal_date_shift)
    c_comm[shift] += np.where(r.random(shift.sum()) < 0.5, -1, 1) * r.integers(1, 8, shift.sum())
    c_comm[r.random(nc) < cfg.crown_committal_date_missing] = NULL_DAY
    c_comm = np.minimum(c_comm, np.where(c_comm == NULL_DAY, NULL_DAY, receipt))
    o_court = m.court[src].copy()
    ce = r.random(nc) < cfg.crown_court_code_error
    o_court[ce] = np.where(
        r.random(ce.sum()) < 0.7,
        (o_court[ce] + r.integers(1, len(MAG_COURTS), ce.sum())) % len(MAG_COURTS),
        -1,
    )
    return RecordedReferences(urn, asn, c_comm, o_court)


def _sentences(r, m: MagistratesCases, src, ctype, receipt) -> CrownCases:
    """Charge (sometimes reclassified), disposal day, most serious disposal and its length."""
    nc = len(src)
    cgroup = np.where(r.random(nc) < 0.05, categorical(r, GROUP_P, nc), m.group[src])
    reclass = cgroup != m.group[src]
    ccode_new, _, _ = offence_code_series(r, cgroup)
    ccode = pl.select(
        pl.when(pl.Series(reclass)).then(ccode_new).otherwise(m.off_code.gather(pl.Series(src)))
    ).to_series()
    cyouth = m.youth[src]
    disp_day = receipt + np.select(
        [ctype == 0, ctype == 1],
        [lognormal_days(r, 150, 0.6, nc, 14, 900), uniform_int(r, np.full(nc, 14), 60)],
        uniform_int(r, np.full(nc, 30), 120),
    )
    p_sent = np.tile(np.array([0.42, 0.20, 0.10, 0.03, 0.02, 0.16, 0.07]), (nc, 1))
    severe = np.isin(cgroup, [G["SEXUAL"], G["ROBBERY"]])
    p_sent[severe] = [0.60, 0.10, 0.04, 0.0, 0.0, 0.20, 0.06]
    p_sent[:, 0] *= np.where(cyouth, 0.5, 1.0)
    p_sent[ctype == 1] = [0.55, 0.25, 0.15, 0.0, 0.0, 0.0, 0.05]
    p_sent[ctype == 2] = [0.05, 0.05, 0.10, 0.10, 0.0, 0.35, 0.35]
    cdisp = categorical(r, p_sent)
    median_len = np.select(
        [cgroup == G["SEXUAL"], cgroup == G["ROBBERY"], cgroup == G["DRUGS"], cgroup == G["VIOLENCE"]],
        [1500, 1300, 900, 540],
        400,
    )
    clen = lognormal_days(r, median_len, 0.7, nc, 30, 7300)
    indeterminate = (
        (cdisp == C_CUSTODY)
        & np.isin(cgroup, [G["SEXUAL"], G["VIOLENCE"], G["ROBBERY"]])
        & (r.random(nc) < 0.03)
    )
    susp_term = uniform_int(r, np.full(nc, 60), 730)
    return CrownCases(
        src, ctype, m.person[src], receipt, disp_day, cdisp, clen, indeterminate, susp_term, cgroup, ccode
    )


def _flatfile(w: World, rec, c: CrownCases, case_number: pl.Series, refs: RecordedReferences) -> TableData:
    clen_out = np.where(c.disposal == C_SSO, c.susp_term, c.length)
    clen_null = ~((c.disposal == C_CUSTODY) & ~c.indeterminate) & (c.disposal != C_SSO)
    return TableData(
        SOURCE,
        "xhibit_flatfile",
        {
            "case_number": Text(case_number),
            **person_columns(
                rec,
                {
                    "forename": "forename",
                    "middle": "middle_names",
                    "surname": "surname",
                    "dob": "date_of_birth",
                    "sex": "gender",
                    "ethnicity": "ethnicity",
                    "postcode": "postcode",
                    "pnc": "pnc_id",
                    "cro": "cro_number",
                },
            ),
            "asn": Text(refs.asn),
            "urn": Text(refs.urn),
            "originating_court_code": Codes(refs.originating_court, MAG_COURTS),
            "committal_date": Days(refs.committal.astype(np.int32)),
            "receipt_date": Days(c.receipt.astype(np.int32)),
            "case_type": Codes(c.ctype, w.codes(SOURCE, "xhibit_flatfile", "case_type")),
            "offence_code": Text(c.code),
            "offence_group": Codes(c.group, OFFENCE_GROUPS),
            "disposal_date": Days(c.disp_day.astype(np.int32)),
            "most_serious_disposal": Codes(c.disposal, CD),
            "custodial_length_days": Ints(clen_out, clen_null),
        },
        event_day=c.receipt.astype(np.int32),
        person=c.person,
        blank_rules=[
            BlankRule(c.disp_day, ("disposal_date", "most_serious_disposal", "custodial_length_days"))
        ],
    )


def _offences(r, c: CrownCases) -> TableData:
    """Every offence of each case with its own plea, verdict and disposal; the first is the
    case's main offence."""
    nc = c.n
    ctype, cdisp = c.ctype, c.disposal
    n_off = np.minimum(r.geometric(0.5, nc), 15)
    xg, xpos = expand(n_off)
    nx = len(xg)
    xfirst = xpos == 0
    xgroup = np.where(xfirst | (r.random(nx) < 0.5), c.group[xg], categorical(r, GROUP_P, nx))
    xcode_new, _, _ = offence_code_series(r, xgroup)
    xcode = pl.select(
        pl.when(pl.Series(xfirst)).then(c.code.gather(pl.Series(xg))).otherwise(xcode_new)
    ).to_series()
    main_plea = np.select(
        [ctype == 1, ctype == 2], [GUILTY, NOT_GUILTY], np.where(r.random(nc) < 0.45, GUILTY, NOT_GUILTY)
    )
    xplea = np.where(
        xfirst | (r.random(nx) < 0.8), main_plea[xg], categorical(r, np.array([0.5, 0.5, 0.0]), nx)
    )
    xd = cdisp[xg]
    u = r.random(nx)
    xverdict = np.where(xfirst, V_GUILTY, np.select([u < 0.75, u < 0.85], [V_GUILTY, V_NOT_GUILTY], V_NONE))
    acq = xd == C_ACQUITTED
    xverdict = np.where(acq, np.where(xfirst | (u < 0.8), V_NOT_GUILTY, V_NONE), xverdict)
    xverdict = np.where((xd == C_OTHER) & xfirst & (ctype[xg] == 2), V_NONE, xverdict)
    csev = [C_DISCHARGE, C_FINE, C_CO, C_SSO, C_CUSTODY]
    xless = lesser_disposal(r, np.where(np.isin(xd, csev), xd, C_DISCHARGE), csev)
    xdisp = np.where(xfirst | (r.random(nx) < 0.6), xd, np.where(np.isin(xd, csev), xless, xd))
    xdisp = np.where(xverdict == V_NOT_GUILTY, C_ACQUITTED, np.where(xverdict == V_NONE, C_OTHER, xdisp))
    xdate = c.disp_day[xg] + np.where(r.random(nx) < 0.95, 0, uniform_int(r, np.ones(nx), 60))
    xlen = np.where(
        xdisp == C_CUSTODY,
        np.where(xfirst, c.length[xg], (c.length[xg] * (0.3 + 0.7 * r.random(nx))).astype(np.int64)),
        c.susp_term[xg],
    )
    xlen_null = ~(((xdisp == C_CUSTODY) & ~c.indeterminate[xg]) | (xdisp == C_SSO))
    return TableData(
        SOURCE,
        "xhibit_all_off_disp",
        {
            "offence_code": Text(xcode),
            "offence_group": Codes(xgroup, OFFENCE_GROUPS),
            "plea": Codes(xplea, PLEAS),
            "verdict": Codes(xverdict, VERDICTS),
            "disposal_code": Codes(xdisp, CD),
            "disposal_date": Days(xdate.astype(np.int32)),
            "sentence_length_days": Ints(xlen, xlen_null),
        },
        event_day=xdate.astype(np.int32),
        parent_row=xg,
        future="pending",
        blank_rules=[
            BlankRule(xdate, ("disposal_date", "disposal_code", "sentence_length_days"), {"verdict": "NONE"})
        ],
    )
