"""Where everything lives, from one data directory (no Dagster import: the CLI starts fast)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "DATAFIRST_DATA_DIR"


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV, "data"))


class DataLayout:
    """Every path the pipeline reads or writes, derived from one data directory."""

    def __init__(self, data_dir: Path | str):
        self.root = Path(data_dir)
        self.landing = self.root / "landing"
        self.warehouse = self.root / "warehouse.duckdb"
        self.reports = self.root / "reports"
        self.models = self.root / "models"
        self.releases = self.root / "releases"
        self.logs = self.root / "logs"
