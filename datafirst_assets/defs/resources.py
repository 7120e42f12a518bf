"""Resources: where deliveries land and where the warehouse lives."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource

from datafirst_assets.layout import DATA_DIR_ENV, DataLayout, default_data_dir  # noqa: F401 (re-exported)
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.io_manager import WarehouseIOManager


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


def build_resources(layout: DataLayout) -> dict:
    layout.root.mkdir(parents=True, exist_ok=True)
    database = str(layout.warehouse)
    return {
        "io_manager": WarehouseIOManager(database=database),
        "warehouse": Warehouse(database=database),
        "landing": LandingZone(path=str(layout.landing)),
    }
