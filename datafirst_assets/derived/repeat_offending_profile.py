"""`derived/repeat_offending_profile`: repeat rates by age band, sex, ethnic group and year, with small cells suppressed.

    profile = profile_from_journeys(person_journeys(release))
    profile = repeat_offending_profile(release)            # the same, from the release tables

Cohort: every person of `derived/person_journeys` with a dated criminal case. Each row is one
group of one breakdown (one-way tables, plus the total):

    total          All
    age_band       age at first offence: 10-14, 15-17 (children), 18-20, 21-24, 25-29, 30-39,
                   40-49, 50+, Unknown (no age, or under 10: below the age of criminal responsibility)
    sex            Male, Female, Unknown
    ethnic_group   White, Mixed, Asian, Black, Other, Unknown
    year           year of the first offence

`people` is the cohort in the group; `eligible_1y` those whose one-year window had ended by the
as-of date (so their return is known), `returned_1y` those of them who returned within the year
(a new criminal case 1-365 days after the first), `rate_1y` = returned / eligible; the same for
two years (730 days).

Suppression (`min_count`, default 10), so no published figure describes fewer than 10 people:

1. Primary: `people` under 10 withholds the whole row; `eligible_N` under 10 withholds
   `eligible_N`, `returned_N` and `rate_N`; `returned_N` under 10, or the people who did not
   return (`eligible_N - returned_N`) under 10, withholds `returned_N` and `rate_N`. Zero is
   under 10.
2. Secondary: the groups of a breakdown add up to the total, so a single withheld count in a
   breakdown could be recovered by subtraction. Where exactly one group of a breakdown has a
   count withheld, the group with the smallest shown value of that count is withheld too (with
   what it determines, as in 1), repeated until no breakdown has a lone withheld count.
3. A withheld count is null, its rate is null, and `suppressed` is true on the row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from datafirst_assets.common.pandera_polars import pa
import polars as pl

from datafirst_assets.derived.person_journeys import ETHNIC_GROUPS, REPEAT_WINDOWS, person_journeys
from datafirst_assets.derived.spec import DerivedColumn, DerivedTable

MIN_COUNT = 10
TOTAL = "total"
BREAKDOWNS = ("total", "age_band", "sex", "ethnic_group", "year")
UNKNOWN = "Unknown"
# (label, lowest age, highest age); ages under the first band are below the age of criminal responsibility.
AGE_BANDS = (("10-14", 10, 14), ("15-17", 15, 17), ("18-20", 18, 20), ("21-24", 21, 24), ("25-29", 25, 29),
             ("30-39", 30, 39), ("40-49", 40, 49), ("50+", 50, 200))
SEX_LABELS = {"M": "Male", "F": "Female"}
WINDOWS = tuple(REPEAT_WINDOWS)  # ("1y", "2y")


def _counts_consistent() -> tuple[tuple[str, str, pl.Expr], ...]:
    rules = []
    for w in WINDOWS:
        rules += [
            (f"eligible_{w}_within_people", f"eligible_{w} <= people", pl.col(f"eligible_{w}") <= pl.col("people")),
            (f"returned_{w}_within_eligible", f"returned_{w} <= eligible_{w}",
             pl.col(f"returned_{w}") <= pl.col(f"eligible_{w}")),
            (f"rate_{w}_with_its_count", f"rate_{w} is shown exactly when returned_{w} is",
             pl.col(f"rate_{w}").is_null() == pl.col(f"returned_{w}").is_null()),
        ]
    withheld = pl.any_horizontal(pl.col(c).is_null() for c in _count_columns())
    rules.append(("suppressed_flag", "suppressed is true exactly when a count is withheld",
                  pl.col("suppressed") == withheld))
    return tuple(rules)


def _count_columns() -> list[str]:
    return ["people", *(f"{kind}_{w}" for w in WINDOWS for kind in ("eligible", "returned"))]


def _shown_count(name: str, text: str, min_count: int) -> DerivedColumn:
    return DerivedColumn(name, pl.Int64, "numeric", f"{text} (null when under {min_count}: suppressed)",
                         checks=(pa.Check.ge(min_count),))


def profile_table(min_count: int = MIN_COUNT) -> DerivedTable:
    """The table's description and schema; the schema itself proves no shown count is under `min_count`."""
    columns = [
        DerivedColumn("breakdown", pl.String, "categorical",
                      "What the row breaks the cohort down by: total, age_band (age at first offence), sex, "
                      "ethnic_group, year (of first offence)", nullable=False, checks=(pa.Check.isin(BREAKDOWNS),)),
        DerivedColumn("group", pl.String, "categorical",
                      "The group within the breakdown (All for the total; Unknown where not recorded)",
                      nullable=False),
        _shown_count("people", "People in the group whose first criminal case is dated", min_count),
    ]
    for w, days in REPEAT_WINDOWS.items():
        span = {"1y": "one year", "2y": "two years"}[w]
        columns += [
            _shown_count(f"eligible_{w}", f"People whose {span} ({days} days) after their first criminal case had "
                         "ended by the as-of date", min_count),
            _shown_count(f"returned_{w}", f"Eligible people with a new criminal case 1-{days} days after their first",
                         min_count),
            DerivedColumn(f"rate_{w}", pl.Float64, "score",
                          f"Repeat rate within {span}: returned_{w} / eligible_{w} (null when suppressed)",
                          checks=(pa.Check.in_range(0, 1),)),
        ]
    columns.append(DerivedColumn("suppressed", pl.Boolean, "flag",
                                 f"A count in the row is withheld (under {min_count}, or to protect one that is)",
                                 nullable=False))
    return DerivedTable(
        name="repeat_offending_profile",
        grain="one row per group of each breakdown (age band, sex, ethnic group, year of first offence) and the total",
        description=(
            "Repeat offending: the share of people who came back with a new criminal case within one and two "
            "years of their first, by age at first offence, sex, ethnic group and year of first offence. Counts "
            f"under {min_count} are suppressed, with secondary suppression so they cannot be recovered from the "
            "total. From `derived.person_journeys`; definitions in "
            "`datafirst_assets/derived/repeat_offending_profile.py`."
        ),
        columns=tuple(columns),
        unique_key=("breakdown", "group"),
        row_rules=_counts_consistent(),
        inputs=(("derived", "person_journeys"),),
    )


REPEAT_OFFENDING_PROFILE = profile_table()


def age_band(age: pl.Expr) -> pl.Expr:
    expr = pl.lit(UNKNOWN)
    for label, low, high in reversed(AGE_BANDS):
        expr = pl.when(age.is_between(low, high)).then(pl.lit(label)).otherwise(expr)
    return expr


def group_order(breakdown: str, group: str) -> tuple:
    """Reading order of groups within a breakdown (Unknown last)."""
    if group == UNKNOWN:
        return (1, 0, "")
    if breakdown == "age_band":
        return (0, [b[0] for b in AGE_BANDS].index(group), "")
    if breakdown == "sex":
        return (0, list(SEX_LABELS.values()).index(group), "")
    if breakdown == "ethnic_group" and group in ETHNIC_GROUPS:
        return (0, ETHNIC_GROUPS.index(group), "")
    return (0, 0, group)


def repeat_offending_profile(release: Mapping[tuple[str, str], pl.DataFrame], *, as_of: dt.date | None = None,
                             min_count: int = MIN_COUNT) -> pl.DataFrame:
    return profile_from_journeys(person_journeys(release, as_of=as_of), min_count=min_count)


def profile_from_journeys(journeys: pl.DataFrame, *, min_count: int = MIN_COUNT) -> pl.DataFrame:
    cohort = journeys.filter(pl.col("first_criminal_case_date").is_not_null()).select(
        pl.lit("All").alias(TOTAL),
        age_band(pl.col("age_at_first_offence")).alias("age_band"),
        pl.col("sex").replace_strict(SEX_LABELS, default=UNKNOWN, return_dtype=pl.String).alias("sex"),
        pl.col("ethnic_group").fill_null(UNKNOWN).alias("ethnic_group"),
        pl.col("first_offence_date").dt.year().cast(pl.String).fill_null(UNKNOWN).alias("year"),
        *(pl.col(f"returned_within_{w}").alias(f"_r_{w}") for w in WINDOWS),
    )
    measures = [pl.len().cast(pl.Int64).alias("people")]
    for w in WINDOWS:
        measures += [pl.col(f"_r_{w}").is_not_null().sum().cast(pl.Int64).alias(f"eligible_{w}"),
                     pl.col(f"_r_{w}").sum().cast(pl.Int64).alias(f"returned_{w}")]
    rows = []
    for breakdown in BREAKDOWNS:
        grouped = cohort.group_by(pl.col(breakdown).alias("group")).agg(measures).with_columns(
            pl.lit(breakdown).alias("breakdown"))
        if breakdown == TOTAL and grouped.is_empty():  # the total row exists even for an empty cohort
            grouped = pl.DataFrame({"group": ["All"], "breakdown": [TOTAL], **{c: [0] for c in _count_columns()}})
        rows += grouped.to_dicts()
    rows.sort(key=lambda r: (BREAKDOWNS.index(r["breakdown"]), group_order(r["breakdown"], r["group"])))
    suppress(rows, min_count)
    for row in rows:
        for w in WINDOWS:
            eligible, returned = row[f"eligible_{w}"], row[f"returned_{w}"]
            row[f"rate_{w}"] = round(returned / eligible, 4) if returned is not None and eligible else None
    table = profile_table(min_count)
    return pl.DataFrame(rows, schema=table.schema(), strict=False).select(table.column_names)


def suppress(rows: list[dict], min_count: int = MIN_COUNT) -> None:
    """Withhold (set to None) counts under `min_count` and what would reveal them; sets `suppressed`. In place."""
    raw = [dict(r) for r in rows]
    withheld: list[set[str]] = []
    for r in raw:
        hidden: set[str] = set()
        if r["people"] < min_count:
            hidden |= set(_count_columns())
        for w in WINDOWS:
            eligible, returned = r[f"eligible_{w}"], r[f"returned_{w}"]
            if eligible < min_count:
                hidden |= {f"eligible_{w}", f"returned_{w}"}
            if returned < min_count or eligible - returned < min_count:
                hidden.add(f"returned_{w}")
        withheld.append(hidden)

    def close(hidden: set[str]) -> set[str]:
        # What a withheld count determines is withheld with it.
        if "people" in hidden:
            return set(_count_columns())
        return hidden | {f"returned_{w}" for w in WINDOWS if f"eligible_{w}" in hidden}

    changed = True
    while changed:
        changed = False
        for breakdown in {r["breakdown"] for r in raw} - {TOTAL}:
            members = [i for i, r in enumerate(raw) if r["breakdown"] == breakdown]
            for column in _count_columns():
                hidden_here = [i for i in members if column in withheld[i]]
                shown = [i for i in members if column not in withheld[i]]
                if len(hidden_here) == 1 and shown:
                    partner = min(shown, key=lambda i: raw[i][column])
                    withheld[partner] = close(withheld[partner] | {column})
                    changed = True
    for row, hidden in zip(rows, withheld):
        for column in hidden:
            row[column] = None
        row["suppressed"] = bool(hidden)
