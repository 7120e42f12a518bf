"""Research releases on disk: writing them (publish) and opening them for SQL (open)."""

from datafirst_assets.release.examples import ExampleQuery, example_queries
from datafirst_assets.release.open import open_release, read_manifest, release_path, verify_release
from datafirst_assets.release.publish import (
    KINDS,
    ReleaseError,
    ReleaseInfo,
    parquet_metadata,
    table_file,
    write_release,
)

__all__ = [
    "KINDS", "ExampleQuery", "ReleaseError", "ReleaseInfo", "example_queries", "open_release",
    "parquet_metadata", "read_manifest", "release_path", "table_file", "verify_release", "write_release",
]
