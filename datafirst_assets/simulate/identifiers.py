"""Identifier formats used by the source systems (PNC, CRO, prison number, CRN, postcodes, ...).

The scalar helpers (`pnc_check_letter`, `cro_check_letter`, `is_valid_pnc`) are reusable by
staging; the array helpers build many identifiers at once for the simulator.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

# Check-letter alphabet of the Police National Computer (no I, O, S).
# One definition of the check letters, shared with staging's validation.
from datafirst_assets.sources.identifiers import PNC_CHECK_LETTERS as CHECK_LETTERS
from datafirst_assets.sources.identifiers import pnc_check_letter


def cro_check_letter(year: int, serial: int) -> str:
    """Check letter of CRO number `NNNNNN/YYA`: letter index = int(YY + 6-digit serial) mod 23."""
    return CHECK_LETTERS[((int(year) % 100) * 1_000_000 + int(serial)) % 23]


def format_pnc(year: int, serial: int) -> str:
    return f"{int(year):04d}/{int(serial):07d}{pnc_check_letter(year, serial)}"


_PNC_RE = re.compile(r"^(\d{2}|\d{4})/(\d{1,7})([A-Z])$")


def is_valid_pnc(value: str) -> bool:
    """True when `value` (YYYY/NNNNNNNA or YY/NNNNNNNA, any case) has a correct check letter."""
    m = _PNC_RE.match(value.strip().upper())
    if not m:
        return False
    year, serial, letter = int(m.group(1)), int(m.group(2)), m.group(3)
    return pnc_check_letter(year, serial) == letter


# Placeholder PNCs keyed in for people whose real PNC was unknown. They are well formed (even
# the check letter is right), so only their reuse across unrelated people gives them away.
JUNK_PNCS: tuple[str, ...] = tuple(
    format_pnc(y, s) for y, s in ((2000, 0), (1900, 0), (2000, 1), (1999, 9_999_999), (2011, 1_111_111))
) + ("0000/0000000Z",)


def is_junk_pnc(value: str) -> bool:
    return value.strip().upper() in JUNK_PNCS


# ------------------------------------------------------------------------------------------
# Vectorised helpers
# ------------------------------------------------------------------------------------------


def check_letters(yy_serial: np.ndarray) -> np.ndarray:
    """Index into CHECK_LETTERS for an array of int(YY + serial) values."""
    return (yy_serial % 23).astype(np.int8)


_LETTERS_SERIES = pl.Series("l", list(CHECK_LETTERS))
_ALPHA = pl.Series("a", [chr(65 + i) for i in range(26)])


def letters_series(idx: np.ndarray) -> pl.Series:
    return _LETTERS_SERIES.gather(pl.Series(idx.astype(np.int32)))


def alpha_series(idx: np.ndarray) -> pl.Series:
    return _ALPHA.gather(pl.Series(idx.astype(np.int32)))


def zfill(values: np.ndarray, width: int) -> pl.Series:
    return pl.Series(values.astype(np.int64)).cast(pl.Utf8).str.zfill(width)


def affine_permutation(index: np.ndarray, modulus: int, salt: int) -> np.ndarray:
    """A bijection of range(modulus): distinct indexes give distinct, scattered codes."""
    a = 1_103_515_245 + 2 * salt  # odd multiplier
    while np.gcd(a, modulus) != 1:
        a += 2
    b = (salt * 2_654_435_761) % modulus
    return ((index.astype(np.int64) % modulus) * (a % modulus) + b) % modulus


def pnc_strings(year: np.ndarray, serial: np.ndarray, short: np.ndarray | None = None) -> pl.Series:
    """`YYYY/NNNNNNNA` (or `YY/NNNNNNNA` where `short`) strings with correct check letters."""
    year = year.astype(np.int64)
    serial = serial.astype(np.int64)
    letter = letters_series(check_letters((year % 100) * 10_000_000 + serial))
    y4 = zfill(year, 4)
    if short is not None and short.any():
        y4 = pl.select(pl.when(pl.Series(short)).then(zfill(year % 100, 2)).otherwise(y4)).to_series()
    return pl.select(pl.concat_str([y4, pl.lit("/"), zfill(serial, 7), letter])).to_series()


def cro_strings(year: np.ndarray, serial: np.ndarray) -> pl.Series:
    year = year.astype(np.int64)
    serial = serial.astype(np.int64)
    letter = letters_series(check_letters((year % 100) * 1_000_000 + serial))
    return pl.select(pl.concat_str([zfill(serial, 6), pl.lit("/"), zfill(year % 100, 2), letter])).to_series()


PRISON_NUMBER_SPACE = 3 * 10_000 * 26 * 26


def prison_number_strings(code: np.ndarray) -> pl.Series:
    """`A1234BC` from codes in range(PRISON_NUMBER_SPACE)."""
    code = code.astype(np.int64)
    first = np.array([0, 6, 1], dtype=np.int64)[code % 3]  # A, G, B
    rest = code // 3
    digits = rest % 10_000
    rest //= 10_000
    return pl.select(
        pl.concat_str(
            [
                alpha_series(first),
                zfill(digits, 4),
                alpha_series(rest // 26 % 26),
                alpha_series(rest % 26),
            ]
        )
    ).to_series()


CRN_SPACE = 26 * 1_000_000


def crn_strings(code: np.ndarray) -> pl.Series:
    """`X123456` from codes in range(CRN_SPACE)."""
    code = code.astype(np.int64)
    return pl.select(
        pl.concat_str([alpha_series(code // 1_000_000 % 26), zfill(code % 1_000_000, 6)])
    ).to_series()


# ------------------------------------------------------------------------------------------
# Postcodes
# ------------------------------------------------------------------------------------------
# (area, highest district number, relative population weight)
POSTCODE_AREAS: tuple[tuple[str, int, float], ...] = (
    ("AL", 10, 1),
    ("B", 99, 6),
    ("BA", 16, 1),
    ("BB", 18, 1.5),
    ("BD", 24, 2),
    ("BH", 31, 1.5),
    ("BL", 9, 1.2),
    ("BN", 45, 2),
    ("BR", 8, 1),
    ("BS", 49, 2.5),
    ("CA", 28, 0.8),
    ("CB", 25, 1),
    ("CF", 83, 2),
    ("CH", 66, 1.5),
    ("CM", 24, 1.5),
    ("CO", 16, 1),
    ("CR", 9, 1.2),
    ("CT", 21, 1),
    ("CV", 47, 2),
    ("CW", 12, 1),
    ("DA", 18, 1.2),
    ("DE", 75, 2),
    ("DH", 9, 0.8),
    ("DL", 17, 1),
    ("DN", 41, 2),
    ("DT", 11, 0.6),
    ("DY", 14, 1.2),
    ("E", 20, 4),
    ("EN", 11, 1.2),
    ("EX", 39, 1.5),
    ("GL", 56, 1.5),
    ("GU", 52, 2),
    ("HA", 9, 1.2),
    ("HD", 9, 1),
    ("HG", 5, 0.5),
    ("HP", 27, 1.2),
    ("HR", 9, 0.5),
    ("HU", 20, 1.2),
    ("HX", 7, 0.6),
    ("IG", 11, 1.2),
    ("IP", 33, 1.5),
    ("KT", 24, 1.5),
    ("L", 40, 3),
    ("LA", 23, 1),
    ("LD", 8, 0.3),
    ("LE", 67, 2.5),
    ("LL", 78, 1.2),
    ("LN", 13, 1),
    ("LS", 29, 3),
    ("LU", 7, 1.2),
    ("M", 50, 4),
    ("ME", 20, 1.5),
    ("MK", 46, 1.5),
    ("N", 22, 3),
    ("NE", 88, 2.5),
    ("NG", 34, 2.5),
    ("NN", 18, 1.5),
    ("NP", 44, 1.2),
    ("NR", 35, 1.5),
    ("NW", 11, 2.5),
    ("OL", 16, 1.2),
    ("OX", 49, 1.5),
    ("PE", 38, 2),
    ("PL", 35, 1.2),
    ("PO", 41, 2),
    ("PR", 26, 1.5),
    ("RG", 45, 2),
    ("RH", 20, 1.2),
    ("RM", 20, 1.5),
    ("S", 99, 3),
    ("SA", 73, 1.5),
    ("SE", 28, 3.5),
    ("SG", 19, 1.2),
    ("SK", 23, 1.5),
    ("SL", 9, 1),
    ("SM", 7, 0.8),
    ("SN", 26, 1.2),
    ("SO", 53, 1.5),
    ("SP", 11, 0.8),
    ("SR", 9, 0.8),
    ("SS", 17, 1.2),
    ("ST", 21, 1.5),
    ("SW", 20, 3.5),
    ("SY", 25, 0.8),
    ("TA", 24, 0.8),
    ("TF", 13, 0.8),
    ("TN", 40, 1.5),
    ("TQ", 14, 0.8),
    ("TR", 27, 0.8),
    ("TS", 29, 1.5),
    ("TW", 20, 1.5),
    ("UB", 11, 1.2),
    ("W", 14, 2.5),
    ("WA", 16, 1.5),
    ("WD", 25, 1.2),
    ("WF", 17, 1.5),
    ("WN", 8, 1),
    ("WR", 15, 1),
    ("WS", 15, 1.2),
    ("WV", 16, 1.5),
    ("YO", 62, 1.5),
)
UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # letters used in the inward code's unit
POSTCODE_AREA_NAMES = pl.Series("area", [a for a, _, _ in POSTCODE_AREAS])
POSTCODE_MAX_DISTRICT = np.array([d for _, d, _ in POSTCODE_AREAS], dtype=np.int64)
POSTCODE_AREA_WEIGHTS = np.array([w for _, _, w in POSTCODE_AREAS], dtype=float)
POSTCODE_AREA_WEIGHTS /= POSTCODE_AREA_WEIGHTS.sum()
_UNIT = pl.Series("u", list(UNIT_LETTERS))

# Packed postcode: area * 10^6 + district * 10^4 + sector * 10^3 + unit1 * 20 + unit2
# (unit letters each in range(20), so the last three decimal digits hold unit1*20+unit2 < 400).


def pack_postcode(area, district, sector, unit1, unit2) -> np.ndarray:
    return (
        np.asarray(area, np.int64) * 1_000_000
        + np.asarray(district, np.int64) * 10_000
        + np.asarray(sector, np.int64) * 1_000
        + np.asarray(unit1, np.int64) * 20
        + np.asarray(unit2, np.int64)
    )


def unpack_postcode(code: np.ndarray):
    code = code.astype(np.int64)
    area = code // 1_000_000
    district = code // 10_000 % 100
    sector = code // 1_000 % 10
    unit = code % 1_000
    return area, district, sector, unit // 20, unit % 20


def random_postcodes(rng: np.random.Generator, n: int, area: np.ndarray | None = None) -> np.ndarray:
    if area is None:
        area = rng.choice(len(POSTCODE_AREAS), size=n, p=POSTCODE_AREA_WEIGHTS)
    maxd = POSTCODE_MAX_DISTRICT[area]
    district = 1 + (rng.random(n) ** 1.5 * maxd).astype(np.int64)  # low districts more populous
    district = np.minimum(district, maxd)
    return pack_postcode(
        area, district, rng.integers(0, 10, n), rng.integers(0, 20, n), rng.integers(0, 20, n)
    )


def postcode_strings(
    code: np.ndarray, no_space: np.ndarray | None = None, lower: np.ndarray | None = None
) -> pl.Series:
    """Format packed postcodes (negative -> null) as `SW1A 1AA`-style strings."""
    code = np.asarray(code, dtype=np.int64)
    null = code < 0
    safe = np.where(null, 0, code)
    area, district, sector, u1, u2 = unpack_postcode(safe)
    space = pl.lit(" ")
    if no_space is not None and no_space.any():
        space = pl.when(pl.Series(no_space)).then(pl.lit("")).otherwise(pl.lit(" "))
    out = pl.select(
        pl.concat_str(
            [
                POSTCODE_AREA_NAMES.gather(pl.Series(area.astype(np.int32))),
                pl.Series(district).cast(pl.Utf8),
                space,
                pl.Series(sector).cast(pl.Utf8),
                _UNIT.gather(pl.Series(u1.astype(np.int32))),
                _UNIT.gather(pl.Series(u2.astype(np.int32))),
            ]
        )
    ).to_series()
    if lower is not None and lower.any():
        out = pl.select(pl.when(pl.Series(lower)).then(out.str.to_lowercase()).otherwise(out)).to_series()
    if null.any():
        out = pl.select(pl.when(pl.Series(null)).then(None).otherwise(out)).to_series()
    return out
