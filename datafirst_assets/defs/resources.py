"""Resources: where deliveries land and where the warehouse lives."""

from __future__ import annotations

from pathlib import Path

from contextlib import contextmanager

from dagster import ConfigurableResource
from dagster_duckdb import DuckDBResource

from datafirst_assets.layout import DATA_DIR_ENV, DataLayout, default_data_dir  # noqa: F401 (re-exported)
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.io_manager import WarehouseIOManager


class LandingZone(ConfigurableResource):
    """Folder of deliveries: <path>/<source>/<YYYY-MM-DD>/<table>.csv + manifest.json."""

    path: str

    @property
    def root(self) -> Path:
        return Path(self.path)


class Warehouse(DuckDBResource):
    """Direct SQL on the warehouse (counts for checks, summaries): dagster-duckdb's resource, with its
    connections taken from the process's one warehouse connection (warehouse/connection.py), because
    DuckDB refuses a second connection to the same file with other settings in one process, and one
    connection keeps one memory limit and spill folder for the IO manager, the checks and Splink."""

    @contextmanager
    def get_connection(self):
        with warehouse_cursor(self.database) as conn:
            yield conn

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
