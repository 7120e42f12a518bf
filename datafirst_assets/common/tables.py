"""Frames as text: Markdown tables for asset metadata and reports."""

from __future__ import annotations

import polars as pl


def markdown_table(frame: pl.DataFrame, float_format: str = "{:.4f}") -> str:
    """A frame as a Markdown table (nulls blank, floats formatted)."""

    def cell(value) -> str:
        return "" if value is None else float_format.format(value) if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * frame.width]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)
