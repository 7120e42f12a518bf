"""Contracts: one pandera.polars schema per stored table, checked before the table is stored.

    core.py       validate a frame (readable report: rule, failing rows, sample), raise before storing,
                  the contract as a Dagster TableSchema (the UI's Columns tab)
    models.py     hand-written DataFrameModels (quarantine, linkage tables, lookups, summaries, catalogues,
                  the release summary, the model JSON shape)
    in_database.py  the same contract run inside DuckDB by pandera's Ibis backend, for tables written
                  from a lazy frame or SQL (validated in the write transaction, never read into Python)
    registry.py   asset key -> contract (generated for raw, staged, linked, release, synthetic, derived tables)
    wiring.py     what the IO manager and the definitions call: check before a write, column schemas on assets
"""

from datafirst_assets.contracts.core import (
    ContractReport,
    ContractViolation,
    column_schema,
    enforce_contract,
    validate_table,
)
from datafirst_assets.contracts.registry import CONTRACT_STAGES, contract_for

__all__ = [
    "CONTRACT_STAGES", "ContractReport", "ContractViolation", "column_schema", "contract_for", "enforce_contract",
    "validate_table",
]
