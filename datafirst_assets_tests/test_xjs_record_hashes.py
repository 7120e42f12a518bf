"""The lookup's keyed record hashes: an incremental run hashes only the records not stored before."""

from __future__ import annotations

import polars as pl

from datafirst_assets.defs import xjs as xjs_defs
from datafirst_assets.deidentify.keys import keyed_hash


def _lookup(n: int) -> pl.DataFrame:
    return pl.DataFrame({"source_dataset": ["prison"] * n + ["probation"] * n,
                         "record_id": [str(i) for i in range(n)] * 2,
                         "person_id_dataset": [f"p:{i}" for i in range(2 * n)]})


def test_stored_hashes_are_reused_and_only_new_records_hashed(monkeypatch):
    hashed: list[int] = []

    def counting(values, **kw):
        hashed.append(values.len())
        return keyed_hash(values, **kw)

    full = xjs_defs.add_record_hashes(_lookup(50))
    previous = xjs_defs.add_record_hashes(_lookup(40))
    monkeypatch.setattr(xjs_defs, "keyed_hash", counting)
    again = xjs_defs.add_record_hashes(_lookup(50), previous)
    assert again.equals(full)
    assert sum(hashed) == 2 + 2 * 10  # one probe per dataset, then the 10 new records of each


def test_hashes_stored_under_another_key_are_all_computed_again():
    full = xjs_defs.add_record_hashes(_lookup(20))
    other_key = _lookup(20).with_columns(
        keyed_hash(_lookup(20)["record_id"], namespace="prison", key=b"another key").alias("record_id_hash"))
    assert xjs_defs.add_record_hashes(_lookup(20), other_key).equals(full)
