"""How a source system records a person at an event: the true identity plus that system's errors.

`Recorder(people, cfg, vocab, source).record(person_idx, event_day, rng)` returns the fields as
recorded (still as codes: vocabulary indexes, days, packed postcodes), all vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from datafirst_assets.simulate import identifiers as ids
from datafirst_assets.simulate import names as N
from datafirst_assets.simulate.config import SimulationConfig
from datafirst_assets.simulate.population import ETH_GROUP_OF_CODE, ETHNIC_GROUP_NAMES, People
from datafirst_assets.simulate.util import NULL_DAY, YEAR, categorical, digit_slip, from_ymd, ymd
from datafirst_assets.simulate.vocab import N_TYPOS, Vocab
from datafirst_assets.sources.registry import ETHNICITY_CODES

SEX_UNKNOWN = ("U", "Unknown", "N", "0", None)
SEX_UNKNOWN_P = np.array([0.35, 0.15, 0.1, 0.1, 0.3])
ETH_UNKNOWN = ("NS", "Z_Dummy", "ZZ", "99", None)
ETH_UNKNOWN_P = np.array([0.45, 0.15, 0.1, 0.05, 0.25])
ETH_VALUES: tuple[str | None, ...] = (*ETHNICITY_CODES, *ETH_UNKNOWN)
AGE_BANDS = ("under_18", "18_24", "25_64", "65_plus")
JUNK_P = np.array([0.4, 0.2, 0.15, 0.1, 0.1, 0.05])

# codes of the same ethnic group (for mis-recording within a group)
_SAME_GROUP = [
    np.array([j for j, c in enumerate(ETHNICITY_CODES) if c[0] == code[0] and c != code])
    for code in ETHNICITY_CODES
]


def age_band(age_years: np.ndarray) -> np.ndarray:
    return np.select([age_years < 18, age_years < 25, age_years < 65], [0, 1, 2], 3).astype(np.int8)


@dataclass
class Recorded:
    n: int
    fore: np.ndarray
    mid1: np.ndarray
    mid2: np.ndarray
    sur: np.ndarray
    style: np.ndarray  # 0 title, 1 upper, 2 lower
    noise: np.ndarray  # 0 none, 1 leading space, 2 trailing space (forename); 3, 4 (surname)
    dob: np.ndarray
    sex: np.ndarray  # 0 M, 1 F, 2+ SEX_UNKNOWN
    eth: np.ndarray  # index into ETH_VALUES
    postcode: np.ndarray  # packed, -1 missing
    pc_nospace: np.ndarray
    pc_lower: np.ndarray
    address: np.ndarray  # packed, -1 missing, -2 no fixed abode
    addr_abbr: np.ndarray
    pnc: pl.Series
    cro: pl.Series


def _pick(rng: np.random.Generator, n: int, probs: list[np.ndarray]) -> np.ndarray:
    """Mutually exclusive outcome per row: index of the first event hit, len(probs) for none."""
    u = rng.random(n)
    out = np.full(n, len(probs), dtype=np.int8)
    acc = np.zeros(n)
    for j, p in enumerate(probs):
        acc = acc + p
        out[(out == len(probs)) & (u < acc)] = j
    return out


def _phonetic_or_typo(vocab: Vocab, names: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Each name's phonetic variant (``j`` picks one) where it has any, else a typo."""
    phon_n = vocab.phon_n[names]
    return np.where(phon_n > 0, vocab.phon[names, j % np.maximum(phon_n, 1)], vocab.typo[names, j % N_TYPOS])


class Recorder:
    def __init__(self, people: People, cfg: SimulationConfig, vocab: Vocab, source: str):
        self.people = people
        self.cfg = cfg
        self.vocab = vocab
        self.source = source
        self.profile = cfg.profile(source)

    # ----------------------------------------------------------------------------------
    def _rate_fn(self, p: np.ndarray, day: np.ndarray):
        people, prof = self.people, self.profile
        age = (day - people.dob[p]) / YEAR
        groups = {
            "name_origin": (people.origin[p], N.NAME_ORIGINS),
            "sex": (people.sex[p], ("M", "F")),
            "ethnic_group": (
                np.where(people.eth[p] >= 0, ETH_GROUP_OF_CODE[np.maximum(people.eth[p], 0)], -1),
                ETHNIC_GROUP_NAMES,
            ),
            "age_band": (np.where(people.dob[p] == NULL_DAY, -1, age_band(age)), AGE_BANDS),
        }
        n = len(p)
        mults = self.cfg.subgroup_multipliers

        def rate(name: str) -> np.ndarray:
            base = getattr(prof, name)
            if base <= 0:
                return np.zeros(n)
            r = np.full(n, float(base))
            for dim, (gidx, gnames) in groups.items():
                table = mults.get(dim)
                if not table:
                    continue
                m = np.array([table.get(g, {}).get(name, 1.0) for g in gnames] + [1.0])
                if (m != 1.0).any():
                    r *= m[gidx]
            return np.minimum(r, 0.95)

        return rate

    # ----------------------------------------------------------------------------------
    def record(
        self, p: np.ndarray, day: np.ndarray, rng: np.random.Generator, criminal_ids: bool = True
    ) -> Recorded:
        """How one system recorded people `p` on days `day`: names, date of birth, sex,
        ethnicity, address and (criminal systems) PNC / CRO, each with this system's errors."""
        p = np.asarray(p, dtype=np.int64)
        day = np.asarray(day, dtype=np.int64)
        n = len(p)
        rate = self._rate_fn(p, day)
        fore, mid1, mid2, sur, style, noise = self._names(p, day, rng, rate)
        dob_rec = self._date_of_birth(p, rng, rate)
        sex, eth = self._sex_and_ethnicity(p, rng, rate)
        pc, addr, unf, lower, abbr = self._address(p, day, rng, rate)

        # ---------------- PNC / CRO ----------------
        if criminal_ids:
            pnc, cro = self._criminal_ids(p, rng, rate)
        else:
            pnc = cro = pl.Series([None] * n, dtype=pl.Utf8)

        return Recorded(
            n=n,
            fore=fore.astype(np.int32),
            mid1=mid1.astype(np.int32),
            mid2=mid2.astype(np.int32),
            sur=sur.astype(np.int32),
            style=style,
            noise=noise,
            dob=dob_rec,
            sex=sex,
            eth=eth.astype(np.int16),
            postcode=pc,
            pc_nospace=unf & ~lower,
            pc_lower=lower,
            address=addr,
            addr_abbr=abbr,
            pnc=pnc,
            cro=cro,
        )

    def _names(self, p: np.ndarray, day: np.ndarray, rng: np.random.Generator, rate):
        """(forename, middle names, surname, letter case, whitespace noise): stale surnames,
        promoted middle names, nicknames, phonetic variants, typos, initials, swaps."""
        n = len(p)
        people, vocab, prof = self.people, self.vocab, self.profile

        # ---------------- names ----------------
        F = people.fore[p].copy()
        M1 = people.mid1[p].copy()
        M2 = people.mid2[p].copy()
        S = people.surname_at(p, day)
        changed = people.sur_change[p] <= day
        stale = changed & (rng.random(n) < rate("surname_stale"))
        S = np.where(stale, people.sur[p], S)

        Fs = np.maximum(F, 0)
        has_mid = M1 >= 0
        nick_ok = vocab.nick_n[Fs] > 0
        nick_rate = rate("forename_nickname") * np.where(people.nick_affinity[p], 5.0, 0.55) * nick_ok
        ev = _pick(
            rng,
            n,
            [
                rate("middle_promoted") * has_mid,
                nick_rate,
                rate("forename_phonetic"),
                rate("forename_typo"),
                rate("forename_initial"),
            ],
        )
        ev[rng.random(n) < rate("forename_missing")] = 6  # missingness independent of errors
        fore = F.copy()
        mid1 = M1.copy()
        prom = ev == 0
        fore[prom] = M1[prom]
        mid1[prom] = F[prom]
        j4 = rng.integers(0, 1 << 30, n)
        nk = ev == 1
        fore[nk] = vocab.nick[Fs[nk], j4[nk] % np.maximum(vocab.nick_n[Fs[nk]], 1)]
        ph = ev == 2
        fore[ph] = _phonetic_or_typo(vocab, Fs[ph], j4[ph])
        ty = ev == 3
        fore[ty] = vocab.typo[Fs[ty], j4[ty] % N_TYPOS]
        ini = ev == 4
        fore[ini] = vocab.initial[Fs[ini]]
        fore[ev == 6] = -1
        fore[F < 0] = -1
        mid2 = M2.copy()
        drop = has_mid & (rng.random(n) < rate("middle_dropped"))
        mid1[drop] = -1
        mid2[drop] = -1

        Ss = np.maximum(S, 0)
        db = vocab.db_first[Ss] >= 0
        part = db & (rng.random(n) < rate("double_barrel_partial"))
        S = np.where(part, np.where(rng.random(n) < 0.6, vocab.db_first[Ss], vocab.db_second[Ss]), S)
        Ss = np.maximum(S, 0)
        ev = _pick(rng, n, [rate("surname_phonetic"), rate("surname_typo")])
        ev[rng.random(n) < rate("surname_missing")] = 3
        sur = S.copy()
        j5 = rng.integers(0, 1 << 30, n)
        ph = ev == 0
        sur[ph] = _phonetic_or_typo(vocab, Ss[ph], j5[ph])
        ty = ev == 1
        sur[ty] = vocab.typo[Ss[ty], j5[ty] % N_TYPOS]
        sur[ev == 3] = -1
        sur[S < 0] = -1

        swap = (rng.random(n) < rate("name_swap")) & (fore >= 0) & (sur >= 0)
        fore[swap], sur[swap] = sur[swap], fore[swap].copy()
        ascii_only = rng.random(n) < rate("diacritics_dropped")
        for names in (fore, mid1, mid2, sur):
            names[ascii_only] = np.where(names[ascii_only] >= 0, vocab.ascii_of[np.maximum(names[ascii_only], 0)],
                                         names[ascii_only])

        if prof.name_case == "upper":
            style = np.ones(n, dtype=np.int8)
        elif prof.name_case == "title":
            style = np.zeros(n, dtype=np.int8)
        else:
            style = categorical(rng, np.array([0.8, 0.17, 0.03]), n).astype(np.int8)
        noise = np.where(rng.random(n) < rate("whitespace_noise"), rng.integers(1, 5, n), 0).astype(np.int8)
        return fore, mid1, mid2, sur, style, noise

    def _date_of_birth(self, p: np.ndarray, rng: np.random.Generator, rate) -> np.ndarray:
        """Missing, placeholder (1 January), day and month swapped, or a near miss."""
        n = len(p)
        people = self.people

        # ---------------- date of birth ----------------
        dob = people.dob[p].astype(np.int64)
        known = dob != NULL_DAY
        y, m, d = ymd(np.where(known, dob, 0))
        swappable = (d <= 12) & (d != m)
        ev = 1 + _pick(rng, n, [rate("dob_placeholder"), rate("dob_day_month_swap"), rate("dob_near_miss")])
        ev[rng.random(n) < rate("dob_missing")] = 0
        out = dob.copy()
        out[ev == 0] = NULL_DAY
        ph = ev == 1
        out[ph] = from_ymd(y[ph], np.ones(ph.sum()), np.ones(ph.sum()))
        sw = (ev == 2) & swappable
        out[sw] = from_ymd(y[sw], d[sw], m[sw])
        near = (ev == 3) | ((ev == 2) & ~swappable)
        kind = categorical(rng, np.array([0.35, 0.25, 0.15, 0.25]), n)
        sign = np.where(rng.random(n) < 0.5, -1, 1)
        k0 = near & (kind == 0)
        out[k0] = dob[k0] + sign[k0]
        k1 = near & (kind == 1)
        out[k1] = from_ymd(y[k1] + sign[k1], m[k1], d[k1])
        k2 = near & (kind == 2)
        mm = m[k2] + sign[k2]
        out[k2] = from_ymd(y[k2] + np.where(mm < 1, -1, np.where(mm > 12, 1, 0)), (mm - 1) % 12 + 1, d[k2])
        k3 = near & (kind == 3)
        dd = (d[k3] % 10) * 10 + d[k3] // 10
        bad = (dd < 1) | (dd > 28) | (dd == d[k3])
        alt = np.clip(d[k3] + 10 * sign[k3], 1, 28)
        alt = np.where(alt == d[k3], np.where(d[k3] < 28, d[k3] + 1, d[k3] - 1), alt)
        out[k3] = from_ymd(y[k3], m[k3], np.where(bad, alt, dd))
        out[~known] = NULL_DAY
        dob_rec = out.astype(np.int32)
        return dob_rec

    def _sex_and_ethnicity(self, p: np.ndarray, rng: np.random.Generator, rate):
        """(sex, ethnicity): flipped or unknown sex; ethnicity misrecorded within its group or unknown."""
        n = len(p)
        people = self.people

        # ---------------- sex, ethnicity ----------------
        sex = people.sex[p].astype(np.int8).copy()
        flip = (sex >= 0) & (rng.random(n) < rate("sex_flip"))
        sex[flip] = 1 - sex[flip]
        unk = (sex < 0) | (rng.random(n) < rate("sex_unknown"))
        sex[unk] = 2 + categorical(rng, SEX_UNKNOWN_P, int(unk.sum()))

        eth = people.eth[p].astype(np.int16).copy()
        mis = (eth >= 0) & (rng.random(n) < rate("ethnicity_misrecorded"))
        if mis.any():
            r = rng.integers(0, 1 << 30, n)
            eth[mis] = _vector_same_group(eth[mis], r[mis])
        unk = (eth < 0) | (rng.random(n) < rate("ethnicity_unknown"))
        eth[unk] = len(ETHNICITY_CODES) + categorical(rng, ETH_UNKNOWN_P, int(unk.sum()))
        return sex, eth

    def _address(self, p: np.ndarray, day: np.ndarray, rng: np.random.Generator, rate):
        """(postcode, address line, unformatted, lower case, abbreviated): the address of the day,
        the one before or the next, with typos, gaps and no fixed abode."""
        n = len(p)
        people = self.people

        # ---------------- address ----------------
        slot = people.address_slot(p, day)
        ev = _pick(rng, n, [rate("postcode_stale"), rate("postcode_ahead")])
        slot = np.where((ev == 0) & (slot > 0), slot - 1, slot)
        nxt = np.minimum(slot + 1, people.move_day.shape[1] - 1)
        has_next = (slot + 1 < people.move_day.shape[1]) & (
            people.move_day[p, nxt] < np.iinfo(np.int32).max // 2
        )
        slot = np.where((ev == 1) & has_next, nxt, slot)
        pc = people.addr_pc[p, slot].copy()
        addr = people.addr_line[p, slot].copy()
        typo = rng.random(n) < rate("postcode_typo")
        if typo.any():
            pc[typo] = _postcode_typo(pc[typo], rng)
        pc_missing = rng.random(n) < rate("postcode_missing")
        addr_missing = (rng.random(n) < rate("address_missing")) | (pc_missing & (rng.random(n) < 0.5))
        nfa = rng.random(n) < rate("no_fixed_abode")
        pc[pc_missing | nfa] = -1
        addr[addr_missing] = -1
        addr[nfa] = -2
        unf = rng.random(n) < rate("postcode_unformatted")
        lower = unf & (rng.random(n) < 0.3)
        abbr = rng.random(n) < rate("address_abbreviated")
        return pc, addr, unf, lower, abbr

    def _criminal_ids(self, p, rng, rate):
        people, prof = self.people, self.profile
        n = len(p)
        year = people.pnc_year[p].astype(np.int64)
        serial = people.pnc_serial[p].copy()
        alt = (people.pnc2_year[p] >= 0) & (rng.random(n) < prof.pnc_alternate)
        year = np.where(alt, people.pnc2_year[p], year)
        serial = np.where(alt, people.pnc2_serial[p], serial)
        has = year >= 0
        typo = has & (rng.random(n) < rate("pnc_typo"))
        if typo.any():
            serial[typo] = digit_slip(serial[typo], 7, rng)
        short = rng.random(n) < rate("pnc_short_format")
        s = ids.pnc_strings(np.maximum(year, 0), np.maximum(serial, 0), short)
        junk = rng.random(n) < rate("pnc_junk")
        missing = ~has | (rng.random(n) < rate("pnc_missing"))
        junk_s = pl.Series(list(ids.JUNK_PNCS)).gather(
            pl.Series(categorical(rng, JUNK_P, n).astype(np.int32))
        )
        pnc = pl.select(
            pl.when(pl.Series(junk)).then(junk_s).when(pl.Series(missing)).then(None).otherwise(s)
        ).to_series()

        cy = people.cro_year[p].astype(np.int64)
        cs = people.cro_serial[p].copy()
        chas = cy >= 0
        ctypo = chas & (rng.random(n) < rate("cro_typo"))
        if ctypo.any():
            cs[ctypo] = digit_slip(cs[ctypo], 6, rng)
        c = ids.cro_strings(np.maximum(cy, 0), np.maximum(cs, 0))
        cmiss = ~chas | (rng.random(n) < rate("cro_missing"))
        cro = pl.select(pl.when(pl.Series(cmiss)).then(None).otherwise(c)).to_series()
        return pnc, cro


def _vector_same_group(eth: np.ndarray, r: np.ndarray) -> np.ndarray:
    out = eth.copy()
    for e in np.unique(eth):
        m = eth == e
        choices = _SAME_GROUP[int(e)]
        out[m] = choices[r[m] % len(choices)]
    return out


def _postcode_typo(pc: np.ndarray, rng) -> np.ndarray:
    area, district, sector, u1, u2 = ids.unpack_postcode(pc)
    kind = rng.integers(0, 5, len(pc))
    sector = np.where(kind == 0, (sector + rng.integers(1, 10, len(pc))) % 10, sector)
    nu1 = np.where(kind == 1, (u1 + rng.integers(1, 20, len(pc))) % 20, u1)
    nu2 = np.where(kind == 2, (u2 + rng.integers(1, 20, len(pc))) % 20, u2)
    nu1, nu2 = np.where(kind == 3, u2, nu1), np.where(kind == 3, u1, nu2)
    maxd = ids.POSTCODE_MAX_DISTRICT[area]
    district = np.where(kind == 4, np.clip(district + np.where(district > 1, -1, 1), 1, maxd), district)
    return ids.pack_postcode(area, district, sector, nu1, nu2)
