"""The synthetic population: who exists, their true identity, and which systems they meet.

People are laid out by segment (offenders, family-court-only, civil-only, companies); the
truth `person_id` is a random permutation so that ids carry no segment information.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import polars as pl

from datafirst_assets.simulate import identifiers as ids
from datafirst_assets.simulate import names as N
from datafirst_assets.simulate.config import SimulationConfig
from datafirst_assets.simulate.util import FAR_DAY, NULL_DAY, YEAR, StringTable, categorical, to_day, ymd
from datafirst_assets.simulate.vocab import Vocab
from datafirst_assets.sources.registry import ETHNIC_GROUP, ETHNICITY_CODES

N_ADDRESS_SLOTS = 6
HISTORY_START = to_day("2008-01-01")

# Ethnicity mixes (order of ETHNICITY_CODES: W1 W2 W9 M1 M2 M3 M9 A1 A2 A3 A9 B1 B2 B9 O1 O9)
CRIMINAL_ETHNICITY = np.array(
    [0.72, 0.01, 0.06, 0.02, 0.006, 0.006, 0.008, 0.02, 0.03, 0.01, 0.015, 0.035, 0.025, 0.01, 0.004, 0.02]
)
GENERAL_ETHNICITY = np.array(
    [
        0.78,
        0.01,
        0.05,
        0.01,
        0.004,
        0.008,
        0.006,
        0.026,
        0.02,
        0.008,
        0.015,
        0.011,
        0.018,
        0.005,
        0.007,
        0.012,
    ]
)

# P(name origin | ethnicity); columns follow names.NAME_ORIGINS
_O = {o: i for i, o in enumerate(N.NAME_ORIGINS)}
_ORIGIN_GIVEN_ETH = {
    "W1": {"anglo": 0.99, "east_european": 0.01},
    "W2": {"anglo": 1.0},
    "W9": {"anglo": 0.22, "east_european": 0.73, "somali_arabic": 0.05},
    "M1": {"anglo": 0.55, "caribbean": 0.45},
    "M2": {"anglo": 0.55, "west_african": 0.45},
    "M3": {"anglo": 0.6, "south_asian_muslim": 0.2, "south_asian_indic": 0.2},
    "M9": {"anglo": 0.7, "somali_arabic": 0.15, "caribbean": 0.15},
    "A1": {"south_asian_indic": 0.75, "south_asian_muslim": 0.25},
    "A2": {"south_asian_muslim": 1.0},
    "A3": {"south_asian_muslim": 1.0},
    "A9": {"south_asian_muslim": 0.4, "south_asian_indic": 0.3, "east_asian": 0.1, "somali_arabic": 0.2},
    "B1": {"caribbean": 1.0},
    "B2": {"west_african": 0.6, "somali_arabic": 0.35, "anglo": 0.05},
    "B9": {"caribbean": 0.5, "west_african": 0.3, "somali_arabic": 0.2},
    "O1": {"east_asian": 0.9, "anglo": 0.1},
    "O9": {"somali_arabic": 0.6, "east_asian": 0.15, "anglo": 0.25},
}
ORIGIN_GIVEN_ETH = np.zeros((len(ETHNICITY_CODES), len(N.NAME_ORIGINS)))
for _i, _code in enumerate(ETHNICITY_CODES):
    for _o, _p in _ORIGIN_GIVEN_ETH[_code].items():
        ORIGIN_GIVEN_ETH[_i, _O[_o]] = _p
ETHNIC_GROUP_NAMES = tuple(dict.fromkeys(ETHNIC_GROUP.values()))
ETH_GROUP_OF_CODE = np.array([ETHNIC_GROUP_NAMES.index(ETHNIC_GROUP[c[0]]) for c in ETHNICITY_CODES])


@dataclass
class People:
    n: int
    person_id: np.ndarray  # truth id (1..n, permuted)
    is_company: np.ndarray
    segment: np.ndarray  # 0 offender, 1 family only, 2 civil only, 3 company
    sex: np.ndarray  # 0 M, 1 F, -1 company
    dob: np.ndarray
    eth: np.ndarray  # index into ETHNICITY_CODES, -1 company
    origin: np.ndarray  # index into NAME_ORIGINS, -1 company
    fore: np.ndarray
    mid1: np.ndarray
    mid2: np.ndarray
    sur: np.ndarray  # surname at birth / before change
    sur_new: np.ndarray  # surname after change (-1 none)
    sur_change: np.ndarray  # day of the change (FAR_DAY none)
    nick_affinity: np.ndarray
    addr_pc: np.ndarray  # (n, slots) packed postcodes
    addr_line: np.ndarray  # (n, slots) packed address lines
    move_day: np.ndarray  # (n, slots) day each address starts (slot 0: -inf, unused: FAR_DAY)
    pnc_year: np.ndarray
    pnc_serial: np.ndarray
    pnc2_year: np.ndarray
    pnc2_serial: np.ndarray
    cro_year: np.ndarray
    cro_serial: np.ndarray
    company: np.ndarray  # index into company names (-1 people)
    company_names: list[str]
    company_variants: np.ndarray  # (companies, 5) indexes into company_names
    sibling_of: np.ndarray  # offender sibling (index, -1 none) - a hard non-match for linkage
    twin: np.ndarray

    def surname_at(self, p: np.ndarray, day: np.ndarray) -> np.ndarray:
        changed = self.sur_change[p] <= day
        return np.where(changed, self.sur_new[p], self.sur[p])

    def address_slot(self, p: np.ndarray, day: np.ndarray) -> np.ndarray:
        return (self.move_day[p] <= day[:, None]).sum(axis=1) - 1


@dataclass
class Rosters:
    crim: np.ndarray
    crim_t0: np.ndarray
    fam_a: np.ndarray
    fam_b: np.ndarray
    fam_kids: np.ndarray  # (units, 3)
    fam_t0: np.ndarray
    civ: np.ndarray
    civ_t0: np.ndarray
    companies: np.ndarray


def _window(cfg: SimulationConfig, source: str, horizon: int) -> tuple[int, int]:
    start, end = cfg.coverage[source]
    lo = to_day(start)
    hi = min(horizon, to_day(end)) if end else horizon
    return lo, hi


def _draw_names(
    rng,
    vocab: Vocab,
    origin: np.ndarray,
    sex: np.ndarray,
    idx: np.ndarray,
    fore: np.ndarray,
    mid1: np.ndarray,
    mid2: np.ndarray,
    sur: np.ndarray,
    concentration: float = 1.0,
) -> None:
    def weights(p: np.ndarray) -> np.ndarray:  # more mass on the common names when concentration > 1
        q = p**concentration
        return q / q.sum()

    for oi, o in enumerate(N.NAME_ORIGINS):
        m_o = idx[origin[idx] == oi]
        if len(m_o) == 0:
            continue
        pool, p = vocab.surname_pools[o]
        sur[m_o] = pool[rng.choice(len(pool), size=len(m_o), p=weights(p))]
        r1, r2 = N.MIDDLE_NAME_RATES[o]
        for si, s in enumerate("MF"):
            m = m_o[sex[m_o] == si]
            if len(m) == 0:
                continue
            pool, p = vocab.forename_pools[(o, s)]
            p = weights(p)
            fore[m] = pool[rng.choice(len(pool), size=len(m), p=p)]
            u = rng.random(len(m))
            c1 = pool[rng.choice(len(pool), size=len(m), p=p)]
            c2 = pool[rng.choice(len(pool), size=len(m), p=p)]
            mid1[m] = np.where((u < r1) & (c1 != fore[m]), c1, -1)
            mid2[m] = np.where((u < r2) & (mid1[m] >= 0) & (c2 != c1) & (c2 != fore[m]), c2, -1)


def _company_names(rng, n: int) -> tuple[list[str], np.ndarray]:
    pre, trade, suf = N.COMPANY_PREFIXES, N.COMPANY_TRADES, N.COMPANY_SUFFIXES
    space = len(pre) * len(trade) * len(suf)
    codes = ids.affine_permutation(np.arange(n), space, salt=11)
    table = StringTable()
    names, add = table.strings, table.add
    variants = np.zeros((n, 5), dtype=np.int32)

    for i, c in enumerate(codes.tolist()):
        p, t, s = pre[c % len(pre)], trade[c // len(pre) % len(trade)], suf[c // (len(pre) * len(trade))]
        stem = f"{p} {t}"
        if i >= space:
            stem = f"{p} {t} {i // space + 1}"
        base = f"{stem} {s}"
        alt_suffix = {
            "Limited": "Ltd",
            "Ltd": "Limited",
            "PLC": "P.L.C.",
            "LLP": "L.L.P.",
            "(UK) Limited": "(UK) Ltd",
            "Group Ltd": "Group Limited",
        }[s]
        # a keyboard slip inside the stem
        k = 1 + (c * 7) % (len(stem) - 2)
        typo = stem[:k] + stem[k + 1] + stem[k] + stem[k + 2 :] + " " + s
        variants[i] = [
            add(base),
            add(f"{stem} {alt_suffix}"),
            add(stem),
            add(typo),
            add(base.replace(" and ", " & ").replace("Homes", "Homes &").rstrip(" &")),
        ]
    return names, variants


def _offender_siblings(rng, cfg: SimulationConfig, crim: np.ndarray, dob: np.ndarray, t0: np.ndarray):
    """Pick offenders who have a sibling among the offenders. Returns (sibling, of whom,
    home: 0 grew up together, 1 still living together, 2 twins living together)."""
    n = len(crim)
    if n < 10 or cfg.offender_sibling_rate <= 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z
    order = np.argsort(dob[crim], kind="stable")
    sorted_dob = dob[crim][order]
    pick = np.flatnonzero(rng.random(n) < cfg.offender_sibling_rate)
    target = dob[crim[pick]] + (rng.choice([-1, 1], len(pick)) * rng.uniform(1, 8, len(pick)) * YEAR).astype(
        np.int64
    )
    j = np.clip(np.searchsorted(sorted_dob, target), 0, n - 1)
    partner = crim[order[j]]
    twins = rng.random(len(pick)) < 0.05
    partner = np.where(
        twins, crim[order[np.clip(np.searchsorted(sorted_dob, dob[crim[pick]]) + 1, 0, n - 1)]], partner
    )
    sib = crim[pick]
    ok = partner != sib
    # a sibling may not itself be copied from (keeps chains one level deep)
    ok &= ~np.isin(partner, sib)
    sib, partner, twins = sib[ok], partner[ok], twins[ok]
    # twins: the younger twin must still be at least 10 at their first case
    ok = ~twins | (t0[sib] - dob[partner] >= 10 * YEAR)
    sib, partner, twins = sib[ok], partner[ok], twins[ok]
    home = np.where(twins, 2, np.where(rng.random(len(sib)) < 0.6, 1, 0))
    return sib, partner, home


def build_population(
    n: int, cfg: SimulationConfig, vocab: Vocab, extract_days: np.ndarray, rng: np.random.Generator
) -> tuple[People, Rosters]:
    """Who exists (offenders, family units, civil-only people, companies), their true identity,
    and which systems they meet. Each step draws from `rng` in turn, so the order is fixed."""
    d = _segments(n, cfg, extract_days)
    _offenders(rng, cfg, d)
    _family_units(rng, cfg, d)
    _civil_only_people(rng, d)
    _names(rng, cfg, vocab, d)
    _addresses(rng, vocab, d)
    _criminal_ids(rng, cfg, d)
    people = _people(rng, d)
    _civil_participants(rng, cfg, d)
    return people, _rosters(d)


class _Draft(SimpleNamespace):
    """The population as it is drawn, step by step (arrays indexed by person; segment sizes,
    coverage windows, rosters). Private to `build_population`."""


def _segments(n: int, cfg: SimulationConfig, extract_days: np.ndarray) -> _Draft:
    """How many offenders, family-court-only people, civil-only people and companies, laid out
    in that order, and the arrays every later step fills in."""
    horizon = int(extract_days[-1])
    mag_lo, mag_hi = _window(cfg, "magistrates", horizon)
    fam_lo, fam_hi = _window(cfg, "family", horizon)
    civ_lo, civ_hi = _window(cfg, "civil", horizon)
    civil_open = civ_hi - civ_lo > 30
    family_open = fam_hi - fam_lo > 30
    if mag_hi - mag_lo <= 30:
        raise ValueError("the magistrates' coverage window must end after it starts (check extract dates)")

    n_co = round(cfg.company_share * n) if civil_open else 0
    if civil_open and n >= 50:
        n_co = max(n_co, 1)
    n_ind = n - n_co
    n_crim = max(1, round(cfg.criminal_share * n_ind))
    n_fam = round(cfg.family_share * n_ind) if family_open else 0
    n_civ = n_ind - n_crim - n_fam if civil_open else 0
    n_crim = n_ind - n_fam - n_civ
    if n_civ > 0 and n_co == 0:
        n_co, n_civ = 1, n_civ - 1

    seg = np.concatenate([np.zeros(n_crim), np.ones(n_fam), np.full(n_civ, 2), np.full(n_co, 3)]).astype(
        np.int8
    )
    crim = np.arange(n_crim)
    companies = np.arange(n - n_co, n)

    sex = np.full(n, -1, dtype=np.int8)
    dob = np.full(n, NULL_DAY, dtype=np.int32)
    eth = np.full(n, -1, dtype=np.int8)
    return _Draft(
        n=n, horizon=horizon, mag_lo=mag_lo, mag_hi=mag_hi, fam_lo=fam_lo, fam_hi=fam_hi, civ_lo=civ_lo,
        civ_hi=civ_hi, civil_open=civil_open, n_co=n_co, n_crim=n_crim, n_fam=n_fam, n_civ=n_civ, seg=seg,
        crim=crim, companies=companies, sex=sex, dob=dob, eth=eth,
    )


def _offenders(rng, cfg: SimulationConfig, d: _Draft) -> None:
    """Offenders: first case in the magistrates' window, sex, age, ethnicity, siblings."""
    mag_lo, mag_hi, n_crim, crim, sex, dob, eth = d.mag_lo, d.mag_hi, d.n_crim, d.crim, d.sex, d.dob, d.eth
    # ---- offenders ----
    crim_t0 = (mag_lo + rng.random(n_crim) * (mag_hi - mag_lo)).astype(np.int32)
    sex[crim] = (rng.random(n_crim) < cfg.criminal_female_share).astype(np.int8)
    youth = rng.random(n_crim) < 0.08
    age = np.where(youth, 10 + rng.random(n_crim) * 8, 18 + np.minimum(rng.gamma(1.5, 9.0, n_crim), 62))
    dob[crim] = (crim_t0 - age * YEAR).astype(np.int32)
    eth[crim] = categorical(rng, CRIMINAL_ETHNICITY, n_crim)
    # siblings among offenders: same family surname and home, born 1-8 years apart (some twins)
    sib, sib_of, sib_home = _offender_siblings(rng, cfg, crim, dob, crim_t0)
    eth[sib] = eth[sib_of]
    dob[sib] = np.where(sib_home == 2, dob[sib_of], dob[sib])  # twins share a birthday
    d.crim_t0, d.sib, d.sib_of, d.sib_home = crim_t0, sib, sib_of, sib_home


def _family_units(rng, cfg: SimulationConfig, d: _Draft) -> None:
    """Family units (adult A, adult B, up to three children): new people, or offenders as
    applicant or respondent; children born before the unit's first case."""
    n_fam, n_crim, fam_lo, fam_hi, crim, sex = d.n_fam, d.n_crim, d.fam_lo, d.fam_hi, d.crim, d.sex
    dob, eth = d.dob, d.eth
    # ---- family units (consume exactly n_fam new people) ----
    fam_a = fam_b = np.zeros(0, dtype=np.int64)
    fam_kids = np.zeros((0, 3), dtype=np.int64)
    fam_t0 = np.zeros(0, dtype=np.int32)
    adult_by = dob[crim] + int(18 * YEAR)
    f_pool = crim[(sex[crim] == 1) & (adult_by < fam_hi - 365)]
    m_pool = crim[(sex[crim] == 0) & (adult_by < fam_hi - 365)]
    if n_fam > 0:
        m = n_fam  # candidate units (more than needed)
        kids_n = categorical(rng, np.array([0.25, 0.35, 0.25, 0.15]), m)
        has_b = rng.random(m) < cfg.family_second_adult_rate
        a_female = rng.random(m) < 0.75
        a_crim = (rng.random(m) < cfg.family_applicant_criminal_overlap) & (
            np.where(a_female, len(f_pool), len(m_pool)) > 0
        )
        b_female = np.where(rng.random(m) < 0.95, ~a_female, a_female)
        b_crim = (
            has_b
            & (rng.random(m) < cfg.family_respondent_criminal_overlap)
            & (np.where(b_female, len(f_pool), len(m_pool)) > 0)
        )
        new = kids_n + (~a_crim) + (has_b & ~b_crim)
        cum = np.cumsum(new)
        take = int(np.searchsorted(cum, n_fam, side="right"))
        used = int(cum[take - 1]) if take else 0
        rest = n_fam - used
        kids_n = np.concatenate([kids_n[:take], np.zeros(rest, np.int64)])
        has_b = np.concatenate([has_b[:take], np.zeros(rest, bool)])
        a_female = np.concatenate([a_female[:take], np.ones(rest, bool)])
        a_crim = np.concatenate([a_crim[:take], np.zeros(rest, bool)])
        b_female = np.concatenate([b_female[:take], np.zeros(rest, bool)])
        b_crim = np.concatenate([b_crim[:take], np.zeros(rest, bool)])
        u = len(kids_n)
        # allocate new person indexes unit by unit: A, B, kids
        new_a = ~a_crim
        new_b = has_b & ~b_crim
        counts = new_a.astype(np.int64) + new_b + kids_n
        start = n_crim + np.cumsum(counts) - counts
        fam_a = np.where(new_a, start, -1)
        fam_b = np.where(new_b, start + new_a, -1)
        kid_start = start + new_a + new_b
        fam_kids = np.where(
            np.arange(3)[None, :] < kids_n[:, None], kid_start[:, None] + np.arange(3)[None, :], -1
        )

        def pick(pool_f, pool_m, female, k):
            out = np.empty(k, dtype=np.int64)
            if k == 0:
                return out
            rf = rng.integers(0, max(1, len(pool_f)), k)
            rm = rng.integers(0, max(1, len(pool_m)), k)
            out[:] = np.where(
                female,
                pool_f[np.minimum(rf, len(pool_f) - 1)] if len(pool_f) else -1,
                pool_m[np.minimum(rm, len(pool_m) - 1)] if len(pool_m) else -1,
            )
            return out

        fam_a = np.where(a_crim, pick(f_pool, m_pool, a_female, u), fam_a)
        fam_b = np.where(b_crim, pick(f_pool, m_pool, b_female, u), fam_b)
        # first case: offenders in the unit must be adults by then
        lo = np.full(u, fam_lo, dtype=np.int64)
        lo = np.where(a_crim, np.maximum(lo, dob[np.maximum(fam_a, 0)] + int(18 * YEAR)), lo)
        lo = np.where(b_crim, np.maximum(lo, dob[np.maximum(fam_b, 0)] + int(18 * YEAR)), lo)
        lo = np.minimum(lo, fam_hi - 1)
        fam_t0 = (lo + rng.random(u) * (fam_hi - lo)).astype(np.int32)
        # new adults
        ia = fam_a[new_a]
        sex[ia] = a_female[new_a].astype(np.int8)
        age_a = 19 + np.minimum(rng.gamma(2.2, 5.0, u), 50)
        dob[ia] = (fam_t0[new_a] - age_a[new_a] * YEAR).astype(np.int32)
        eth[ia] = categorical(rng, GENERAL_ETHNICITY, len(ia))
        ib = fam_b[new_b]
        sex[ib] = b_female[new_b].astype(np.int8)
        a_age_now = (fam_t0 - dob[np.maximum(fam_a, 0)]) / YEAR
        age_b = np.clip(a_age_now + rng.normal(2.0, 4.0, u), 18, 80)
        dob[ib] = (fam_t0[new_b] - age_b[new_b] * YEAR).astype(np.int32)
        same_eth = rng.random(u) < 0.85
        eth[ib] = np.where(same_eth[new_b], eth[fam_a[new_b]], categorical(rng, GENERAL_ETHNICITY, u)[new_b])
        # children: born before the first case, twins share a birthday
        kid_mask = fam_kids >= 0
        kid_age = rng.random((u, 3)) * 16
        twin = rng.random((u, 3)) < cfg.twin_rate
        twin[:, 0] = False
        kid_age[:, 1:] = np.where(twin[:, 1:], kid_age[:, :-1], kid_age[:, 1:])
        kid_dob = (fam_t0[:, None] - kid_age * YEAR).astype(np.int32)
        kk = fam_kids[kid_mask]
        dob[kk] = kid_dob[kid_mask]
        sex[kk] = (rng.random(len(kk)) < 0.5).astype(np.int8)
        eth[kk] = np.broadcast_to(eth[fam_a][:, None], (u, 3))[kid_mask]
    d.fam_a, d.fam_b, d.fam_kids, d.fam_t0 = fam_a, fam_b, fam_kids, fam_t0


def _civil_only_people(rng, d: _Draft) -> None:
    n_crim, n_fam, n_civ, civ_lo, civ_hi, sex = d.n_crim, d.n_fam, d.n_civ, d.civ_lo, d.civ_hi, d.sex
    dob, eth = d.dob, d.eth
    # ---- civil-only people ----
    civ_new = np.arange(n_crim + n_fam, n_crim + n_fam + n_civ)
    civ_t0_new = (civ_lo + rng.random(n_civ) * max(1, civ_hi - civ_lo)).astype(np.int32)
    sex[civ_new] = (rng.random(n_civ) < 0.5).astype(np.int8)
    age = 18 + np.minimum(rng.gamma(2.2, 9.0, n_civ), 70)
    dob[civ_new] = (civ_t0_new - age * YEAR).astype(np.int32)
    eth[civ_new] = categorical(rng, GENERAL_ETHNICITY, n_civ)
    d.civ_new, d.civ_t0_new = civ_new, civ_t0_new


def _names(rng, cfg: SimulationConfig, vocab: Vocab, d: _Draft) -> None:
    """Name origin from ethnicity, names from the origin's pools; children take a parent's
    surname; surname changes (marriage, divorce, deed poll)."""
    n, n_co, n_crim, horizon, eth, sex = d.n, d.n_co, d.n_crim, d.horizon, d.eth, d.sex
    dob, sib, sib_of, fam_a, fam_b, fam_kids = d.dob, d.sib, d.sib_of, d.fam_a, d.fam_b, d.fam_kids
    fam_t0 = d.fam_t0
    # ---- names ----
    people_idx = np.arange(n - n_co)
    origin = np.full(n, -1, dtype=np.int8)
    origin[people_idx] = categorical(rng, ORIGIN_GIVEN_ETH[eth[people_idx]])
    if len(fam_a):
        kid_mask = fam_kids >= 0
        origin[fam_kids[kid_mask]] = np.broadcast_to(origin[fam_a][:, None], fam_kids.shape)[kid_mask]
    fore = np.full(n, -1, dtype=np.int32)
    mid1 = np.full(n, -1, dtype=np.int32)
    mid2 = np.full(n, -1, dtype=np.int32)
    sur = np.full(n, -1, dtype=np.int32)
    origin[sib] = origin[sib_of]
    _draw_names(rng, vocab, origin, sex, people_idx, fore, mid1, mid2, sur, cfg.name_concentration)
    sur[sib] = sur[sib_of]
    sur_new = np.full(n, -1, dtype=np.int32)
    sur_change = np.full(n, FAR_DAY, dtype=np.int32)
    if len(fam_a):
        # children take a parent's surname; a child's origin follows the mother's side
        kid_mask = fam_kids >= 0
        kid_from_b = (rng.random(fam_kids.shape) < 0.6) & (fam_b >= 0)[:, None]
        parent_sur = np.where(kid_from_b, sur[np.maximum(fam_b, 0)][:, None], sur[fam_a][:, None])
        sur[fam_kids[kid_mask]] = parent_sur[kid_mask]
        # a new mother living with a new partner may carry his surname (married before or during)
        wed = (fam_a >= n_crim) & (fam_b >= 0) & (sex[fam_a] == 1) & (rng.random(len(fam_a)) < 0.5)
        wa = fam_a[wed]
        sur_new[wa] = sur[fam_b[wed]]
        sur_change[wa] = (
            fam_t0[wed] - rng.random(len(wa)) * 10 * YEAR + 2 * YEAR * (rng.random(len(wa)) < 0.3)
        ).astype(np.int32)
    # surname changes (marriage, divorce, deed poll) within the window, mostly women
    adults = people_idx[(sur_new[people_idx] < 0)]
    rate = np.where(sex[adults] == 1, cfg.surname_change_rate_female, cfg.surname_change_rate_male)
    chg = adults[rng.random(len(adults)) < rate]
    if len(chg):
        lo = np.maximum(dob[chg] + int(18 * YEAR), HISTORY_START)
        ok = lo < horizon
        chg, lo = chg[ok], lo[ok]
        sur_new[chg] = vocab.surname_pools["anglo"][0][
            rng.choice(len(vocab.surname_pools["anglo"][0]), size=len(chg), p=vocab.surname_pools["anglo"][1])
        ]
        same = sur_new[chg] == sur[chg]
        sur_new[chg[same]] = -1
        sur_change[chg] = np.where(same, FAR_DAY, lo + rng.random(len(chg)) * (horizon - lo)).astype(np.int32)
    nick_affinity = rng.random(n) < cfg.nickname_affinity_rate
    d.origin, d.fore, d.mid1, d.mid2, d.sur, d.sur_new = origin, fore, mid1, mid2, sur, sur_new
    d.sur_change, d.nick_affinity = sur_change, nick_affinity


def _addresses(rng, vocab: Vocab, d: _Draft) -> None:
    """Up to six addresses each (moves mostly local); siblings and family units share homes."""
    n, n_crim, horizon, seg, companies, sib = d.n, d.n_crim, d.horizon, d.seg, d.companies, d.sib
    sib_of, sib_home, fam_a, fam_b, fam_kids = d.sib_of, d.sib_home, d.fam_a, d.fam_b, d.fam_kids
    # ---- addresses ----
    slots = N_ADDRESS_SLOTS
    years = (horizon - HISTORY_START) / YEAR
    move_rate = np.where(seg == 0, 0.20, 0.12)
    n_moves = np.minimum(rng.poisson(move_rate * years), slots - 1)
    n_moves[companies] = 0
    u = rng.random((n, slots - 1))
    u[np.arange(slots - 1)[None, :] >= n_moves[:, None]] = np.inf
    u.sort(axis=1)
    move_day = np.full((n, slots), FAR_DAY, dtype=np.int32)
    move_day[:, 0] = np.iinfo(np.int32).min + 1
    finite = np.isfinite(u)
    move_day[:, 1:][finite] = (HISTORY_START + u[finite] * (horizon - HISTORY_START)).astype(np.int32)
    addr_pc = np.zeros((n, slots), dtype=np.int64)
    addr_pc[:, 0] = ids.random_postcodes(rng, n)
    for s in range(1, slots):
        area_prev = addr_pc[:, s - 1] // 1_000_000
        local = rng.random(n) < 0.7
        area = np.where(
            local, area_prev, rng.choice(len(ids.POSTCODE_AREAS), size=n, p=ids.POSTCODE_AREA_WEIGHTS)
        )
        addr_pc[:, s] = ids.random_postcodes(rng, n, area)
    n_streets = len(vocab.streets)
    house = np.minimum(1 + rng.geometric(0.03, (n, slots)), 999)
    flat = np.where(rng.random((n, slots)) < 0.12, rng.integers(1, 40, (n, slots)), 0)
    flat[companies] = 0
    addr_line = flat * 10**8 + house * 10**5 + rng.integers(0, n_streets, (n, slots))
    together = sib[sib_home >= 1]
    addr_pc[together] = addr_pc[sib_of[sib_home >= 1]]
    addr_line[together] = addr_line[sib_of[sib_home >= 1]]
    move_day[together] = move_day[sib_of[sib_home >= 1]]
    apart = sib[sib_home == 0]
    addr_pc[apart, 0] = addr_pc[sib_of[sib_home == 0], 0]  # grew up in the same home
    addr_line[apart, 0] = addr_line[sib_of[sib_home == 0], 0]
    if len(fam_a):
        # children live with the first adult; a second adult often shares the home
        kid_mask = fam_kids >= 0
        src = np.broadcast_to(fam_a[:, None], fam_kids.shape)[kid_mask]
        dst = fam_kids[kid_mask]
        new_b = fam_b >= n_crim
        cohab = new_b & (rng.random(len(fam_b)) < 0.6)
        src = np.concatenate([src, fam_a[cohab]])
        dst = np.concatenate([dst, fam_b[cohab]])
        keep = dst >= n_crim  # never overwrite an offender's own history
        src, dst = src[keep], dst[keep]
        addr_pc[dst] = addr_pc[src]
        addr_line[dst] = addr_line[src]
        move_day[dst] = move_day[src]
    d.addr_pc, d.addr_line, d.move_day = addr_pc, addr_line, move_day


def _criminal_ids(rng, cfg: SimulationConfig, d: _Draft) -> None:
    """PNC ids (some people with two) and CRO numbers of offenders."""
    n, n_crim, crim, crim_t0, dob = d.n, d.n_crim, d.crim, d.crim_t0, d.dob
    # ---- PNC and CRO (offenders) ----
    pnc_year = np.full(n, -1, dtype=np.int32)
    pnc_serial = np.full(n, -1, dtype=np.int64)
    pnc2_year = np.full(n, -1, dtype=np.int32)
    pnc2_serial = np.full(n, -1, dtype=np.int64)
    cro_year = np.full(n, -1, dtype=np.int32)
    cro_serial = np.full(n, -1, dtype=np.int64)
    t0_year, _, _ = ymd(crim_t0)
    dob_year, _, _ = ymd(dob[crim])
    earlier = rng.random(n_crim) < 0.55
    first_arrest = np.where(
        earlier, np.maximum(dob_year + 10, t0_year - rng.integers(0, 16, n_crim)), t0_year
    )
    pnc_year[crim] = np.minimum(first_arrest, t0_year)
    pnc_serial[crim] = ids.affine_permutation(np.arange(n_crim), 10_000_000, salt=3)
    dup = crim[rng.random(n_crim) < cfg.pnc_duplicate_rate]
    pnc2_year[dup] = np.maximum(pnc_year[dup], t0_year[dup])
    pnc2_serial[dup] = ids.affine_permutation(np.arange(n_crim, n_crim + len(dup)), 10_000_000, salt=3)
    has_cro = crim[rng.random(n_crim) < 0.6]
    cro_year[has_cro] = np.minimum(pnc_year[has_cro] + rng.integers(0, 4, len(has_cro)), t0_year[has_cro] + 1)
    cro_serial[has_cro] = ids.affine_permutation(np.arange(len(has_cro)), 1_000_000, salt=5)
    d.pnc_year, d.pnc_serial, d.pnc2_year, d.pnc2_serial = pnc_year, pnc_serial, pnc2_year, pnc2_serial
    d.cro_year, d.cro_serial = cro_year, cro_serial


def _people(rng, d: _Draft) -> People:
    """Company names, the truth `person_id` (a random permutation) and the `People` record."""
    n, n_co, companies, seg, sex, dob = d.n, d.n_co, d.companies, d.seg, d.sex, d.dob
    eth, origin, fore, mid1, mid2, sur = d.eth, d.origin, d.fore, d.mid1, d.mid2, d.sur
    sur_new, sur_change, nick_affinity, addr_pc = d.sur_new, d.sur_change, d.nick_affinity, d.addr_pc
    addr_line, move_day = d.addr_line, d.move_day
    pnc_year, pnc_serial, pnc2_year, pnc2_serial = d.pnc_year, d.pnc_serial, d.pnc2_year, d.pnc2_serial
    cro_year, cro_serial = d.cro_year, d.cro_serial
    sib, sib_of, sib_home = d.sib, d.sib_of, d.sib_home
    # ---- companies ----
    company = np.full(n, -1, dtype=np.int32)
    company[companies] = np.arange(n_co)
    company_names, company_variants = _company_names(rng, n_co)

    person_id = (rng.permutation(n) + 1).astype(np.int64)
    sibling_of = np.full(n, -1, dtype=np.int64)
    sibling_of[sib] = sib_of
    twin = np.zeros(n, dtype=bool)
    twin[sib[sib_home == 2]] = True
    twin[sib_of[sib_home == 2]] = True
    people = People(
        n=n,
        person_id=person_id,
        is_company=seg == 3,
        segment=seg,
        sex=sex,
        dob=dob,
        eth=eth,
        origin=origin,
        fore=fore,
        mid1=mid1,
        mid2=mid2,
        sur=sur,
        sur_new=sur_new,
        sur_change=sur_change,
        nick_affinity=nick_affinity,
        addr_pc=addr_pc,
        addr_line=addr_line,
        move_day=move_day,
        pnc_year=pnc_year,
        pnc_serial=pnc_serial,
        pnc2_year=pnc2_year,
        pnc2_serial=pnc2_serial,
        cro_year=cro_year,
        cro_serial=cro_serial,
        company=company,
        company_names=company_names,
        company_variants=company_variants,
        sibling_of=sibling_of,
        twin=twin,
    )
    return people


def _civil_participants(rng, cfg: SimulationConfig, d: _Draft) -> None:
    """Civil-only people plus some offenders and family-court adults, each with a first claim."""
    civ_new, civ_t0_new, civil_open, n_civ = d.civ_new, d.civ_t0_new, d.civil_open, d.n_civ
    n_crim, crim = d.n_crim, d.crim
    fam_a, fam_b, civ_lo, civ_hi, dob = d.fam_a, d.fam_b, d.civ_lo, d.civ_hi, d.dob
    civ = civ_new
    civ_t0 = civ_t0_new
    if civil_open and n_civ > 0:
        extra = []
        k_crim = min(n_crim, round(cfg.civil_criminal_overlap * n_civ))
        if k_crim:
            extra.append(rng.choice(crim, size=k_crim, replace=False))
        fam_adults = (
            np.unique(np.concatenate([fam_a[fam_a >= n_crim], fam_b[fam_b >= n_crim]]))
            if len(fam_a)
            else np.zeros(0, np.int64)
        )
        k_fam = min(len(fam_adults), round(cfg.civil_family_overlap * n_civ))
        if k_fam:
            extra.append(rng.choice(fam_adults, size=k_fam, replace=False))
        if extra:
            ex = np.sort(np.concatenate(extra))
            lo = np.maximum(civ_lo, dob[ex] + int(18 * YEAR))
            ok = lo < civ_hi - 30
            ex, lo = ex[ok], lo[ok]
            t0 = (lo + rng.random(len(ex)) * (civ_hi - lo)).astype(np.int32)
            civ = np.concatenate([civ, ex])
            civ_t0 = np.concatenate([civ_t0, t0])
    d.civ, d.civ_t0 = civ, civ_t0


def _rosters(d: _Draft) -> Rosters:
    rosters = Rosters(
        crim=d.crim,
        crim_t0=d.crim_t0,
        fam_a=d.fam_a,
        fam_b=d.fam_b,
        fam_kids=d.fam_kids,
        fam_t0=d.fam_t0,
        civ=d.civ,
        civ_t0=d.civ_t0,
        companies=d.companies,
    )
    return rosters


def people_truth(people: People, vocab: Vocab, horizon: int) -> pl.DataFrame:
    """One row per simulated person or company, as they truly are (surname as at the last extract)."""
    v = vocab.series

    def nullable(idx):
        s = v.gather(pl.Series(np.maximum(idx, 0).astype(np.int32)))
        return pl.select(pl.when(pl.Series(idx >= 0)).then(s).otherwise(None)).to_series()

    current = np.where(people.sur_change <= horizon, people.sur_new, people.sur)
    mid = pl.select(
        pl.concat_str([nullable(people.mid1), nullable(people.mid2)], separator=" ", ignore_nulls=True)
    ).to_series()
    mid = pl.select(pl.when(mid == "").then(None).otherwise(mid)).to_series()
    eth_codes = pl.Series(list(ETHNICITY_CODES))
    groups = pl.Series([ETHNIC_GROUP[c[0]] for c in ETHNICITY_CODES])
    eth_ok = people.eth >= 0
    eth_i = pl.Series(np.maximum(people.eth, 0).astype(np.int32))
    origins = pl.Series(list(N.NAME_ORIGINS))
    segs = pl.Series(["criminal", "family", "civil", "company"])
    dob = pl.Series(np.where(people.dob == NULL_DAY, 0, people.dob).astype(np.int32)).cast(pl.Date)
    company_names = pl.Series(people.company_names, dtype=pl.Utf8)
    comp = (
        company_names.gather(
            pl.Series(
                people.company_variants[np.maximum(people.company, 0), 0]
                if len(people.company_variants)
                else np.zeros(people.n, np.int32)
            )
        )
        if len(people.company_variants)
        else pl.Series([None] * people.n, dtype=pl.Utf8)
    )
    pnc_ok = people.pnc_year >= 0
    pnc = ids.pnc_strings(np.maximum(people.pnc_year, 0), np.maximum(people.pnc_serial, 0))
    pnc2_ok = people.pnc2_year >= 0
    pnc2 = ids.pnc_strings(np.maximum(people.pnc2_year, 0), np.maximum(people.pnc2_serial, 0))
    cro_ok = people.cro_year >= 0
    cro = ids.cro_strings(np.maximum(people.cro_year, 0), np.maximum(people.cro_serial, 0))
    df = pl.DataFrame(
        {
            "person_id": people.person_id,
            "forename": nullable(people.fore),
            "middle_names": mid,
            "surname": nullable(current),
            "birth_surname": nullable(people.sur),
            "surname_change_date": pl.Series(
                np.where(people.sur_change < FAR_DAY, people.sur_change, 0).astype(np.int32)
            ).cast(pl.Date),
            "dob": dob,
            "sex": pl.Series(np.array(["M", "F", ""])[people.sex]),
            "ethnicity": eth_codes.gather(eth_i),
            "ethnic_group": groups.gather(eth_i),
            "name_origin": origins.gather(pl.Series(np.maximum(people.origin, 0).astype(np.int32))),
            "is_company": people.is_company,
            "company_name": comp,
            "segment": segs.gather(pl.Series(people.segment.astype(np.int32))),
            "pnc": pnc,
            "pnc_alternate": pnc2,
            "cro": cro,
            "sibling_of": pl.Series(
                np.where(people.sibling_of >= 0, people.person_id[np.maximum(people.sibling_of, 0)], 0)
            ),
            "twin": people.twin,
        }
    )
    df = df.with_columns(
        pl.when(pl.Series(people.sur_change < FAR_DAY)).then(pl.col("surname_change_date")).otherwise(None),
        pl.when(pl.Series(people.dob != NULL_DAY)).then(pl.col("dob")).otherwise(None),
        pl.when(pl.col("sex") == "").then(None).otherwise(pl.col("sex")).alias("sex"),
        pl.when(pl.Series(eth_ok)).then(pl.col("ethnicity")).otherwise(None),
        pl.when(pl.Series(eth_ok)).then(pl.col("ethnic_group")).otherwise(None),
        pl.when(pl.Series(people.origin >= 0)).then(pl.col("name_origin")).otherwise(None),
        pl.when(pl.Series(people.is_company)).then(pl.col("company_name")).otherwise(None),
        pl.when(pl.Series(pnc_ok)).then(pl.col("pnc")).otherwise(None),
        pl.when(pl.Series(pnc2_ok)).then(pl.col("pnc_alternate")).otherwise(None),
        pl.when(pl.Series(cro_ok)).then(pl.col("cro")).otherwise(None),
        pl.when(pl.Series(people.sibling_of >= 0)).then(pl.col("sibling_of")).otherwise(None),
    )
    return df.sort("person_id")


__all__ = [
    "ETHNIC_GROUP_NAMES",
    "ETH_GROUP_OF_CODE",
    "People",
    "Rosters",
    "build_population",
    "people_truth",
]
