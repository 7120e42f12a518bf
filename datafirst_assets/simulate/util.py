"""Small vectorised helpers: day arithmetic, ragged groups, categorical draws."""

from __future__ import annotations

from datetime import date

import numpy as np

NULL_DAY = np.iinfo(np.int32).min  # missing date
FAR_DAY = np.iinfo(np.int32).max // 2  # "never" (beyond any extract)
EPOCH = date(1970, 1, 1)
YEAR = 365.25


def digit_slip(values: np.ndarray, width: int, rng) -> np.ndarray:
    """One digit of each `width`-digit number replaced by another (a keying slip)."""
    values = np.asarray(values, dtype=np.int64)
    k = rng.integers(0, width, len(values))
    place = 10**k
    digit = values // place % 10
    new = (digit + rng.integers(1, 10, len(values))) % 10
    return values + (new - digit) * place


def to_day(d: date | str) -> int:
    if isinstance(d, str):
        d = date.fromisoformat(d)
    return (d - EPOCH).days


def from_day(day: int) -> date:
    return date.fromordinal(EPOCH.toordinal() + int(day))


def ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d64 = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    y64 = d64.astype("datetime64[Y]")
    m64 = d64.astype("datetime64[M]")
    y = y64.astype(np.int64) + 1970
    m = (m64 - y64.astype("datetime64[M]")).astype(np.int64) + 1
    d = (d64 - m64.astype("datetime64[D]")).astype(np.int64) + 1
    return y, m, d


def from_ymd(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days for (year, month, day); the day is clamped to the month's length."""
    y = np.asarray(y, dtype=np.int64)
    m = np.asarray(m, dtype=np.int64)
    months = (y - 1970) * 12 + (m - 1)
    start = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    nxt = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    d = np.clip(np.asarray(d, dtype=np.int64), 1, nxt - start)
    return (start + d - 1).astype(np.int32)


def expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ragged groups with `counts`, return (group index per item, position within group)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    group = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    pos = np.arange(total) - np.repeat(starts, counts)
    return group, pos


def group_cumsum(values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting where pos == 0 (items laid out group by group)."""
    cs = np.cumsum(values)
    start_idx = np.flatnonzero(pos == 0)
    offsets = np.repeat(cs[start_idx] - values[start_idx], np.diff(np.append(start_idx, len(values))))
    return cs - offsets


def categorical(rng: np.random.Generator, p: np.ndarray, n: int | None = None) -> np.ndarray:
    """Draw categories. `p` is one probability vector (then `n` draws) or a (rows, k) matrix."""
    p = np.asarray(p, dtype=float)
    if p.ndim == 1:
        return rng.choice(len(p), size=n, p=p / p.sum())
    cum = np.cumsum(p, axis=1)
    cum /= cum[:, -1:]
    u = rng.random(p.shape[0])[:, None]
    return np.minimum((u > cum).sum(axis=1), p.shape[1] - 1)


def uniform_int(rng: np.random.Generator, lo, hi) -> np.ndarray:
    """Integers uniform in [lo, hi] (inclusive), element-wise."""
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.maximum(np.asarray(hi, dtype=np.int64), lo)
    return lo + (rng.random(np.broadcast(lo, hi).shape) * (hi - lo + 1)).astype(np.int64)


def zipf_counts(rng: np.random.Generator, a: float, n: int, cap: int) -> np.ndarray:
    return np.minimum(rng.zipf(a, size=n), cap).astype(np.int64)


def lognormal_days(
    rng: np.random.Generator, median: float | np.ndarray, sigma: float, n: int, lo: float, hi: float
) -> np.ndarray:
    return np.clip(np.round(median * np.exp(sigma * rng.standard_normal(n))), lo, hi).astype(np.int64)


class StringTable:
    """Each string once, in order of first sight: ``add(s)`` gives its index, appending it when new."""

    def __init__(self) -> None:
        self.strings: list[str] = []
        self.index: dict[str, int] = {}

    def add(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.strings)
            self.strings.append(s)
        return i
