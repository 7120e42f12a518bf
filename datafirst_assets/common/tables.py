"""Frames and lists as text: the one Markdown and the one HTML table renderer (asset metadata and
reports; nulls blank, floats formatted), and Markdown bullet lists."""

from __future__ import annotations

import html

import polars as pl


def cell(value, float_format: str = "{:.4f}") -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return float_format.format(value)
    return str(value)


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pl.DataFrame, float_format: str = "{:.4f}") -> str:
    """A frame as a Markdown table (pipes in values escaped)."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * frame.width]
    lines += ["| " + " | ".join(_md_cell(cell(v, float_format)) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)


def bullet_list(items, empty: str = "none") -> str:
    """Lines as a Markdown bullet list (problems, failures), or ``empty`` when there are none."""
    return "\n".join(f"- {item}" for item in items) or empty


def html_table(frame: pl.DataFrame, float_format: str = "{:.4f}") -> str:
    """A frame as an HTML table; numeric columns right-aligned."""
    numeric = [dtype.is_numeric() for dtype in frame.dtypes]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(
            f"<td{' class=num' if num else ''}>{html.escape(cell(v, float_format))}</td>"
            for v, num in zip(row, numeric)
        ) + "</tr>"
        for row in frame.iter_rows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
