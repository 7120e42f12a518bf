"""Keyed hashes computed once: the pseudonym of each (namespace, value) kept in the warehouse.

De-identifying a dataset hashes every system id of its latest records (HMAC-SHA256, one Python
call per distinct value: most of the step's time). A new extract adds a few records, so almost
every value was hashed by the run before. `KeyedHashCache` keeps each pseudonym in the warehouse
table `deidentify_cache.keyed_hashes` (key fingerprint, namespace, value, digest); `keyed_hash`
looks the distinct values up there and hashes only those it does not find, so an incremental run
hashes the new values alone and gives exactly the digests a run from scratch would (a digest
depends only on the key, the namespace and the value).

The table holds raw system ids next to their pseudonyms, as the warehouse's staged and
de-identified tables already do between them; it is never released. Rows are tied to the key's
fingerprint: a rotated key finds none of them (and the rows of other keys are dropped), and a
full refresh (`reuse=False`) hashes every value again and replaces what it finds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from datafirst_assets.deidentify.keys import key_fingerprint
from datafirst_assets.warehouse.connection import warehouse_cursor

SCHEMA, TABLE = "deidentify_cache", "keyed_hashes"
NAME = f"{SCHEMA}.{TABLE}"


class KeyedHashCache:
    """The stored pseudonyms of one warehouse for the configured key. `reuse=False` (a full
    refresh): nothing is read, every value is hashed again and stored."""

    def __init__(self, database: str | Path, *, key: bytes | None = None, reuse: bool = True) -> None:
        self.database = str(database)
        self.fingerprint = key_fingerprint(key)
        self.reuse = reuse
        self.found = self.hashed = 0  # distinct values found in the cache / hashed (for metadata)
        # while `batched`: the rows stored so far, by namespace, and the namespaces the table held
        self._pending: dict[str, list[pl.DataFrame]] | None = None
        self._stored_namespaces: set[str] = set()
        # after `prefetch`: per namespace, the values asked for and the stored (value, digest) among them
        self._asked: dict[str, pl.Series] = {}
        self._prefetched: dict[str, pl.DataFrame] = {}
        with warehouse_cursor(self.database) as conn:
            conn.execute(f"create schema if not exists {SCHEMA}")
            conn.execute(f"create table if not exists {NAME} (key_fingerprint varchar, namespace varchar, "
                         "value varchar, digest varchar)")
            conn.execute(f"delete from {NAME} where key_fingerprint <> ?", [self.fingerprint])

    @contextmanager
    def batched(self) -> Iterator[KeyedHashCache]:
        """Within the block, newly hashed values are kept in memory (``lookup`` finds them there)
        and written in one transaction when it ends (nothing is written if it raises): a
        transaction per hashed column was most of the hashing time of a small dataset (13 ms
        each, 75 columns in the demo). Lookups skip the table for namespaces it does not hold."""
        if self._pending is not None:  # already batched: the outer block writes
            yield self
            return
        with warehouse_cursor(self.database) as conn:
            self._stored_namespaces = {row[0] for row in conn.execute(
                f"select distinct namespace from {NAME} where key_fingerprint = ?", [self.fingerprint]).fetchall()}
        self._pending = {}
        try:
            yield self
        except BaseException:
            self._pending = None
            raise
        pending, self._pending = self._pending, None
        self._asked, self._prefetched = {}, {}  # the stored table changes below: what was prefetched is stale
        frames = [frame for frames in pending.values() for frame in frames]
        if frames:
            self._write(pl.concat(frames).unique(["namespace", "value"], keep="first", maintain_order=True))

    def prefetch(self, wanted: pl.DataFrame) -> None:
        """Look up the stored digests of many namespaces' values at once (`wanted`: namespace, value), so
        that `lookup` of those values reads nothing more: one pass over the stored pseudonyms (millions
        of rows at scale) instead of one per hashed column of a step (about ten for a dataset)."""
        if not self.reuse or not wanted.height:
            return
        wanted = wanted.select(pl.col("namespace").cast(pl.String), pl.col("value").cast(pl.String)).drop_nulls().unique()
        with warehouse_cursor(self.database) as conn:
            conn.register("_prefetch_values", wanted.to_arrow())
            try:
                found = pl.from_arrow(conn.sql(
                    f"select c.namespace, c.value, c.digest from _prefetch_values w join {NAME} c "
                    "on c.namespace = w.namespace and c.value = w.value where c.key_fingerprint = ?",
                    params=[self.fingerprint]).to_arrow_table())
            finally:
                conn.unregister("_prefetch_values")
        for (namespace,), values in wanted.group_by("namespace"):
            asked = values.get_column("value")
            if namespace in self._asked:
                asked = pl.concat([self._asked[namespace], asked]).unique()
            self._asked[namespace] = asked
        for (namespace,), rows in found.group_by("namespace"):  # type: ignore[union-attr]
            rows = rows.select("value", "digest")
            if namespace in self._prefetched:
                rows = pl.concat([self._prefetched[namespace], rows]).unique("value")
            self._prefetched[namespace] = rows

    def lookup(self, namespace: str, values: pl.Series) -> pl.DataFrame:
        """(value, digest) of the non-null `values` stored for `namespace` (none when not reusing)."""
        schema = {"value": pl.String, "digest": pl.String}
        wanted = values.drop_nulls()
        if not self.reuse or not wanted.len():
            return pl.DataFrame(schema=schema)
        found, text = [], wanted.cast(pl.String)
        if namespace in self._asked:  # prefetched: the stored table is read only for values not asked then
            found.append(self._prefetched.get(namespace, pl.DataFrame(schema=schema))
                         .filter(pl.col("value").is_in(text.implode())))
            wanted = text.filter(~text.is_in(self._asked[namespace].implode()))
        if self._pending is not None and self._pending.get(namespace):
            kept = pl.concat(self._pending[namespace]).select("value", "digest")
            found.append(kept.filter(pl.col("value").is_in(text.implode())))
        if wanted.len() and (self._pending is None or namespace in self._stored_namespaces):
            found.append(self._lookup_stored(namespace, wanted))
        result = pl.concat([f.cast(schema) for f in found]) if found else pl.DataFrame(schema=schema)  # type: ignore[arg-type]
        self.found += result.height
        return result

    def _lookup_stored(self, namespace: str, wanted: pl.Series) -> pl.DataFrame:
        with warehouse_cursor(self.database) as conn:
            conn.register("_wanted_values", pl.DataFrame({"value": wanted}).to_arrow())
            try:
                return pl.from_arrow(conn.sql(  # type: ignore[return-value]
                    f"select c.value, c.digest from _wanted_values w join {NAME} c on c.value = w.value "
                    "where c.key_fingerprint = ? and c.namespace = ?",
                    params=[self.fingerprint, namespace]).to_arrow_table())
            finally:
                conn.unregister("_wanted_values")

    def store(self, namespace: str, values: pl.Series, digests: pl.Series) -> None:
        """Keep newly hashed values (a full refresh first drops what was stored for them)."""
        rows = pl.DataFrame({"value": values, "digest": digests}).drop_nulls()
        self.hashed += rows.height
        if not rows.height:
            return
        rows = rows.select(pl.lit(self.fingerprint).alias("key_fingerprint"), pl.lit(namespace).alias("namespace"),
                           pl.col("value").cast(pl.String), pl.col("digest").cast(pl.String))
        if self._pending is not None:
            self._pending.setdefault(namespace, []).append(rows)
            return
        self._write(rows)

    def _write(self, rows: pl.DataFrame) -> None:
        """Insert ``rows`` (key_fingerprint, namespace, value, digest) in one transaction."""
        with warehouse_cursor(self.database) as conn:
            conn.register("_new_hashes", rows.to_arrow())
            conn.execute("begin")
            try:
                if not self.reuse:
                    conn.execute(f"delete from {NAME} where exists (select 1 from _new_hashes h "
                                 f"where h.namespace = {NAME}.namespace and h.value = {NAME}.value)")
                conn.execute(f"insert into {NAME} select * from _new_hashes")
                conn.execute("commit")
            except BaseException:
                conn.execute("rollback")
                raise
            finally:
                conn.unregister("_new_hashes")
