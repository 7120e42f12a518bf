"""Disclosure control of release tables: re-identification risk, and k-anonymity on request.

Row-level research tables go to accredited researchers in a secure setting: they are
de-identified, not anonymised, so what is measured (and gated) is re-identification risk on a
small key an outsider could know about a person: age band, sex, ethnic group and area (the
region of the postcode area; `reidentification_risk`). Every record's risk is 1 / (people in its key cell); the table
reports sample uniques (records alone in their cell), mean and maximum per-record risk, and
fails the gate when the mean risk exceeds `RiskRule.max_mean_risk`. A k-anonymity test over
event dates, as this module once defaulted to, fails for every row of a row-level table (the
event month alone makes rows unique) and teaches people to ignore checks; it is gone.

The strict output rule (no count under 10, secondary suppression) is for aggregates that
leave the secure setting: see `deidentify.output_rules`.

The k-anonymity machinery below remains for the optional "coarsen" policy:

Quasi-identifiers (QIs) are the released columns an outsider could know about a person: age,
sex, ethnicity, area, offence group and the month of the table's event, by default. Rows that
share all QI values form an equivalence class; the class is *small* when it holds fewer than
k people (distinct per-dataset persons where the table has them, rows otherwise), and not
*l-diverse* when its people share fewer than l distinct values of the sensitive column.

Every QI has a generalisation ladder (age: 5-, 10-, 20-year bands; date: month, year;
ethnicity: code, group; ...). With policy "warn" the release keeps its values and the report
lists the small cells measured at the first rung. With policy "coarsen" the ladder is climbed,
one QI at a time, choosing the rung that leaves the fewest rows in small cells, until at most
`max_suppressed_share` of rows are in small cells; those rows then have their QI values
suppressed (set to null), and the released columns carry the generalised values
(age -> the band's lower bound, date -> first day of the month or year, ethnicity -> group).
Column names and types never change, so code written against the release keeps working.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import polars as pl

from datafirst_assets.deidentify.regions import region_of
from datafirst_assets.deidentify.release_spec import ReleaseTable

Policy = Literal["warn", "coarsen"]
SEX_COLUMNS = ("sex", "gender")
QI_NAMED = (*SEX_COLUMNS, "ethnicity", "offence_group")
# Preferred sensitive attribute per table: the outcome a person would not want known.
SENSITIVE_CANDIDATES = (
    "outcome", "most_serious_disposal", "disposal", "disposal_code", "sentence_type", "event_type",
    "termination_reason", "risk_level", "incident_type", "case_type", "claim_type", "role",
)
SUPPRESSED = None


@dataclass(frozen=True)
class Rung:
    label: str
    apply: Callable[[pl.Expr], pl.Expr]


def _band(width: int) -> Rung:
    return Rung(f"{width}-year bands", lambda e: (e // width * width).cast(pl.Int32))


LADDERS: dict[str, tuple[Rung, ...]] = {
    "age": (_band(5), _band(10), _band(20)),
    "date": (Rung("month", lambda e: e.dt.truncate("1mo")), Rung("year", lambda e: e.dt.truncate("1y"))),
    "ethnicity": (Rung("code", lambda e: e), Rung("group", lambda e: e.str.slice(0, 1))),
    "value": (Rung("as recorded", lambda e: e),),
}


@dataclass(frozen=True)
class DisclosureRule:
    k: int = 10
    l: int = 2
    policy: Policy = "warn"
    max_suppressed_share: float = 0.05
    quasi_identifiers: tuple[str, ...] | None = None  # None: the defaults for the table
    sensitive: str | None = None  # None: the default for the table ("" for none)


@dataclass
class DisclosureResult:
    table: str
    quasi_identifiers: list[str]
    rungs: dict[str, str]
    sensitive: str | None
    k: int
    l: int
    policy: str
    units: str  # "persons" or "rows"
    classes: int = 0
    smallest_class: int | None = None
    small_cells: pl.DataFrame = field(default_factory=pl.DataFrame)
    rows_in_small_cells: int = 0
    suppressed_rows: int = 0
    not_l_diverse_classes: int = 0
    rows: int = 0

    @property
    def k_anonymous(self) -> bool:
        return self.rows_in_small_cells == 0

    @property
    def l_diverse(self) -> bool:
        return self.not_l_diverse_classes == 0

    def summary(self) -> dict:
        return {
            "table": self.table, "quasi_identifiers": ", ".join(self.quasi_identifiers) or "-",
            "rungs": ", ".join(f"{q}: {r}" for q, r in self.rungs.items()) or "-",
            "sensitive": self.sensitive or "-", "policy": self.policy, "units": self.units,
            "rows": self.rows, "classes": self.classes, "smallest_class": self.smallest_class,
            "small_cells": self.small_cells.height, "rows_in_small_cells": self.rows_in_small_cells,
            "suppressed_rows": self.suppressed_rows, "not_l_diverse_classes": self.not_l_diverse_classes,
        }


def ladder_kind(spec: ReleaseTable, column: str) -> str:
    role = spec.column(column).role
    if role == "age":
        return "age"
    if role == "date":
        return "date"
    if column == "ethnicity":
        return "ethnicity"
    return "value"


def default_quasi_identifiers(spec: ReleaseTable) -> list[str]:
    """The key an outsider could know: age, sex, ethnicity and area, where the table has them.

    Tables with no attribute of the person describe events, not people, and get none. Event
    dates are not in the key: on row-level data they make every row unique.
    """
    return [c.name for c in spec.columns if c.role in ("age", "area") or c.name in (*SEX_COLUMNS, "ethnicity")]


def default_sensitive(spec: ReleaseTable, qis: Sequence[str]) -> str | None:
    names = spec.column_names
    return next((c for c in SENSITIVE_CANDIDATES if c in names and c not in qis), None)


def generalised(spec: ReleaseTable, rungs: dict[str, int]) -> list[pl.Expr]:
    return [LADDERS[ladder_kind(spec, q)][r].apply(pl.col(q)).alias(q) for q, r in rungs.items()]


def _classes(frame: pl.DataFrame, qis: list[str], person: str | None, sensitive: str | None) -> pl.DataFrame:
    aggs = [(pl.col(person).n_unique() if person else pl.len()).alias("size"), pl.len().alias("rows")]
    if sensitive:
        aggs.append(pl.col(sensitive).drop_nulls().n_unique().alias("distinct_sensitive"))
    return frame.group_by(qis).agg(aggs)


def assess(frame: pl.DataFrame, spec: ReleaseTable, rule: DisclosureRule) -> DisclosureResult:
    """k-anonymity and l-diversity of `frame` as it is (no generalisation applied)."""
    return _assess(frame, spec, rule, {q: 0 for q in _qis(spec, rule)})[0]


def _qis(spec: ReleaseTable, rule: DisclosureRule) -> list[str]:
    qis = list(rule.quasi_identifiers) if rule.quasi_identifiers is not None else default_quasi_identifiers(spec)
    unknown = [q for q in qis if q not in spec.column_names]
    if unknown:
        raise ValueError(f"{spec.source}.{spec.name}: quasi-identifiers {unknown} are not columns of the table")
    return qis


def _sensitive(spec: ReleaseTable, rule: DisclosureRule, qis: list[str]) -> str | None:
    if rule.sensitive == "":
        return None
    return rule.sensitive or default_sensitive(spec, qis)


def _assess(frame: pl.DataFrame, spec: ReleaseTable, rule: DisclosureRule,
            rungs: dict[str, int]) -> tuple[DisclosureResult, pl.DataFrame]:
    qis = list(rungs)
    sensitive = _sensitive(spec, rule, qis)
    person = spec.person_key if spec.person_key in frame.columns else None
    result = DisclosureResult(
        table=f"{spec.source}.{spec.name}", quasi_identifiers=qis, sensitive=sensitive, k=rule.k, l=rule.l,
        policy=rule.policy, units="persons" if person else "rows", rows=frame.height,
        rungs={q: LADDERS[ladder_kind(spec, q)][r].label for q, r in rungs.items()},
    )
    if not qis or frame.is_empty():
        return result, frame
    view = frame.with_columns(generalised(spec, rungs))
    classes = _classes(view, qis, person, sensitive)
    # Rows whose every QI was suppressed are as generalised as they can be: not a small cell.
    fully_suppressed = pl.all_horizontal([pl.col(q).is_null() for q in qis])
    small = classes.filter((pl.col("size") < rule.k) & ~fully_suppressed).sort("size", *qis, nulls_last=True)
    result.classes = classes.height
    result.smallest_class = int(classes["size"].min())
    result.small_cells = small
    result.rows_in_small_cells = int(small["rows"].sum())
    if sensitive:
        result.not_l_diverse_classes = classes.filter(pl.col("distinct_sensitive") < rule.l).height
    return result, view


def apply_policy(frame: pl.DataFrame, spec: ReleaseTable, rule: DisclosureRule) -> tuple[pl.DataFrame, DisclosureResult]:
    """The table as it may be released under `rule`, and its disclosure assessment."""
    qis = _qis(spec, rule)
    rungs = {q: 0 for q in qis}
    result, view = _assess(frame, spec, rule, rungs)
    if rule.policy == "warn" or result.k_anonymous:
        if rule.policy == "coarsen":
            frame = view
        return frame, result
    allowed = rule.max_suppressed_share * frame.height
    while result.rows_in_small_cells > allowed:
        candidates = [q for q in qis if rungs[q] + 1 < len(LADDERS[ladder_kind(spec, q)])]
        if not candidates:
            break
        trials = [(_assess(frame, spec, rule, {**rungs, q: rungs[q] + 1}), q) for q in candidates]
        (result, view), chosen = min(trials, key=lambda t: (t[0][0].rows_in_small_cells, qis.index(t[1])))
        rungs[chosen] += 1
    if result.rows_in_small_cells:
        small_keys = result.small_cells.select(qis)
        in_small = view.select(qis).join(small_keys.with_columns(pl.lit(True).alias("_small")), on=qis,
                                         how="left", nulls_equal=True, maintain_order="left")["_small"].fill_null(False)
        view = view.with_columns([pl.when(in_small).then(SUPPRESSED).otherwise(pl.col(q)).alias(q) for q in qis])
        suppressed = int(in_small.sum())
        result, view = _assess(view, spec, rule, rungs)
        result.suppressed_rows = suppressed
    return view, result


def results_frame(results: Sequence[DisclosureResult]) -> pl.DataFrame:
    return pl.DataFrame([r.summary() for r in results])


# --- Re-identification risk on a small key (the gate for row-level tables) ---------------------

@dataclass(frozen=True)
class RiskRule:
    """How risk is measured and when it fails: `max_mean_risk` is the mean per-record risk allowed."""

    age_band: int = 10
    max_mean_risk: float = 0.6
    key: tuple[str, ...] | None = None  # None: age, sex, ethnicity and area where the table has them


@dataclass
class RiskResult:
    table: str
    key: list[str]
    units: str
    records: int = 0
    cells: int = 0
    sample_uniques: int = 0
    mean_risk: float = 0.0
    max_risk: float = 0.0
    max_mean_risk: float = 0.6
    riskiest_cells: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def sample_unique_share(self) -> float:
        return self.sample_uniques / self.records if self.records else 0.0

    @property
    def passed(self) -> bool:
        return self.mean_risk <= self.max_mean_risk

    def summary(self) -> dict:
        return {
            "table": self.table, "risk_key": ", ".join(self.key) or "-", "units": self.units,
            "records": self.records, "key_cells": self.cells, "sample_uniques": self.sample_uniques,
            "sample_unique_share": round(self.sample_unique_share, 4), "mean_risk": round(self.mean_risk, 4),
            "max_risk": round(self.max_risk, 4), "max_mean_risk": self.max_mean_risk, "passed": self.passed,
        }


def _risk_key_expr(spec: ReleaseTable, column: str, rule: RiskRule) -> pl.Expr:
    """How the key sees a column: age in bands, ethnicity as its group, area as its region."""
    kind = ladder_kind(spec, column)
    if spec.column(column).role == "area":
        return region_of(pl.col(column)).alias(column)
    if kind == "age":
        return (pl.col(column) // rule.age_band * rule.age_band).cast(pl.Int32).alias(column)
    if kind == "ethnicity":
        return pl.col(column).str.slice(0, 1).alias(column)
    return pl.col(column)


def reidentification_risk(frame: pl.DataFrame, spec: ReleaseTable, rule: RiskRule = RiskRule()) -> RiskResult:
    """Per-record risk 1 / (people sharing the record's key cell); sample uniques; see the module doc."""
    key = list(rule.key) if rule.key is not None else default_quasi_identifiers(spec)
    unknown = [k for k in key if k not in frame.columns]
    if unknown:
        raise ValueError(f"{spec.source}.{spec.name}: risk key columns {unknown} are not columns of the table")
    person = spec.person_key if spec.person_key in frame.columns else None
    result = RiskResult(table=f"{spec.source}.{spec.name}", key=key, units="persons" if person else "rows",
                        records=frame.height, max_mean_risk=rule.max_mean_risk)
    if not key or frame.is_empty():
        return result
    view = frame.select([_risk_key_expr(spec, k, rule) for k in key] + ([pl.col(person)] if person else []))
    size = (pl.col(person).n_unique() if person else pl.len()).alias("people")
    cells = view.group_by(key).agg(size, pl.len().alias("records"))
    risk = (1.0 / pl.col("people").clip(lower_bound=1))
    result.cells = cells.height
    result.sample_uniques = int(cells.filter(pl.col("people") == 1)["records"].sum())
    result.mean_risk = float(cells.select((risk * pl.col("records")).sum() / pl.col("records").sum()).item())
    result.max_risk = float(cells.select(risk.max()).item())
    result.riskiest_cells = cells.sort("people", *key, nulls_last=True).head(10)
    return result
