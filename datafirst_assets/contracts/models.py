"""Hand-written contracts (pandera.polars DataFrameModels) of the tables no registry generates.

Linkage tables are contracts on the columns later stages rely on; they are not strict, so a
stage may add columns (e.g. an original spelling next to a folded name) without breaking its
contract. Release-facing tables (de-identified, synthetic, derived) are strict: see
`contracts.registry`, which generates those from the release spec.
"""

from __future__ import annotations

import json

from datafirst_assets.common.pandera_polars import pa
import polars as pl
from pandera.typing.polars import Series

from datafirst_assets.linkage.stable_ids import KINDS as ID_CHANGE_KINDS

HEX_64 = r"^[0-9a-f]{64}$"
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
MODEL_JSON_KEYS = ("version", "splink_model", "spec")
SPLINK_MODEL_KEYS = ("comparisons", "probability_two_random_records_match", "blocking_rules_to_generate_predictions")


def json_objects_with(data, *keys: str, nested: tuple[str, tuple[str, ...]] | None = None) -> pl.LazyFrame:
    """Column check body: every value parses as a JSON object holding `keys` (and `nested`: key, its keys)."""

    def ok(text: str | None) -> bool:
        try:
            parsed = json.loads(text)
        except (TypeError, ValueError):
            return False
        if not isinstance(parsed, dict) or not all(k in parsed for k in keys):
            return False
        if nested:
            inner = parsed.get(nested[0])
            return isinstance(inner, dict) and all(k in inner for k in nested[1])
        return True

    return data.lazyframe.select(pl.col(data.key).map_elements(ok, return_dtype=pl.Boolean))


class Quarantine(pa.DataFrameModel):
    """Rows that could not be staged, each with its reason; none is lost."""

    extract_date: Series[str] = pa.Field(str_matches=ISO_DATE, description="Extract date of the delivery")
    source: Series[str] = pa.Field(description="Source system key")
    table: Series[str] = pa.Field(description="Table of the source")
    record_id: Series[str] = pa.Field(nullable=True, description="The row's source id as delivered (if any)")
    source_file: Series[str] = pa.Field(alias="_source_file", description="File the row was read from")
    row_number: Series[pl.Int64] = pa.Field(alias="_row_number", ge=2, description="Line number in that file")
    reason: Series[str] = pa.Field(str_length={"min_value": 1}, description="Why the row was not staged")
    raw_record: Series[str] = pa.Field(nullable=True, description="The row as delivered (JSON or raw line)")

    class Config:
        strict = True
        name = "quarantine"
        description = "One row per delivered row that could not be staged."


class PersonRecords(pa.DataFrameModel):
    """Linkage fields of every record that identifies a person (more fields per source: not strict)."""

    record_id: Series[str] = pa.Field(unique=True, description="Source record id (the person table's id)")
    source_dataset: Series[str] = pa.Field(description="Source dataset key")
    extract_date: Series[str] = pa.Field(str_matches=ISO_DATE, description="Extract the record version came from")

    class Config:
        strict = False
        name = "person_records"
        description = "One row per source record that identifies a person (latest version)."


class ModelVersion(pa.DataFrameModel):
    """The trained Splink model: one row, its JSON must be a Splink settings object."""

    version: Series[str] = pa.Field(str_length={"min_value": 1}, description="Hash of the model's rounded parameters")
    trained_at: Series[str] = pa.Field(description="UTC time of training (ISO 8601)")
    records: Series[pl.Int64] = pa.Field(ge=0, description="Person records the model was trained on")
    model_json: Series[str] = pa.Field(description="Model JSON: version, spec and the Splink model "
                                         "(comparisons with m and u, prior, blocking rules)")

    @pa.check("model_json", name="Splink model JSON shape")
    def splink_json(cls, data) -> pl.LazyFrame:  # noqa: N805 (pandera passes the class)
        return json_objects_with(data, *MODEL_JSON_KEYS, nested=("splink_model", SPLINK_MODEL_KEYS))

    @pa.dataframe_check(name="exactly one model row")
    def one_row(cls, data) -> pl.LazyFrame:  # noqa: N805
        return data.lazyframe.select(pl.len().eq(1).alias("one_row"))

    class Config:
        strict = True
        name = "model"
        description = "The model in use: one row."


class Clusters(pa.DataFrameModel):
    record_id: Series[str] = pa.Field(unique=True, description="Source record id")
    model_version: Series[str] = pa.Field(description="Model version the record was scored with")
    match_threshold: Series[float] = pa.Field(in_range={"min_value": 0, "max_value": 1},
                                              description="Match probability threshold of the clustering")

    class Config:
        strict = False
        name = "clusters"
        description = "One row per person record with its per-dataset person id."


class ScoredPairs(pa.DataFrameModel):
    record_id_l: Series[str] = pa.Field(description="Left record id")
    record_id_r: Series[str] = pa.Field(description="Right record id")
    match_weight: Series[float] = pa.Field(description="Splink match weight (log2 Bayes factor)")
    match_probability: Series[float] = pa.Field(in_range={"min_value": 0, "max_value": 1},
                                                description="Splink match probability")

    class Config:
        strict = False
        name = "scored_pairs"
        description = "Candidate pairs scored by the model."


class IdChanges(pa.DataFrameModel):
    old_id: Series[pl.Int64] = pa.Field(nullable=True, description="Person id before (null for a new id)")
    new_id: Series[pl.Int64] = pa.Field(nullable=True, description="Person id after (null for a retired id)")
    kind: Series[str] = pa.Field(isin=list(ID_CHANGE_KINDS), description="merge, split, moved, new or retired")
    records: Series[pl.Int64] = pa.Field(ge=0, description="Records affected")
    changed_at: Series[pl.Datetime] = pa.Field(nullable=True, description="When (UTC)")
    run_id: Series[str] = pa.Field(nullable=True, description="Dagster run that made the change")
    mode: Series[str] = pa.Field(nullable=True, description="incremental or full")

    class Config:
        strict = False
        name = "id_changes"
        description = "History of person id changes, run by run."


class XjsIdChanges(IdChanges):
    level: Series[str] = pa.Field(isin=["high", "medium", "low"],
                                  description="Cross-justice threshold level whose id changed")

    class Config:
        strict = False
        name = "xjs_id_changes"
        description = "History of cross-justice person id changes, per threshold level, run by run."


class XjsLookup(pa.DataFrameModel):
    source_dataset: Series[str] = pa.Field(description="Dataset of the record")
    record_id: Series[str] = pa.Field(description="Source record id")
    record_id_hash: Series[str] = pa.Field(str_matches=HEX_64, description="Keyed hash of the record id")
    person_id_dataset: Series[str] = pa.Field(description="Per-dataset person id")
    person_id_high: Series[pl.Int64] = pa.Field(description="Cross-justice person id at the high threshold")
    person_id_medium: Series[pl.Int64] = pa.Field(description="Cross-justice person id at the medium threshold")
    person_id_low: Series[pl.Int64] = pa.Field(description="Cross-justice person id at the low threshold")

    class Config:
        strict = False
        unique = ["source_dataset", "record_id"]
        name = "xjs_lookup"
        description = "Cross-justice lookup: one row per source record."


class XjsEdges(pa.DataFrameModel):
    source_dataset_l: Series[str] = pa.Field(description="Dataset of the left person")
    person_id_dataset_l: Series[str] = pa.Field(description="Left per-dataset person id")
    source_dataset_r: Series[str] = pa.Field(description="Dataset of the right person")
    person_id_dataset_r: Series[str] = pa.Field(description="Right per-dataset person id")
    match_probability: Series[float] = pa.Field(in_range={"min_value": 0, "max_value": 1},
                                                description="Best variant-pair match probability")

    class Config:
        strict = False
        name = "xjs_edges"
        description = "Scored cross-dataset person pairs."


class XjsPersons(pa.DataFrameModel):
    source_dataset: Series[str] = pa.Field(description="Dataset of the person")
    person_id_dataset: Series[str] = pa.Field(unique=True, description="Per-dataset person id")
    variants_hash: Series[str] = pa.Field(description="Hash of the person's distinct name / DOB variants")
    model_version: Series[str] = pa.Field(nullable=True, description="Cross-justice model the edges were scored with")
    edges_above: Series[float] = pa.Field(description="Match probability the stored edges were kept above")

    class Config:
        strict = False
        name = "xjs_persons"
        description = "Per-dataset persons as the last cross-justice lookup saw them (its incremental state)."


class CaseLookup(pa.DataFrameModel):
    defendant_case_id: Series[str] = pa.Field(unique=True, description="Magistrates' defendant-case id")
    defendant_on_case_id: Series[str] = pa.Field(unique=True, description="Crown Court defendant-on-case id")
    match_score: Series[float] = pa.Field(in_range={"min_value": 0, "max_value": 1}, description="Match score")

    class Config:
        strict = False
        name = "case_lookup"
        description = "Magistrates' defendant-case -> Crown Court defendant-on-case, one to one."


class LinkageQuality(pa.DataFrameModel):
    source: Series[str] = pa.Field(unique=True, description="Dataset")
    threshold: Series[float] = pa.Field(in_range={"min_value": 0, "max_value": 1},
                                        description="Clustering threshold (match probability)")
    threshold_source: Series[str] = pa.Field(isin=["configured", "clerical_labels", "model_estimate"],
                                             description="Where the threshold came from")
    estimated_bcubed_f1: Series[float] = pa.Field(nullable=True, in_range={"min_value": 0, "max_value": 1},
                                                  description="ESTIMATED B-cubed F1 (no truth read)")

    class Config:
        strict = False
        name = "linkage_quality"
        description = "Per dataset: threshold, its source and estimated accuracy (from the model and any labels)."


class ReviewQueue(pa.DataFrameModel):
    record_id_l: Series[str] = pa.Field(description="One record of the pair")
    record_id_r: Series[str] = pa.Field(description="The other record")
    match_weight: Series[float] = pa.Field(description="The model's match weight")
    clerical_match_score: Series[float] = pa.Field(nullable=True, description="To fill in: 1 same person, 0 not")

    class Config:
        strict = False
        name = "review_queue"
        description = "Pairs for clerical review, both records side by side."


class SyntheticSummaries(pa.DataFrameModel):
    format: Series[str] = pa.Field(description="Summaries format version")
    sha256: Series[str] = pa.Field(str_matches=HEX_64, description="SHA-256 of the summaries document")
    summaries_json: Series[str] = pa.Field(description="The summaries document (JSON), the only input of generation")

    @pa.check("summaries_json", name="summaries JSON shape")
    def shape(cls, data) -> pl.LazyFrame:  # noqa: N805
        return json_objects_with(data, "tables")

    class Config:
        strict = True
        name = "synthetic_summaries"
        description = "One row: the disclosure-checked summaries document."


class SyntheticReport(pa.DataFrameModel):
    table: Series[str] = pa.Field(description="Release table")
    column: Series[str] = pa.Field(description="Column")
    similarity: Series[float] = pa.Field(nullable=True, in_range={"min_value": 0, "max_value": 1},
                                         description="Column-shape similarity (1 = identical)")

    class Config:
        strict = False
        name = "synthetic_report"
        description = "Column-shape similarity of every synthetic column."


class CatalogueColumns(pa.DataFrameModel):
    dataset: Series[str] = pa.Field(description="Dataset")
    table: Series[str] = pa.Field(description="Table")
    position: Series[pl.Int32] = pa.Field(ge=1, description="Column position")
    column: Series[str] = pa.Field(description="Column name")
    type: Series[str] = pa.Field(description="Column type")
    role: Series[str] = pa.Field(description="Role in the release")
    description: Series[str] = pa.Field(nullable=True, description="What the column holds")
    pct_missing: Series[float] = pa.Field(nullable=True, in_range={"min_value": 0, "max_value": 100},
                                          description="% missing (withheld when it would reveal a small count)")
    distinct: Series[pl.Int64] = pa.Field(ge=0, description="Distinct values")
    values: Series[str] = pa.Field(nullable=True, description="Listed values with counts (under 10 suppressed)")
    min: Series[str] = pa.Field(nullable=True, description="k-th lowest value")
    median: Series[str] = pa.Field(nullable=True, description="Median")
    max: Series[str] = pa.Field(nullable=True, description="k-th highest value")
    note: Series[str] = pa.Field(nullable=True, description="Reading notes")

    @pa.check("values", name="no listed count under 10")
    def no_small_counts(cls, data) -> pl.LazyFrame:  # noqa: N805
        # Listed counts are "(1,234)"; suppressed ones "(<10)" or "(suppressed)".
        counts = pl.col(data.key).str.extract_all(r"\((\d[\d,]*)\)").list.eval(
            pl.element().str.replace_all(r"[(),]", "").cast(pl.Int64))
        return data.lazyframe.select((counts.list.min().fill_null(10) >= 10) | pl.col(data.key).is_null())

    class Config:
        strict = True
        name = "catalogue"
        description = "One row per variable of every table of the dataset."


class ReleaseSummary(pa.DataFrameModel):
    release_id: Series[str] = pa.Field(description="Release id")
    source: Series[str] = pa.Field(description="Dataset")
    table: Series[str] = pa.Field(description="Table")
    path: Series[str] = pa.Field(description="File inside the release folder")
    rows: Series[pl.Int64] = pa.Field(ge=0, description="Rows in the file")
    sha256: Series[str] = pa.Field(str_matches=HEX_64, description="SHA-256 of the file")

    class Config:
        strict = True
        unique = ["source", "table"]
        name = "release"
        description = "One row per published file."
