"""Where contracts meet Dagster: before every warehouse write, and on every asset's definition."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl
from dagster import AssetKey, AssetsDefinition, AssetSpec

from datafirst_assets.contracts.core import column_schema, enforce_contract
from datafirst_assets.contracts.registry import contract_for

COLUMN_SCHEMA = "dagster/column_schema"


def check_before_store(key: AssetKey | None, frame: pl.DataFrame) -> dict:
    """Validate `frame` against the contract of `key` before it is written.

    Raises `ContractViolation` (the write never happens); returns output metadata saying which
    contract held (empty for assets without one).
    """
    schema = contract_for(key) if key is not None else None
    if schema is None:
        return {}
    return enforce_contract(key.to_user_string(), frame, schema).metadata()


def _with_columns(spec: AssetSpec) -> AssetSpec:
    schema = contract_for(spec.key)
    if schema is None or COLUMN_SCHEMA in (spec.metadata or {}):
        return spec
    return spec.merge_attributes(metadata={COLUMN_SCHEMA: column_schema(schema), "contract": schema.name})


def with_column_schemas(assets: Iterable) -> list:
    """Every asset with a contract carries it as `dagster/column_schema`, so the UI's Columns tab
    describes the table before it is first materialised."""
    out = []
    for item in assets:
        if isinstance(item, AssetsDefinition):
            out.append(item.map_asset_specs(_with_columns))
        elif isinstance(item, AssetSpec):
            out.append(_with_columns(item))
        else:
            out.append(item)
    return out
