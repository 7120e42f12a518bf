"""Criminal justice journeys: magistrates' cases -> Crown Court -> prison / probation -> OASys.

Everything is generated as arrays: one row per case, journey, event or assessment, built from
the offender roster and from the outcomes of the previous stage.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from datafirst_assets.simulate import identifiers as ids
from datafirst_assets.simulate import names as N
from datafirst_assets.simulate.tables import (
    BlankRule,
    Codes,
    Days,
    Flags,
    Ints,
    TableData,
    Text,
    person_columns,
)
from datafirst_assets.simulate.util import (
    FAR_DAY,
    NULL_DAY,
    YEAR,
    categorical,
    expand,
    group_cumsum,
    lognormal_days,
    to_day,
    uniform_int,
    ymd,
    zipf_counts,
)
from datafirst_assets.simulate.world import World
from datafirst_assets.sources.registry import OFFENCE_GROUPS, PLEAS, RISK_LEVELS

G = {g: i for i, g in enumerate(OFFENCE_GROUPS)}
GROUP_P = np.array([0.18, 0.02, 0.02, 0.15, 0.06, 0.08, 0.03, 0.06, 0.03, 0.25, 0.10, 0.02])
SEND_P = np.array([0.12, 0.55, 0.60, 0.03, 0.03, 0.15, 0.12, 0.02, 0.10, 0.01, 0.0, 0.05])
PLEA_P = np.array([0.62, 0.20, 0.18])
GUILTY, NOT_GUILTY, NO_PLEA = range(3)
ORA_START = to_day("2015-02-01")  # licences for short sentences, post-sentence supervision

# magistrates' outcome codes (registry order)
MO = (
    "CONVICTED",
    "ACQUITTED",
    "WITHDRAWN",
    "DISMISSED",
    "SENT_TO_CROWN",
    "COMMITTED_FOR_SENTENCE",
    "ADJOURNED",
)
CONVICTED, ACQUITTED, WITHDRAWN, DISMISSED, SENT, COMMITTED, ADJOURNED = range(7)
# magistrates' disposals (registry order) and their severity order
MD = ("FINE", "DISCHARGE", "COMMUNITY_ORDER", "SUSPENDED_SENTENCE", "CUSTODY", "SENT_TO_CROWN", "NONE")
M_FINE, M_DISCHARGE, M_CO, M_SSO, M_CUSTODY, M_SENT, M_NONE = range(7)
# Crown Court disposals (registry order)
CD = ("CUSTODY", "SUSPENDED_SENTENCE", "COMMUNITY_ORDER", "FINE", "DISCHARGE", "ACQUITTED", "OTHER")
C_CUSTODY, C_SSO, C_CO, C_FINE, C_DISCHARGE, C_ACQUITTED, C_OTHER = range(7)
VERDICTS = ("GUILTY", "NOT_GUILTY", "NONE")
V_GUILTY, V_NOT_GUILTY, V_NONE = range(3)

LETTERS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def _mag_courts() -> tuple[str, ...]:
    a = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    n = 2 * len(ids.POSTCODE_AREAS)
    return tuple(f"B{1 + i // 5:02d}{a[i % 26]}{a[(i * 11 + i // 26) % 26]}{i % 5:02d}" for i in range(n))


MAG_COURTS = _mag_courts()
ESTABLISHMENTS = (*N.FEMALE_ESTABLISHMENTS, *N.MALE_ESTABLISHMENTS)
N_FEMALE_EST = len(N.FEMALE_ESTABLISHMENTS)
PLACES = (*ESTABLISHMENTS, *MAG_COURTS)  # movement from / to


def offence_code_series(
    rng, group: np.ndarray, cls_pick: np.ndarray | None = None, sub: np.ndarray | None = None
) -> tuple[pl.Series, np.ndarray, np.ndarray]:
    """Home Office offence codes `CCC/SS` for offence groups."""
    flat, off, ln = [], [], []
    for g in OFFENCE_GROUPS:
        off.append(len(flat))
        flat.extend(N.OFFENCE_CLASSES[g])
        ln.append(len(N.OFFENCE_CLASSES[g]))
    flat, off, ln = np.array(flat), np.array(off), np.array(ln)
    n = len(group)
    if cls_pick is None:
        cls_pick = rng.random(n)
    if sub is None:
        sub = 1 + np.minimum(rng.geometric(0.3, n), 20)
    cls = flat[off[group] + (cls_pick * ln[group]).astype(np.int64)]
    s = pl.select(pl.concat_str([ids.zfill(cls, 3), pl.lit("/"), ids.zfill(sub, 2)])).to_series()
    return s, cls_pick, sub


def _letters(idx: np.ndarray) -> pl.Series:
    return ids.alpha_series(idx % 26)


def _urn(force, l1, l2, serial, yy) -> pl.Series:
    return pl.select(
        pl.concat_str(
            [ids.zfill(force, 2), _letters(l1), _letters(l2), ids.zfill(serial, 5), ids.zfill(yy, 2)]
        )
    ).to_series()


def _asn(yy, force, l1, l2, station, seq) -> pl.Series:
    chk = ids.letters_series(ids.check_letters(seq + station * 7 + force * 13))
    return pl.select(
        pl.concat_str(
            [
                ids.zfill(yy, 2),
                ids.zfill(force, 2),
                _letters(l1),
                _letters(l2),
                ids.zfill(station, 2),
                ids.zfill(seq, 7),
                chk,
            ]
        )
    ).to_series()


def _lesser(rng, disposal: np.ndarray, order: list[int]) -> np.ndarray:
    """A disposal no more severe than `disposal` (severity given by `order`, least first)."""
    size = max(max(order), int(disposal.max()) if len(disposal) else 0) + 1
    rank = np.array([order.index(d) if d in order else 0 for d in range(size)])
    r = rank[disposal]
    pick = (rng.random(len(disposal)) * (r + 1)).astype(np.int64)
    return np.array(order)[pick]


def _area(w: World, person: np.ndarray, day: np.ndarray) -> np.ndarray:
    slot = w.people.address_slot(person, day)
    return w.people.addr_pc[person, slot] // 1_000_000


def criminal_sources(w: World) -> Iterator[tuple[str, dict[str, TableData]]]:
    """Yield the tables of each criminal system as soon as it is built (magistrates, Crown
    Court, prison, probation, OASys), then ("_links", CaseLinks) with the true case links."""
    cfg, people = w.cfg, w.people
    horizon = w.horizon
    out: dict[str, TableData] = {}

    # ======================================================================================
    # Magistrates' courts (Libra)
    # ======================================================================================
    r = w.rng("magistrates")
    crim, t0 = w.rosters.crim, w.rosters.crim_t0
    k = zipf_counts(r, cfg.mag_cases_zipf, len(crim), cfg.mag_cases_max)
    g, pos = expand(k)
    speed = r.lognormal(0.0, 0.6, len(crim))
    gaps = r.exponential(cfg.mean_days_between_cases, len(g)) * speed[g]
    gaps[pos == 0] = 0
    day = (t0[g] + group_cumsum(gaps, pos)).astype(np.int64)
    keep = day <= horizon
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
    day = day[first_row[case_idx]]
    age = (day - people.dob[person]) / YEAR
    youth = age < 18

    primary = categorical(r, GROUP_P, people.n)
    group = np.where(r.random(n) < 0.5, primary[person], categorical(r, GROUP_P, n))
    group = np.where(youth & (group == G["MOTORING"]), G["THEFT"], group)
    area = _area(w, person, day)
    court = (area * 2 + (r.random(n) < 0.35))[first_row[case_idx]]
    force = (area % 43 + 1)[first_row[case_idx]]
    yy = ymd(day)[0] % 100
    urn_l1 = r.integers(0, 26, n)[first_row[case_idx]]
    urn_l2 = r.integers(0, 26, n)[first_row[case_idx]]
    urn_serial = r.integers(0, 100_000, n)[first_row[case_idx]]
    asn_l1, asn_l2 = r.integers(0, 26, n), r.integers(0, 26, n)
    asn_station, asn_seq = r.integers(1, 100, n), r.integers(0, 10_000_000, n)

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

    # sentence of convicted cases
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
    # day of each offender's last case: nobody dies or is deported before their last case
    last_case = np.full(people.n, NULL_DAY, dtype=np.int64)
    np.maximum.at(last_case, person, day)

    rec = w.recorder("magistrates").record(person, day, w.rng("magistrates/record"))
    off_code, cls_pick, sub = offence_code_series(r, group)
    mag_cols = {
        "case_id": Text(pl.Series((1_000_000_000 + case_idx).astype(np.int64)).cast(pl.Utf8)),
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
        "asn": Text(_asn(yy, force, asn_l1, asn_l2, asn_station, asn_seq)),
        "urn": Text(_urn(force, urn_l1, urn_l2, urn_serial, yy)),
        "court_code": Codes(court, MAG_COURTS),
        "first_hearing_date": Days(day.astype(np.int32)),
        "offence_code": Text(off_code),
        "offence_group": Codes(group, OFFENCE_GROUPS),
        "plea": Codes(plea, PLEAS),
        "outcome": Codes(outcome, MO),
        "committed_to_crown": Flags(np.isin(outcome, [SENT, COMMITTED]).astype(np.int8)),
        "committal_date": Days(committal.astype(np.int32)),
        "sentence_date": Days(sentence.astype(np.int32)),
    }
    out["magistrates/hocas_flatfile"] = TableData(
        "magistrates",
        "hocas_flatfile",
        mag_cols,
        event_day=day.astype(np.int32),
        person=person,
        blank_rules=[
            BlankRule(
                resolution,
                ("committal_date", "sentence_date"),
                {"outcome": "ADJOURNED", "committed_to_crown": "N"},
            )
        ],
    )

    # offences
    n_off = np.minimum(r.geometric(0.55, n), 12)
    og, opos = expand(n_off)
    no = len(og)
    first = opos == 0
    ogroup = np.where(first | (r.random(no) < 0.5), group[og], categorical(r, GROUP_P, no))
    ocode, _, _ = offence_code_series(
        r,
        ogroup,
        np.where(first, cls_pick[og], r.random(no)),
        np.where(first, sub[og], 1 + np.minimum(r.geometric(0.3, no), 20)),
    )
    case_gap = uniform_int(r, np.ones(n), np.where(outcome == SENT, 300, 150))
    odate = day[og] - np.where(r.random(no) < 0.7, case_gap[og], uniform_int(r, np.ones(no), 150))
    oplea = np.where(first | (r.random(no) < 0.85), plea[og], categorical(r, PLEA_P, no))
    verdict = np.full(no, V_NONE)
    odisp = np.full(no, M_NONE)
    oc = outcome[og]
    c = oc == CONVICTED
    u = r.random(no)
    verdict[c] = np.where(first[c] | (u[c] < 0.85), V_GUILTY, np.where(u[c] < 0.9, V_NOT_GUILTY, V_NONE))
    sev = [M_DISCHARGE, M_FINE, M_CO, M_SSO, M_CUSTODY]
    lesser = _lesser(r, disposal[og], sev)
    odisp[c] = np.where(first[c] | (r.random(c.sum()) < 0.7), disposal[og][c], lesser[c])
    odisp[c & (verdict != V_GUILTY)] = M_NONE
    odisp[np.isin(oc, [SENT, COMMITTED])] = M_SENT
    verdict[oc == COMMITTED] = V_GUILTY
    verdict[oc == ACQUITTED] = V_NOT_GUILTY
    out["magistrates/hocas_all_offence"] = TableData(
        "magistrates",
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
        blank_rules=[BlankRule(resolution[og], (), {"verdict": "NONE", "disposal": "NONE"})],
    )

    yield "magistrates", dict(out)
    out.clear()
    del rec, mag_cols, og, opos, first, ogroup, ocode, odate, oplea, verdict, odisp, oc, lesser

    # ======================================================================================
    # Crown Court (Xhibit)
    # ======================================================================================
    r = w.rng("crown_court")
    appeal = (outcome == CONVICTED) & (plea != GUILTY) & (r.random(n) < cfg.appeal_rate)
    src = np.flatnonzero(np.isin(outcome, [SENT, COMMITTED]) | appeal)
    nc = len(src)
    ctype = np.where(outcome[src] == SENT, 0, np.where(outcome[src] == COMMITTED, 1, 2))  # registry order
    cperson = person[src]
    receipt = np.where(
        ctype == 2,
        sentence[src] + uniform_int(r, np.full(nc, 7), 28),
        committal[src]
        + np.where(
            ctype == 0,
            np.where(
                r.random(nc) < 0.75, uniform_int(r, np.zeros(nc), 3), uniform_int(r, np.full(nc, 4), 14)
            ),
            uniform_int(r, np.zeros(nc), 14),
        ),
    )
    cyear = ymd(receipt)[0]
    # Crown case number shared by co-defendants of one magistrates' case
    key = case_idx[src] * 3 + ctype
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
    case_number = (
        pl.select(
            pl.concat_str([pl.Series(prefix), pl.Series(case_year).cast(pl.Utf8), ids.zfill(serial, 4)])
        )
        .to_series()
        .gather(pl.Series(inv))
    )

    # case-link keys as the Crown Court recorded them
    u_force, u_l1, u_l2, u_serial, u_yy = (
        force[src],
        urn_l1[src],
        urn_l2[src],
        urn_serial[src].copy(),
        yy[src],
    )
    ut = r.random(nc) < cfg.crown_urn_typo
    kind = r.integers(0, 3, nc)
    u_serial = np.where(ut & (kind == 0), _digit_slip(u_serial, 5, r), u_serial)
    u_l2 = np.where(ut & (kind == 1), (u_l2 + r.integers(1, 26, nc)) % 26, u_l2)
    u_force = np.where(ut & (kind == 2), (u_force % 62) + 1, u_force)
    urn = Text(ids_null(_urn(u_force, u_l1, u_l2, u_serial, u_yy), r.random(nc) < cfg.crown_urn_missing))
    a_seq = asn_seq[src].copy()
    at = r.random(nc) < cfg.crown_asn_typo
    a_seq[at] = _digit_slip(a_seq[at], 7, r)
    asn = Text(
        ids_null(
            _asn(yy[src], force[src], asn_l1[src], asn_l2[src], asn_station[src], a_seq),
            r.random(nc) < cfg.crown_asn_missing,
        )
    )
    c_comm = committal[src].copy()
    shift = (c_comm != NULL_DAY) & (r.random(nc) < cfg.crown_committal_date_shift)
    c_comm[shift] += np.where(r.random(shift.sum()) < 0.5, -1, 1) * r.integers(1, 8, shift.sum())
    c_comm[r.random(nc) < cfg.crown_committal_date_missing] = NULL_DAY
    c_comm = np.minimum(c_comm, np.where(c_comm == NULL_DAY, NULL_DAY, receipt))
    o_court = court[src].copy()
    ce = r.random(nc) < cfg.crown_court_code_error
    o_court[ce] = np.where(
        r.random(ce.sum()) < 0.7,
        (o_court[ce] + r.integers(1, len(MAG_COURTS), ce.sum())) % len(MAG_COURTS),
        -1,
    )

    cgroup = np.where(r.random(nc) < 0.05, categorical(r, GROUP_P, nc), group[src])
    reclass = cgroup != group[src]
    ccode_new, _, _ = offence_code_series(r, cgroup)
    ccode = pl.select(
        pl.when(pl.Series(reclass)).then(ccode_new).otherwise(off_code.gather(pl.Series(src)))
    ).to_series()
    cyouth = youth[src]
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
    clen_out = np.where(cdisp == C_SSO, susp_term, clen)
    clen_null = ~((cdisp == C_CUSTODY) & ~indeterminate) & (cdisp != C_SSO)

    crec = w.recorder("crown_court").record(cperson, receipt, w.rng("crown_court/record"))
    out["crown_court/xhibit_flatfile"] = TableData(
        "crown_court",
        "xhibit_flatfile",
        {
            "case_number": Text(case_number),
            **person_columns(
                crec,
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
            "asn": asn,
            "urn": urn,
            "originating_court_code": Codes(o_court, MAG_COURTS),
            "committal_date": Days(c_comm.astype(np.int32)),
            "receipt_date": Days(receipt.astype(np.int32)),
            "case_type": Codes(ctype, w.codes("crown_court", "xhibit_flatfile", "case_type")),
            "offence_code": Text(ccode),
            "offence_group": Codes(cgroup, OFFENCE_GROUPS),
            "disposal_date": Days(disp_day.astype(np.int32)),
            "most_serious_disposal": Codes(cdisp, CD),
            "custodial_length_days": Ints(clen_out, clen_null),
        },
        event_day=receipt.astype(np.int32),
        person=cperson,
        blank_rules=[
            BlankRule(disp_day, ("disposal_date", "most_serious_disposal", "custodial_length_days"))
        ],
    )

    n_off = np.minimum(r.geometric(0.5, nc), 15)
    xg, xpos = expand(n_off)
    nx = len(xg)
    xfirst = xpos == 0
    xgroup = np.where(xfirst | (r.random(nx) < 0.5), cgroup[xg], categorical(r, GROUP_P, nx))
    xcode_new, _, _ = offence_code_series(r, xgroup)
    xcode = pl.select(
        pl.when(pl.Series(xfirst)).then(ccode.gather(pl.Series(xg))).otherwise(xcode_new)
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
    xless = _lesser(r, np.where(np.isin(xd, csev), xd, C_DISCHARGE), csev)
    xdisp = np.where(xfirst | (r.random(nx) < 0.6), xd, np.where(np.isin(xd, csev), xless, xd))
    xdisp = np.where(xverdict == V_NOT_GUILTY, C_ACQUITTED, np.where(xverdict == V_NONE, C_OTHER, xdisp))
    xdate = disp_day[xg] + np.where(r.random(nx) < 0.95, 0, uniform_int(r, np.ones(nx), 60))
    xlen = np.where(
        xdisp == C_CUSTODY,
        np.where(xfirst, clen[xg], (clen[xg] * (0.3 + 0.7 * r.random(nx))).astype(np.int64)),
        susp_term[xg],
    )
    xlen_null = ~(((xdisp == C_CUSTODY) & ~indeterminate[xg]) | (xdisp == C_SSO))
    out["crown_court/xhibit_all_off_disp"] = TableData(
        "crown_court",
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

    yield "crown_court", dict(out)
    out.clear()
    del crec, xg, xpos, xfirst, xgroup, xcode, xcode_new, xplea, xd, xverdict, xless, xdisp, xdate, xlen

    # ======================================================================================
    # Custody (P-NOMIS)
    # ======================================================================================
    r = w.rng("prison")
    ST = w.codes("prison", "nomis_flatfile", "sentence_type")  # REMAND DETERMINATE INDETERMINATE RECALL
    RR = w.codes("prison", "nomis_flatfile", "release_reason")
    REL_COND, REL_EOS, REL_HDC, REL_REMAND, REL_DEAD, REL_ABROAD = (
        RR.index(x)
        for x in (
            "CONDITIONAL_RELEASE",
            "END_OF_SENTENCE",
            "HDC",
            "REMAND_ENDED",
            "DECEASED",
            "TRANSFER_ABROAD",
        )
    )
    mag_c = np.flatnonzero(disposal == M_CUSTODY)
    crown_c = np.flatnonzero(cdisp == C_CUSTODY)
    remanded = (ctype == 0) & (r.random(nc) < cfg.remand_rate) & (committal[src] != NULL_DAY)
    remand_only = np.flatnonzero(remanded & (cdisp != C_CUSTODY))
    j_person = np.concatenate([person[mag_c], cperson[crown_c], cperson[remand_only]])
    j_sent_day = np.concatenate([sentence[mag_c], disp_day[crown_c], disp_day[remand_only]])
    j_len = np.concatenate([custody_len[mag_c], clen[crown_c], np.zeros(len(remand_only), np.int64)])
    j_type = np.concatenate(
        [np.full(len(mag_c), 1), np.where(indeterminate[crown_c], 2, 1), np.zeros(len(remand_only), np.int64)]
    )
    j_group = np.concatenate([group[mag_c], cgroup[crown_c], cgroup[remand_only]])
    j_court = np.concatenate([court[mag_c], court[src][crown_c], court[src][remand_only]])
    j_remand = np.concatenate(
        [np.zeros(len(mag_c), bool), remanded[crown_c], np.ones(len(remand_only), bool)]
    )
    j_reception = np.where(
        j_remand,
        np.concatenate([np.full(len(mag_c), NULL_DAY), committal[src][crown_c], committal[src][remand_only]]),
        j_sent_day,
    )
    nj = len(j_person)
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
        people.origin[j_person],
        [N.NAME_ORIGINS.index(o) for o in ("east_european", "somali_arabic", "west_african", "east_asian")],
    )
    u = r.random(nj)
    final = j_sent_day >= last_case[j_person]
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

    # recall journeys
    rc = np.flatnonzero(recall)
    rr_reception = recall_day[rc] + uniform_int(r, np.zeros(len(rc)), 5)
    fixed = r.random(len(rc)) < 0.5
    rr_release = np.where(
        fixed | (j_type[rc] == 2), rr_reception + 28, np.maximum(rr_reception + 1, sent_end[rc])
    )
    rr_reason = np.where(fixed | (j_type[rc] == 2), REL_COND, REL_EOS)
    J_person = np.concatenate([j_person, j_person[rc]])
    J_reception = np.concatenate([j_reception, rr_reception])
    J_release = np.concatenate([release, rr_release])
    J_reason = np.concatenate([reason, rr_reason])
    J_type = np.concatenate([j_type, np.full(len(rc), 3)])
    J_len = np.concatenate([j_len, j_len[rc]])
    J_len_known = np.concatenate([j_type == 1, j_type[rc] == 1])
    J_group = np.concatenate([j_group, j_group[rc]])
    J_court = np.concatenate([j_court, np.full(len(rc), -1)])
    NJ = len(J_person)
    # prison numbers: usually one per person, sometimes re-issued on a later journey
    porder = np.lexsort((J_reception, J_person))
    jseq = np.empty(NJ, dtype=np.int64)
    sp = J_person[porder]
    st = np.r_[0, np.flatnonzero(np.diff(sp)) + 1] if NJ else np.zeros(0, np.int64)
    jseq[porder] = np.arange(NJ) - np.repeat(st, np.diff(np.r_[st, NJ])) if NJ else jseq
    reissue = (jseq > 0) & (r.random(NJ) < cfg.prison_number_reissue_rate)
    pn_code = np.where(
        reissue,
        ids.affine_permutation(people.n + np.arange(NJ), ids.PRISON_NUMBER_SPACE, 7),
        ids.affine_permutation(J_person, ids.PRISON_NUMBER_SPACE, 7),
    )
    prison_number = ids.prison_number_strings(pn_code)
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
    female = people.sex[J_person] == 1
    j_area = _area(w, J_person, J_reception)
    est0 = np.where(female, j_area % N_FEMALE_EST, N_FEMALE_EST + j_area % len(N.MALE_ESTABLISHMENTS))
    jcode, _, _ = offence_code_series(r, J_group)
    prec = w.recorder("prison").record(J_person, J_reception, w.rng("prison/record"))
    out["prison/nomis_flatfile"] = TableData(
        "prison",
        "nomis_flatfile",
        {
            "prison_number": Text(prison_number),
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
            "reception_date": Days(J_reception.astype(np.int32)),
            "release_date": Days(J_release.astype(np.int32)),
            "release_reason": Codes(J_reason, RR),
            "establishment_code": Codes(est0, ESTABLISHMENTS),
            "sentence_type": Codes(J_type, ST),
            "sentence_length_days": Ints(J_len, ~J_len_known),
            "offence_code": Text(jcode),
            "offence_group": Codes(J_group, OFFENCE_GROUPS),
        },
        event_day=J_reception.astype(np.int32),
        person=J_person,
        blank_rules=[BlankRule(J_release, ("release_date", "release_reason"))],
    )

    # movements
    stay = np.maximum(1, J_release - J_reception)
    n_trn = np.minimum(r.poisson(stay / YEAR * 0.9), 8)
    n_crt = np.where(J_type == 0, 1 + r.integers(0, 3, NJ), r.poisson(0.15, NJ))
    n_tap = np.where(stay > 365, np.minimum(r.poisson(stay / YEAR * 0.15), 4), 0)
    MT = w.codes("prison", "nomis_movements", "movement_type")  # ADM REL TRN TAP CRT
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
    court_place = np.where(J_court[mg] >= 0, len(ESTABLISHMENTS) + J_court[mg], -1)
    m_from = np.select([mk == ADM, mk == TRN], [court_place, before], before)
    m_to = np.select([mk == ADM, mk == TRN, mk == CRT], [est0[mg], cur, court_place], -1)
    reasons = (
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
    adm_reason = np.array([1, 0, 0, 2])[J_type[mg]]
    rel_reason = np.array([9, 11, 10, 12, 13, 14])[J_reason[mg]]
    m_reason = np.select(
        [mk == ADM, mk == TRN, mk == CRT, mk == TAP, mk == REL],
        [adm_reason, 3 + r.integers(0, 4, nm), 7, 8, rel_reason],
        -1,
    )
    out["prison/nomis_movements"] = TableData(
        "prison",
        "nomis_movements",
        {
            "movement_date": Days(mday.astype(np.int32)),
            "movement_type": Codes(mk, MT),
            "from_establishment": Codes(m_from, PLACES),
            "to_establishment": Codes(m_to, PLACES),
            "reason": Codes(m_reason, reasons),
        },
        event_day=mday.astype(np.int32),
        parent_row=mg,
    )

    frailty = r.gamma(0.4, 2.5, people.n)
    jage = (J_reception - people.dob[J_person]) / YEAR
    lam = 0.5 * frailty[J_person] * stay / YEAR * np.where(jage < 25, 1.5, 1.0)
    n_inc = np.minimum(r.poisson(lam), 40)
    ig, _ = expand(n_inc)
    ni = len(ig)
    iday = J_reception[ig] + 1 + (r.random(ni) * np.maximum(1, stay[ig] - 1)).astype(np.int64)
    self_harm = r.random(ni) < np.where(female[ig], 0.7, 0.35)
    IT = w.codes("prison", "nomis_safety_in_custody", "incident_type")
    RO = w.codes("prison", "nomis_safety_in_custody", "role")
    SV = w.codes("prison", "nomis_safety_in_custody", "severity")
    itype = np.where(self_harm, IT.index("SELF_HARM"), IT.index("ASSAULT"))
    role = np.where(
        self_harm,
        RO.index("SELF"),
        np.where(r.random(ni) < 0.55, RO.index("PERPETRATOR"), RO.index("VICTIM")),
    )
    sevr = np.where(r.random(ni) < np.where(self_harm, 0.05, 0.08), SV.index("SERIOUS"), SV.index("MINOR"))
    out["prison/nomis_safety_in_custody"] = TableData(
        "prison",
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

    yield "prison", dict(out)
    out.clear()
    del prec, mg, mpos, mk, mday, new_est, cur, prev, before, m_from, m_to, m_reason, ig, iday, booking

    # ======================================================================================
    # Probation (nDelius)
    # ======================================================================================
    r = w.rng("probation")
    ET = w.codes("probation", "delius_flatfile", "event_type")  # CO SSO LICENCE PSS
    TR = w.codes("probation", "delius_flatfile", "termination_reason")
    mo_src = np.flatnonzero(np.isin(disposal, [M_CO, M_SSO]))
    co_src = np.flatnonzero(np.isin(cdisp, [C_CO, C_SSO]))
    lic_src = np.flatnonzero(licence)
    pss_src = lic_src[
        (j_len[lic_src] < 730) & (release[lic_src] >= ORA_START) & ~recall[lic_src] & (j_type[lic_src] == 1)
    ]
    e_person = np.concatenate([person[mo_src], cperson[co_src], j_person[lic_src], j_person[pss_src]])
    e_type = np.concatenate(
        [
            np.where(disposal[mo_src] == M_CO, 0, 1),
            np.where(cdisp[co_src] == C_CO, 0, 1),
            np.full(len(lic_src), 2),
            np.full(len(pss_src), 3),
        ]
    )
    e_sent = np.concatenate([sentence[mo_src], disp_day[co_src], j_sent_day[lic_src], j_sent_day[pss_src]])
    e_group = np.concatenate([group[mo_src], cgroup[co_src], j_group[lic_src], j_group[pss_src]])
    ne = len(e_person)
    is_order = e_type <= 1
    referral = np.select(
        [is_order, e_type == 2],
        [
            e_sent + uniform_int(r, np.zeros(ne), 7),
            np.concatenate(
                [
                    np.zeros(len(mo_src) + len(co_src), np.int64),
                    release[lic_src],
                    np.zeros(len(pss_src), np.int64),
                ]
            ),
        ],
        np.concatenate([np.zeros(ne - len(pss_src), np.int64), lic_end[pss_src]]),
    )
    order_len = np.where(
        e_type == 0, uniform_int(r, np.full(ne, 180), 1095), uniform_int(r, np.full(ne, 180), 730)
    )
    o_reason = categorical(
        r, np.array([0.66, 0.14, 0.12, 0.07, 0.01]), ne
    )  # COMPLETED REVOKED BREACH EXPIRED DECEASED
    o_codes = np.array([TR.index(x) for x in ("COMPLETED", "REVOKED", "BREACH", "EXPIRED", "DECEASED")])
    final = e_sent >= last_case[e_person]
    o_reason = np.where((o_reason == 4) & ~final, 0, o_reason)  # deaths only after the last case
    early = np.isin(o_reason, [1, 2, 4])
    o_term = referral + np.where(early, uniform_int(r, np.full(ne, 30), np.maximum(31, order_len)), order_len)
    lic_term = np.concatenate(
        [
            np.zeros(len(mo_src) + len(co_src), np.int64),
            np.where(recall[lic_src], recall_day[lic_src], lic_end[lic_src]),
            np.zeros(len(pss_src), np.int64),
        ]
    )
    lic_reason = np.concatenate(
        [
            np.zeros(len(mo_src) + len(co_src), np.int64),
            np.where(
                recall[lic_src],
                TR.index("RECALL"),
                np.where(
                    (r.random(len(lic_src)) < 0.005) & (j_sent_day[lic_src] >= last_case[j_person[lic_src]]),
                    TR.index("DECEASED"),
                    TR.index("EXPIRED"),
                ),
            ),
            np.zeros(len(pss_src), np.int64),
        ]
    )
    pss_term = np.concatenate(
        [np.zeros(ne - len(pss_src), np.int64), np.maximum(release[pss_src] + 365, lic_end[pss_src] + 30)]
    )
    pss_reason = np.array([TR.index(x) for x in ("COMPLETED", "BREACH", "EXPIRED")])[
        categorical(r, np.array([0.75, 0.1, 0.15]), ne)
    ]
    termination = np.select([is_order, e_type == 2], [o_term, lic_term], pss_term)
    term_reason = np.select([is_order, e_type == 2], [o_codes[o_reason], lic_reason], pss_reason)
    termination = np.where(termination >= FAR_DAY, FAR_DAY, termination)
    crn_dup = r.random(people.n) < cfg.crn_duplicate_rate
    use_dup = crn_dup[e_person] & (r.random(ne) < 0.5)
    crn_code = np.where(
        use_dup,
        ids.affine_permutation(people.n + e_person, ids.CRN_SPACE, 9),
        ids.affine_permutation(e_person, ids.CRN_SPACE, 9),
    )
    e_area = _area(w, e_person, referral)
    ecode, _, _ = offence_code_series(r, e_group)
    drec = w.recorder("probation").record(e_person, referral, w.rng("probation/record"))
    out["probation/delius_flatfile"] = TableData(
        "probation",
        "delius_flatfile",
        {
            "crn": Text(ids.crn_strings(crn_code)),
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
            "referral_date": Days(referral.astype(np.int32)),
            "event_type": Codes(e_type, ET),
            "sentence_date": Days(e_sent.astype(np.int32)),
            "termination_date": Days(termination.astype(np.int32)),
            "termination_reason": Codes(term_reason, TR),
            "offence_code": Text(ecode),
            "offence_group": Codes(e_group, OFFENCE_GROUPS),
            "provider_code": Codes(e_area % len(N.PROBATION_PROVIDERS), N.PROBATION_PROVIDERS),
        },
        event_day=referral.astype(np.int32),
        person=e_person,
        blank_rules=[BlankRule(termination, ("termination_date", "termination_reason"))],
    )

    # requirements of community and suspended sentence orders
    orders = np.flatnonzero(is_order)
    nq = 1 + (r.random(len(orders)) < 0.45) + (r.random(len(orders)) < 0.15)
    qg, _ = expand(nq)
    qe = orders[qg]
    nqr = len(qe)
    RT = w.codes("probation", "delius_rqmnt", "requirement_type")
    rtype = categorical(r, np.array([0.35, 0.33, 0.10, 0.06, 0.05, 0.07, 0.04]), nqr)
    qstart = referral[qe] + uniform_int(r, np.zeros(nqr), 21)
    lo_hi = {0: (4, 30), 1: (5, 60), 2: (30, 180), 3: (6, 36), 4: (6, 12), 5: (20, 40), 6: (6, 12)}
    lo = np.array([lo_hi[i][0] for i in range(7)])[rtype]
    hi = np.array([lo_hi[i][1] for i in range(7)])[rtype]
    length = uniform_int(r, lo, hi)
    length = np.where(rtype == 0, length * 10, length)  # unpaid work hours in tens
    per_unit = np.array([3, 7, 1, 30, 30, 7, 30])[rtype]
    qend = np.minimum(qstart + length * per_unit, np.maximum(qstart + 1, termination[qe]))
    QR = w.codes("probation", "delius_rqmnt", "termination_reason")
    ev_reason = np.array(TR)[term_reason[qe]]
    qreason = np.where(
        (qend >= termination[qe]) & np.isin(ev_reason, ["BREACH", "REVOKED"]),
        np.where(ev_reason == "BREACH", QR.index("BREACH"), QR.index("REVOKED")),
        np.where(r.random(nqr) < 0.85, QR.index("COMPLETED"), QR.index("EXPIRED")),
    )
    out["probation/delius_rqmnt"] = TableData(
        "probation",
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

    # licence conditions
    lics = np.flatnonzero(e_type == 2)
    nlc = 1 + np.minimum(r.poisson(1.3, len(lics)), 5)
    lg, _ = expand(nlc)
    le = lics[lg]
    nl = len(le)
    CT = w.codes("probation", "delius_lic_condition", "condition_type")
    ltype = categorical(r, np.array([0.30, 0.25, 0.12, 0.10, 0.13, 0.10]), nl)
    lend = np.where(r.random(nl) < 0.15, referral[le] + uniform_int(r, np.full(nl, 30), 365), termination[le])
    lend = np.minimum(lend, termination[le])
    out["probation/delius_lic_condition"] = TableData(
        "probation",
        "delius_lic_condition",
        {
            "condition_type": Codes(ltype, CT),
            "start_date": Days(referral[le].astype(np.int32)),
            "end_date": Days(lend.astype(np.int32)),
        },
        event_day=referral[le].astype(np.int32),
        parent_row=le,
        blank_rules=[BlankRule(lend, ("end_date",))],
    )

    # pre-sentence reports
    has_psr = (is_order & (r.random(ne) < 0.55)) | ((e_type == 2) & (r.random(ne) < 0.4))
    pe = np.flatnonzero(has_psr)
    npr = len(pe)
    RPT = w.codes("probation", "delius_psr", "report_type")  # FAST_DELIVERY STANDARD ORAL
    PP = w.codes("probation", "delius_psr", "proposal")  # CUSTODY SSO CO OTHER
    rpt = categorical(r, np.array([0.55, 0.25, 0.20]), npr)
    lead = np.where(rpt == 1, uniform_int(r, np.full(npr, 14), 21), 0)
    requested = e_sent[pe] - lead
    completed = requested + np.select([rpt == 0, rpt == 1], [uniform_int(r, np.zeros(npr), 1), lead], 0)
    match = np.select(
        [e_type[pe] == 0, e_type[pe] == 1],
        [PP.index("COMMUNITY_ORDER"), PP.index("SUSPENDED_SENTENCE")],
        PP.index("CUSTODY"),
    )
    proposal = np.where(r.random(npr) < 0.65, match, r.integers(0, len(PP), npr))
    out["probation/delius_psr"] = TableData(
        "probation",
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

    # post-sentence supervision requirements
    pss_e = np.flatnonzero(e_type == 3)
    extra = (r.random(len(pss_e)) < 0.15).astype(np.int64) + (r.random(len(pss_e)) < 0.10)
    sg, spos = expand(1 + extra)
    se = pss_e[sg]
    PT = w.codes("probation", "delius_pss", "requirement_type")  # DRUG_APPOINTMENT DRUG_TESTING SUPERVISION
    ptype = np.where(
        spos == 0,
        PT.index("SUPERVISION"),
        np.where(spos == 1, PT.index("DRUG_TESTING"), PT.index("DRUG_APPOINTMENT")),
    )
    out["probation/delius_pss"] = TableData(
        "probation",
        "delius_pss",
        {
            "requirement_type": Codes(ptype, PT),
            "start_date": Days(referral[se].astype(np.int32)),
            "end_date": Days(termination[se].astype(np.int32)),
        },
        event_day=referral[se].astype(np.int32),
        parent_row=se,
        blank_rules=[BlankRule(termination[se], ("end_date",))],
    )

    yield "probation", dict(out)
    out.clear()
    del drec, qg, qe, rtype, qstart, length, qend, qreason, lg, le, ltype, lend

    # ======================================================================================
    # OASys assessments
    # ======================================================================================
    r = w.rng("oasys")
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
    comm_keep = r.random(ne) < np.select([is_order, e_type == 2], [0.85, 0.9], 0.1)
    comm_src = np.flatnonzero(comm_keep)
    m_first = referral[comm_src] + uniform_int(r, np.full(len(comm_src), 3), 40)
    ok = m_first <= termination[comm_src]
    comm_src, m_first = comm_src[ok], m_first[ok]
    gap = uniform_int(r, np.full(len(comm_src), 240), 400)
    m_n = 1 + np.minimum(
        np.maximum(0, (np.minimum(termination[comm_src], horizon + 3650) - m_first - 1) // gap), 8
    )
    term_a = (termination[comm_src] < FAR_DAY) & (r.random(len(comm_src)) < 0.45)
    mg2, mpos2 = expand(m_n + term_a)
    is_term = mpos2 == m_n[mg2]
    a2_day = np.where(is_term, termination[comm_src][mg2], m_first[mg2] + mpos2 * gap[mg2])
    a2_src = comm_src[mg2]
    AT = w.codes("oasys", "assessments_metadata", "assessment_type")  # FULL REVIEW TERMINATION TRANSFER
    a_person = np.concatenate([J_person[a1_src], e_person[a2_src]])
    a_day = np.concatenate([a1_day, a2_day])
    a_type = np.concatenate([np.where(cpos == 0, 0, 1), np.where(is_term, 2, np.where(mpos2 == 0, 0, 1))])
    a_type = np.where((a_type == 1) & (r.random(len(a_type)) < 0.03), 3, a_type)
    a_setting = np.concatenate(
        [np.zeros(len(a1_src), np.int64), np.ones(len(a2_src), np.int64)]
    )  # CUSTODY COMMUNITY
    a_group = np.concatenate([J_group[a1_src], e_group[a2_src]])
    na = len(a_person)
    pk_dup = r.random(people.n) < cfg.offender_pk_duplicate_rate
    use_dup = pk_dup[a_person] & (r.random(na) < 0.5)
    pk = 1_000_000 + np.where(
        use_dup,
        ids.affine_permutation(people.n + a_person, 9_000_000, 13),
        ids.affine_permutation(a_person, 9_000_000, 13),
    )
    crn_all = ids.crn_strings(
        np.concatenate([ids.affine_permutation(J_person[a1_src], ids.CRN_SPACE, 9), crn_code[a2_src]])
    )
    crn_show = np.where(a_setting == 0, r.random(na) < 0.5, r.random(na) < 0.93)
    pn_all = ids.prison_number_strings(
        np.concatenate(
            [pn_code[a1_src], ids.affine_permutation(e_person[a2_src], ids.PRISON_NUMBER_SPACE, 7)]
        )
    )
    first_reception = np.full(people.n, FAR_DAY, dtype=np.int64)
    np.minimum.at(first_reception, J_person, J_reception)
    been_inside = first_reception[a_person] <= a_day
    pn_show = np.where(a_setting == 0, r.random(na) < 0.95, been_inside & (r.random(na) < 0.25))
    status = np.where(r.random(na) < 0.93, 0, 1)  # COMPLETE LOCKED_INCOMPLETE
    arec = w.recorder("oasys").record(a_person, a_day, w.rng("oasys/record"))
    out["oasys/assessments_metadata"] = TableData(
        "oasys",
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
            "crn": Text(ids_null(crn_all, ~crn_show)),
            "prison_number": Text(ids_null(pn_all, ~pn_show)),
            "assessment_date": Days(a_day.astype(np.int32)),
            "assessment_type": Codes(a_type, AT),
            "setting": Codes(a_setting, w.codes("oasys", "assessments_metadata", "setting")),
            "status": Codes(status, w.codes("oasys", "assessments_metadata", "status")),
        },
        event_day=a_day.astype(np.int32),
        person=a_person,
    )

    # sections
    need_base = np.array([0.35, 0.55, 0.40, 0.30, 0.45, 0.30])
    need_latent = r.random((people.n, 6)) if na else np.zeros((people.n, 6))
    bcs = np.flatnonzero((a_setting == 0) & (a_type <= 1))
    flags = (need_latent[a_person[bcs]] < need_base).astype(np.int8)
    flip = r.random(flags.shape) < 0.1
    flags = np.where(flip, 1 - flags, flags)
    out["oasys/oasys_assessments_details_bcs"] = TableData(
        "oasys",
        "oasys_assessments_details_bcs",
        {
            c: Flags(flags[:, i])
            for i, c in enumerate(
                (
                    "accommodation_need",
                    "employment_need",
                    "finance_need",
                    "health_need",
                    "drug_need",
                    "alcohol_need",
                )
            )
        },
        parent_row=bcs,
    )
    risk_base = r.beta(2.0, 2.5, people.n)
    core = np.flatnonzero((status == 0) | (r.random(na) < 0.5))
    ogrs = np.clip(np.round(100 * risk_base[a_person[core]] + r.normal(0, 5, len(core))), 1, 99).astype(
        np.int64
    )
    ogp = np.clip(np.round(ogrs + r.normal(-5, 8, len(core))), 1, 99).astype(np.int64)
    ovp = np.clip(np.round(0.6 * ogrs + r.normal(0, 8, len(core))), 1, 99).astype(np.int64)
    level = np.select([ogrs < 50, ogrs < 75, ogrs < 90], [0, 1, 2], 3)
    out["oasys/oasys_assessments_details_core_risk"] = TableData(
        "oasys",
        "oasys_assessments_details_core_risk",
        {
            "ogrs3_score": Ints(ogrs),
            "ogp_score": Ints(ogp),
            "ovp_score": Ints(ovp),
            "risk_level": Codes(level, RISK_LEVELS),
        },
        parent_row=core,
    )
    plan = np.flatnonzero((a_type <= 1) & (status == 0))
    n_obj = np.minimum(r.poisson(2.0, len(plan)), 8)
    ig2, _ = expand(n_obj)
    isp_parent = plan[ig2]
    OBJ = w.codes("oasys", "oasys_assessments_details_isp", "objective_code")
    OS = w.codes("oasys", "oasys_assessments_details_isp", "objective_status")  # OPEN ACHIEVED NOT_ACHIEVED
    ostat = np.where(a_type[isp_parent] == 0, 0, categorical(r, np.array([0.55, 0.3, 0.15]), len(isp_parent)))
    out["oasys/oasys_assessments_details_isp"] = TableData(
        "oasys",
        "oasys_assessments_details_isp",
        {
            "objective_code": Codes(r.integers(0, len(OBJ), len(isp_parent)), OBJ),
            "objective_status": Codes(ostat, OS),
        },
        parent_row=isp_parent,
    )
    sexual = np.flatnonzero((a_group == G["SEXUAL"]) & (status == 0))
    score = np.minimum(r.poisson(2.5, len(sexual)), 10)
    out["oasys/oasys_assessments_details_rm2000"] = TableData(
        "oasys",
        "oasys_assessments_details_rm2000",
        {
            "rm2000_score": Ints(score),
            "rm2000_category": Codes(
                np.select([score <= 1, score <= 3, score <= 5], [0, 1, 2], 3), RISK_LEVELS
            ),
        },
        parent_row=sexual,
    )
    harm_base = categorical(r, np.array([0.35, 0.45, 0.17, 0.03]), people.n)
    rosh_rows = np.flatnonzero(status == 0)
    hb = harm_base[a_person[rosh_rows]]
    ratings = np.clip(hb[:, None] + r.choice([-1, 0, 0, 0, 0, 0, 0, 1], size=(len(rosh_rows), 4)), 0, 3)
    ratings[:, 1] = np.minimum(ratings[:, 1], hb)  # known adults
    overall = ratings.max(axis=1)
    out["oasys/oasys_assessments_details_rosh"] = TableData(
        "oasys",
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
    n_items = np.where(
        overall >= 2,
        1 + r.integers(0, 4, len(rosh_rows)),
        np.where((overall == 1) & (r.random(len(rosh_rows)) < 0.4), 1 + r.integers(0, 2, len(rosh_rows)), 0),
    )
    rg, _ = expand(n_items)
    rmp_parent = rosh_rows[rg]
    PA = w.codes("oasys", "oasys_assessments_details_rmp", "plan_area")
    AG = w.codes("oasys", "oasys_assessments_details_rmp", "agency")
    out["oasys/oasys_assessments_details_rmp"] = TableData(
        "oasys",
        "oasys_assessments_details_rmp",
        {
            "plan_area": Codes(r.integers(0, len(PA), len(rmp_parent)), PA),
            "agency": Codes(categorical(r, np.array([0.5, 0.2, 0.15, 0.1, 0.05]), len(rmp_parent)), AG),
        },
        parent_row=rmp_parent,
    )

    yield "oasys", dict(out)
    out.clear()
    del arec
    yield (
        "_links",
        CaseLinks(
            mag_rows=src,
            crown_rows=np.arange(nc),
            case_type=ctype,
            case_type_codes=w.codes("crown_court", "xhibit_flatfile", "case_type"),
        ),
    )


@dataclass
class CaseLinks:
    """True case links: magistrates' row `mag_rows[i]` became Crown Court row `crown_rows[i]`."""

    mag_rows: np.ndarray
    crown_rows: np.ndarray
    case_type: np.ndarray
    case_type_codes: tuple[str, ...]


def ids_null(s: pl.Series, mask: np.ndarray) -> pl.Series:
    if not mask.any():
        return s
    return pl.select(pl.when(pl.Series(mask)).then(None).otherwise(s)).to_series()


def _digit_slip(values: np.ndarray, width: int, rng) -> np.ndarray:
    values = np.asarray(values, dtype=np.int64)
    k = rng.integers(0, width, len(values))
    place = 10**k
    digit = values // place % 10
    new = (digit + rng.integers(1, 10, len(values))) % 10
    return values + (new - digit) * place
