"""Contracts of outputs that are not tables: the release manifest (the model JSON's shape is part
of the `model` table's contract, `contracts.models.ModelVersion`).

`validate_manifest` runs before the manifest is written; a manifest missing a field, or a table
entry without its checksum or gate results, stops the release (nothing is published).
"""

from __future__ import annotations

from datafirst_assets.common.pandera_polars import pa
import polars as pl
from pandera.typing.polars import Series

from datafirst_assets.contracts.core import enforce_contract
from datafirst_assets.contracts.models import HEX_64

MANIFEST_FIELDS = ("release_id", "kind", "synthetic", "created_at", "extract_dates", "model_versions",
                   "pseudonymisation_key", "key_fingerprint", "gates", "tables", "catalogues")


class ManifestTable(pa.DataFrameModel):
    """One entry of the manifest's `tables` list."""

    source: Series[str] = pa.Field(description="Dataset")
    table: Series[str] = pa.Field(description="Table")
    path: Series[str] = pa.Field(str_matches=r"^tables/[a-z_]+/[a-z0-9_]+(\.synthetic)?\.parquet$",
                                 description="File inside the release folder")
    rows: Series[pl.Int64] = pa.Field(ge=0, description="Rows in the file")
    sha256: Series[str] = pa.Field(str_matches=HEX_64, description="SHA-256 of the file")
    content_sha256: Series[str] = pa.Field(str_matches=HEX_64, description="SHA-256 of the table's content")
    gates_passed: Series[bool] = pa.Field(description="Every gate passed before publishing (must be true)")

    @pa.check("gates_passed", name="every table passed its gates")
    def all_passed(cls, data) -> pl.LazyFrame:  # noqa: N805
        return data.lazyframe.select(pl.col(data.key))

    class Config:
        strict = True
        unique = ["source", "table"]
        name = "manifest_tables"
        description = "The release manifest's table entries."


class ManifestError(ValueError):
    """The manifest about to be written does not hold its contract."""


def validate_manifest(manifest: dict) -> None:
    missing = [f for f in MANIFEST_FIELDS if f not in manifest]
    if missing:
        raise ManifestError(f"manifest lacks {', '.join(missing)}")
    if len(str(manifest["key_fingerprint"])) != 12:
        raise ManifestError("manifest key_fingerprint must be 12 hex characters")
    entries = pl.DataFrame([
        {"source": t["source"], "table": t["table"], "path": t["path"], "rows": t["rows"], "sha256": t["sha256"],
         "content_sha256": t["content_sha256"], "gates_passed": bool(t.get("gates", {}).get("passed"))}
        for t in manifest["tables"]
    ], schema={"source": pl.String, "table": pl.String, "path": pl.String, "rows": pl.Int64, "sha256": pl.String,
               "content_sha256": pl.String, "gates_passed": pl.Boolean})
    enforce_contract(f"manifest of {manifest['release_id']}", entries, ManifestTable.to_schema())
