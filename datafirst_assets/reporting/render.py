"""Render a report (sections of text, tables and charts) to one self-contained HTML file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from jinja2 import Environment

from datafirst_assets.common.tables import html_table

CHART_LIBRARIES = ("vega", "vega-lite", "vega-embed")


@dataclass
class Section:
    heading: str
    text: list[str] = field(default_factory=list)   # paragraphs
    table: pl.DataFrame | None = None
    chart: dict | None = None                         # a Vega-Lite specification
    float_format: str = "{:.4f}"
    html: str = ""                                    # a trusted, already escaped fragment (after the table)
    anchor: str = ""                                  # id of the section, for links within the page


@cache
def _environment() -> Environment:
    # imported here: jinja2 is ~0.1 s of loading the code location (every run's start), for reports only
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(loader=PackageLoader("datafirst_assets.reporting", "templates"),
                       autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)


@cache
def chart_libraries() -> dict[str, str]:
    """Splink's bundled copies of vega, vega-lite and vega-embed (no CDN: reports open offline)."""
    bundled = files("splink").joinpath("internals", "files", "external_js")
    found = {}
    for name in CHART_LIBRARIES:
        [source] = [f for f in bundled.iterdir() if f.name.rsplit("@", 1)[0] == name]
        found[name] = source.read_text(encoding="utf-8")
    return found


def _script_safe(text: str) -> str:
    return text.replace("</script", "<\\/script")


def render_report(title: str, sections: list[Section], *, label: str = "", intro: list[str] | None = None) -> str:
    """The report as HTML; the chart runtime is inlined only when a section has a chart."""
    charts = [json.dumps(s.chart, default=str).replace("</", "<\\/") for s in sections if s.chart]
    libraries = {n: _script_safe(src) for n, src in chart_libraries().items()} if charts else {}
    rendered = [
        {"heading": s.heading, "text": s.text, "html": s.html, "anchor": s.anchor,
         "table": html_table(s.table, s.float_format) if s.table is not None else None,
         "chart": json.dumps(s.chart, default=str).replace("</", "<\\/") if s.chart else None}
        for s in sections
    ]
    return _environment().get_template("report.html.j2").render(
        title=title, label=label, intro=intro or [], sections=rendered, libraries=libraries,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_markdown_and_html(folder: Path | str, stem: str, markdown: str, html: str) -> dict[str, Path]:
    """A report as ``<stem>.md`` and ``<stem>.html`` in ``folder`` (made if missing): paths by format."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": folder / f"{stem}.md", "html": folder / f"{stem}.html"}
    paths["markdown"].write_text(markdown, encoding="utf-8")
    paths["html"].write_text(html, encoding="utf-8")
    return paths


def write_report(path: Path, title: str, sections: list[Section], **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(title, sections, **kwargs), encoding="utf-8")
    return path
