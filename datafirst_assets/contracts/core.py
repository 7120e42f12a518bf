"""Validate a table against its contract before it is stored, and describe it for the UI.

`validate_table` runs a pandera.polars schema lazily (every rule, not just the first) and turns
pandera's failure cases into a readable report: one line per broken rule with the column, the
number of failing rows and a few failing values, plus a sample of the offending rows. pandera's
own message is an escaped JSON string; nobody should have to read that.

`enforce` raises `ContractViolation` (a Dagster `Failure`, so the step fails with the report as
its description and metadata) and is called before anything is written: a violation stores
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datafirst_assets.common.pandera_polars import pa
import polars as pl
from dagster import Failure, MetadataValue, TableColumn, TableSchema
from datafirst_assets.contracts.fast_path import holds_for_certain

SAMPLE_ROWS = 5
SAMPLE_VALUES = 3


@dataclass(frozen=True)
class RuleFailure:
    rule: str
    column: str
    failing_rows: int
    examples: tuple[str, ...]

    def __str__(self) -> str:
        examples = ", ".join(self.examples) if self.examples else "-"
        return f"{self.column}: {self.rule} failed for {self.failing_rows} row(s), e.g. {examples}"


@dataclass
class ContractReport:
    contract: str
    rows: int
    failures: list[RuleFailure] = field(default_factory=list)
    sample: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def passed(self) -> bool:
        return not self.failures

    def markdown(self) -> str:
        if self.passed:
            return f"Contract `{self.contract}` holds for {self.rows:,} row(s)."
        lines = [f"Contract `{self.contract}` broken ({len(self.failures)} rule(s), {self.rows:,} row(s) checked):", ""]
        lines += [f"- {failure}" for failure in self.failures]
        if self.sample.height:
            lines += ["", "Sample of failing rows:", "", markdown_rows(self.sample)]
        return "\n".join(lines)

    def metadata(self) -> dict:
        return {
            "contract": self.contract,
            "contract_passed": self.passed,
            "contract_rows_checked": self.rows,
            "contract_failing_rules": len(self.failures),
            "contract_report": MetadataValue.md(self.markdown()),
        }


class ContractViolation(Failure):
    """A table broke its contract; it was not stored."""

    def __init__(self, what: str, report: ContractReport):
        self.report = report
        super().__init__(
            description=f"{what} was NOT stored: it breaks its contract.\n\n{report.markdown()}",
            metadata=report.metadata(),
        )


#: Up to this many rows a table that lives in DuckDB is read into polars to be checked against its
#: contract (faster for it: no Ibis backend to import and build); over it, it is checked where it
#: lives, every row, by pandera's Ibis backend (`contracts.in_database`).
IN_DATABASE_ROWS = 1_000_000


def markdown_rows(frame: pl.DataFrame, max_width: int = 40) -> str:
    def cell(value) -> str:
        text = "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *rows])


def _failures(cases: pl.DataFrame) -> list[RuleFailure]:
    cases = cases.with_columns(
        pl.col("column").cast(pl.String).fill_null("(table)"),
        pl.col("check").cast(pl.String).fill_null("?"),
        pl.col("failure_case").cast(pl.String),
    )
    grouped = (
        cases.group_by("column", "check", maintain_order=True)
        .agg(pl.len().alias("n"), pl.col("failure_case").drop_nulls().unique(maintain_order=True).head(SAMPLE_VALUES))
        .sort("n", descending=True)
    )
    return [
        RuleFailure(rule=row["check"], column=row["column"], failing_rows=int(row["n"]),
                    examples=tuple(str(v) for v in row["failure_case"]))
        for row in grouped.iter_rows(named=True)
    ]


def validate_table(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> ContractReport:
    """Every rule of `schema` on `frame`; the report lists what failed (nothing when it holds)."""
    report = ContractReport(contract=schema.name or "contract", rows=frame.height)
    if holds_for_certain(frame, schema):  # one query; pandera (a query per rule) only when in doubt
        return report
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as error:
        cases = error.failure_cases
        if not isinstance(cases, pl.DataFrame):
            cases = pl.DataFrame(cases)
        report.failures = _failures(cases)
        if "index" in cases.columns:
            index = cases["index"].drop_nulls().cast(pl.Int64).unique().sort().head(SAMPLE_ROWS).to_list()
            failing = [c for c in dict.fromkeys(f.column for f in report.failures) if c in frame.columns]
            shown = list(dict.fromkeys([*frame.columns[:1], *failing]))
            report.sample = frame.with_row_index("row").filter(pl.col("row").is_in(index)).select("row", *shown)
    except pa.errors.SchemaError as error:  # raised eagerly for some schema-level problems
        report.failures = [RuleFailure(rule=str(error.reason_code or "schema"), column="(table)",
                                       failing_rows=frame.height, examples=(str(error)[:200],))]
    return report


def enforce_contract(what: str, frame: pl.DataFrame, schema: pa.DataFrameSchema) -> ContractReport:
    """Validate before storing: return the (passing) report, or raise `ContractViolation`."""
    report = validate_table(frame, schema)
    if not report.passed:
        raise ContractViolation(what, report)
    return report


def column_schema(schema: pa.DataFrameSchema) -> TableSchema:
    """The contract as a Dagster table schema (the UI's Columns tab), with descriptions."""
    columns = []
    for name, column in schema.columns.items():
        constraints = [] if column.nullable else ["not null"]
        if column.unique:
            constraints.append("unique")
        constraints += [str(check.name or check) for check in column.checks]
        description = column.description or ""
        if constraints:
            description = f"{description} ({'; '.join(constraints)})".strip()
        columns.append(TableColumn(name=name, type=str(column.dtype), description=description or None))
    return TableSchema(columns=columns)


def unique_sets(contract: pa.DataFrameSchema) -> list[list[str]]:
    """Every set of columns the contract says is unique (a column's `unique=True` is a set of one)."""
    sets = [[name] for name, column in contract.columns.items() if column.unique]
    if contract.unique:
        sets += ([list(contract.unique)] if all(isinstance(c, str) for c in contract.unique)
                 else [list(u) for u in contract.unique])
    return sets
