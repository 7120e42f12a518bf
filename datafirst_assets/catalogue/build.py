"""Data catalogue of one released dataset, generated from the release specs and the data.

Researchers choose variables from the catalogue before they apply for access, so it describes
every released column (name, type, role, description, % missing, distinct values) and what is
in it, without itself disclosing anything the release rules would not:

* Value lists (categorical, flag and area columns, and numeric columns with few distinct
  values) show each value with its row count; counts under `min_count` show as "<10". When a
  column has exactly one such small count, the next smallest count is suppressed as well
  ("suppressed"), because the row count and % missing would otherwise give the small one by
  subtraction. Small counts are listed after the others in value order, not by size.
* Columns with more than `MAX_LISTED_VALUES` distinct values list only the values held by at
  least `min_count` rows, plus how many other values there are (rare values of a long list could
  single someone out; a code list of a hundred courts is fine to list in full).
* Keys (hashed ids, per-dataset and cross-justice person ids) never list values: distinct count only.
* Numeric, age, date and score columns give min / median / max, where min and max are the
  `min_count`-th lowest and highest values (bottom and top coding), so no extreme shown belongs
  to fewer than `min_count` rows; with fewer than 2 x `min_count` values the range is withheld.

The spec says what a column is; the data says what is in it. A spec column missing from the
frame, or a frame column the spec does not describe, is an error naming the table and column.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from datafirst_assets.common.sql import quote_identifier
from datafirst_assets.deidentify.release_spec import LINKING, ReleaseTable
from datafirst_assets.reporting import Section, markdown_table, render_report, write_markdown_and_html
from datafirst_assets.sources.registry import SOURCES

KEY_ROLES = frozenset({"primary_key", "foreign_key", "system_id", "person_key", "xjs_key"})
LISTED_ROLES = frozenset({"categorical", "flag", "area"})
RANGE_ROLES = frozenset({"numeric", "age", "date", "score"})
# Numeric and score columns with at most this many distinct values also get a value list (scores 0-7).
SMALL_CARDINALITY = 20
MAX_LISTED_VALUES = 200
SYNTHETIC_LABEL = "SYNTHETIC"
SYNTHETIC_BANNER = (
    "SYNTHETIC DATA: these tables are generated, not real records. They have the columns, types and "
    "joins of the de-identified release so that code can be written and tested against them; "
    "no finding from them is a finding about people."
)
SUPPRESSED = "suppressed"
LINKING_DESCRIPTION = (
    "Linking lookups: the cross-justice person lookup (per-dataset person id -> cross-justice person ids "
    "at three match thresholds) and the magistrates' to Crown Court case lookup."
)

COLUMN_SCHEMA = {
    "dataset": pl.String, "table": pl.String, "position": pl.Int32, "column": pl.String, "type": pl.String,
    "role": pl.String, "description": pl.String, "pct_missing": pl.Float64, "distinct": pl.Int64,
    "values": pl.String, "min": pl.String, "median": pl.String, "max": pl.String, "note": pl.String,
}
TABLE_SCHEMA = {
    "dataset": pl.String, "table": pl.String, "grain": pl.String, "rows": pl.Int64, "columns": pl.Int32,
    "parent": pl.String, "unique_key": pl.String, "withheld": pl.String,
}
VALUE_SCHEMA = {
    "dataset": pl.String, "table": pl.String, "column": pl.String, "value": pl.String,
    "count": pl.Int64, "shown": pl.String,
}


class CatalogueError(ValueError):
    """The data and the spec disagree about which tables or columns exist."""


@dataclass(frozen=True)
class Catalogue:
    dataset: str
    synthetic: bool
    frame: pl.DataFrame   # one row per column of every table (COLUMN_SCHEMA)
    tables: pl.DataFrame  # one row per table: grain, rows, columns, parent, unique key, withheld
    values: pl.DataFrame  # one row per listed value: count (null when suppressed) and what is shown
    markdown: str
    html: str

    @property
    def title(self) -> str:
        return _title(self.dataset, self.synthetic)

    def write(self, folder: Path | str) -> dict[str, Path]:
        return write_markdown_and_html(folder, self.dataset, self.markdown, self.html)


def build_catalogue(
    dataset: str,
    tables: Mapping[str, pl.DataFrame | FrameColumns | StoredColumns],
    specs: Mapping[str, ReleaseTable],
    *,
    synthetic: bool = False,
    title_note: str = "",
    min_count: int = 10,
) -> Catalogue:
    """Catalogue of `dataset`: `tables` and `specs` are keyed by table name (spec order is kept); a
    table is a frame, or `StoredColumns` (its statistics computed where it is stored)."""
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}")
    unspecified = sorted(set(tables) - set(specs))
    if unspecified:
        raise CatalogueError(f"{dataset}: tables without a release spec: {', '.join(unspecified)}")
    absent = [name for name in specs if name not in tables]
    if absent:
        raise CatalogueError(f"{dataset}: release tables missing from the data: {', '.join(absent)}")

    column_rows, table_rows, value_rows = [], [], []
    for name, spec in specs.items():
        frame = tables[name]
        frame = FrameColumns(frame) if isinstance(frame, pl.DataFrame) else frame
        _check_columns(dataset, name, spec, frame)
        table_rows.append({
            "dataset": dataset, "table": name, "grain": spec.grain, "rows": frame.height,
            "columns": len(spec.columns), "parent": spec.parent, "unique_key": ", ".join(spec.unique_key),
            "withheld": ", ".join(spec.dropped),
        })
        for position, column in enumerate(spec.columns, start=1):
            summary, values = frame.summarise(column.name, column.role, min_count)
            column_rows.append({
                "dataset": dataset, "table": name, "position": position, "column": column.name,
                "type": str(frame.schema[column.name]), "role": column.role,
                "description": column.description,
                **summary,
            })
            value_rows += [{"dataset": dataset, "table": name, "column": column.name, **v} for v in values]

    columns = pl.DataFrame(column_rows, schema=COLUMN_SCHEMA)
    table_frame = pl.DataFrame(table_rows, schema=TABLE_SCHEMA)
    value_frame = pl.DataFrame(value_rows, schema=VALUE_SCHEMA)
    page = _Page(dataset, synthetic, title_note, min_count, table_frame, columns, value_frame)
    return Catalogue(dataset, synthetic, columns, table_frame, value_frame, page.markdown(), page.html())


def build_catalogues(
    tables: Mapping[tuple[str, str], pl.DataFrame],
    specs: Mapping[tuple[str, str], ReleaseTable],
    **options,
) -> dict[str, Catalogue]:
    """One catalogue per dataset in `specs` ((source, table) keyed, e.g. `release_tables()`)."""
    datasets: dict[str, dict[str, ReleaseTable]] = {}
    for (source, name), spec in specs.items():
        datasets.setdefault(source, {})[name] = spec
    unspecified = sorted(f"{s}.{t}" for s, t in tables if (s, t) not in specs)
    if unspecified:
        raise CatalogueError(f"tables without a release spec: {', '.join(unspecified)}")
    return {
        dataset: build_catalogue(
            dataset, {name: tables[(dataset, name)] for name in dataset_specs if (dataset, name) in tables},
            dataset_specs, **options,
        )
        for dataset, dataset_specs in datasets.items()
    }


def _check_columns(dataset: str, table: str, spec: ReleaseTable, frame: FrameColumns | StoredColumns) -> None:
    missing = [c for c in spec.column_names if c not in frame.columns]
    if missing:
        raise CatalogueError(f"{dataset}.{table}: column(s) in the release spec but not in the data: "
                             f"{', '.join(missing)}")
    extra = [c for c in frame.columns if c not in spec.column_names]
    if extra:
        raise CatalogueError(f"{dataset}.{table}: column(s) in the data that the release spec does not "
                             f"describe: {', '.join(extra)}")


# --- per-column statistics -----------------------------------------------------------------------


class FrameColumns:
    """A table held as a frame: what `build_catalogue` reads of it (rows, columns, each column's summary)."""

    def __init__(self, frame: pl.DataFrame):
        self.frame, self.height, self.columns, self.schema = frame, frame.height, frame.columns, frame.schema

    def summarise(self, column: str, role: str, min_count: int) -> tuple[dict, list[dict]]:
        return _summarise(self.frame.get_column(column), role, min_count)


class StoredColumns:
    """A table where it is stored (DuckDB, `select_sql` on `conn`): the same summaries as `FrameColumns`
    of the table read as a frame, from queries, so that no row is read into Python. The catalogue
    steps read every release table whole into Python to count values (about half of each step's
    time went on reading). Rows and present values of every column come from one pass; a column's
    distinct values, a listed column's value counts (its distinct count too) and a ranged column's
    order statistics from one query each, then summarised by the frame path's own code (`_summary`)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, select_sql: str):
        self._conn, self._sql = conn, select_sql
        self.schema = pl.from_arrow(conn.sql(f"select * from ({select_sql}) _t limit 0").to_arrow_table()).schema
        self.columns = list(self.schema)
        counts = conn.execute("select count(*)" + "".join(f", count({q})" for q in map(quote_identifier, self.columns))
                              + f" from ({select_sql}) _t").fetchall()[0]
        self.height = int(counts[0])
        self._present = {c: int(counts[1 + i]) for i, c in enumerate(self.columns)}

    def summarise(self, column: str, role: str, min_count: int) -> tuple[dict, list[dict]]:
        q, n, dtype = quote_identifier(column), self._present[column], self.schema[column]
        value_counts = f"select {q} as _key, count(*) as n from ({self._sql}) _t where {q} is not null group by 1"
        counts = None
        if role in LISTED_ROLES:  # listed whatever its distinct count: one value per row of its counts
            counts = self._fetch(value_counts)
            distinct = counts.height
        else:  # a column at a time: DuckDB's distinct counts of many columns in one query took twice as long
            distinct = self._conn.execute(f"select count(*) from ({value_counts}) _d").fetchall()[0][0]
        return _summary(self.height, n, int(distinct), dtype, role, min_count,
                        range_of=lambda: self._range(q, n, dtype, min_count),
                        counts_of=lambda: counts if counts is not None else self._fetch(value_counts))

    def _fetch(self, sql: str) -> pl.DataFrame:
        return pl.from_arrow(self._conn.sql(sql).to_arrow_table())  # type: ignore[return-value]

    def _range(self, q: str, n: int, dtype, min_count: int) -> tuple[str | None, str | None, str | None]:
        """`_range` of the column's present values: the values at those positions of their order."""
        if n < 2 * min_count or dtype == pl.Boolean:
            return None, None, None
        middle = sorted({(n - 1) // 2 + 1, n // 2 + 1})  # 1-based: the median's one or two values
        wanted = sorted({min_count, n - min_count + 1, *middle})
        found = self._fetch(f"select _r, _v from (select {q} as _v, row_number() over (order by {q}) as _r "
                            f"from ({self._sql}) _t where {q} is not null) _o where _r in "
                            f"({', '.join(map(str, wanted))}) order by _r")
        values = dict(zip(found["_r"].to_list(), range(found.height)))
        at = found["_v"]
        if dtype.is_temporal():
            median = at[values[(n - 1) // 2 + 1]]  # a date, not the mean of two dates
        else:  # the whole column's median is that of its middle values (polars: the same interpolation)
            median = at.gather([values[p] for p in middle]).median()
        return _format(at[values[min_count]]), _format(median), _format(at[values[n - min_count + 1]])


def _summarise(series: pl.Series, role: str, min_count: int) -> tuple[dict, list[dict]]:
    present = series.drop_nulls()
    return _summary(series.len(), present.len(), present.n_unique(), series.dtype, role, min_count,
                    range_of=lambda: _range(present, min_count),
                    counts_of=lambda: present.rename("_key").value_counts(sort=False, name="n"))


def _summary(rows: int, present: int, distinct: int, dtype, role: str, min_count: int, *,
             range_of, counts_of) -> tuple[dict, list[dict]]:
    """A column's summary from its row, present and distinct counts; `range_of()`: `_range` of its
    present values, `counts_of()`: their value counts (`_key`, `n`), each asked only when needed."""
    summary: dict = {
        "pct_missing": round(100 * (rows - present) / rows, 1) if rows else 0.0,
        "distinct": distinct,
        "values": None, "min": None, "median": None, "max": None, "note": None,
    }
    values: list[dict] = []
    if role in KEY_ROLES:
        summary["note"] = "identifier: values not listed"
        return summary, values
    ranged = role in RANGE_ROLES or (role not in LISTED_ROLES and (dtype.is_numeric() or dtype.is_temporal()))
    listed = role in LISTED_ROLES or (
        role not in ("age", "date") and summary["distinct"] <= SMALL_CARDINALITY
        and not dtype.is_temporal()
    )
    notes = []
    if ranged:
        low, middle, high = range_of()
        summary.update({"min": low, "median": middle, "max": high})
        if middle is None and present:
            notes.append(f"range withheld: fewer than {2 * min_count} values")
        elif present:
            notes.append(f"min and max are the {_ordinal(min_count)} lowest and highest values")
    if listed:
        values, hidden = _value_counts(counts_of(), min_count, sort_by_value=ranged or dtype == pl.Boolean)
        if len(values) == 1 and values[0]["count"] is None and rows > present:
            # A single small value and the missing rows: % missing would give the small count.
            summary["pct_missing"] = None
            notes.append("% missing withheld: the only value is held by fewer than "
                         f"{min_count} rows")
        summary["values"] = "; ".join(f"{v['value']} ({v['shown']})" for v in values) or None
        if hidden:
            notes.append(f"{hidden:,} further values each held by fewer than {min_count} rows, not listed")
    summary["note"] = "; ".join(notes) or None
    return summary, values


def _value_counts(counts: pl.DataFrame, min_count: int, *, sort_by_value: bool) -> tuple[list[dict], int]:
    """The listed values of a column from its value counts (`_key`: each present value once, `n`)."""
    hidden = 0
    if counts.height > MAX_LISTED_VALUES:
        hidden = counts.filter(pl.col("n") < min_count).height
        counts = counts.filter(pl.col("n") >= min_count)
    small = counts.filter(pl.col("n") < min_count).sort("_key")
    large = counts.filter(pl.col("n") >= min_count)
    large = large.sort("_key") if sort_by_value else large.sort(["n", "_key"], descending=[True, False])
    secondary = None
    # One small cell plus exact totals gives the small cell by subtraction: hide the next smallest too.
    if small.height == 1 and large.height >= 1 and not hidden:
        secondary = large.sort(["n", "_key"]).row(0, named=True)["_key"]
    listed = []
    for row in large.iter_rows(named=True):
        suppressed = row["_key"] == secondary
        listed.append({"value": _format(row["_key"]), "count": None if suppressed else row["n"],
                       "shown": SUPPRESSED if suppressed else f"{row['n']:,}"})
    listed += [{"value": _format(row["_key"]), "count": None, "shown": f"<{min_count}"}
               for row in small.iter_rows(named=True)]
    return listed, hidden


def _range(present: pl.Series, min_count: int) -> tuple[str | None, str | None, str | None]:
    n = present.len()
    if n < 2 * min_count:
        return None, None, None
    ordered = present.sort()
    if ordered.dtype.is_temporal():
        middle = ordered[(n - 1) // 2]  # a date, not the mean of two dates
    elif ordered.dtype == pl.Boolean:
        return None, None, None
    else:
        middle = ordered.median()
    return _format(ordered[min_count - 1]), _format(middle), _format(ordered[n - min_count])


def _format(value) -> str:
    if value is None:
        return "(missing)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() or abs(value) >= 1000:
            return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.0f}"
        return f"{value:.4g}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# --- rendering -----------------------------------------------------------------------------------


def _title(dataset: str, synthetic: bool) -> str:
    return f"{SYNTHETIC_LABEL} data catalogue: {dataset}" if synthetic else f"Data catalogue: {dataset}"


def _dataset_description(dataset: str) -> str:
    if dataset == LINKING:
        return LINKING_DESCRIPTION
    source = SOURCES.get(dataset)
    return source.description if source else ""


class _Page:
    """Markdown and HTML of one catalogue, from the three frames."""

    def __init__(self, dataset, synthetic, title_note, min_count, tables, columns, values):
        self.dataset, self.synthetic, self.note, self.min_count = dataset, synthetic, title_note, min_count
        self.tables, self.columns = tables, columns
        self.values = {
            key: part.select("value", "shown").rows()
            for key, part in values.group_by(["table", "column"], maintain_order=True)
        }

    def heading(self, table: str) -> str:
        name = f"{self.dataset}.{table}"
        return f"{SYNTHETIC_LABEL}: {name}" if self.synthetic else name

    def reading_notes(self) -> list[str]:
        k = self.min_count
        return [
            f"Counts under {k} show as \"<{k}\"; where a column has a single such count, the next smallest "
            f"is shown as \"{SUPPRESSED}\" so it cannot be worked out by subtraction.",
            f"Min and max are the {_ordinal(k)} lowest and {_ordinal(k)} highest values, so no extreme shown "
            f"belongs to fewer than {k} rows; ranges of columns with fewer than {2 * k} values are withheld.",
            "Identifiers (hashed ids, per-dataset and cross-justice person ids) give distinct counts only.",
            "Withheld: source columns not released (names, addresses, dates of birth, free text).",
        ]

    def cell_values(self, row: dict) -> list[tuple[str, str]]:
        return self.values.get((row["table"], row["column"]), [])

    @staticmethod
    def range_text(row: dict) -> str:
        if row["median"] is None:
            return ""
        return f"min {row['min']} · median {row['median']} · max {row['max']}"

    def table_list(self) -> pl.DataFrame:
        return self.tables.select(
            "table", "grain", pl.col("rows").map_elements(lambda n: f"{n:,}", return_dtype=pl.String),
            "columns", pl.col("parent").fill_null("").alias("joins to"))

    def table_intro(self, t: dict) -> str:
        return (f"Grain: one row per {_grain(t['grain'])}. Rows: {t['rows']:,}. Unique key: "
                f"{t['unique_key'] or '(none)'}." + (f" Child of {t['parent']}." if t["parent"] else ""))

    # Markdown

    def markdown(self) -> str:
        lines = [f"# {_title(self.dataset, self.synthetic)}", ""]
        if self.synthetic:
            lines += [f"> **{SYNTHETIC_BANNER}**", ""]
        if self.note:
            lines += [self.note, ""]
        if description := _dataset_description(self.dataset):
            lines += [description, ""]
        lines += ["How to read this catalogue:", ""] + [f"- {n}" for n in self.reading_notes()] + [""]
        lines += ["## Tables", "", markdown_table(self.table_list())]
        for t in self.tables.iter_rows(named=True):
            lines += ["", f"## {self.heading(t['table'])}", "", self.table_intro(t)]
            lines.append(f"withheld: {t['withheld']}" if t["withheld"] else "withheld: (none)")
            rows = []
            for c in self.columns.filter(pl.col("table") == t["table"]).iter_rows(named=True):
                listed = "; ".join(f"{v} ({n})" for v, n in self.cell_values(c))
                detail = " ".join(part for part in (self.range_text(c), listed) if part)
                rows.append([f"`{c['column']}`", c["type"], c["role"], c["description"], _pct(c["pct_missing"]),
                             f"{c['distinct']:,}", detail, c["note"] or ""])
            columns = ["column", "type", "role", "description", "% missing", "distinct", "values / range", "note"]
            lines += ["", markdown_table(pl.DataFrame(rows, schema=columns, orient="row"))]
        return "\n".join(lines) + "\n"

    # HTML

    def html(self) -> str:
        e = html.escape
        intro = [self.note] if self.note else []
        if description := _dataset_description(self.dataset):
            intro.append(description)
        notes = ("<details><summary>How to read this catalogue</summary><ul>"
                 + "".join(f"<li>{e(n)}</li>" for n in self.reading_notes()) + "</ul></details>")
        contents = "".join(f'<li><a href="#{e(_anchor("table-" + t))}">{e(t)}</a></li>'
                           for t in self.tables["table"])
        sections = [Section("Tables", [], self.table_list(), html=f"{notes}<ul>{contents}</ul>")]
        for t in self.tables.iter_rows(named=True):
            rows = [f"<tr><td><code>{e(c['column'])}</code></td><td>{e(c['type'])}</td>"
                    f"<td>{e(c['role'])}</td><td>{e(c['description'])}</td>"
                    f"<td class=num>{_pct(c['pct_missing'])}</td><td class=num>{c['distinct']:,}</td>"
                    f"<td>{self.html_values(c)}</td></tr>"
                    for c in self.columns.filter(pl.col("table") == t["table"]).iter_rows(named=True)]
            # the values column holds lists and folded details, so this table is built here, not from a frame
            columns = ("<table><thead><tr><th>column</th><th>type</th><th>role</th><th>description</th>"
                       "<th>% missing</th><th>distinct</th><th>values / range</th></tr></thead><tbody>"
                       + "".join(rows) + "</tbody></table>")
            sections.append(Section(
                self.heading(t["table"]), [self.table_intro(t), f"withheld: {t['withheld'] or '(none)'}"],
                html=columns, anchor=_anchor("table-" + t["table"])))
        return render_report(_title(self.dataset, self.synthetic), sections,
                             label=SYNTHETIC_BANNER if self.synthetic else "", intro=intro)

    def html_values(self, row: dict) -> str:
        e = html.escape
        parts = []
        if text := self.range_text(row):
            parts.append(f"<div>{e(text)}</div>")
        listed = self.cell_values(row)
        if listed:
            items = "".join(f"<li>{e(v)} <span class=n>{e(n)}</span></li>" for v, n in listed)
            if len(listed) > 8:
                parts.append(f"<details><summary>{len(listed)} values</summary>"
                             f"<ul class=values>{items}</ul></details>")
            else:
                parts.append(f"<ul class=values>{items}</ul>")
        if row["note"]:
            parts.append(f'<div class="cnote">{e(row["note"])}</div>')
        return "".join(parts)


def _pct(value: float | None) -> str:
    return "withheld" if value is None else f"{value:.1f}"


def _grain(grain: str) -> str:
    return grain.removeprefix("one row per ")


def _anchor(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


