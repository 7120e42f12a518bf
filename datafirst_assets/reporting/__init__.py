"""One report style for every report: tables, Vega-Lite charts, one self-contained HTML file.

`markdown_table` / `html_table` (from `common.tables`) are the only table renderers; `write_report` renders a Jinja2
template with the chart libraries Splink bundles (vega, vega-lite, vega-embed) inlined, so every
report opens offline; `file_url` links a file under the data folder from the UI (`make ui` serves it).
"""

from datafirst_assets.reporting.charts import bar_chart
from datafirst_assets.reporting.links import FILES_URL_ENV, file_url
from datafirst_assets.reporting.render import Section, render_report, write_markdown_and_html, write_report
from datafirst_assets.common.tables import html_table, markdown_table

__all__ = ["FILES_URL_ENV", "Section", "bar_chart", "file_url", "html_table", "markdown_table",
           "render_report", "write_markdown_and_html", "write_report"]
