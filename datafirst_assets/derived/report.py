"""Publication-style page of the repeat-offending profile: Markdown and self-contained HTML.

    report = profile_report(profile, variant="deidentified", as_of=date(2024, 3, 31))
    paths = report.write(Path("data/reports"))   # repeat_offending_<variant>.md / .html

The HTML is the shared report style (`datafirst_assets.reporting`): one Vega-Lite bar chart per
breakdown, one-year and two-year rates side by side; suppressed groups are left out of the
chart and marked in the table. A page built from the synthetic release says so in its title,
in a banner, in every chart and in its file name.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from datafirst_assets.derived.repeat_offending_profile import BREAKDOWNS, MIN_COUNT, TOTAL, WINDOWS
from datafirst_assets.derived.spec import DerivedTable
from datafirst_assets.reporting import (
    Section,
    bar_chart,
    markdown_table,
    render_report,
    write_markdown_and_html,
)

SYNTHETIC = "synthetic"
SYNTHETIC_BANNER = (
    "SYNTHETIC DATA. Built from the synthetic release: generated values with the real release's columns and "
    "joins, so that code can be written and tested before access is granted. Relationships between columns "
    "are not kept, so no figure on this page is a finding about people."
)
BREAKDOWN_TITLES = {
    "age_band": "Age at first offence", "sex": "Sex", "ethnic_group": "Ethnic group", "year": "Year of first offence",
}
WINDOW_TITLES = {"1y": "within 1 year", "2y": "within 2 years"}
SUPPRESSED_MARK = "[c]"


@dataclass
class Report:
    variant: str
    markdown: str
    html: str
    charts: dict[str, dict] = field(default_factory=dict)  # breakdown -> Vega-Lite specification

    @property
    def stem(self) -> str:
        return f"repeat_offending_{self.variant}"

    def write(self, folder: Path | str) -> dict[str, Path]:
        return write_markdown_and_html(folder, self.stem, self.markdown, self.html)


RELEASE_LABELS = {"deidentified": "de-identified release", SYNTHETIC: "SYNTHETIC release (not real data)"}


def title(variant: str) -> str:
    return f"Repeat offending profile: {RELEASE_LABELS.get(variant, f'{variant} release')}"


def _count(value) -> str:
    return SUPPRESSED_MARK if value is None else f"{value:,}"


def _rate(value) -> str:
    return SUPPRESSED_MARK if value is None else f"{100 * value:.1f}%"


def _table_rows(part: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    headers = ["Group", "People"]
    for w in WINDOWS:
        headers += [f"Eligible ({w})", f"Returned ({w})", f"Rate {WINDOW_TITLES[w]}"]
    rows = []
    for r in part.iter_rows(named=True):
        row = [r["group"], _count(r["people"])]
        for w in WINDOWS:
            row += [_count(r[f"eligible_{w}"]), _count(r[f"returned_{w}"]), _rate(r[f"rate_{w}"])]
        rows.append(row)
    return headers, rows


def _frame(headers: list[str], rows: list[list[str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=headers, orient="row")


def rates_chart(part: pl.DataFrame, heading: str) -> dict:
    """One- and two-year rates per group (percent), suppressed groups left out."""
    rates = pl.concat([
        part.select(pl.col("group").cast(pl.String), pl.lit(f"Returned {WINDOW_TITLES[w]}").alias("window"),
                    (pl.col(f"rate_{w}") * 100).round(1).alias("rate (%)"))
        for w in WINDOWS
    ]).drop_nulls("rate (%)")
    return bar_chart(rates, "group", "rate (%)", color="window", title=heading, horizontal=True)


def _headline(total: dict, as_of: dt.date | None) -> str:
    parts = [f"{_count(total['people'])} people with a criminal case"]
    for w in WINDOWS:
        parts.append(f"{_rate(total[f'rate_{w}'])} returned {WINDOW_TITLES[w]} (of {_count(total[f'eligible_{w}'])} "
                     "whose window had ended)")
    return "; ".join(parts) + (f". Observed to {as_of.isoformat()}." if as_of else ".")


def summary_markdown(profile: pl.DataFrame, variant: str, as_of: dt.date | None = None) -> str:
    """Short version for the asset's metadata: the headline and the age-band table."""
    total = profile.filter(pl.col("breakdown") == TOTAL).row(0, named=True)
    lines = [f"**{title(variant)}**", ""]
    if variant == SYNTHETIC:
        lines += [f"> {SYNTHETIC_BANNER}", ""]
    lines += [_headline(total, as_of), "", f"{BREAKDOWN_TITLES['age_band']}:", "",
              markdown_table(_frame(*_table_rows(profile.filter(pl.col("breakdown") == "age_band")))), "",
              f"{SUPPRESSED_MARK}: suppressed (a count under {MIN_COUNT}, or one that would reveal it)."]
    return "\n".join(lines)


def profile_report(profile: pl.DataFrame, *, variant: str, as_of: dt.date | None = None,
                   tables: tuple[DerivedTable, ...] = (), extra_facts: dict[str, str] | None = None) -> Report:
    """The page for one release variant; `tables` adds their column catalogue as an appendix."""
    synthetic = variant == SYNTHETIC
    heading = title(variant)
    total = profile.filter(pl.col("breakdown") == TOTAL).row(0, named=True)
    facts = {"Release": f"{variant}{' (SYNTHETIC)' if synthetic else ''}",
             "As-of date": as_of.isoformat() if as_of else "n/a",
             "Suppression": f"counts under {MIN_COUNT} withheld, with secondary suppression",
             **(extra_facts or {})}
    md = [f"# {heading}", ""]
    if synthetic:
        md += [f"> **{SYNTHETIC_BANNER}**", ""]
    md += [f"**{_headline(total, as_of)}**", ""]
    facts_frame = pl.DataFrame({"": list(facts), " ": list(facts.values())})
    md += [markdown_table(facts_frame), ""]
    sections = [Section("At a glance", [_headline(total, as_of)], facts_frame)]

    about = (
        "People are cross-justice persons (medium match threshold) with a criminal case in the magistrates' "
        "courts or the Crown Court. A person *returned* within one (two) years when another criminal case of "
        "theirs started 1-365 (1-730) days after their first; a Crown Court case that continues a magistrates' "
        "case is the same case. Rates count only people whose whole window had passed by the as-of date "
        "(*eligible*). Groups are by the first offence: age at first offence (estimated from the released ages), "
        "year of first offence; sex and ethnic group as most often recorded."
    )
    md += ["## What is measured", "", about, ""]
    sections.append(Section("What is measured", [about.replace("*", "")]))

    charts = {}
    for breakdown in BREAKDOWNS:
        if breakdown == TOTAL:
            continue
        part = profile.filter(pl.col("breakdown") == breakdown)
        name = BREAKDOWN_TITLES[breakdown]
        table = _frame(*_table_rows(part))
        chart_heading = f"Repeat rate by {name.lower()}" + (" (SYNTHETIC)" if synthetic else "")
        charts[breakdown] = rates_chart(part, chart_heading)
        md += [f"## {name}", "", markdown_table(table), ""]
        sections.append(Section(name, [], table, charts[breakdown]))

    note = (f"{SUPPRESSED_MARK}: withheld. A count under {MIN_COUNT} (zero included), or the people who did not "
            f"return under {MIN_COUNT}, is withheld with its rate; where that leaves a single withheld count in a "
            "breakdown, the next smallest is withheld too, so it cannot be recovered from the total.")
    md += ["## Notes", "", note, ""]
    sections.append(Section("Notes", [note]))
    for table in tables:
        md += ["## Column catalogue: " + table.name, "", table.catalogue_markdown(), ""]
        columns = pl.DataFrame({"column": [c.name for c in table.columns], "type": [str(c.dtype) for c in table.columns],
                                "description": [c.description for c in table.columns]})
        sections.append(Section(f"Column catalogue: {table.name}", [table.description, f"Grain: {table.grain}."],
                                columns))
    generated = f"Generated {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by datafirst."
    md.append(f"_{generated}_")
    document = render_report(heading, sections, label=SYNTHETIC_BANNER if synthetic else "")
    return Report(variant=variant, markdown="\n".join(md) + "\n", html=document, charts=charts)
