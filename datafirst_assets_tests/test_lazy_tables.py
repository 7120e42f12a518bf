"""Tables read from the warehouse as they are used: the same frames, only a few held at once."""

import polars as pl
import pytest

from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.io_manager import StoredTable
from datafirst_assets.warehouse.lazy_tables import ComputedOnUse, LoadedOnUse, MappedOnUse


@pytest.fixture
def stored(tmp_path):
    database = str(tmp_path / "w.duckdb")
    frames = {name: pl.DataFrame({"id": [3, 1, 2], "v": [f"{name}{i}" for i in (3, 1, 2)]}) for name in "abc"}
    with warehouse_cursor(database) as conn:
        conn.execute("create schema s")
        for name, frame in frames.items():
            conn.register("f", frame.to_arrow())
            conn.execute(f"create table s.{name} as select * from f")
            conn.unregister("f")
    return frames, {name: StoredTable(database, "s", name) for name in frames}


def test_loaded_on_use_gives_the_stored_frames_and_holds_at_most_keep(stored):
    frames, handles = stored
    tables = LoadedOnUse(handles, keep=2, order_by=lambda _key: ["id"])
    assert set(tables) == set(frames) and len(tables) == 3
    for name, frame in frames.items():
        assert tables[name].equals(frame.sort("id"))
    assert tables.loads == 3 and len(tables._cache) == 2
    tables["c"]  # cached: not read again
    assert tables.loads == 3
    tables["a"]  # evicted earlier: read again
    assert tables.loads == 4
    assert tables.heights() == {"a": 3, "b": 3, "c": 3}


def test_frames_in_memory_pass_through(stored):
    frames, _ = stored
    tables = LoadedOnUse(frames)
    assert tables["a"] is frames["a"] and tables.loads == 0


def test_mapped_and_computed_on_use(stored):
    frames, handles = stored
    doubled = MappedOnUse(LoadedOnUse(handles, keep=1, order_by=lambda _k: None),
                          lambda _key, f: f.with_columns(pl.col("id") * 2), keys=["b", "a"])
    assert list(doubled) == ["b", "a"] and doubled["a"]["id"].to_list() == [2, 4, 6]
    with pytest.raises(KeyError):
        doubled["c"]
    calls = []
    computed = ComputedOnUse("ab", lambda key: calls.append(key) or key.upper(), keep=1)
    assert [computed[k] for k in "aab"] == ["A", "A", "B"] and calls == ["a", "b"]
