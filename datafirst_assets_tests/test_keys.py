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
