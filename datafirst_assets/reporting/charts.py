"""Vega-Lite chart specifications (rendered by the report template with the bundled runtime)."""

from __future__ import annotations

import polars as pl

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"


def bar_chart(frame: pl.DataFrame, x: str, y: str, *, color: str | None = None, title: str = "",
              x_title: str | None = None, y_title: str | None = None, horizontal: bool = False,
              domain: tuple[float, float] | None = None, reference: pl.DataFrame | None = None,
              reference_note: str = "") -> dict:
    """A bar chart of `y` by category `x` (optionally coloured / grouped by `color`).

    `reference` (columns `y`, and `color` when grouped) draws each of its values as a dashed line
    across the chart, over the bars (a layered chart), e.g. the overall rate; `reference_note` says
    what the dashed lines are (the chart's subtitle)."""
    rows = frame.select([c for c in (x, y, color) if c]).to_dicts()
    value = {"field": y, "type": "quantitative", "title": y_title or y}
    if domain is not None:
        value["scale"] = {"domain": list(domain)}
    category = {"field": x, "type": "nominal", "title": x_title or x, "sort": None}
    encoding = {"x": value, "y": category} if horizontal else {"x": category, "y": value}
    encoding["tooltip"] = [{"field": c} for c in (x, y, color) if c]
    if color:
        encoding["color"] = {"field": color, "type": "nominal"}
        encoding["yOffset" if horizontal else "xOffset"] = {"field": color}
    bars = {"data": {"values": rows}, "mark": "bar", "encoding": encoding}
    if reference is None:
        return {"$schema": SCHEMA, "title": title, **bars, "width": 520}
    return {"$schema": SCHEMA, "title": {"text": title, "subtitle": reference_note} if reference_note else title,
            "width": 520, "layer": [bars, reference_lines(reference, value, color, horizontal)]}


def reference_lines(frame: pl.DataFrame, value: dict, color: str | None, horizontal: bool) -> dict:
    """Dashed rules at each value of `value["field"]` across the whole chart (coloured like the bars)."""
    field = value["field"]
    encoding = {"x" if horizontal else "y": {k: v for k, v in value.items() if k != "title"},
                "tooltip": [{"field": c} for c in (color, field) if c]}
    if color:
        encoding["color"] = {"field": color, "type": "nominal"}
    return {"data": {"values": frame.select([c for c in (color, field) if c]).to_dicts()},
            "mark": {"type": "rule", "strokeDash": [4, 3], "size": 2}, "encoding": encoding}
