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


def _ipc_checksum(frame: pl.DataFrame) -> str:
    from datafirst_assets.release.publish import _content_sha256

    return _content_sha256(frame)


def test_sort_rows_is_the_text_sort_whatever_the_keys_hold():
    """The fast path (keyed hashes sorted by their first 16 hex characters as a number) gives exactly
    the frame, and the Arrow bytes the release checksums, that sorting by the text gives; keys it
    cannot order so (nulls, upper case, short values, shared prefixes) are sorted by the text."""
    import random

    from datafirst_assets.warehouse.lazy_tables import sort_rows

    rng = random.Random(7)
    hashes = ["".join(rng.choice("0123456789abcdef") for _ in range(64)) for _ in range(3000)]
    payload = {"n": [rng.choice([None, 1.5, 2.0]) for _ in hashes], "t": [rng.choice([None, "a", "bb"]) for _ in hashes]}
    shared = [hashes[0][:16] + h[16:] for h in hashes[1:4]]  # three keys sharing a prefix with the first
    cases = {
        "hashes": hashes,
        "shared prefix": hashes[:-3] + shared,
        "upper case": hashes[:-1] + [hashes[-1].upper()],
        "short": hashes[:-1] + ["0123"],
        "null": hashes[:-1] + [None],
        "signed": hashes[:-1] + ["+" + hashes[-1][1:]],  # a value to_integer reads but the text sorts apart
    }
    for name, keys in cases.items():
        frame = pl.DataFrame({"k": keys, **payload}, schema={"k": pl.String, "n": pl.Float64, "t": pl.String})
        expected = frame.sort(["k"], nulls_last=True)
        got = sort_rows(frame, ["k"])
        assert got.equals(expected), name
        assert got.columns == frame.columns, name
        assert _ipc_checksum(got) == _ipc_checksum(expected), name
    # several columns, or not text: sorted as before
    frame = pl.DataFrame({"k": hashes, **payload})
    assert sort_rows(frame, ["n", "k"]).equals(frame.sort(["n", "k"], nulls_last=True))


def test_sort_rows_takes_the_fast_path_for_keyed_hashes(monkeypatch):
    """Keyed hashes are not sorted by their text (the cost this saves); the others are."""
    from datafirst_assets.warehouse import lazy_tables

    sorted_by = []
    original = pl.DataFrame.sort
    monkeypatch.setattr(pl.DataFrame, "sort", lambda self, by, *a, **k: sorted_by.append(by) or original(self, by, *a, **k))
    hashes = [f"{i * 7919:016x}" * 4 for i in range(50, 0, -1)]  # distinct prefixes
    lazy_tables.sort_rows(pl.DataFrame({"k": hashes}), ["k"])
    assert sorted_by == ["__sort_rows_key"]
    sorted_by.clear()
    lazy_tables.sort_rows(pl.DataFrame({"k": hashes[:-1] + [None]}), ["k"])
    assert sorted_by == [["k"]]
