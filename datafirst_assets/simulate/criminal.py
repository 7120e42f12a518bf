"""What the five criminal systems share: offence groups and codes, outcome and disposal codes,
courts and establishments, case references (URN, ASN) and how clerks garble them.

The journeys themselves run magistrates' cases -> Crown Court -> prison / probation -> OASys, one
module per system (see `simulate.steps`). Everything is generated as arrays: one row per case,
journey, event or assessment, built from the offender roster and from the outcomes of the
previous system.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from datafirst_assets.simulate import identifiers as ids
from datafirst_assets.simulate import names as N
from datafirst_assets.simulate.util import to_day
from datafirst_assets.simulate.world import World
from datafirst_assets.sources.registry import OFFENCE_GROUPS

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


def urn_series(force, l1, l2, serial, yy) -> pl.Series:
    """Police unique reference numbers: force, two letters, serial, year."""
    return pl.select(
        pl.concat_str(
            [ids.zfill(force, 2), _letters(l1), _letters(l2), ids.zfill(serial, 5), ids.zfill(yy, 2)]
        )
    ).to_series()


def asn_series(yy, force, l1, l2, station, seq) -> pl.Series:
    """Arrest summons numbers: year, force, letters, station, sequence, check letter."""
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


def lesser_disposal(rng, disposal: np.ndarray, order: list[int]) -> np.ndarray:
    """A disposal no more severe than `disposal` (severity given by `order`, least first)."""
    size = max(max(order), int(disposal.max()) if len(disposal) else 0) + 1
    rank = np.array([order.index(d) if d in order else 0 for d in range(size)])
    r = rank[disposal]
    pick = (rng.random(len(disposal)) * (r + 1)).astype(np.int64)
    return np.array(order)[pick]


def postcode_area_at(w: World, person: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Postcode area of where each person lived on each day."""
    slot = w.people.address_slot(person, day)
    return w.people.addr_pc[person, slot] // 1_000_000
