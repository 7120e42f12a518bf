"""A catalogue step counts its tables where they are stored (`catalogue.build.StoredColumns`): the same
catalogue as from the tables read into Python, without reading them."""

import datetime as dt
import random
import re

import polars as pl
from dagster import materialize

from datafirst_assets.catalogue.build import StoredColumns, build_catalogue
from datafirst_assets.defs.linkage import LinkageSettings
from datafirst_assets.defs.release import build_catalogue_asset, catalogue_folder
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.deidentify.release_spec import ReleaseColumn, ReleaseTable, release_datasets
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.io_manager import StoredTable, WarehouseIOManager
from datafirst_assets_tests.release_fixtures import release_frames
from datafirst_assets_tests.test_derived import _stub_release

EDGES = ReleaseTable(name="edges", source="demo", grain="one row per thing", parent=None, unique_key=("id",),
                     dropped=(), columns=(
    ReleaseColumn("id", "primary_key", pl.String, "Id"),
    ReleaseColumn("amount", "numeric", pl.Float64, "Amount (ties, nulls, an even count)"),
    ReleaseColumn("count", "numeric", pl.Int64, "A count (odd number present)"),
    ReleaseColumn("few", "numeric", pl.Int32, "Fewer than 2k values: range withheld"),
    ReleaseColumn("seen", "date", pl.Date, "Date"),
    ReleaseColumn("flag", "flag", pl.Boolean, "Flag"),
    ReleaseColumn("code", "categorical", pl.String, "More than 200 values, most rare"),
    ReleaseColumn("label", "other", pl.String, "Few distinct strings, no role"),
))


def _edges(n: int = 999, seed: int = 4) -> pl.DataFrame:
    rng = random.Random(seed)
    return pl.DataFrame({
        "id": [f"{i:08x}" for i in range(n)],
        "amount": [None if i % 7 == 0 else round(rng.lognormvariate(5, 2), 2) if i % 3 else 12.5 for i in range(n)],
        "count": [None if i == 0 else rng.randint(-5, 300) for i in range(n)],
        "few": [i if i < 15 else None for i in range(n)],
        "seen": [dt.date(2019, 1, 1) + dt.timedelta(days=rng.randint(0, 2000)) for _ in range(n)],
        "flag": [None if i % 11 == 0 else rng.random() < 0.1 for i in range(n)],
        "code": [f"C{rng.randint(0, 400)}" if i % 5 else "COMMON" for i in range(n)],
        "label": [rng.choice(["x", "y", "zz"]) for _ in range(n)],
    }, schema=EDGES.schema())


def _stored(database, frames: dict[str, pl.DataFrame]) -> None:
    with warehouse_cursor(database) as conn:
        for name, frame in frames.items():
            conn.register("_frame", frame.to_arrow())
            conn.execute(f'create table "{name}" as select * from _frame')
            conn.unregister("_frame")


def _undated(text: str) -> str:
    """A page without the minute it was generated at (two builds may straddle a minute)."""
    return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "<when>", text)


def _same(a, b) -> None:
    assert a.frame.equals(b.frame) and a.tables.equals(b.tables) and a.values.equals(b.values)
    assert _undated(a.markdown) == _undated(b.markdown) and _undated(a.html) == _undated(b.html)


def test_counted_in_the_database_the_catalogue_is_the_one_of_the_frames(tmp_path):
    database = tmp_path / "wh.duckdb"
    release = release_frames(rows=80, seed=2)
    _stored(database, {"edges": _edges(), **{f"{s}__{t}": f for (s, t), f in release.items()}})
    with warehouse_cursor(database) as conn:
        for min_count in (1, 10):
            _same(build_catalogue("demo", {"edges": _edges()}, {"edges": EDGES}, min_count=min_count),
                  build_catalogue("demo", {"edges": StoredColumns(conn, 'select * from "edges"')}, {"edges": EDGES},
                                  min_count=min_count))
        for dataset, specs in release_datasets().items():
            specs = {spec.name: spec for spec in specs}
            stored = {name: StoredColumns(conn, f'select * from "{dataset}__{name}"') for name in specs}
            _same(build_catalogue(dataset, {name: release[(dataset, name)] for name in specs}, specs),
                  build_catalogue(dataset, stored, specs))


def test_the_catalogue_step_reads_no_table_into_python(tmp_path, monkeypatch):
    release = {key: frame for key, frame in release_frames(rows=80, seed=2).items() if key[0] == "magistrates"}
    database = str(tmp_path / "wh.duckdb")

    def no_reading(*_, **__):
        raise AssertionError("a release table was read into Python to be catalogued")

    monkeypatch.setattr(StoredTable, "to_polars", no_reading)
    result = materialize([_stub_release("deidentified", release), build_catalogue_asset("deidentified", "magistrates")],
                         resources={"io_manager": WarehouseIOManager(database=database),
                                    "warehouse": Warehouse(database=database),
                                    "linkage": LinkageSettings(data_dir=str(tmp_path))})
    assert result.success
    specs = {spec.name: spec for spec in release_datasets()["magistrates"]}
    expected = build_catalogue("magistrates", {name: release[("magistrates", name)] for name in specs}, specs)
    assert _undated((catalogue_folder(tmp_path, "deidentified") / "magistrates.html").read_text()) == _undated(expected.html)
