"""Keyed pseudonyms: deterministic per key, different across keys and namespaces."""

import polars as pl

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
