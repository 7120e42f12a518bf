"""Each dataset's row of the linkage quality table, and its largest clusters, kept for the next run
with the fingerprint of what they were made from: a dataset whose clusters, scored pairs, person
records and clerical labels did not change is not read or assessed again.

The quality asset assessed every dataset on every run (reading every dataset's clusters and
scored pairs, the slowest part being the estimate over all pairs: at 300,000 people about 30 CPU
seconds, most of it for the two datasets with the most pairs), although an extract usually changes
some datasets only. After each assessment the dataset's row and largest clusters are written under
`<reports>/.quality_parts/<dataset>/` with the fingerprint (`warehouse.unchanged.inputs_fingerprint`:
the tables' row counts, types and row hashes in DuckDB, the labels file, whether the threshold is
configured, and the code); the next run takes them when the fingerprint is the same. A full
refresh assesses every dataset.

A dataset that did change is assessed again over all its pairs (its estimates are fits over the
whole dataset: the transitivity curve, the witness's pattern rates, capture-recapture, B-cubed
means), but its local parts are kept too (`threshold.KeptWork`): the transitivity check's per-pair flags,
recomputed only around the pairs that changed (`threshold.transitive_support`), the same-name
witness's counts per name, recounted only for names whose records changed, and each pair's own facts
(the guard's rules, the witness's agreement pattern: `threshold.pair_facts`) with the content hash of
the records they were read from, computed again only for pairs that are new or have a record that
came, went or changed, and the over-merge guard's joins in each cluster that carries two people
(`guard.guarded_roots_keeping`), taken again only for clusters whose links or records changed, and
each pair's capture-recapture lists (which blocking rules compared it: `threshold.kept_blocking_lists`),
read again in the warehouse only for pairs that are new or have a record that came, went or changed. A
frame carried as it was read is linked into the new folder, not written again. They are kept whatever
the fingerprint: each is compared pair by pair or record by record with what it was made from, so
a stale file only means more is recomputed.

The no-label fits over the whole dataset (`threshold.NoLabelFits`: the transitivity check's rates
and curve, the witness's odds factor per pattern) are kept here too (`fits.json`), with the run that
fitted them, the model version and a digest of the fitting code: an incremental run applies them to
today's pairs instead of fitting again while the model and code are the same and few pairs changed
since (`threshold.FITS_REUSE_SHARE`); a full run (the weekly rebuild) fits them again.

The clusters step keeps its per-person link-graph metrics here too (`.graph_parts/`, see the last
section): an incremental link measures only the persons it did not keep whole.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import polars as pl

from datafirst_assets.common.folders import link_or_copy, replace_folder
from datafirst_assets.linkage.guard import METRIC_SCHEMA
from datafirst_assets.linkage.quality import QUALITY_SCHEMA
from datafirst_assets.linkage import threshold
from datafirst_assets.linkage.threshold import KeptWork, NoLabelFits
from datafirst_assets.warehouse.content import CODE_VERSION_OF

PARTS = ".quality_parts"
META = "meta.json"
#: The no-label fits (`threshold.NoLabelFits`) the dataset's last assessment used, with the run that fitted them
FITS = "fits.json"
#: KeptWork's frames, each in its own file
KEPT = {"support": "support.parquet", "same_name_records": "same_name_records.parquet",
        "same_name_sums": "same_name_sums.parquet", "pair_facts": "pair_facts.parquet",
        "record_content": "record_content.parquet", "guard_joins": "guard_joins.parquet",
        "blocking": "blocking.parquet"}
#: KeptWork's frames are written on every assessment of a changed dataset (the pair facts: a row
#: per scored pair) and read by the next one only: lz4 wrote magistrates' pair facts at 300,000 people
#: in about half zstd's time (and read them faster) for files about a third larger.
KEPT_COMPRESSION = "lz4"
#: The digest of the blocking rules the kept lists were read with (``KeptWork.blocking_rules``)
BLOCKING_RULES = "blocking_rules.json"


def _link(source: Path, target: Path) -> bool:
    """``source`` hard-linked (or else copied) as ``target``; False if neither could be done."""
    try:
        link_or_copy(source, target)
    except OSError:
        return False
    return True


def save_part(reports: Path, source: str, fingerprint: str, row: dict, largest: pl.DataFrame,
              kept: KeptWork | None = None, fits: NoLabelFits | None = None,
              loaded: KeptWork | None = None, assessed: dict | None = None) -> None:
    """Store one dataset's quality row, largest clusters, what its assessment kept for the next
    one and the no-label fits it used (written aside, then swapped in). ``loaded``: what
    :func:`load_kept` read from the folder for this assessment; a frame kept as it was read (the
    transitivity flags and the same-name counts while the no-label fits are reused: every pair's
    and every name's rows) is linked from its file instead of written again."""
    folder = Path(reports) / PARTS / source

    def write(staging: Path) -> None:
        pl.DataFrame([row], schema=QUALITY_SCHEMA).write_parquet(staging / "row.parquet")
        largest.write_parquet(staging / "largest.parquet")
        for name, file in KEPT.items():
            frame = getattr(kept, name) if kept is not None else None
            if frame is None:
                continue
            if loaded is not None and frame is getattr(loaded, name) and _link(folder / file, staging / file):
                continue
            frame.write_parquet(staging / file, compression=KEPT_COMPRESSION)
        if kept is not None and kept.blocking is not None and kept.blocking_rules is not None:
            (staging / BLOCKING_RULES).write_text(json.dumps(kept.blocking_rules), encoding="utf-8")
        if fits is not None:
            (staging / FITS).write_text(json.dumps(fits.to_json()), encoding="utf-8")
        (staging / META).write_text(json.dumps({"source": source, "fingerprint": fingerprint, "assessed": assessed}),
                                    encoding="utf-8")

    replace_folder(Path(reports) / PARTS / source, write)


def load_part(reports: Path, source: str, fingerprint: str) -> tuple[dict, pl.DataFrame] | None:
    """The stored row and largest clusters of `source` when made from inputs with this fingerprint."""
    stored = load_last_part(reports, source)
    return None if stored is None or stored[2].get("fingerprint") != fingerprint else stored[:2]


def load_last_part(reports: Path, source: str) -> tuple[dict, pl.DataFrame, dict] | None:
    """The stored row, largest clusters and meta of `source`'s last assessment (`assessed`: what
    its estimates were made from, `quality_reuse.Assessed`), None when there is none to read."""
    folder = Path(reports) / PARTS / source
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        if meta.get("source") != source:
            return None
        return (pl.read_parquet(folder / "row.parquet").row(0, named=True), pl.read_parquet(folder / "largest.parquet"),
                meta)
    except (OSError, ValueError, pl.exceptions.PolarsError):
        return None


def fitting_code() -> str:
    """A digest of the code the no-label fits come from (`linkage/threshold.py`): stored fits made by
    other code are not reused. (The pipeline's `code_version` hashes every module: any edit anywhere
    would refit, where a change to the fits' own code is what makes them stale.) Under a benchmark's
    `DATAFIRST_CODE_VERSION_OF` (an A/B of code from a state another code stored), that code's
    `threshold.py`, as for every other fingerprint (`warehouse.content.code_version`)."""
    other = os.environ.get(CODE_VERSION_OF)
    source = Path(other) / "linkage" / "threshold.py" if other else Path(threshold.__file__)
    return hashlib.sha256(source.read_bytes()).hexdigest()[:16]


def load_fits(reports: Path, source: str) -> NoLabelFits | None:
    """The no-label fits `source`'s last assessment used (None if it used none or they cannot be read)."""
    try:
        return NoLabelFits.from_json(json.loads((Path(reports) / PARTS / source / FITS).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def reusable_fits(stored: NoLabelFits | None, model_version: str, code: str) -> NoLabelFits | None:
    """``stored`` when fitted with this model version and fitting code, else None (fitted again):
    like the Splink model, the fits describe one model's scores, read by one version of the code."""
    if stored is None or stored.model_version != model_version or stored.code != code:
        return None
    return stored


def load_kept(reports: Path, source: str) -> KeptWork:
    """What `source`'s last assessment kept for this one (empty parts where there is none)."""
    folder = Path(reports) / PARTS / source
    frames = {}
    for name, file in KEPT.items():
        try:
            frames[name] = pl.read_parquet(folder / file) if (folder / file).exists() else None
        except (OSError, pl.exceptions.PolarsError):
            frames[name] = None
    try:
        rules = json.loads((folder / BLOCKING_RULES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        rules = None
    # lists without the rules they were read with are not taken (`threshold.kept_blocking_lists`)
    return KeptWork(**frames, blocking_rules=rules if isinstance(rules, str) else None)


# ------------------------------------------------- the clusters step's link-graph metrics
#
# Each dataset's link-graph metrics per person (``guard.cluster_graph_metrics``: records, links,
# density, bridges), kept for the next run with a digest of what they were measured on.
#
# The clusters step measured every person's links on every run (at 300,000 people about 0.6 s for
# magistrates, a Python bridge search per sparse person among it), although an incremental link
# keeps most persons whole: their records and the links among them are those of the previous link
# (pairs touching a new, changed or removed record are the only ones dropped or added, and such a
# record's person is re-clustered). So the metrics are written under
# ``<reports>/.graph_parts/<dataset>/`` with a digest of the persons (record -> person id) and links
# (pairs at the threshold) they were measured on; the next incremental run takes the rows of the
# persons it kept whole when the previous link's digest matches, and measures the rest. A mismatch
# (another code or polars version, a write that failed half-way) only means every person is measured.

GRAPH_PARTS = ".graph_parts"


def graph_digest(ids: pl.DataFrame, links: pl.DataFrame, threshold: float, code: str = "") -> str:
    """What a person's metrics depend on: every record's person id and every link at the threshold
    (ids as text, probability as a float), summed row hashes (order-independent), with the
    threshold, the code version ``code`` and polars' version (its hash is stable within a version)."""
    persons = ids.select(pl.struct(pl.col("record_id").cast(pl.String), pl.col("person_id").cast(pl.Int64))
                         .hash(seed=29).sum()).item()
    linked = links.select(pl.struct(pl.col("record_id_l").cast(pl.String), pl.col("record_id_r").cast(pl.String),
                                    pl.col("match_probability").cast(pl.Float64)).hash(seed=31).sum()).item()
    return f"{pl.__version__}|{code}|{threshold!r}|{ids.height}|{persons}|{links.height}|{linked}"


def save_graph(reports: Path, source: str, digest: str, metrics: pl.DataFrame) -> None:
    """Store one dataset's metrics with their digest (written aside, then swapped in)."""
    def write(staging: Path) -> None:
        metrics.select(*METRIC_SCHEMA).write_parquet(staging / "metrics.parquet")
        (staging / META).write_text(json.dumps({"source": source, "digest": digest}), encoding="utf-8")

    replace_folder(Path(reports) / GRAPH_PARTS / source, write)


def load_graph(reports: Path, source: str, digest: str) -> pl.DataFrame | None:
    """The stored metrics of ``source`` when measured on what ``digest`` describes, else None."""
    folder = Path(reports) / GRAPH_PARTS / source
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        if meta.get("digest") != digest or meta.get("source") != source:
            return None
        return pl.read_parquet(folder / "metrics.parquet").select(*METRIC_SCHEMA).cast(METRIC_SCHEMA)  # type: ignore[arg-type]
    except (OSError, ValueError, pl.exceptions.PolarsError):
        return None
