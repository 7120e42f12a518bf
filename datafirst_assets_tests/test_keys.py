"""Keyed pseudonyms: deterministic per key, different across keys and namespaces."""

import polars as pl
import pytest

from datafirst_assets.deidentify.keys import KEY_ENV, key_is_development, keyed_hash


def test_keyed_hash_depends_on_key_and_namespace(monkeypatch):
    ids = pl.Series("id", ["100001", "100002", None, "100001"])
    a = keyed_hash(ids, namespace="prison", key=b"k1")
    assert a[0] == a[3] and a[0] != a[1] and a[2] is None
    assert len(a[0]) == 64 and "100001" not in a[0]
    assert keyed_hash(ids, namespace="prison", key=b"k2")[0] != a[0]
    assert keyed_hash(ids, namespace="probation", key=b"k1")[0] != a[0]
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert key_is_development()
    monkeypatch.setenv(KEY_ENV, "secret")
    assert not key_is_development()
    assert keyed_hash(ids, namespace="prison")[0] == keyed_hash(ids, namespace="prison", key=b"secret")[0]


def test_stored_hashes_are_reused_per_key_and_namespace_and_give_the_same_digests(tmp_path):
    from datafirst_assets.deidentify.hash_cache import NAME, KeyedHashCache
    from datafirst_assets.warehouse.connection import warehouse_cursor

    database = tmp_path / "w.duckdb"
    first = pl.Series("id", ["100001", "100002", None, "100001"])
    later = pl.Series("id", ["100002", "100003", None, "100001"])
    cache = KeyedHashCache(database, key=b"k1")
    assert keyed_hash(first, namespace="prison", key=b"k1", cache=cache).equals(
        keyed_hash(first, namespace="prison", key=b"k1"))
    assert (cache.found, cache.hashed) == (0, 2)
    again = KeyedHashCache(database, key=b"k1")
    assert keyed_hash(later, namespace="prison", key=b"k1", cache=again).equals(
        keyed_hash(later, namespace="prison", key=b"k1"))
    assert (again.found, again.hashed) == (2, 1)  # only the new id was hashed
    other = KeyedHashCache(database, key=b"k1")
    assert keyed_hash(later, namespace="probation", key=b"k1", cache=other).equals(
        keyed_hash(later, namespace="probation", key=b"k1"))
    assert other.found == 0  # another namespace: other pseudonyms
    # a stored digest is used as found: a full refresh (reuse=False) hashes again and replaces it
    with warehouse_cursor(database) as conn:
        conn.execute(f"update {NAME} set digest = 'tampered' where value = '100001' and namespace = 'prison'")
    assert keyed_hash(later, namespace="prison", key=b"k1", cache=KeyedHashCache(database, key=b"k1"))[3] == "tampered"
    full = KeyedHashCache(database, key=b"k1", reuse=False)
    assert keyed_hash(later, namespace="prison", key=b"k1", cache=full).equals(
        keyed_hash(later, namespace="prison", key=b"k1"))
    assert keyed_hash(later, namespace="prison", key=b"k1", cache=KeyedHashCache(database, key=b"k1")).equals(
        keyed_hash(later, namespace="prison", key=b"k1"))
    rotated = KeyedHashCache(database, key=b"k2")  # another key finds nothing, and drops the old key's rows
    assert keyed_hash(later, namespace="prison", key=b"k2", cache=rotated).equals(
        keyed_hash(later, namespace="prison", key=b"k2"))
    assert rotated.found == 0
    with warehouse_cursor(database) as conn:
        assert conn.execute(f"select count(distinct key_fingerprint) from {NAME}").fetchone()[0] == 1


def test_a_batched_cache_writes_once_finds_its_own_new_hashes_and_keeps_the_same_rows(tmp_path):
    from datafirst_assets.deidentify.hash_cache import NAME, KeyedHashCache
    from datafirst_assets.warehouse.connection import warehouse_cursor

    def rows(database):
        with warehouse_cursor(database) as conn:
            return sorted(conn.execute(f"select namespace, value, digest from {NAME}").fetchall())

    columns = [("prison", pl.Series("id", ["1001", "1002", None])), ("prison", pl.Series("id", ["1002", "1003"])),
               ("probation", pl.Series("id", ["1001"]))]
    one_at_a_time, batched = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    plain = KeyedHashCache(one_at_a_time, key=b"k1")
    expected = [keyed_hash(v, namespace=ns, key=b"k1", cache=plain) for ns, v in columns]
    cache = KeyedHashCache(batched, key=b"k1")
    with cache.batched():
        got = [keyed_hash(v, namespace=ns, key=b"k1", cache=cache) for ns, v in columns]
        assert rows(batched) == []  # nothing written inside the block
    assert all(a.equals(b) for a, b in zip(expected, got))
    assert (cache.found, cache.hashed) == (plain.found, plain.hashed) == (1, 4)  # 1002 found, not hashed again
    assert rows(batched) == rows(one_at_a_time)
    # a later batched run reads what is stored; a full refresh replaces rows without duplicating them
    again = KeyedHashCache(batched, key=b"k1")
    with again.batched():
        keyed_hash(columns[1][1], namespace="prison", key=b"k1", cache=again)
    assert (again.found, again.hashed) == (2, 0)
    full = KeyedHashCache(batched, key=b"k1", reuse=False)
    with full.batched():
        for ns, v in columns:
            keyed_hash(v, namespace=ns, key=b"k1", cache=full)
    assert rows(batched) == rows(one_at_a_time)
    # a block that fails writes nothing
    failing = KeyedHashCache(tmp_path / "c.duckdb", key=b"k1")
    with pytest.raises(RuntimeError), failing.batched():
        keyed_hash(columns[0][1], namespace="prison", key=b"k1", cache=failing)
        raise RuntimeError("stop")
    assert rows(tmp_path / "c.duckdb") == []


def test_the_keyed_digests_are_hmac_sha256_for_short_block_long_and_empty_keys():
    """`hmac_sha256_hex` (HMAC spelt out on hashlib's SHA-256 states) against the standard library's
    hmac for keys shorter than, as long as and longer than SHA-256's 64-byte block, and an empty
    one; values with accents, an empty string and a missing value."""
    import hashlib
    import hmac

    from datafirst_assets.deidentify.keys import DEVELOPMENT_KEY, hmac_sha256_hex

    values = ["100001", "Siobhán O'Brien", "", None, "x" * 200, "1990/0012345Z"]
    for secret in (b"k1", DEVELOPMENT_KEY.encode(), b"b" * 64, b"L" * 65, b"\xff" * 100, b""):
        expected = [None if v is None else hmac.new(secret, b"prison:" + v.encode("utf-8"), hashlib.sha256).hexdigest()
                    for v in values]
        assert hmac_sha256_hex(secret, b"prison:", values) == expected
    series = pl.Series("id", values)
    assert keyed_hash(series, namespace="prison", key=b"k1").to_list() == hmac_sha256_hex(b"k1", b"prison:", values)


def test_prefetched_digests_are_the_stored_ones_and_spare_a_read_per_column(tmp_path, monkeypatch):
    """`KeyedHashCache.prefetch` looks up many namespaces' values in one pass; `lookup` of those values
    then reads the stored table no more, a value not asked then is still looked up there, and
    `keyed_hash` gives the digests it gives without a cache (stored, prefetched or newly hashed)."""
    from datafirst_assets.deidentify.hash_cache import KeyedHashCache

    database = tmp_path / "warehouse.duckdb"
    with KeyedHashCache(database, key=b"k1").batched() as first:
        keyed_hash(pl.Series(["a", "b"]), namespace="prison.id", key=b"k1", cache=first)
        keyed_hash(pl.Series(["x"]), namespace="civil.id", key=b"k1", cache=first)
    cache = KeyedHashCache(database, key=b"k1")
    reads = []
    stored = cache._lookup_stored
    monkeypatch.setattr(cache, "_lookup_stored", lambda namespace, wanted: reads.append(namespace) or stored(namespace, wanted))
    with cache.batched():
        cache.prefetch(pl.DataFrame({"namespace": ["prison.id", "prison.id", "civil.id", "civil.id"],
                                     "value": ["a", "c", "x", None]}))
        prison = keyed_hash(pl.Series(["a", "c", None]), namespace="prison.id", key=b"k1", cache=cache)
        civil = keyed_hash(pl.Series(["x", "y"]), namespace="civil.id", key=b"k1", cache=cache)
        again = keyed_hash(pl.Series(["c"]), namespace="prison.id", key=b"k1", cache=cache)  # hashed above, pending
    assert reads == ["civil.id"]  # only "y" was not prefetched
    assert prison.to_list() == keyed_hash(pl.Series(["a", "c", None]), namespace="prison.id", key=b"k1").to_list()
    assert civil.to_list() == keyed_hash(pl.Series(["x", "y"]), namespace="civil.id", key=b"k1").to_list()
    assert again.to_list() == prison.to_list()[1:2]
    assert (cache.found, cache.hashed) == (3, 2)  # a and x stored, c found pending; c and y hashed
