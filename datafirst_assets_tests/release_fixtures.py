"""Frames shaped exactly like every release table (columns, dtypes, keys that join), for tests.

Not realistic data: just enough structure that children reference their parents, person tables
share person ids that the cross-justice lookup links, and the case lookup pairs real cases.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random

import polars as pl

from datafirst_assets.deidentify.release_spec import LINKING, ReleaseTable, release_tables
from datafirst_assets.sources.registry import SOURCES


def _hex(*parts) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def _column(spec: ReleaseTable, column, n: int, rng: random.Random, done: dict) -> list:
    role, name = column.role, column.name
    if role == "primary_key":
        return [_hex(spec.source, spec.name, name, i) for i in range(n)]
    if role == "foreign_key":
        parent_table, parent_column = column.references
        source = spec.source if spec.source != LINKING else (
            "magistrates" if parent_table == "hocas_flatfile" else "crown_court")
        keys = done[(source, parent_table)].get_column(parent_column).to_list()
        if spec.unique_key == (name,):  # one-to-one child or lookup: each parent at most once
            return keys[:n]
        return [rng.choice(keys) for _ in range(n)]
    if role == "system_id":
        return [_hex(spec.name, name, rng.randrange(n)) if rng.random() > 0.1 else None for _ in range(n)]
    if role == "person_key":
        return [rng.randrange(1, max(2, n // 2)) for _ in range(n)]
    if role == "categorical":
        # Skewed so that value lists have large and small counts.
        values = rng.choices(["A", "B", "C", "rare"], weights=[60, 25, 12, 3], k=n)
        return [v if rng.random() > 0.05 else None for v in values]
    if role == "area":
        return [rng.choice(["LS", "M", "B", "SW", "NE"]) for _ in range(n)]
    if role == "flag":
        return [rng.random() < 0.3 if rng.random() > 0.05 else None for _ in range(n)]
    if role == "age":
        return [rng.randrange(16, 90) for _ in range(n)]
    if role == "date":
        return [dt.date(2015, 1, 1) + dt.timedelta(days=rng.randrange(3650)) if rng.random() > 0.1 else None
                for _ in range(n)]
    if role == "score":
        return [round(rng.random(), 3) for _ in range(n)]
    if role == "numeric":
        return [rng.randrange(0, 1000) if column.dtype == pl.Int64 else round(rng.uniform(0, 5000), 2)
                for _ in range(n)]
    raise AssertionError(f"no fixture for role {role} ({spec.source}.{spec.name}.{name})")


def _xjs_lookup(spec: ReleaseTable, done: dict) -> pl.DataFrame:
    rows = []
    for (source, table), frame in done.items():
        person = SOURCES[source].person_id_name if source in SOURCES else None
        if person and person in frame.columns:
            for pid in sorted(set(frame.get_column(person).to_list())):
                # Persons with the same number are the same person across datasets (medium), pairs at low.
                rows.append({"source_dataset": source, "dataset_person_id": pid,
                             "xjs_person_id_high": int(_hex(source, pid)[:12], 16),
                             "xjs_person_id_medium": pid, "xjs_person_id_low": pid // 2 + 1})
    frame = pl.DataFrame(rows, schema=spec.schema()).unique(["source_dataset", "dataset_person_id"])
    return frame.sort("source_dataset", "dataset_person_id")


def release_frames(rows: int = 60, seed: int = 0) -> dict[tuple[str, str], pl.DataFrame]:
    """(source, table) -> frame for every release table; parents come before children in the specs."""
    rng = random.Random(seed)
    done: dict[tuple[str, str], pl.DataFrame] = {}
    specs = release_tables()
    for key, spec in specs.items():
        if key == (LINKING, "xjs_lookup"):
            continue
        n = rows if spec.parent is None else 2 * rows
        if any(c.role == "foreign_key" and spec.unique_key == (c.name,) for c in spec.columns):
            n = rows // 2
        data = {c.name: _column(spec, c, n, rng, done) for c in spec.columns}
        done[key] = pl.DataFrame(data, schema=spec.schema())
    done[(LINKING, "xjs_lookup")] = _xjs_lookup(specs[(LINKING, "xjs_lookup")], done)
    return {key: done[key] for key in specs}
