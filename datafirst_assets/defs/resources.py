"""Resources: where deliveries land and where the warehouse lives."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource

from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.io_manager import WarehouseIOManager

DATA_DIR_ENV = "DATAFIRST_DATA_DIR"


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV, "data"))


class LandingZone(ConfigurableResource):
    """Folder of deliveries: <path>/<source>/<YYYY-MM-DD>/<table>.csv + manifest.json."""

    path: str

    @property
    def root(self) -> Path:
        return Path(self.path)


class Warehouse(ConfigurableResource):
    """Direct SQL on the warehouse (counts for checks, summaries), sharing the IO manager's database."""

    database: str

    def cursor(self):
        return warehouse_cursor(self.database)


class DataLayout:
    """Every path the pipeline reads or writes, derived from one data directory."""

    def __init__(self, data_dir: Path | str):
        self.root = Path(data_dir)
        self.landing = self.root / "landing"
        self.truth = self.root / "truth"
        self.warehouse = self.root / "warehouse.duckdb"
        self.reports = self.root / "reports"
        self.models = self.root / "models"
        self.releases = self.root / "releases"
        self.logs = self.root / "logs"


def build_resources(layout: DataLayout) -> dict:
    layout.root.mkdir(parents=True, exist_ok=True)
    database = str(layout.warehouse)
    return {
        "io_manager": WarehouseIOManager(database=database),
        "warehouse": Warehouse(database=database),
        "landing": LandingZone(path=str(layout.landing)),
    }
