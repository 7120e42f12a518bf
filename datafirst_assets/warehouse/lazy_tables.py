"""Stored tables as a mapping that loads each table when it is used, holding only a few at once.

Reports that compare every release table with another (real against synthetic, parent against
child) were handed every table as a polars frame at once: at 300,000 people that is the whole
release twice over in one process. ``LoadedOnUse`` gives the same ``Mapping[key, DataFrame]``
interface over ``StoredTable`` handles; a table is read from DuckDB when looked up and only
the ``keep`` most recently used stay in memory, so a pass over the tables holds at most
``keep`` of them (a parent and its child, say) instead of all.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping
from typing import Generic, TypeVar

import polars as pl

from datafirst_assets.warehouse.io_manager import StoredTable

K = TypeVar("K", bound=Hashable)

#: Lower-case hex digits: their byte order is their numeric order ("0" < "9" < "a" < "f").
_HEX_PREFIX = r"^[0-9a-f]{16}$"


def sort_rows(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """``frame.sort(by, nulls_last=True)``, the very same frame (rows, and the bytes Arrow gives for
    them), sorted faster when ``by`` is one text column of keyed hashes (64 lower-case hex
    characters, as the release's primary keys are): by the number its first 16 characters spell, a
    machine integer, instead of by the text. When those prefixes are all lower-case hex and all
    distinct, the text order of the whole values is decided within them and equals the numbers'
    order; otherwise (a null, a shorter or other value, two values sharing a prefix) it sorts by the
    text as before. Sorting the release's changed tables by their 64-character keys was a sixth of
    an incremental release step at 300,000 people (2.6 of 16 CPU s; by the prefix: 0.9)."""
    if len(by) == 1 and frame.schema.get(by[0]) == pl.String and frame.height > 1:
        values = frame.get_column(by[0])
        prefix = values.str.slice(0, 16)
        if not values.null_count() and prefix.str.contains(_HEX_PREFIX).all():
            number = prefix.str.to_integer(base=16, dtype=pl.UInt64)
            if number.n_unique() == frame.height:
                name = "__sort_rows_key"
                while name in frame.columns:
                    name += "_"
                return frame.with_columns(number.alias(name)).sort(name).drop(name)
    return frame.sort(by, nulls_last=True)


class LoadedOnUse(Mapping[K, pl.DataFrame], Generic[K]):
    """``tables[key]`` reads that stored table (cached: the ``keep`` most recently used)."""

    def __init__(self, tables: Mapping[K, StoredTable | pl.DataFrame], keep: int = 2, *,
                 order_by=None) -> None:
        """``order_by(key)``: columns to sort a table by when it is read (None: all its columns).
        Give it when a table is read more than once and the reads must agree row by row:
        DuckDB returns a table's rows in no fixed order."""
        if keep < 1:
            raise ValueError("keep at least one table")
        self._tables = dict(tables)
        self._keep = keep
        self._order_by = order_by
        self._cache: OrderedDict[K, pl.DataFrame] = OrderedDict()
        # the cache is shared by the threads that read tables (a release reads the next table ahead
        # while it gates one); tables are read outside the lock
        self._lock = threading.Lock()
        self.loads = 0  # how many times a table was read (for tests and metadata)

    def __getitem__(self, key: K) -> pl.DataFrame:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        table = self._tables[key]
        if isinstance(table, pl.DataFrame):  # already in memory (e.g. handed over by a test)
            return table
        frame = table.to_polars()
        if self._order_by is not None:
            frame = sort_rows(frame, self._order_by(key) or frame.columns)
        with self._lock:
            self.loads += 1
            self._cache[key] = frame
            self._cache.move_to_end(key)
            while len(self._cache) > self._keep:
                self._cache.popitem(last=False)
        return frame

    def __iter__(self) -> Iterator[K]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)

    def __contains__(self, key: object) -> bool:
        return key in self._tables

    def heights(self) -> dict[K, int]:
        """Row counts, counted by DuckDB (no table is loaded)."""
        return {key: table.height if isinstance(table, pl.DataFrame) else table.count()
                for key, table in self._tables.items()}


class MappedOnUse(Mapping[K, pl.DataFrame], Generic[K]):
    """``tables`` with ``change(key, frame)`` applied to each frame when it is looked up (nothing
    is computed or held ahead): a streaming ``{k: change(k, v) for k, v in tables.items()}``."""

    def __init__(self, tables: Mapping[K, pl.DataFrame], change, keys=None) -> None:
        self._tables = tables
        self._change = change
        self._keys = list(tables) if keys is None else list(keys)

    def __getitem__(self, key: K) -> pl.DataFrame:
        if key not in self._keys:
            raise KeyError(key)
        return self._change(key, self._tables[key])

    def __iter__(self) -> Iterator[K]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


V = TypeVar("V")


class ComputedOnUse(Mapping[K, V], Generic[K, V]):
    """``load(key)`` computed when a key is looked up; only the ``keep`` most recently used are
    held (for per-dataset values too big to hold for every dataset at once)."""

    def __init__(self, keys, load, keep: int = 1) -> None:
        self._keys, self._load, self._keep = list(keys), load, keep
        self._cache: OrderedDict = OrderedDict()

    def __getitem__(self, key: K) -> V:
        if key not in self._keys:
            raise KeyError(key)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = self._load(key)
        self._cache[key] = value
        while len(self._cache) > self._keep:
            self._cache.popitem(last=False)
        return value

    def __iter__(self) -> Iterator[K]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)
