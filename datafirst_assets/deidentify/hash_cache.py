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
        with warehouse_cursor(self.database) as conn:
            conn.execute(f"create schema if not exists {SCHEMA}")
            conn.execute(f"create table if not exists {NAME} (key_fingerprint varchar, namespace varchar, "
                         "value varchar, digest varchar)")
            conn.execute(f"delete from {NAME} where key_fingerprint <> ?", [self.fingerprint])

    def lookup(self, namespace: str, values: pl.Series) -> pl.DataFrame:
        """(value, digest) of the non-null `values` stored for `namespace` (none when not reusing)."""
        schema = {"value": pl.String, "digest": pl.String}
        wanted = values.drop_nulls()
        if not self.reuse or not wanted.len():
            return pl.DataFrame(schema=schema)
        with warehouse_cursor(self.database) as conn:
            conn.register("_wanted_values", pl.DataFrame({"value": wanted}).to_arrow())
            try:
                found = pl.from_arrow(conn.sql(
                    f"select c.value, c.digest from _wanted_values w join {NAME} c on c.value = w.value "
                    "where c.key_fingerprint = ? and c.namespace = ?",
                    params=[self.fingerprint, namespace]).to_arrow_table())
            finally:
                conn.unregister("_wanted_values")
        self.found += found.height
        return found.cast(schema)  # type: ignore[union-attr]

    def store(self, namespace: str, values: pl.Series, digests: pl.Series) -> None:
        """Keep newly hashed values (a full refresh first drops what was stored for them)."""
        rows = pl.DataFrame({"value": values, "digest": digests}).drop_nulls()
        self.hashed += rows.height
        if not rows.height:
            return
        rows = rows.select(pl.lit(self.fingerprint).alias("key_fingerprint"), pl.lit(namespace).alias("namespace"),
                           "value", "digest")
        with warehouse_cursor(self.database) as conn:
            conn.register("_new_hashes", rows.to_arrow())
            conn.execute("begin")
            try:
                if not self.reuse:
                    conn.execute(f"delete from {NAME} where namespace = ? and value in "
                                 "(select value from _new_hashes)", [namespace])
                conn.execute(f"insert into {NAME} select * from _new_hashes")
                conn.execute("commit")
            except BaseException:
                conn.execute("rollback")
                raise
            finally:
                conn.unregister("_new_hashes")
