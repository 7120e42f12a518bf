"""Keyed pseudonyms (HMAC-SHA256) for system ids.

The key comes from the environment; an unkeyed hash of a low-entropy id (a case number, a
prison number) can be reversed by hashing every possible value, a keyed one cannot without
the key. Without a key set, a clearly labelled development key is used and `key_is_development`
says so, so a release can record it.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import polars as pl

KEY_ENV = "DATAFIRST_PSEUDONYMISATION_KEY"
DEVELOPMENT_KEY = "datafirst-DEVELOPMENT-ONLY-key-not-for-real-data"


def pseudonymisation_key() -> bytes:
    return os.environ.get(KEY_ENV, DEVELOPMENT_KEY).encode("utf-8")


def key_is_development() -> bool:
    return not os.environ.get(KEY_ENV)


def keyed_hash(values: pl.Series, *, namespace: str, key: bytes | None = None) -> pl.Series:
    """HMAC-SHA256 hex of `namespace:value` (the namespace keeps equal ids of different systems apart)."""
    secret = key if key is not None else pseudonymisation_key()
    prefix = f"{namespace}:".encode("utf-8")

    def digest(value: str | None) -> str | None:
        if value is None:
            return None
        return hmac.new(secret, prefix + value.encode("utf-8"), hashlib.sha256).hexdigest()

    unique = values.cast(pl.String).unique()
    mapping = dict(zip(unique.to_list(), (digest(v) for v in unique.to_list())))
    return values.cast(pl.String).replace_strict(mapping, return_dtype=pl.String).alias(values.name)
