"""When an incremental run keeps a dataset's quality estimates instead of assessing it again.

A dataset's estimated precision, recall and F1 (`threshold.assess`) are sums and fits over every
record and every scored pair: the transitivity curve, the witness's odds, capture-recapture, the
B-cubed means over every record at every threshold of the sweep. What it keeps between runs
(`quality_parts`) makes the local parts follow the change, but the whole-dataset sums are taken
again whenever any input changed: at 1,000,000 people about 13 s of a 1% extract run's ~115 s,
for estimates that such an extract moves in their fourth decimal (at 300,000 people: by at most
2.9e-4, family's pairwise recall; B-cubed F1 by at most 5e-5).

So, as a database refreshes its planner statistics only once enough rows changed, an incremental run
keeps a dataset's last estimates while the rows written to its clusters, scored pairs and person
records since they were made (`ROWS_CHANGED` on each write's materialization: rows deleted, updated
and inserted in place; every row of a table written whole) stay under `share` of those tables' rows
they were made from (`LinkageSettings.quality_refresh_share`, 5% as `threshold.FITS_REUSE_SHARE`: a 1%
extract changes about 2.7% of them, new pairs counting with new records), and while what they were
made with is the same: the model version, the clustering threshold, the clerical labels file,
whether the threshold is configured, and the assessment's code. Its record and person counts are
those of today's clusters; the asset's metadata (`estimates_kept`) and the report say which run made
the estimates and how many rows changed since. The weekly full run (and any
run in full mode) assesses every dataset, and a larger change assesses it on the next extract. A share
of 0 assesses every changed dataset on every run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from datafirst_assets.warehouse.content import ROWS_CHANGED


@dataclass(frozen=True)
class Assessed:
    """What a dataset's stored estimates were made from (kept beside its row in `quality_parts`)."""

    run: str
    at: float  # when the assessment ran (Unix time): writes after it are changes since
    model_version: str
    threshold: float
    labels: str | None  # sha256 of the clerical labels file, None without one
    configured: bool
    code: str  # `quality_parts.fitting_code()`
    rows: int  # rows of the clusters, scored pairs and person records assessed

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict | None) -> Assessed | None:
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__}) if data else None
        except (KeyError, TypeError):
            return None


def labels_digest(path: Path) -> str | None:
    """sha256 of the labels file, None when there is none."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def rows_changed_since(instance: DagsterInstance, keys: Iterable[AssetKey], after: float) -> int | None:
    """Rows the writes of `keys` changed after `after` (their materializations' `ROWS_CHANGED`);
    None when a write since does not say (made by older code): then nothing is known."""
    changed = 0
    for key in keys:
        records = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, after_timestamp=after),
                                                  limit=10_000).records
        for record in records:
            materialization = record.asset_materialization
            value = materialization.metadata.get(ROWS_CHANGED) if materialization is not None else None
            value = getattr(value, "value", value)
            if not isinstance(value, int):
                return None
            changed += value
    return changed


def estimates_reusable(assessed: Assessed | None, *, now: Assessed, changed: int | None, share: float) -> bool:
    """Whether the estimates `assessed` describes still stand for `now` (what an assessment today would
    be made from; its `run`, `at` and `rows` are not compared): made with the same model, threshold,
    labels, configuration and code, and `changed` rows since within `share` of the rows assessed."""
    if assessed is None or changed is None or share <= 0 or assessed.rows <= 0:
        return False
    same = all(getattr(assessed, f) == getattr(now, f)
               for f in ("model_version", "threshold", "labels", "configured", "code"))
    return same and changed <= share * assessed.rows
