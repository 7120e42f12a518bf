"""When an approved summary is replaced: how far a table's fresh summary has moved from it.

An extract of 1% more rows changes nearly every count of a table's summary a little. Redrawing
the synthetic table from such a summary gives a new table of the same shape, every row different,
and with it a new report, new derived tables and a new synthetic release, for a release nobody
could tell from the last one. Publishing summaries that differ by a handful of rows is also what
statistical disclosure control warns of (differencing: two tables one person apart show that
person's categories). So a table keeps its approved summary (and the synthetic table drawn from
it) while its fresh summary is within `tolerance` of it (`SyntheticSettings.refresh_tolerance`):

    drift(approved, fresh)    the largest of: the relative change of rows; per column, the change
                              of the share missing and of a hash's share distinct, the total
                              variation distance between the categories' row shares, and the
                              Kolmogorov-Smirnov distance between the histograms (each bin spread
                              evenly over its range, so moved bin edges count by the rows they move);
                              per count histogram (children per parent, rows per person) the same;
                              for the cross-justice lookup the total variation distance of its
                              shapes and of its persons per dataset. inf when the summaries differ
                              in structure (columns, kinds, types, key lengths, decimals).

Drift is measured against the approved summary, not the previous run's, so small changes add up
until they pass the tolerance and the table is summarised and drawn again. A tolerance of 0 keeps
only summaries that are exactly as fresh ones (the document a full run makes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

INF = math.inf
# Fields that must be equal for two summaries of a column to be compared at all.
_SAME = ("role", "dtype", "kind", "length", "decimals", "references", "units", "source", "table", "grain")
_HISTOGRAMS = ("bins", "children_per_parent", "rows_per_person")


def drift(approved: Mapping, fresh: Mapping) -> float:
    """How far `fresh` (a table's summary of the release now) is from `approved` (see the module)."""
    if any(approved.get(f) != fresh.get(f) for f in _SAME):
        return INF
    parts = [_relative(approved.get("rows", 0), fresh.get("rows", 0))]
    if "shapes" in approved or "shapes" in fresh:
        parts.append(total_variation({s["shape"]: s["ids"] for s in approved.get("shapes", [])},
                                     {s["shape"]: s["ids"] for s in fresh.get("shapes", [])}))
        parts.append(total_variation(approved.get("persons_per_dataset", {}), fresh.get("persons_per_dataset", {})))
    if "linked_share_of_crown_court" in approved or "linked_share_of_crown_court" in fresh:
        parts.append(abs(approved.get("linked_share_of_crown_court", 0.0) - fresh.get("linked_share_of_crown_court", 0.0)))
    old_columns, new_columns = approved.get("columns", {}), fresh.get("columns", {})
    if list(old_columns) != list(new_columns):
        return INF
    parts.extend(column_drift(old_columns[c], new_columns[c]) for c in old_columns)
    return max(parts, default=0.0)


def column_drift(approved: Mapping, fresh: Mapping) -> float:
    if any(approved.get(f) != fresh.get(f) for f in _SAME):
        return INF
    parts = [abs(approved.get("missing", 0.0) - fresh.get("missing", 0.0)),
             abs(approved.get("distinct_share", 0.0) - fresh.get("distinct_share", 0.0))]
    if "values" in approved or "values" in fresh:
        parts.append(total_variation({v["value"]: v["rows"] for v in approved.get("values", [])},
                                     {v["value"]: v["rows"] for v in fresh.get("values", [])}))
    for name in _HISTOGRAMS:
        if name in approved or name in fresh:
            parts.append(histogram_distance(approved.get(name, []), fresh.get(name, [])))
    return max(parts)


def _relative(before: float, now: float) -> float:
    return abs(now - before) / before if before else (0.0 if now == before else INF)


def total_variation(p: Mapping, q: Mapping) -> float:
    """Total variation distance between two count tables (0 when both are empty, 1 when one is)."""
    sp, sq = sum(p.values()), sum(q.values())
    if not sp or not sq:
        return 0.0 if sp == sq else 1.0
    return 0.5 * sum(abs(p.get(k, 0) / sp - q.get(k, 0) / sq) for k in set(p) | set(q))


def _number(value) -> float:
    """A bin edge as a number: months (`YYYY-MM`) as month indexes."""
    if isinstance(value, str):
        year, month = value.split("-")
        return int(year) * 12 + int(month) - 1
    return float(value)


def _bins(histogram: list[Mapping]) -> list[tuple[float, float, float]]:
    out = []
    for b in histogram:
        lo = _number(b["lo"])
        hi = lo if b.get("hi") is None else _number(b["hi"])  # an open top bin: at its lower edge
        out.append((lo, hi, float(b["rows"])))
    return out


def _cdf(bins: list[tuple[float, float, float]], total: float, points: np.ndarray, *, left: bool) -> np.ndarray:
    """Share of rows at or below each point (below it when `left`), each bin spread evenly over [lo, hi].

    All points at once (a Python loop over bins per point took most of a refresh's drift: 18,000 calls
    for the 16 tables a 50,000-person extract changed). Each point's bins are added in bin order
    (`cumsum`), as the loop added them, so the shares are the loop's to the last bit."""
    lo, hi, rows = (np.array(column, dtype=np.float64)[None, :] for column in zip(*bins))
    x = points[:, None]
    point = hi <= lo
    width = np.where(point, 1.0, hi - lo)
    spread = np.where(x >= hi, rows, np.where(x > lo, rows * (x - lo) / width, 0.0))
    at = np.where((x > lo) if left else (x >= lo), rows, 0.0)
    return np.cumsum(np.where(point, at, spread), axis=1)[:, -1] / total


def histogram_distance(approved: list[Mapping], fresh: list[Mapping]) -> float:
    """Kolmogorov-Smirnov distance between two published histograms (0 when both are empty, 1 when one is)."""
    a, b = _bins(approved), _bins(fresh)
    ta, tb = sum(r for _, _, r in a), sum(r for _, _, r in b)
    if not ta or not tb:
        return 0.0 if ta == tb else 1.0
    points = np.array(sorted({edge for lo, hi, _ in a + b for edge in (lo, hi)}), dtype=np.float64)
    return float(max(np.abs(_cdf(a, ta, points, left=left) - _cdf(b, tb, points, left=left)).max()
                     for left in (False, True)))
