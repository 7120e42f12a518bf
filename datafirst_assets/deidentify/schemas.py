"""Pandera schemas of release tables, generated from the release spec, and join integrity.

The same schema validates the de-identified and the synthetic version of a table, which is
what "the synthetic table has the real one's schema" means in practice.
"""

from __future__ import annotations

from collections.abc import Mapping

from datafirst_assets.common.pandera_polars import pa
import polars as pl

from datafirst_assets.deidentify.release_spec import ReleaseTable

HEX_HASH = r"^[0-9a-f]{64}$"


def _column(spec: ReleaseTable, name: str) -> pa.Column:
    column = spec.column(name)
    checks = []
    if column.role in ("primary_key", "foreign_key", "system_id"):
        checks.append(pa.Check.str_matches(HEX_HASH))
    if column.role == "age":
        checks.append(pa.Check.in_range(0, 120))
    if column.role in ("person_key", "xjs_key"):
        checks.append(pa.Check.ge(1))
    nullable = column.role not in ("primary_key",) and name not in spec.unique_key
    return pa.Column(column.dtype, checks=checks, nullable=nullable, description=column.description)


def release_schema(spec: ReleaseTable) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {name: _column(spec, name) for name in spec.column_names},
        unique=list(spec.unique_key) or None,
        strict=True,
        ordered=True,
        name=f"{spec.source}_{spec.name}",
        description=spec.grain,
    )


def orphan_counts(tables: Mapping[str, pl.DataFrame], specs: Mapping[str, ReleaseTable]) -> dict[str, int]:
    """`child.column -> parent.column`: rows whose foreign key finds no parent row (0 = joins hold)."""
    orphans = {}
    for name, spec in specs.items():
        if name not in tables:
            continue
        for fk in spec.foreign_keys:
            parent_table, parent_column = fk.references
            if parent_table not in tables:
                continue
            child = tables[name].select(pl.col(fk.name)).drop_nulls()
            parent = tables[parent_table].select(pl.col(parent_column).alias(fk.name))
            orphans[f"{name}.{fk.name} -> {parent_table}.{parent_column}"] = child.join(
                parent, on=fk.name, how="anti").height
    return orphans
