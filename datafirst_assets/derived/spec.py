"""How a derived table is described: columns with a type, a role and a catalogue description.

One description drives three things, so they cannot drift apart:

* the pandera.polars schema that every derived asset is checked against (types, nullability,
  value checks, table-level rules);
* the catalogue entry (`catalogue_rows`, and `as_release_table` for the release catalogue
  builder, which documents every dataset from `ReleaseTable` specs);
* the column order of the frame the pure function returns (`select_columns`).

Roles are the release spec's roles (categorical, numeric, date, flag, age, score, xjs_key), so
a derived table reads in the catalogue exactly like a released one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datafirst_assets.common.pandera_polars import pa
import polars as pl

from datafirst_assets.deidentify.release_spec import ReleaseColumn, ReleaseTable

DERIVED = "derived"  # dataset name of the derived tables in catalogues and on disk


@dataclass(frozen=True)
class DerivedColumn:
    name: str
    dtype: pl.DataType
    role: str
    description: str
    nullable: bool = True
    checks: tuple[pa.Check, ...] = ()


@dataclass(frozen=True)
class DerivedTable:
    name: str
    grain: str
    description: str
    columns: tuple[DerivedColumn, ...]
    unique_key: tuple[str, ...] = ()
    # Rules across columns: (name, message, expression that is true on every valid row).
    row_rules: tuple[tuple[str, str, pl.Expr], ...] = field(default=())
    inputs: tuple[tuple[str, str], ...] = ()  # release tables read: (source, table)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.dtype for c in self.columns}

    @property
    def descriptions(self) -> dict[str, str]:
        """Column name -> catalogue description."""
        return {c.name: c.description for c in self.columns}

    def pandera_schema(self) -> pa.DataFrameSchema:
        return pa.DataFrameSchema(
            {c.name: pa.Column(c.dtype, checks=list(c.checks), nullable=c.nullable, description=c.description)
             for c in self.columns},
            checks=[_row_rule(name, message, expr) for name, message, expr in self.row_rules],
            unique=list(self.unique_key) or None,
            strict=True,
            ordered=True,
            name=f"{DERIVED}_{self.name}",
            description=self.grain,
        )

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.schema())

    def select_columns(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The table's columns in order and type (a missing column is a bug, so it raises)."""
        return frame.select([pl.col(c.name).cast(c.dtype) for c in self.columns])

    def as_release_table(self) -> ReleaseTable:
        """The table as a `ReleaseTable`, so the release catalogue builder can document it."""
        return ReleaseTable(
            source=DERIVED, name=self.name, grain=self.grain,
            columns=tuple(ReleaseColumn(c.name, c.role, c.dtype, c.description, treatment="keep")
                          for c in self.columns),
            unique_key=self.unique_key,
        )

    def catalogue_rows(self) -> pl.DataFrame:
        """One row per column: name, type, role, nullable and description (the catalogue's static part)."""
        return pl.DataFrame(
            [{"table": self.name, "position": i, "column": c.name, "type": str(c.dtype), "role": c.role,
              "nullable": c.nullable, "description": c.description} for i, c in enumerate(self.columns, 1)],
            schema={"table": pl.String, "position": pl.Int32, "column": pl.String, "type": pl.String,
                    "role": pl.String, "nullable": pl.Boolean, "description": pl.String},
        )

    def catalogue_markdown(self) -> str:
        lines = [f"### `{DERIVED}.{self.name}`", "", self.description, "", f"Grain: {self.grain}.", "",
                 "| column | type | description |", "|---|---|---|"]
        lines += [f"| `{c.name}` | {c.dtype} | {c.description} |" for c in self.columns]
        return "\n".join(lines)


def _row_rule(name: str, message: str, expr: pl.Expr) -> pa.Check:
    return pa.Check(lambda data: data.lazyframe.select(expr.fill_null(True).alias(name)), name=name, error=message)


def non_negative() -> tuple[pa.Check, ...]:
    return (pa.Check.ge(0),)
