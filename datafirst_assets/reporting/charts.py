"""Vega-Lite chart specifications (rendered by the report template with the bundled runtime)."""

from __future__ import annotations

import polars as pl

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"


def bar_chart(frame: pl.DataFrame, x: str, y: str, *, color: str | None = None, title: str = "",
              x_title: str | None = None, y_title: str | None = None, horizontal: bool = False,
              domain: tuple[float, float] | None = None) -> dict:
    """A bar chart of `y` by category `x` (optionally coloured / grouped by `color`)."""
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
    return {"$schema": SCHEMA, "title": title, "data": {"values": rows}, "mark": "bar",
            "encoding": encoding, "width": 520}
