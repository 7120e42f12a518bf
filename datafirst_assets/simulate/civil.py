"""County court civil cases (CaseMan) and possession claims (PCOL): claims, their progress, parties.

Steps: who brings or faces a claim and when, who is on the other side, what kind of claim, how
it progresses (defence, hearings, judgment, settlement), then the case table and its hearings,
judgments, warrants, case events and parties.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from datafirst_assets.simulate import identifiers as ids
from datafirst_assets.simulate.steps import Journeys
from datafirst_assets.simulate.tables import (
    BlankRule,
    Codes,
    Days,
    Flags,
    Money,
    Names,
    TableData,
    Text,
    person_columns,
)
from datafirst_assets.simulate.util import (
    FAR_DAY,
    NULL_DAY,
    categorical,
    expand,
    group_cumsum,
    uniform_int,
    ymd,
    zipf_counts,
)
from datafirst_assets.simulate.world import World

SOURCE = "civil"
CIVIL_COURTS = tuple(f"{100 + 2 * i + j:03d}" for i in range(len(ids.POSTCODE_AREAS)) for j in (0, 1))
MONEY, RENT, MORT, PI, OTHER = range(5)  # claim types, registry order
S_OPEN, S_JUDG, S_SETT, S_STRUCK, S_WD = range(5)  # case status, registry order


def _u(r, lo, hi, n):
    return uniform_int(r, np.full(n, lo), hi)


@dataclass
class Claims:
    """One row per claim, in issue order: the participant (from the civil roster), the other
    side, and what is claimed."""

    participant: np.ndarray
    day: np.ndarray
    participant_claims: np.ndarray
    counterparty: np.ndarray
    second_def: np.ndarray  # a second defendant ...
    second: np.ndarray  # ... and who
    company_claimant: np.ndarray
    claim: np.ndarray
    possession: np.ndarray
    system: np.ndarray  # CASEMAN PCOL
    amount: np.ndarray
    cents: np.ndarray  # claim amount in pence, -1 unrecorded

    @property
    def n(self) -> int:
        return len(self.participant)


@dataclass
class Progress:
    """How each claim went: defence, hearings, judgment, and how and when it ended."""

    defended: np.ndarray
    defence: np.ndarray
    allocated: np.ndarray
    n_hear: np.ndarray
    hg: np.ndarray  # claim of each hearing
    hpos: np.ndarray
    hday: np.ndarray
    is_last: np.ndarray
    status: np.ndarray
    jtype: np.ndarray  # judgment type, -1 none
    jday: np.ndarray
    resolution: np.ndarray


def build(w: World, journeys: Journeys) -> dict[str, TableData]:
    r = w.rng(SOURCE)
    participant, day = _claim_dates(w, r)
    c = _claims(w, r, participant, day)
    pr = _progress(w, r, c)
    out = {"civil/cases": _cases(w, r, c, pr), "civil/hearings": _hearings(w, r, c, pr)}
    judgments, jrows = _judgments(w, r, c, pr)
    out["civil/judgments"] = judgments
    warrants, wrows, wday = _warrants(w, r, pr, jrows)
    out["civil/warrants"] = warrants
    out["civil/case_events"] = _case_events(w, r, c, pr, jrows, wrows, wday)
    out["civil/parties"] = _parties(w, r, c)
    return out


def _claim_dates(w: World, r) -> tuple[np.ndarray, np.ndarray]:
    """(participant, issue day) of each claim, ordered by day: a few people have many claims."""
    ro, cfg = w.rosters, w.cfg
    _, hi = w.window(SOURCE)
    part, t0 = ro.civ, ro.civ_t0
    k = zipf_counts(r, cfg.civil_cases_zipf, len(part), 20)
    g, pos = expand(k)
    gaps = r.exponential(400.0, len(g))
    gaps[pos == 0] = 0
    day = (t0[g] + group_cumsum(gaps, pos)).astype(np.int64)
    keep = day <= hi
    P, day = part[g][keep], day[keep]
    order = np.lexsort((P, day))
    return P[order], day[order]


def _claims(w: World, r, P: np.ndarray, day: np.ndarray) -> Claims:
    """The other side (mostly companies, every company in at least one claim, a few large ones
    in many), sometimes a second defendant, the kind of claim and its amount."""
    ro, cfg = w.rosters, w.cfg
    part = ro.civ
    n = len(P)
    n_co = len(ro.companies)
    p_claims = r.random(n) < 0.15
    cp_company = np.where(p_claims, r.random(n) < 0.55, r.random(n) < 0.88) & (n_co > 0)
    if n_co:
        weight = 1.0 / (np.arange(n_co) + 5.0) ** cfg.company_concentration
        comp_rank = r.choice(n_co, size=n, p=weight / weight.sum())
    else:
        comp_rank = np.zeros(n, dtype=np.int64)
    comp_perm = r.permutation(n_co) if n_co else np.zeros(0, np.int64)
    comp = comp_perm[comp_rank] if n_co else np.zeros(n, np.int64)
    # every company is party to at least one claim
    slots = np.flatnonzero(cp_company)
    m = min(len(slots), n_co)
    comp[slots[:m]] = comp_perm[:m]
    cp_company_person = ro.companies[comp] if n_co else np.zeros(n, np.int64)
    oi = r.integers(0, max(1, len(part)), n)
    other = part[oi] if len(part) else P.copy()
    eq = other == P
    if len(part) > 1:
        other[eq] = part[(oi[eq] + 1) % len(part)]
    counterparty = np.where(cp_company, cp_company_person, other)
    second_def = ~p_claims & (r.random(n) < 0.12) & (len(part) > 1)
    second = part[r.integers(0, max(1, len(part)), n)] if len(part) else P
    second_def &= (second != P) & (second != counterparty)

    company_claimant = ~p_claims & cp_company
    claim = np.where(
        company_claimant,
        np.array([MONEY, RENT, MORT, OTHER])[categorical(r, np.array([0.6, 0.2, 0.14, 0.06]), n)],
        np.array([MONEY, PI, OTHER])[categorical(r, np.array([0.5, 0.35, 0.15]), n)],
    )
    possession = np.isin(claim, [RENT, MORT])
    system = np.where(possession & (r.random(n) < 0.7), 1, 0)  # CASEMAN PCOL
    median = np.array([1800, 2500, 60000, 6000, 3000])[claim]
    sigma = np.array([1.0, 0.8, 0.7, 0.9, 1.0])[claim]
    amount = np.clip(median * np.exp(sigma * r.standard_normal(n)), 50, 500_000)
    cents = np.round(amount * 100).astype(np.int64)
    cents = np.where(r.random(n) < 0.03, -1, cents)
    return Claims(
        P, day, p_claims, counterparty, second_def, second, company_claimant, claim, possession, system,
        amount, cents,
    )  # fmt: skip


def _progress(w: World, r, c: Claims) -> Progress:
    """Defended claims go to hearings and end at the last; undefended money claims end in
    default or admission judgments, settlement, withdrawal or striking out; possession claims
    go to a possession hearing. Some claims simply go quiet."""
    n, day, possession = c.n, c.day, c.possession
    defended = r.random(n) < np.where(possession, 0.0, np.where(c.company_claimant, 0.15, 0.4))
    JT = w.codes(SOURCE, "judgments", "judgment_type")  # DEFAULT ADMISSION TRIAL POSSESSION_ORDER
    status = np.full(n, S_OPEN)
    jtype = np.full(n, -1)
    jday = np.full(n, NULL_DAY, dtype=np.int64)
    resolution = np.full(n, FAR_DAY, dtype=np.int64)
    defence = np.where(defended, day + _u(r, 14, 35, n), NULL_DAY)
    allocated = np.where(defended, defence + _u(r, 20, 60, n), NULL_DAY)
    n_hear = np.where(
        defended,
        1 + categorical(r, np.array([0.6, 0.3, 0.1]), n),
        np.where(possession, 1 + (r.random(n) < 0.25), 0),
    )
    hg, hpos = expand(n_hear)
    nh = len(hg)
    hgap = np.where(
        possession[hg], _u(r, 28, 56, nh), np.where(hpos == 0, _u(r, 37, 150, nh), _u(r, 30, 90, nh))
    )
    hbase = np.where(possession[hg], day[hg], allocated[hg])
    hday = hbase + group_cumsum(hgap, hpos) if nh else np.zeros(0, np.int64)
    is_last = np.r_[hg[1:] != hg[:-1], True] if nh else np.zeros(0, bool)
    last_hearing = np.full(n, NULL_DAY, dtype=np.int64)
    last_hearing[hg[is_last]] = hday[is_last]
    # undefended money-type claims
    und = ~defended & ~possession
    res = categorical(
        r, np.array([0.65, 0.10, 0.10, 0.05, 0.05, 0.05]), n
    )  # DEFAULT ADMISSION SETTLED WD STRUCK OPEN
    quick = day + _u(r, 20, 60, n)
    slow = day + _u(r, 20, 200, n)
    m_ = und & (res <= 1)
    status[m_], jtype[m_], jday[m_], resolution[m_] = S_JUDG, res[m_], quick[m_], quick[m_]
    for code, st in ((2, S_SETT), (3, S_WD), (4, S_STRUCK)):
        mm = und & (res == code)
        status[mm], resolution[mm] = st, slow[mm]
    # defended claims (decided, settled, withdrawn, struck out) and possession claims (order, struck
    # out, settled, withdrawn) end at their last hearing, where the first outcome is judged
    for claims, shares, outcomes, judged_by in (
        (defended, [0.6, 0.25, 0.1, 0.05], [S_JUDG, S_SETT, S_WD, S_STRUCK], "TRIAL"),
        (possession, [0.75, 0.1, 0.1, 0.05], [S_JUDG, S_STRUCK, S_SETT, S_WD], "POSSESSION_ORDER"),
    ):
        outcome = categorical(r, np.array(shares), n)
        status[claims] = np.array(outcomes)[outcome[claims]]
        resolution[claims] = last_hearing[claims]
        judged = claims & (outcome == 0)
        jtype[judged], jday[judged] = JT.index(judged_by), last_hearing[judged]
    never = r.random(n) < 0.03  # some claims simply go quiet
    status[never & (status != S_JUDG)] = S_OPEN
    resolution[never & (status == S_OPEN)] = FAR_DAY
    return Progress(
        defended, defence, allocated, n_hear, hg, hpos, hday, is_last, status, jtype, jday, resolution
    )


def _cases(w: World, r, c: Claims, pr: Progress) -> TableData:
    """Case numbers per system (`PC24000123` on PCOL, `24M A 00123`-style on CaseMan), court
    near the participant's home."""
    people, n, day, P, system = w.people, c.n, c.day, c.participant, c.system
    yy = ymd(day)[0] % 100
    corder = np.lexsort((np.arange(n), day, system))
    serial = np.empty(n, dtype=np.int64)
    serial[corder] = np.arange(n)
    area = people.addr_pc[P, people.address_slot(P, day)] // 1_000_000
    court = area * 2 + (r.random(n) < 0.3)
    cc = ids.POSTCODE_AREA_NAMES.gather(pl.Series(area.astype(np.int32))).str.slice(0, 1)
    case_number = pl.select(
        pl.when(pl.Series(system == 1))
        .then(pl.concat_str([pl.lit("PC"), ids.zfill(yy, 2), ids.zfill(serial, 6)]))
        .otherwise(
            pl.concat_str([ids.zfill(yy, 2), cc, ids.alpha_series(serial // 7 % 26), ids.zfill(serial, 5)])
        )
    ).to_series()
    return TableData(
        SOURCE,
        "cases",
        {
            "system": Codes(system, w.codes(SOURCE, "cases", "system")),
            "case_number": Text(case_number),
            "court_code": Codes(court, CIVIL_COURTS),
            "claim_type": Codes(c.claim, w.codes(SOURCE, "cases", "claim_type")),
            "issue_date": Days(day.astype(np.int32)),
            "claim_amount": Money(c.cents),
            "status": Codes(pr.status, w.codes(SOURCE, "cases", "status")),
        },
        event_day=day.astype(np.int32),
        blank_rules=[BlankRule(pr.resolution, (), {"status": "OPEN"})],
    )


def _hearings(w: World, r, c: Claims, pr: Progress) -> TableData:
    hg, hpos, nh, status = pr.hg, pr.hpos, len(pr.hg), pr.status
    HT = w.codes(SOURCE, "hearings", "hearing_type")  # DIRECTIONS SMALL_CLAIMS FAST_TRACK POSSESSION
    HO = w.codes(SOURCE, "hearings", "outcome")  # ADJOURNED DECIDED SETTLED VACATED
    htype = np.where(
        c.possession[hg],
        3,
        np.where(
            (hpos == 0) & (pr.n_hear[hg] > 1) & (r.random(nh) < 0.5), 0, np.where(c.amount[hg] < 10_000, 1, 2)
        ),
    )
    final_outcome = np.where(np.isin(status[hg], [S_SETT, S_WD]), 2, 1)
    houtcome = np.where(
        pr.is_last, np.where(status[hg] == S_OPEN, 0, final_outcome), np.where(r.random(nh) < 0.7, 0, 3)
    )
    return TableData(
        SOURCE,
        "hearings",
        {
            "hearing_date": Days(pr.hday.astype(np.int32)),
            "hearing_type": Codes(htype, HT),
            "outcome": Codes(houtcome, HO),
        },
        event_day=pr.hday.astype(np.int32),
        parent_row=hg,
    )


def _judgments(w: World, r, c: Claims, pr: Progress) -> tuple[TableData, np.ndarray]:
    """(table, claim of each judgment): possession orders sometimes with arrears, money
    judgments with interest and costs on top of the claim."""
    JT = w.codes(SOURCE, "judgments", "judgment_type")
    jtype, jday, cents = pr.jtype, pr.jday, c.cents
    jrows = np.flatnonzero(jtype >= 0)
    jamount = np.where(
        jtype[jrows] == JT.index("POSSESSION_ORDER"),
        np.where(r.random(len(jrows)) < 0.6, cents[jrows], -1),
        np.where(cents[jrows] >= 0, (cents[jrows] * (1 + 0.15 * r.random(len(jrows)))).astype(np.int64), -1),
    )
    table = TableData(
        SOURCE,
        "judgments",
        {
            "judgment_date": Days(jday[jrows].astype(np.int32)),
            "judgment_type": Codes(jtype[jrows], JT),
            "amount": Money(jamount),
        },
        event_day=jday[jrows].astype(np.int32),
        parent_row=jrows,
    )
    return table, jrows


def _warrants(w: World, r, pr: Progress, jrows: np.ndarray) -> tuple[TableData, np.ndarray, np.ndarray]:
    """(table, claim of each warrant, issue day): enforcing possession orders and money judgments."""
    JT = w.codes(SOURCE, "judgments", "judgment_type")
    WT = w.codes(SOURCE, "warrants", "warrant_type")  # CONTROL POSSESSION DELIVERY
    jtype, jday = pr.jtype, pr.jday
    is_poss_order = jtype[jrows] == JT.index("POSSESSION_ORDER")
    u = r.random(len(jrows))
    has_w = np.where(is_poss_order, u < 0.35, u < 0.16)
    wrows = jrows[has_w]
    wtype = np.where(is_poss_order[has_w], 1, np.where(r.random(len(wrows)) < 0.94, 0, 2))
    wday = jday[wrows] + np.where(wtype == 1, _u(r, 30, 200, len(wrows)), _u(r, 30, 300, len(wrows)))
    executed = (r.random(len(wrows)) < np.where(wtype == 1, 0.6, 0.4)).astype(np.int8)
    exec_day = wday + _u(r, 14, 90, len(wrows))
    table = TableData(
        SOURCE,
        "warrants",
        {
            "issue_date": Days(wday.astype(np.int32)),
            "warrant_type": Codes(wtype, WT),
            "executed": Flags(executed),
        },
        event_day=wday.astype(np.int32),
        parent_row=wrows,
        blank_rules=[BlankRule(exec_day, ("executed",))],
    )
    return table, wrows, wday


def _case_events(w: World, r, c: Claims, pr: Progress, jrows, wrows, wday) -> TableData:
    """The case's event log: issued, defence, allocation, hearings listed, judgment, warrant,
    closed; in date order per claim."""
    EV = w.codes(SOURCE, "case_events", "event_type")
    ISSUED, DEF, ALLOC, LISTED, JUDG, WARR, CLOSED = range(7)
    n, day, hg, nh = c.n, c.day, pr.hg, len(pr.hg)
    status, resolution, defended = pr.status, pr.resolution, pr.defended
    closed = (status != S_OPEN) & (resolution < FAR_DAY) & (r.random(n) < 0.8)
    parts = [
        (np.arange(n), day, ISSUED),
        (np.flatnonzero(defended), pr.defence[defended], DEF),
        (np.flatnonzero(defended), pr.allocated[defended], ALLOC),
        (hg, np.maximum(day[hg] + 1, pr.hday - _u(r, 14, 42, nh)), LISTED),
        (jrows, pr.jday[jrows], JUDG),
        (wrows, wday, WARR),
        (np.flatnonzero(closed), resolution[closed] + _u(r, 0, 14, int(closed.sum())), CLOSED),
    ]
    eg = np.concatenate([p[0] for p in parts])
    eday = np.concatenate([p[1] for p in parts]).astype(np.int64)
    etype = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])
    eo = np.lexsort((etype, eday, eg))
    eg, eday, etype = eg[eo], eday[eo], etype[eo]
    return TableData(
        SOURCE,
        "case_events",
        {
            "event_date": Days(eday.astype(np.int32)),
            "event_type": Codes(etype, EV),
        },
        event_day=eday.astype(np.int32),
        parent_row=eg,
    )


def _parties(w: World, r, c: Claims) -> TableData:
    """The participant, the other side, sometimes a second defendant. Companies appear under
    name variants, and some are recorded as if they were a person (name in the surname)."""
    people, cfg = w.people, w.cfg
    n, P, p_claims, day = c.n, c.participant, c.participant_claims, c.day
    n_co = len(w.rosters.companies)
    RL = w.codes(SOURCE, "parties", "role")  # CLAIMANT DEFENDANT
    PTY = w.codes(SOURCE, "parties", "party_type")  # INDIVIDUAL COMPANY
    sd = np.flatnonzero(c.second_def)
    prow = np.concatenate([np.arange(n), np.arange(n), sd])
    pperson = np.concatenate([P, c.counterparty, c.second[sd]])
    prole = np.concatenate([np.where(p_claims, 0, 1), np.where(p_claims, 1, 0), np.ones(len(sd), np.int64)])
    po = np.lexsort((prole, prow))
    prow, pperson, prole = prow[po], pperson[po], prole[po]
    npr = len(prow)
    rec = w.recorder(SOURCE).record(pperson, day[prow], w.rng("civil/record"), criminal_ids=False)
    is_co = people.is_company[pperson]
    as_ind = is_co & (r.random(npr) < cfg.company_as_individual_rate)
    variant = categorical(r, np.array([0.80, 0.08, 0.05, 0.04, 0.03]), npr)
    ci = (
        people.company_variants[np.maximum(people.company[pperson], 0), variant]
        if n_co
        else np.zeros(npr, np.int64)
    )
    cname = (
        w.company_series.gather(pl.Series(ci.astype(np.int64)))
        if n_co
        else pl.Series([None] * npr, dtype=pl.Utf8)
    )
    cname = pl.select(pl.when(pl.Series(is_co)).then(cname).otherwise(None)).to_series()
    cols = person_columns(
        rec,
        {
            "forename": "forename",
            "surname": "surname",
            "dob": "dob",
            "postcode": "postcode",
            "address": "address_line1",
        },
    )
    override = pl.select(pl.when(pl.Series(as_ind)).then(cname).otherwise(None)).to_series()
    sur = cols["surname"]
    cols["surname"] = Names(sur.idx, sur.style, sur.noise, override=override)
    company_col = pl.select(pl.when(pl.Series(is_co & ~as_ind)).then(cname).otherwise(None)).to_series()
    return TableData(
        SOURCE,
        "parties",
        {
            "role": Codes(prole, RL),
            "party_type": Codes(np.where(is_co & ~as_ind, 1, 0), PTY),
            **cols,
            "company_name": Text(company_col),
        },
        parent_row=prow,
        person=pperson,
    )
