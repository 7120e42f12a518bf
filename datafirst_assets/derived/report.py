"""Publication-style page of the repeat-offending profile: Markdown (+ SVG charts) and self-contained HTML.

    report = profile_report(profile, variant="deidentified", as_of=date(2024, 3, 31))
    paths = report.write(Path("data/reports"))   # repeat_offending_<variant>.md / .html / _<breakdown>.svg

Charts are hand-made inline SVG (no plotting dependency): one horizontal bar chart per
breakdown, one-year and two-year rates side by side, the overall rate as a dashed line, and
suppressed groups labelled instead of drawn. A page built from the synthetic release says so
in its title, in a banner, in every chart and in its file name.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from datafirst_assets.derived.repeat_offending_profile import BREAKDOWNS, MIN_COUNT, TOTAL, WINDOWS
from datafirst_assets.derived.spec import DerivedTable

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
COLOURS = {"1y": "#1d70b8", "2y": "#f47738"}
SUPPRESSED_MARK = "[c]"


@dataclass
class Report:
    variant: str
    markdown: str
    html: str
    charts: dict[str, str] = field(default_factory=dict)  # breakdown -> SVG

    @property
    def stem(self) -> str:
        return f"repeat_offending_{self.variant}"

    def write(self, folder: Path | str) -> dict[str, Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"markdown": folder / f"{self.stem}.md", "html": folder / f"{self.stem}.html"}
        for breakdown, svg in self.charts.items():
            paths[breakdown] = folder / f"{self.stem}_{breakdown}.svg"
            paths[breakdown].write_text(svg, encoding="utf-8")
        paths["markdown"].write_text(self.markdown, encoding="utf-8")
        paths["html"].write_text(self.html, encoding="utf-8")
        return paths


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


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(headers: list[str] | None, rows: list[list[str]]) -> str:
    head = "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr></thead>" if headers else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _axis_max(rates: list[float | None]) -> float:
    """Top of the rate axis: the largest rate shown, rounded up to a multiple of 10% (at least 10%)."""
    top = max([r for r in rates if r is not None], default=0.0)
    return min(1.0, max(0.1, -(-round(top * 100, 6) // 10) / 10))


def bar_chart(part: pl.DataFrame, heading: str, overall: dict[str, float | None], synthetic: bool) -> str:
    """Horizontal bars of the one- and two-year rates per group, as a standalone SVG."""
    label_w, plot_w, bar_h, gap, top = 130, 420, 11, 10, 54
    groups = part.to_dicts()
    height = top + len(groups) * (2 * bar_h + gap) + 40
    width = label_w + plot_w + 70
    esc = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="Arial, sans-serif" font-size="12" role="img" '
           f'aria-label="{esc(heading)}">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="8" y="18" font-size="14" font-weight="bold">{esc(heading)}</text>']
    if synthetic:
        out.append(f'<text x="{width - 8}" y="18" text-anchor="end" font-size="13" font-weight="bold" '
                   f'fill="#d4351c">SYNTHETIC</text>')
    for i, w in enumerate(WINDOWS):
        x = label_w + i * 150
        out.append(f'<rect x="{x}" y="30" width="10" height="10" fill="{COLOURS[w]}"/>'
                   f'<text x="{x + 14}" y="39">Returned {WINDOW_TITLES[w]}</text>')
    scale = _axis_max([g[f"rate_{w}"] for g in groups for w in WINDOWS] + list(overall.values()))
    step = 5 if scale <= 0.3 else 10
    for tick in range(0, round(scale * 100) + 1, step):
        x = label_w + plot_w * tick / 100 / scale
        out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 34}" stroke="#ddd"/>'
                   f'<text x="{x:.1f}" y="{height - 20}" text-anchor="middle" fill="#555">{tick}%</text>')
    out.append(f'<text x="{label_w + 300}" y="39" fill="#555">dashed: all people</text>')
    for w in WINDOWS:
        if overall.get(w) is not None:
            x = label_w + plot_w * overall[w] / scale
            out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 34}" stroke="{COLOURS[w]}" '
                       f'stroke-dasharray="4 3"><title>All people, {WINDOW_TITLES[w]}: '
                       f'{_rate(overall[w])}</title></line>')
    for n, g in enumerate(groups):
        y = top + n * (2 * bar_h + gap)
        out.append(f'<text x="{label_w - 8}" y="{y + bar_h + 4}" text-anchor="end">{esc(str(g["group"]))}</text>')
        for i, w in enumerate(WINDOWS):
            rate, by = g[f"rate_{w}"], y + i * bar_h
            if rate is None:
                out.append(f'<text x="{label_w + 4}" y="{by + bar_h - 2}" fill="#777" font-size="10">'
                           f'{SUPPRESSED_MARK} suppressed</text>')
                continue
            bw = plot_w * rate / scale
            out.append(f'<rect x="{label_w}" y="{by}" width="{bw:.1f}" height="{bar_h - 1}" fill="{COLOURS[w]}">'
                       f'<title>{esc(str(g["group"]))}, {WINDOW_TITLES[w]}: {_rate(rate)} of '
                       f'{g[f"eligible_{w}"]:,}</title></rect>'
                       f'<text x="{label_w + bw + 4:.1f}" y="{by + bar_h - 2}" font-size="10">{_rate(rate)}</text>')
    out.append("</svg>")
    return "".join(out)


CSS = """
body{font-family:Arial,Helvetica,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#0b0c0c;line-height:1.45}
h1{font-size:1.8em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #b1b4b6;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}th,td{border-bottom:1px solid #b1b4b6;padding:.3em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f2f1}
.banner{background:#d4351c;color:white;font-weight:bold;padding:.8em 1em;margin:1em 0}
.note{color:#505a5f;font-size:.92em}.headline{font-size:1.1em;background:#f3f2f1;padding:.8em 1em}
code{background:#f3f2f1;padding:0 .2em}
"""


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
              _md_table(*_table_rows(profile.filter(pl.col("breakdown") == "age_band"))), "",
              f"{SUPPRESSED_MARK}: suppressed (a count under {MIN_COUNT}, or one that would reveal it)."]
    return "\n".join(lines)


def profile_report(profile: pl.DataFrame, *, variant: str, as_of: dt.date | None = None,
                   tables: tuple[DerivedTable, ...] = (), extra_facts: dict[str, str] | None = None) -> Report:
    """The page for one release variant; `tables` adds their column catalogue as an appendix."""
    synthetic = variant == SYNTHETIC
    heading = title(variant)
    total = profile.filter(pl.col("breakdown") == TOTAL).row(0, named=True)
    overall = {w: total[f"rate_{w}"] for w in WINDOWS}
    facts = {"Release": f"{variant}{' (SYNTHETIC)' if synthetic else ''}",
             "As-of date": as_of.isoformat() if as_of else "n/a",
             "Suppression": f"counts under {MIN_COUNT} withheld, with secondary suppression",
             **(extra_facts or {})}
    md = [f"# {heading}", ""]
    page = [f"<h1>{html.escape(heading)}</h1>"]
    if synthetic:
        md += [f"> **{SYNTHETIC_BANNER}**", ""]
        page.append(f'<div class="banner">{html.escape(SYNTHETIC_BANNER)}</div>')
    md += [f"**{_headline(total, as_of)}**", ""]
    page.append(f'<p class="headline">{html.escape(_headline(total, as_of))}</p>')
    md += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in facts.items()), ""]
    page.append(_html_table(None, [[k, v] for k, v in facts.items()]))

    about = (
        "People are cross-justice persons (medium match threshold) with a criminal case in the magistrates' "
        "courts or the Crown Court. A person *returned* within one (two) years when another criminal case of "
        "theirs started 1-365 (1-730) days after their first; a Crown Court case that continues a magistrates' "
        "case is the same case. Rates count only people whose whole window had passed by the as-of date "
        "(*eligible*). Groups are by the first offence: age at first offence (estimated from the released ages), "
        "year of first offence; sex and ethnic group as most often recorded."
    )
    md += ["## What is measured", "", about, ""]
    page += ["<h2>What is measured</h2>", f"<p>{html.escape(about).replace('*', '')}</p>"]

    charts = {}
    for breakdown in BREAKDOWNS:
        if breakdown == TOTAL:
            continue
        part = profile.filter(pl.col("breakdown") == breakdown)
        name = BREAKDOWN_TITLES[breakdown]
        headers, rows = _table_rows(part)
        chart_heading = f"Repeat rate by {name.lower()}" + (" (SYNTHETIC)" if synthetic else "")
        charts[breakdown] = bar_chart(part, chart_heading, overall, synthetic)
        md += [f"## {name}", "", f"![{chart_heading}](repeat_offending_{variant}_{breakdown}.svg)", "",
               _md_table(headers, rows), ""]
        page += [f"<h2>{html.escape(name)}</h2>", charts[breakdown], _html_table(headers, rows)]

    note = (f"{SUPPRESSED_MARK}: withheld. A count under {MIN_COUNT} (zero included), or the people who did not "
            f"return under {MIN_COUNT}, is withheld with its rate; where that leaves a single withheld count in a "
            "breakdown, the next smallest is withheld too, so it cannot be recovered from the total.")
    md += ["## Notes", "", note, ""]
    page += ["<h2>Notes</h2>", f'<p class="note">{html.escape(note)}</p>']
    for table in tables:
        md += ["## Column catalogue: " + table.name, "", table.catalogue_markdown(), ""]
        page += [f"<h2>Column catalogue: {html.escape(table.name)}</h2>",
                 f"<p>{html.escape(table.description)}</p><p class='note'>Grain: {html.escape(table.grain)}.</p>",
                 _html_table(["column", "type", "description"],
                             [[c.name, str(c.dtype), c.description] for c in table.columns])]
    generated = f"Generated {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by datafirst."
    md.append(f"_{generated}_")
    page.append(f'<p class="note">{html.escape(generated)}</p>')
    document = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(heading)}</title>'
                f"<style>{CSS}</style></head><body>{''.join(page)}</body></html>")
    return Report(variant=variant, markdown="\n".join(md) + "\n", html=document, charts=charts)
