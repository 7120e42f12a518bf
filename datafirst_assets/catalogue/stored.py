"""A dataset's catalogue kept beside its pages, so the release can take it instead of building it again.

The release carries every dataset's catalogue, and the catalogue assets have just built each one
from the very tables the release publishes. Building them again in the release read every
release table, the unchanged ones included, although an incremental release otherwise reads only
the tables that changed (an unchanged table keeps its gates and its file). So each catalogue asset
also stores its catalogue's three frames and pages under `<catalogue folder>/.stored/<dataset>/`
with the fingerprint of the tables it was built from (`warehouse.unchanged.inputs_fingerprint`:
content, code and settings), and the release takes the stored one when that fingerprint is the
fingerprint of the tables it publishes; otherwise (missing, older, partly written) it builds it.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from datafirst_assets.common.folders import replace_folder
from datafirst_assets.catalogue.build import Catalogue

STORED = ".stored"
META = "meta.json"


def stored_folder(folder: Path | str, dataset: str) -> Path:
    return Path(folder) / STORED / dataset


def save_catalogue(folder: Path | str, catalogue: Catalogue, fingerprint: str) -> Path:
    """Store `catalogue` with the fingerprint of the tables it describes; written aside, then swapped in."""
    def write(staging: Path) -> None:
        catalogue.frame.write_parquet(staging / "frame.parquet")
        catalogue.tables.write_parquet(staging / "tables.parquet")
        catalogue.values.write_parquet(staging / "values.parquet")
        (staging / "page.md").write_text(catalogue.markdown, encoding="utf-8")
        (staging / "page.html").write_text(catalogue.html, encoding="utf-8")
        # the fingerprint last: a folder without it is never taken
        (staging / META).write_text(json.dumps({"dataset": catalogue.dataset, "synthetic": catalogue.synthetic,
                                                "fingerprint": fingerprint}), encoding="utf-8")

    return replace_folder(stored_folder(folder, catalogue.dataset), write)


def load_catalogue(folder: Path | str, dataset: str, fingerprint: str, *, synthetic: bool) -> Catalogue | None:
    """The stored catalogue of `dataset` if it was built from tables with this fingerprint, else None."""
    stored = stored_folder(folder, dataset)
    try:
        meta = json.loads((stored / META).read_text(encoding="utf-8"))
        if (meta.get("fingerprint") != fingerprint or meta.get("dataset") != dataset
                or bool(meta.get("synthetic")) != synthetic):
            return None
        return Catalogue(dataset, synthetic, pl.read_parquet(stored / "frame.parquet"),
                         pl.read_parquet(stored / "tables.parquet"), pl.read_parquet(stored / "values.parquet"),
                         (stored / "page.md").read_text(encoding="utf-8"),
                         (stored / "page.html").read_text(encoding="utf-8"))
    except (OSError, ValueError, pl.exceptions.PolarsError):  # missing or unreadable: build it
        return None
