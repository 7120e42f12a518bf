"""Keyed pseudonyms (HMAC-SHA256) for system ids, and the rules a key must meet to publish.

The key comes from the environment; an unkeyed hash of a low-entropy id (a case number, a
prison number) can be reversed by hashing every possible value, a keyed one cannot without
the key. Keys fail closed: without a key (unset or empty) a clearly labelled development key
is used only when `DATAFIRST_ALLOW_DEVELOPMENT_KEY=1` says this is a demo or a test (the
Makefile's demo targets and the test suite set it); publishing with the development key or a
key shorter than `MIN_KEY_LENGTH` is otherwise refused (`require_publishable_key`). A release
records `key_fingerprint` (HMAC of a fixed label, 12 hex), so a key rotation is visible without
revealing the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import polars as pl

KEY_ENV = "DATAFIRST_PSEUDONYMISATION_KEY"
ALLOW_DEVELOPMENT_KEY_ENV = "DATAFIRST_ALLOW_DEVELOPMENT_KEY"
DEVELOPMENT_KEY = "datafirst-DEVELOPMENT-ONLY-key-not-for-real-data"
MIN_KEY_LENGTH = 32


class KeyRefused(RuntimeError):
    """The pseudonymisation key may not be used to publish (development, empty or short key)."""


def development_key_allowed() -> bool:
    return os.environ.get(ALLOW_DEVELOPMENT_KEY_ENV, "").strip().lower() in ("1", "true", "yes")


def key_is_development() -> bool:
    return not os.environ.get(KEY_ENV, "").strip() or os.environ.get(KEY_ENV) == DEVELOPMENT_KEY


def key_problem() -> str | None:
    """Why the configured key may not publish (None: it may)."""
    value = os.environ.get(KEY_ENV, "")
    if key_is_development():
        if development_key_allowed():
            return None
        return (f"{KEY_ENV} is {'empty' if KEY_ENV in os.environ else 'unset'}: the public development key "
                f"would be used. Set {KEY_ENV} to a secret of at least {MIN_KEY_LENGTH} characters kept out "
                f"of the repository and the outputs (demo and tests only: {ALLOW_DEVELOPMENT_KEY_ENV}=1).")
    if len(value.strip()) < MIN_KEY_LENGTH:
        return (f"{KEY_ENV} is {len(value.strip())} characters long; a pseudonymisation key needs at least "
                f"{MIN_KEY_LENGTH} (a short key can be guessed, and with it every hashed id reversed).")
    return None


def require_publishable_key() -> None:
    """Raise `KeyRefused` (a clear message) unless the configured key may be used for a release."""
    problem = key_problem()
    if problem:
        raise KeyRefused(f"Refusing to publish: {problem}")


def pseudonymisation_key() -> bytes:
    """The configured key; an empty or unset variable means the development key (see the module doc)."""
    value = os.environ.get(KEY_ENV, "").strip()
    return (value or DEVELOPMENT_KEY).encode("utf-8")


def key_fingerprint(key: bytes | None = None) -> str:
    """First 12 hex of HMAC(key, "fingerprint"): identifies a key (and its rotation), reveals nothing."""
    secret = key if key is not None else pseudonymisation_key()
    return hmac.new(secret, b"fingerprint", hashlib.sha256).hexdigest()[:12]


def key_label() -> str:
    return "DEVELOPMENT key (set DATAFIRST_PSEUDONYMISATION_KEY)" if key_is_development() else "from environment"


#: SHA-256's block size: HMAC pads (or first hashes) the key to it (RFC 2104).
_BLOCK = 64


def hmac_sha256_hex(secret: bytes, prefix: bytes, values: list[str | None]) -> list[str | None]:
    """hmac.new(secret, prefix + value, sha256).hexdigest() of each value (None stays None), from
    HMAC's keyed inner and outer SHA-256 states made once and copied per value (RFC 2104), with no
    `hmac.HMAC` object a value: its Python wrapper cost about as much as the hashing (240,000
    values: 0.35 -> 0.20 s of CPU). The digests are hmac.new's (tested against it)."""
    block = (hashlib.sha256(secret).digest() if len(secret) > _BLOCK else secret).ljust(_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    inner.update(prefix)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
    inner_copy, outer_copy = inner.copy, outer.copy
    digests: list[str | None] = []
    for value in values:
        if value is None:
            digests.append(None)
            continue
        one = inner_copy()
        one.update(value.encode("utf-8"))
        two = outer_copy()
        two.update(one.digest())
        digests.append(two.hexdigest())
    return digests


def keyed_hash(values: pl.Series, *, namespace: str, key: bytes | None = None, cache=None) -> pl.Series:
    """HMAC-SHA256 hex of `namespace:value` (the namespace keeps equal ids of different systems apart).

    `cache` (a `deidentify.hash_cache.KeyedHashCache` for this key): values hashed by an earlier
    run are taken from it and only the others are hashed (and stored in it)."""
    secret = key if key is not None else pseudonymisation_key()
    text = values.cast(pl.String)
    unique = text.unique()
    if cache is not None and cache.fingerprint != key_fingerprint(secret):
        raise ValueError("keyed_hash: the hash cache belongs to another key")
    found = cache.lookup(namespace, unique) if cache is not None else None
    if found is not None and found.height:
        unique = unique.filter(~unique.is_in(found["value"]).fill_null(False))
    # Old and new values as two Series: a dict here made polars build them value by value,
    # which cost more than the hashing itself (measured: 21 of 31 s at 100,000 people).
    digests = pl.Series(hmac_sha256_hex(secret, f"{namespace}:".encode("utf-8"), unique.to_list()), dtype=pl.String)
    if cache is not None:
        cache.store(namespace, unique, digests)
    if found is not None and found.height:
        unique = pl.concat([found["value"].alias(unique.name), unique])
        digests = pl.concat([found["digest"].alias(digests.name), digests])
    return text.replace_strict(unique, digests, return_dtype=pl.String).alias(values.name)
