"""Raw text -> typed, standardised staged rows, with every rejected row quarantined.

Only values that make a row unusable quarantine it (no id, a duplicated id, a required value
missing, a date/number/code that cannot be read, a line the CSV reader rejected, a value over its
column's length limit or outside its range, a control character such as NUL). Identifier
noise that is normal in administrative data is cleaned to null instead (invalid postcode or
PNC, placeholder date of birth, junk PNC shared by many people, unknown sex or ethnicity code),
because the row itself is still a real event. Nothing changes silently: every value staging
changes beyond case and spacing (a name's characters, an identifier set to null) is counted per
column in `StagedResult.alterations`, shown on the staged asset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl

from datafirst_assets.raw.delivery import PARTITION_COLUMN
from datafirst_assets.sources.identifiers import (
    clean_name,
    original_name,
    normalise_cro,
    normalise_pnc,
    normalise_postcode,
    junk_pnc,
)
from datafirst_assets.sources.registry import ETHNIC_GROUP, ETHNICITY_CODES
from datafirst_assets.sources.spec import ColumnSpec, SourceSpec, TableSpec

QUARANTINE_COLUMNS = (
    PARTITION_COLUMN, "source", "table", "record_id", "_source_file", "_row_number", "reason", "raw_record",
)
TRAILING_LOAD_COLUMNS = ("_source_file", "_row_number")
EARLIEST_DOB = date(1900, 1, 2)
#: Suffix of the column keeping a name as written (accents and all) next to the folded one.
ORIGINAL_SUFFIX = "_original"
FLAG_VALUES = {"Y": True, "YES": True, "TRUE": True, "1": True, "N": False, "NO": False, "FALSE": False, "0": False}


# Control characters never belong in a field; free text may hold tabs and line breaks (RFC 4180
# allows them inside quotes), nothing else may.
CONTROL_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
CONTROL_OR_BREAK = r"[\x00-\x1f\x7f]"


@dataclass(frozen=True)
class StagedResult:
    staged: pl.DataFrame
    quarantine: pl.DataFrame
    # column -> {what happened: how many values}, for values staging changed beyond case/spacing
    alterations: dict[str, dict[str, int]] = field(default_factory=dict)


def _text(name: str) -> pl.Expr:
    stripped = pl.col(name).str.strip_chars()
    return pl.when(stripped == "").then(None).otherwise(stripped)


def staged_dtype(column: ColumnSpec) -> pl.DataType:
    return {
        "date": pl.Date(), "dob": pl.Date(), "int": pl.Int64(), "float": pl.Float64(), "flag": pl.Boolean(),
    }.get(column.kind, pl.String())


def _parse(column: ColumnSpec, source: SourceSpec) -> pl.Expr:
    """Expression giving the typed value (null where missing or unreadable)."""
    raw = _text(column.name)
    kind = column.kind
    if kind in ("date", "dob"):
        return raw.str.strptime(pl.Date, source.date_format, strict=False)
    if kind == "int":
        return raw.str.replace_all(",", "").cast(pl.Int64, strict=False)
    if kind == "float":
        return raw.str.replace_all(",", "").cast(pl.Float64, strict=False)
    if kind == "flag":
        return raw.str.to_uppercase().replace_strict(FLAG_VALUES, default=None, return_dtype=pl.Boolean)
    if kind == "code":
        return raw.str.to_uppercase()
    if kind == "name":
        return clean_name(raw)
    if kind == "postcode":
        return normalise_postcode(raw)
    if kind == "pnc":
        return normalise_pnc(raw)
    if kind == "cro":
        return normalise_cro(raw)
    if kind == "sex":
        return raw.replace_strict(source.sex_codes, default=None, return_dtype=pl.String)
    if kind == "ethnicity":
        upper = raw.str.to_uppercase()
        return pl.when(upper.is_in(list(ETHNICITY_CODES))).then(upper)
    return raw


#: A reason a row is quarantined: when it applies (a boolean expression, null taken as false) and
#: what it says (evaluated only on the rows it applies to).
Problem = tuple[pl.Expr, pl.Expr]


def _row_problems(table: TableSpec, source: SourceSpec) -> list[Problem]:
    """Every reason a row of ``table`` can be quarantined for, in the order its reasons are joined."""
    problems: list[Problem] = []
    for column in table.columns:
        problems.extend(_value_limits(column))
        typed = pl.col(f"__typed_{column.name}")
        present = _text(column.name).is_not_null()
        if column.required or column.kind == "id":
            problems.append((~present, pl.lit(f"{column.name}: missing required value")))
        if column.kind == "date":
            message = f"{column.name}: unparseable date '{{}}' (expected {source.date_format})"
            problems.append((present & typed.is_null(), pl.format(message, pl.col(column.name))))
        if column.kind in ("int", "float", "flag"):
            message = f"{column.name}: not a valid {column.kind} '{{}}'"
            problems.append((present & typed.is_null(), pl.format(message, pl.col(column.name))))
        if column.kind == "code" and column.codes:
            problems.append((present & ~typed.is_in(list(column.codes)),
                             pl.format(f"{column.name}: unknown code '{{}}'", pl.col(column.name))))
    id_col = table.id_column
    # every occurrence of an id after its first (is_first_distinct: a quarter of the time of
    # numbering the rows within each id with a window)
    duplicated = pl.col(id_col).is_not_null() & ~_text(id_col).is_first_distinct()
    problems.append((duplicated, pl.format(f"{id_col}: duplicate source id '{{}}'", pl.col(id_col))))
    return problems


def _flag_problems(typed: pl.DataFrame, problems: list[Problem]) -> pl.DataFrame:
    """``typed`` with each problem's condition (``__problem_<i>``) and whether the row has any
    (``__bad``), booleans over every row. The reasons' text is written afterwards for the bad rows
    alone (:func:`_with_reasons`): formatting every reason for every row cost most of staging."""
    flags = [condition.fill_null(False).alias(f"__problem_{i}") for i, (condition, _) in enumerate(problems)]
    typed = typed.with_columns(flags)
    return typed.with_columns(
        (pl.col("_parse_error").is_not_null()
         | pl.any_horizontal(pl.col(f"__problem_{i}") for i in range(len(problems)))).alias("__bad"))


def _with_reasons(bad: pl.DataFrame, problems: list[Problem]) -> pl.DataFrame:
    """The bad rows with ``__reason``: their reasons joined by '; ' in order; an unreadable
    line has no fields to judge, so its reason is the reader's, alone."""
    joined = pl.concat_str([pl.when(pl.col(f"__problem_{i}")).then(message)
                            for i, (_, message) in enumerate(problems)], separator="; ", ignore_nulls=True)
    unreadable = pl.format("unreadable line: {}", pl.col("_parse_error"))
    return bad.with_columns(
        pl.when(pl.col("_parse_error").is_not_null()).then(unreadable).otherwise(joined).alias("__reason"))


def _value_limits(column: ColumnSpec) -> list[Problem]:
    """Reasons from the registry's limits: control characters, length, numeric range."""
    raw = pl.col(column.name)
    pattern = CONTROL_CHARACTERS if column.kind == "text" else CONTROL_OR_BREAK
    limit = column.length_limit
    problems = [
        (raw.str.contains(pattern), pl.format(f"{column.name}: control character 0x{{}} in the value",
                                              raw.str.extract(f"({pattern})").str.encode("hex"))),
        (raw.str.len_chars() > limit, pl.format(
            f"{column.name}: {{}} characters, over the limit of {limit}", raw.str.len_chars())),
    ]
    typed = pl.col(f"__typed_{column.name}")
    if column.min_value is not None:
        problems.append((typed < column.min_value, pl.format(
            f"{column.name}: {{}} is below the minimum {column.min_value:g}", typed)))
    if column.max_value is not None:
        problems.append((typed > column.max_value, pl.format(
            f"{column.name}: {{}} is above the maximum {column.max_value:g}", typed)))
    return problems


# Kinds whose invalid values staging sets to null (the row is kept): counted, never silent.
_NULLED_WHEN_INVALID = ("postcode", "pnc", "cro", "sex", "ethnicity")


def _alterations(good: pl.DataFrame, table: TableSpec) -> dict[str, dict[str, int]]:
    """How many present raw values of the staged rows standardisation changed, per column."""
    exprs = []
    for column in table.columns:
        raw, typed = _text(column.name), pl.col(f"__typed_{column.name}")
        if column.kind == "name":
            plain = raw.str.to_uppercase().str.replace_all(r"\s+", " ")
            exprs.append((raw.is_not_null() & (typed.is_null() | (typed != plain))).sum()
                         .alias(f"{column.name}\tcharacters removed or replaced"))
        elif column.kind in _NULLED_WHEN_INVALID:
            exprs.append((raw.is_not_null() & typed.is_null()).sum().alias(f"{column.name}\tinvalid, set to null"))
    if not exprs or good.height == 0:
        return {}
    counts: dict[str, dict[str, int]] = {}
    for name, value in good.select(exprs).row(0, named=True).items():
        if value:
            column, what = name.split("\t")
            counts.setdefault(column, {})[what] = int(value)
    return counts


def _null_junk_pncs(frame: pl.DataFrame, table: TableSpec) -> pl.DataFrame:
    pnc_cols = [c.name for c in table.columns if c.kind == "pnc"]
    dob_cols = [c.name for c in table.columns if c.kind == "dob"]
    for pnc in pnc_cols:
        junk = junk_pnc(pnc, dob_cols[0] if dob_cols else None)
        frame = frame.with_columns(pl.when(junk).then(None).otherwise(pl.col(pnc)).alias(pnc))
    return frame


def _clean_dobs(frame: pl.DataFrame, table: TableSpec) -> pl.DataFrame:
    """Unreadable, placeholder (1 January) and impossible dates of birth become null.

    The row is kept (it is still a real event) and `<dob>_issue` says why the value went.
    """
    extract = pl.col(PARTITION_COLUMN).str.to_date()
    for column in (c.name for c in table.columns if c.kind == "dob"):
        dob = pl.col(column)
        issue = (
            pl.when(_text(f"__raw_{column}").is_not_null() & dob.is_null()).then(pl.lit("unparseable"))
            .when((dob.dt.month() == 1) & (dob.dt.day() == 1)).then(pl.lit("placeholder"))
            .when((dob < EARLIEST_DOB) | (dob > extract)).then(pl.lit("out_of_range"))
        )
        frame = frame.with_columns(issue.alias(f"{column}_issue")).with_columns(
            pl.when(pl.col(f"{column}_issue").is_not_null()).then(None).otherwise(dob).alias(column)
        )
    return frame.drop([c for c in frame.columns if c.startswith("__raw_")])


def stage_table(raw: pl.DataFrame, source: SourceSpec, table: TableSpec) -> StagedResult:
    """Type and standardise one raw partition; rows that cannot be used go to quarantine."""
    typed = raw.with_columns(
        _parse(column, source).cast(staged_dtype(column)).alias(f"__typed_{column.name}")
        for column in table.columns
    )
    problems = _row_problems(table, source)
    typed = _flag_problems(typed, problems)
    bad = _with_reasons(typed.filter(pl.col("__bad")), problems)
    good = typed.filter(~pl.col("__bad"))

    quarantine = bad.select(
        pl.col(PARTITION_COLUMN),
        pl.lit(source.key).alias("source"),
        pl.lit(table.name).alias("table"),
        pl.col(table.id_column).alias("record_id"),
        pl.col("_source_file"),
        pl.col("_row_number"),
        pl.col("__reason").alias("reason"),
        pl.when(pl.col("_raw_line").is_not_null()).then(pl.col("_raw_line"))
        .otherwise(pl.struct(table.column_names).struct.json_encode()).alias("raw_record"),
    )
    staged = good.select(
        pl.col(PARTITION_COLUMN),
        *(pl.col(f"__typed_{c.name}").alias(c.name) for c in table.columns),
        *(pl.col(c) for c in TRAILING_LOAD_COLUMNS),
        # The name as written, next to the folded one: linkage compares the folded form,
        # people (and clerical review) read this one.
        *(original_name(pl.col(c.name)).alias(f"{c.name}{ORIGINAL_SUFFIX}") for c in table.columns if c.kind == "name"),
        *(pl.col(c.name).alias(f"__raw_{c.name}") for c in table.columns if c.kind == "dob"),
    )
    alterations = _alterations(good, table)
    staged = _clean_dobs(staged, table)
    for column in (c.name for c in table.columns if c.kind == "dob"):
        issues = staged[f"{column}_issue"].drop_nulls().value_counts().rows()
        if issues:
            alterations.setdefault(column, {}).update({f"{issue}, set to null": int(n) for issue, n in issues})
    kept_pncs = {c.name: staged[c.name].is_not_null().sum() for c in table.columns if c.kind == "pnc"}
    staged = _null_junk_pncs(staged, table)
    for column, before in kept_pncs.items():
        junk = before - staged[column].is_not_null().sum()
        if junk:
            alterations.setdefault(column, {})["shared junk value, set to null"] = int(junk)
    for column in (c.name for c in table.columns if c.kind == "ethnicity"):
        staged = staged.with_columns(
            pl.col(column).str.slice(0, 1).replace_strict(ETHNIC_GROUP, default="Unknown").alias("ethnic_group")
        )
    return StagedResult(staged=staged, quarantine=quarantine, alterations=alterations)


def staged_columns(table: TableSpec) -> list[str]:
    """Column order of a staged table (for schemas and docs)."""
    originals = [f"{c.name}{ORIGINAL_SUFFIX}" for c in table.columns if c.kind == "name"]
    derived = [*originals, *(f"{c.name}_issue" for c in table.columns if c.kind == "dob")]
    if any(c.kind == "ethnicity" for c in table.columns):
        derived.append("ethnic_group")
    return [PARTITION_COLUMN, *table.column_names, *TRAILING_LOAD_COLUMNS, *derived]


def stage_partitions(raw: pl.DataFrame, source: SourceSpec, table: TableSpec) -> StagedResult:
    """stage_table for each extract date in the frame (ids and junk PNCs are judged per delivery)."""
    results = [stage_table(part, source, table) for _, part in raw.group_by(PARTITION_COLUMN, maintain_order=True)]
    if not results:
        return stage_table(raw, source, table)
    alterations: dict[str, dict[str, int]] = {}
    for result in results:
        for column, counts in result.alterations.items():
            for what, n in counts.items():
                alterations.setdefault(column, {})[what] = alterations.get(column, {}).get(what, 0) + n
    return StagedResult(
        staged=pl.concat([r.staged for r in results]), quarantine=pl.concat([r.quarantine for r in results]),
        alterations=alterations,
    )
