"""Per-dataset deduplication assets, one set per source from the registry, and their quality.

linkage/<source>/person_records -> linkage/<source>/model -> linkage/<source>/clusters
                                                             linkage/<source>/scored_pairs
all clusters -> linkage/quality (report under data/reports/)

No `from __future__ import annotations`: Dagster inspects annotations at runtime.
"""

import json
import secrets
import time
from dataclasses import replace
from pathlib import Path

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    AssetsDefinition,
    ConfigurableResource,
    MetadataValue,
    Output,
    asset,
    multi_asset,
)

from datafirst_assets.defs.ingest import staged_key
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.linkage.backend import configured_db_api
from datafirst_assets.linkage.guard import (
    CHAIN_MAX_DENSITY,
    CHAIN_MIN_RECORDS,
    GUARD_COLUMNS,
    MAX_CLUSTER_RECORDS,
    chained_clusters,
    cluster_graph_metrics,
    graph_summary,
    largest_cluster_metrics,
    largest_clusters,
    largest_clusters_table,
)
from datafirst_assets.linkage.incremental import (
    KEEP_PAIRS_ABOVE,
    MODES,
    LinkResult,
    PreviousLink,
    link_full,
    link_incremental,
    model_to_reuse,
)
from datafirst_assets.common.partitions import PARTITION_COLUMN
from datafirst_assets.common.sql import quote_identifier
from datafirst_assets.common.tables import bullet_list, markdown_table
from datafirst_assets.linkage.quality_reuse import Assessed, estimates_reusable, labels_digest, rows_changed_since
from datafirst_assets.linkage.quality_parts import (
    fitting_code,
    graph_digest,
    load_fits,
    load_graph,
    load_kept,
    load_last_part,
    load_part,
    reusable_fits,
    save_graph,
    save_part,
)
from datafirst_assets.linkage.quality import (
    estimated_quality_row,
    evidence_problems,
    quality_markdown,
    quality_table,
    write_quality_report,
)
from datafirst_assets.linkage.metrics import (REVIEW_WINDOW, match_probability_to_weight, read_labels, review_sample,
                                              unlabelled_pairs, write_review_sample)
from datafirst_assets.reporting import file_url
from datafirst_assets.linkage.records import (
    add_person_ids,
    changed_partitions,
    clustering_gaps,
    person_ids_sql,
    person_records,
    linked_touched_sql,
    records_change,
    touched_records_sql,
)
from datafirst_assets.linkage.settings import model_spec_for_records
from datafirst_assets.linkage.stable_ids import (HISTORY_SCHEMA, PERSON_ID, history_with, run_change_counts,
                                                  run_history_rows)
from datafirst_assets.linkage.threshold import (
    WITNESS_COLUMNS,
    BlockingSource,
    KeptWork,
    NoLabelFits,
    assess,
    blocking_lists_sql,
    choose_cluster_threshold,
    prediction_rules,
    threshold_chooser,
)
from datafirst_assets.linkage.train import (
    TrainedModel,
    TrainingConfig,
    model_row,
    save_charts,
    save_model,
    stored_model,
    summary_table,
    train_model,
    u_pairs_for,
)
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.sources.spec import SourceSpec
from datafirst_assets.warehouse.connection import warehouse_cursor
from datafirst_assets.warehouse.content import VALIDATED_CONTENT, code_version, fingerprint_by_partition, row_hash_sum
from datafirst_assets.warehouse.io_manager import (AppendedRows, ChangedRows, StoredTable, changes_to, frame_sums,
                                                   table_columns)
from datafirst_assets.warehouse.unchanged import (FINGERPRINT, inputs_fingerprint, kept_if_unchanged, latest_metadata,
                                                  recorded_fingerprints)


class LinkageSettings(ConfigurableResource):
    """How deduplication runs: Splink backend, thresholds, where models and clerical labels live."""

    backend: str = "duckdb"  # or "spark" (pip install -e '.[spark]'); see README "Running at scale"
    # Spark only: "local[*]" runs on this machine; a cluster's master URL ("spark://host:7077",
    # "yarn", "k8s://...") runs there. The checkpoint folder must be storage the cluster shares.
    spark_master: str = "local[*]"
    spark_conf: dict[str, str] = {}
    spark_checkpoint_dir: str = ""
    data_dir: str = "data"
    # DuckDB backend: run Splink inside this warehouse's database instance (one memory limit and
    # spill folder for both; stored tables reach Splink without Python). Empty: in-memory DuckDB.
    warehouse_database: str = ""
    # Match probability per source; unset sources choose theirs from labels (see threshold.py).
    thresholds: dict[str, float] = {}
    # Pairs per dataset in each clerical review queue (linkage/<source>/review_queue).
    review_pairs: int = 1_500
    # A prediction blocking rule generating more pairs than this stops the link with an error
    # naming the rule (None: no cap). Counts are measured when the rules are fitted.
    max_pairs_per_rule: float | None = 1e9
    # Passes over the records when scoring pairs (None: sized from the blocking rules' pair counts).
    predict_chunks: int | None = None
    # Random pairs sampled to estimate u: None scales with the data (see u_pairs_for).
    u_max_pairs: float | None = None
    seed: int = 42
    # "incremental": link new and changed records with the saved model, extending the stored
    # pairs and clusters (train only when no saved model fits the records); "full": retrain,
    # re-score and re-cluster everything (the periodic refresh). Ids carry forward either way.
    mode: str = "incremental"
    # Incremental runs retrain anyway once the records outgrow this multiple of those the
    # saved model was trained on (None: never).
    retrain_growth: float | None = 2.0
    # Incremental runs keep a dataset's quality estimates while the rows its clusters, pairs and
    # records changed since they were made stay under this share of them (linkage/quality_reuse.py;
    # as threshold.FITS_REUSE_SHARE for the no-label fits; 0: assess every changed dataset on every
    # run). Full runs always assess.
    quality_refresh_share: float = 0.05

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    def db_api(self):
        """Splink's backend as configured."""
        return configured_db_api(self.backend, spark_master=self.spark_master, spark_conf=self.spark_conf,
                                 spark_checkpoint_dir=self.spark_checkpoint_dir or None,
                                 warehouse=self.warehouse_database or None)

    def labels_file(self, source: str) -> Path:
        """Clerical labels for one dataset (people's, or the simulated reviewer's)."""
        return self.root / "labels" / f"{source}.csv"

    def u_pairs_for(self, records: int) -> float:
        """Enough random pairs for stable u on rare agreement levels, without paying 1e7 on small data."""
        if self.u_max_pairs is not None:
            return self.u_max_pairs
        return u_pairs_for(records)

def run_config_for_mode(linkage: LinkageSettings, mode: str, resource_key: str = "linkage") -> dict:
    """Run config that runs the linkage in ``mode`` (e.g. "full" for the scheduled refresh).

    Resource config given at launch replaces the whole resource config, so every field is
    repeated here, not just the mode."""
    if mode not in MODES:
        raise ValueError(f"linkage mode must be one of {MODES}, not {mode!r}")
    config = {k: v for k, v in linkage.model_dump().items() if v is not None}
    return {"resources": {resource_key: {"config": {**config, "mode": mode}}}}


def _check_mode(linkage: LinkageSettings) -> None:
    if linkage.mode not in MODES:
        raise ValueError(f"LinkageSettings.mode must be one of {MODES}, not {linkage.mode!r}")


def stored_table(warehouse: Warehouse, source: str, name: str,
                 columns: tuple[str, ...] | None = None) -> pl.DataFrame | None:
    """The last materialisation of ``linkage/<source>/<name>`` in the warehouse, if any: all its
    columns, or those of ``columns`` it has."""
    schema = _stored(source)["schema"]
    with warehouse.cursor() as conn:
        stored = table_columns(conn, schema, name)
        if not stored:
            return None
        wanted = [c for c in stored if columns is None or c in columns]
        select = ", ".join(f'"{c}"' for c in wanted)
        return pl.from_arrow(conn.sql(f'select {select} from {schema}."{name}"').to_arrow_table())  # type: ignore[return-value]


def stored_history_ids(warehouse: Warehouse, source: str) -> pl.DataFrame | None:
    """The highest old and new id that ``linkage/<source>/id_changes`` ever logged (one row; None:
    no log): what a new id must exceed (a retired id is never issued again), without reading the log."""
    schema = _stored(source)["schema"]
    with warehouse.cursor() as conn:
        if not {"old_id", "new_id"} <= set(table_columns(conn, schema, "id_changes")):
            return None
        top = conn.execute(f'select max(old_id)::bigint, max(new_id)::bigint from {schema}."id_changes"').fetchall()[0]
    return pl.DataFrame({"old_id": [top[0]], "new_id": [top[1]]}, schema={"old_id": pl.Int64, "new_id": pl.Int64})


def history_output(context: AssetExecutionContext, warehouse: Warehouse, source: str, rows: pl.DataFrame,
                   schema: dict = HISTORY_SCHEMA) -> tuple[AppendedRows, int]:
    """The change log ``linkage/<source>/id_changes`` (columns ``schema``) as this run's ``rows``
    (``run_history_rows``) appended to it (the rows of an earlier attempt of this run replaced), and
    how many rows it then holds. A log read, validated and written whole every run grew with every
    delivery: 45,800 rows an extract for the cross-justice ids at 1,000,000 people. When it cannot be
    appended to, the log is written whole (``history_with``)."""
    key = linkage_key(source, "id_changes")
    validated = latest_metadata(context.instance, [key])[key].get(VALIDATED_CONTENT)
    schema = _stored(source)["schema"]
    with warehouse.cursor() as conn:
        kept = 0
        if "run_id" in table_columns(conn, schema, "id_changes"):
            kept = conn.execute(f'select count(*) from {schema}."id_changes" where run_id is distinct from ?',
                                [context.run_id]).fetchall()[0][0]
    return AppendedRows(rows=rows, replacing=("run_id", context.run_id),
                        rewrite=lambda: history_with(stored_table(warehouse, source, "id_changes"), rows,
                                                     run_id=context.run_id, schema=schema),
                        validated_before=getattr(validated, "value", validated)), int(kept) + rows.height


def labels_threshold(pairs: pl.DataFrame | None, labels_file: Path, record_ids: pl.Series,
                     records: pl.DataFrame | None = None) -> float | None:
    """The threshold the clerical labels choose on the stored pairs (None without usable labels)."""
    if pairs is None or not labels_file.exists():
        return None
    choice = choose_cluster_threshold(pairs, configured=None, labels_file=labels_file, record_ids=record_ids,
                                      intervals=False, records=records)
    return choice.match_probability if choice.source == "clerical_labels" else None


#: person records' metadata: the code and, per extract date, the staged rows they were made from
#: (``"rows|sum of row hashes"``), so that the next run computes again only the records of changed dates
STAGED_DATES = "staged_dates"


def linkage_key(source: str, name: str) -> AssetKey:
    return AssetKey(["linkage", source, name])


def linkage_group(source: str) -> str:
    """One group per dataset's dedupe, so the lineage tells the seven `model`s and `clusters` apart
    (short enough that the graph shows the whole name: it truncates names over 17 characters)."""
    return f"dedup_{source}"


def _stored(source: str) -> dict:
    return {"schema": f"linkage_{source}"}


def _recorded(context: AssetExecutionContext, source: SourceSpec, **tables: StoredTable) -> dict:
    """A fingerprint memo (`unchanged.recorded_fingerprints`) for a dataset's linkage tables read by a
    step (by name: `person_records=...`): each whole table's write recorded its fingerprint, so an
    incremental run does not hash every row of the dataset's records, pairs or clusters again."""
    return recorded_fingerprints(context.instance, {linkage_key(source.key, name): t for name, t in tables.items()})


def linkage_table(database: str, source: str, name: str) -> StoredTable:
    """Where the IO manager stores `linkage_key(source, name)`: for an asset that reads every dataset's
    tables by handle, depending on them (`deps`, the same lineage) instead of one input per table,
    which writes two run events each (STEP_INPUT, LOADED_INPUT) for a handle never loaded."""
    return StoredTable(database, _stored(source)["schema"], name)


def _chart_links(folder: Path, version: str, root: Path) -> dict[str, MetadataValue]:
    """Links to a model version's Splink charts, opened in a browser from the asset page
    (`make ui` serves data/models)."""
    prefix = f"{version}_"
    return {chart.stem.removeprefix(prefix): MetadataValue.url(file_url(chart, root))
            for chart in sorted((folder / "charts").glob(f"{prefix}*.html"))}


def _model_metadata(model: TrainedModel, why: str, folder: Path, root: Path, records: int, *, reused: bool,
                    trained_on_records: int | None = None) -> dict:
    """What the model asset's page shows: the version, whether it was reused and why, its JSON,
    its comparisons and links to its charts."""
    return {
        "version": model.version, "reused": reused, "reason": why,
        "model_json": MetadataValue.path(str(folder / f"{model.version}.json")),
        "records": records,
        **({"trained_on_records": trained_on_records} if trained_on_records is not None else {}),
        "comparisons": MetadataValue.md(markdown_table(summary_table(model.summary), "{:.4g}")),
        **_chart_links(folder, model.version, root),
    }


def link_dataset(source: SourceSpec, records: pl.DataFrame, trained: TrainedModel, linkage: LinkageSettings,
                 warehouse: Warehouse, log) -> tuple:
    """Extend the previous link where the model and records allow it (incremental mode), else link
    in full; the threshold is configured, from clerical labels, or the model's own estimate."""
    stored = stored_table(warehouse, source.key, "clusters")
    previous = PreviousLink(
        clusters=stored.rename({source.person_id_name: PERSON_ID})
        if stored is not None and source.person_id_name in stored.columns else None,
        changes=stored_history_ids(warehouse, source.key),
    )
    db_api = linkage.db_api()
    configured = linkage.thresholds.get(source.key)
    problem = (previous.cannot_extend(trained.version, check_pairs=False) if linkage.mode == "incremental"
               else "full run requested")
    if problem is None:
        previous.pairs = stored_table(warehouse, source.key, "scored_pairs")
        problem = previous.cannot_extend(trained.version)
    if problem is None:
        # Labels reviewed since the last run move the threshold (re-clustering everything);
        # otherwise the previous run's threshold stands, so ids stay put between refreshes.
        from_labels = None if configured is not None else labels_threshold(
            previous.pairs, linkage.labels_file(source.key), records.get_column("record_id"), records)
        result = link_incremental(records, trained, db_api, previous,
                                  threshold=configured if from_labels is None else from_labels)
        if from_labels is not None:
            result = replace(result, threshold_source="clerical_labels")
    else:
        choose = threshold_chooser(records.get_column("record_id"), configured=configured,
                                   labels_file=linkage.labels_file(source.key), records=records)
        result = link_full(records, trained, db_api, choose=choose, previous=previous, reason=problem,
                           num_chunks=linkage.predict_chunks, max_pairs_per_rule=linkage.max_pairs_per_rule,
                           progress=log)
    return result, previous


def _id_changes_metadata(changes: pl.DataFrame, history_rows: int, counts: dict[str, int],
                         first_run: bool) -> dict:
    return {
        **{f"this_run_{k}": v for k, v in counts.items()},
        "history_rows": history_rows,
        "this_run": MetadataValue.md(
            markdown_table(changes.head(20)) if changes.height
            else f"First run: {counts['new']} person ids issued." if first_run
            else "No person id changed in this run."),
    }


def _clusters_metadata(result: LinkResult, clusters: pl.DataFrame, graph: pl.DataFrame, person_id_name: str,
                       model_version: str, *, first_link: bool) -> dict:
    """The clusters asset's page: the link graph's shape, the mode and threshold, counts and timings."""
    return {
        **graph_summary(graph),
        # conflicting dates of birth, two parties of one case, a company with a person
        "clusters_split_by_guard": result.stats.get("guard_clusters_split", 0),
        "largest_clusters": MetadataValue.md(markdown_table(largest_clusters(graph), "{:.3f}")),
        "mode": result.mode,
        "mode_reason": result.reason,
        "threshold_match_probability": None if result.threshold is None else float(f"{result.threshold:.4g}"),
        "threshold_source": result.threshold_source,
        "persons": clusters[person_id_name].n_unique(),
        "records": clusters.height,
        "records_reclustered": result.stats.get("reclustered"),
        "new_records": result.stats.get("new_records", clusters.height if first_link else None),
        "highest_person_id": result.next_id - 1,
        "model_version": model_version,
        "seconds": MetadataValue.md(markdown_table(pl.DataFrame(
            {"step": list(result.timings), "seconds": list(result.timings.values())}), "{:.2f}")),
    }


def _person_records_asset(source: SourceSpec) -> AssetsDefinition:
    """The linkage fields of every person record."""
    table = source.person_table

    @asset(
        key=linkage_key(source.key, "person_records"),
        ins={"staged": AssetIn(key=staged_key(source.key, table.name), dagster_type=StoredTable)},
        group_name=linkage_group(source.key),
        metadata=_stored(source.key),
        kinds={"polars", "duckdb"},
        description=f"One row per {source.key} `{table.name}` record that identifies a person: "
        "standardised linkage fields only (latest version of each record).",
    )
    def _person_records(context: AssetExecutionContext, staged: StoredTable, linkage: LinkageSettings):
        with warehouse_cursor(staged.database) as conn:  # one pass: the fingerprint and each date's rows
            whole, parts = fingerprint_by_partition(conn, staged, PARTITION_COLUMN)
        fingerprint = inputs_fingerprint({"staged": staged}, memo={(staged.database, staged.select_sql()): whole})
        if (kept := kept_if_unchanged(context, fingerprint, linkage.mode)) is not None:
            return kept[-1]
        metadata = {FINGERPRINT: fingerprint, STAGED_DATES: MetadataValue.json({"code": code_version(), "dates": parts})}
        if linkage.mode != "full" and (changes := _records_changes(context, staged, source, parts)) is not None:
            return Output(changes, metadata=metadata)  # only the records the changed extract dates touch
        return Output(person_records(staged.to_polars(), source, table), metadata=metadata)

    return _person_records


def _records_changes(context: AssetExecutionContext, staged: StoredTable, source: SourceSpec,
                     dates: dict[str, str]) -> ChangedRows | None:
    """An incremental run's person records as the change to the stored table: the records of the
    extract dates whose staged rows changed since the stored table was made (`records.touched_records_sql`)
    computed again from all their staged rows. None (compute every record) when the stored table's
    making is not known (no record of its dates, other code) or a date is null. Should the IO manager
    not apply the change in place (the stored table is not what was last validated, new records sort
    before stored ones), it writes every record computed afresh."""
    key, table = context.asset_key, source.person_table
    previous = {k: getattr(v, "value", v) for k, v in latest_metadata(context.instance, [key])[key].items()}
    before, validated = previous.get(STAGED_DATES), previous.get(VALIDATED_CONTENT)
    if not isinstance(before, dict) or before.get("code") != code_version() or validated is None:
        return None
    changed = changed_partitions(before["dates"], dates)
    stored = linkage_table(staged.database, source.key, "person_records")
    if "None" in changed or not stored.exists():
        return None
    touched = f"__touched_{secrets.token_hex(4)}"
    with warehouse_cursor(staged.database) as conn:
        conn.execute(f"create temp table {touched} as "
                     f"{touched_records_sql(staged.select_sql(), stored.select_sql(), table.id_column, changed)}")
        try:
            rows = _frame(conn, f"select * from ({staged.select_sql()}) _s where cast("
                                f"{quote_identifier(table.id_column)} as varchar) in (select record_id from {touched})")
            stored_rows = _frame(conn, f"{stored.select_sql()} where record_id in (select record_id from {touched})")
            recomputed = person_records(rows, source, table)
            if recomputed.schema != stored_rows.schema:
                return None
            # one pass over the stored table: its `content_sums`, last record, and the sums of the rows replaced
            hit = f"_t.record_id in (select record_id from {touched})"
            count, hashes, last, *gone = conn.execute(
                f"select count(*), {row_hash_sum()}, max(_t.record_id), count(*) filter (where {hit}), "
                f"{row_hash_sum(where=hit)} from ({stored.select_sql()}) _t"
            ).fetchall()[0]
            new = frame_sums(conn, recomputed)
        finally:
            conn.execute(f"drop table if exists {touched}")
    deletes, updates, inserts = records_change(recomputed, stored_rows)
    context.log.info(f"person records: extract dates changed {changed}: {len(set(rows[table.id_column]))} "
                     f"record(s) computed again of {count:,} stored")
    return ChangedRows(key=("record_id",), deletes=deletes, updates=updates, inserts=inserts, expected=None,
                       rewrite=lambda: person_records(staged.to_polars(), source, table),
                       validated_before=validated, expected_sums=(count - gone[0] + new[0], hashes - gone[1] + new[1]),
                       # appended rows keep the table in record order only when they sort after the rest;
                       # else it is sorted again (ids as text: "1000000" sorts before "999999")
                       appendable=inserts.is_empty() or last is None or inserts["record_id"].min() > last,
                       order=("record_id",))


def _frame(conn, sql: str) -> pl.DataFrame:
    return pl.from_arrow(conn.sql(sql).to_arrow_table())  # type: ignore[return-value]


def _model_asset(source: SourceSpec) -> AssetsDefinition:
    """The Splink model, reused in incremental mode while the data allows it."""
    @asset(
        key=linkage_key(source.key, "model"),
        ins={"stored": AssetIn(key=linkage_key(source.key, "person_records"), dagster_type=StoredTable)},
        group_name=linkage_group(source.key),
        metadata=_stored(source.key),
        kinds={"splink", "duckdb"},
        description=f"Splink model for {source.key}, trained unsupervised (prior from deterministic rules, "
        "u by random sampling, m by EM); JSON versioned under data/models/.",
    )
    def _model(context: AssetExecutionContext, stored: StoredTable, linkage: LinkageSettings,
               warehouse: Warehouse):
        _check_mode(linkage)
        fingerprint = inputs_fingerprint({"records": stored}, settings=(linkage.retrain_growth, linkage.backend),
                                         memo=_recorded(context, source, person_records=stored))
        if (kept := kept_if_unchanged(context, fingerprint, linkage.mode)) is not None:
            return kept[-1]
        context.add_output_metadata({FINGERPRINT: fingerprint})
        records = stored.to_polars()
        folder = linkage.root / "models" / source.key
        why = "full run requested"
        if linkage.mode == "incremental":
            previous = stored_table(warehouse, source.key, "model")
            doc, trained_on = stored_model(previous)
            reused, why = model_to_reuse(doc, trained_on, records, retrain_growth=linkage.retrain_growth)
            if reused is not None:
                context.log.info(f"reusing the saved model: {why}")
                context.add_output_metadata(_model_metadata(reused, why, folder, linkage.root, records.height,
                                                            reused=True, trained_on_records=trained_on))
                return previous
            context.log.info(f"training: {why}")
        trained = train_model(
            records, model_spec_for_records(records), linkage.db_api(),
            TrainingConfig(u_max_pairs=linkage.u_pairs_for(records.height), seed=linkage.seed),
            progress=context.log.info,
        )
        save_model(trained, folder / f"{trained.version}.json")
        charts = save_charts(trained.linker, folder / "charts", prefix=f"{trained.version}_")
        context.add_output_metadata({
            **_model_metadata(trained, why, folder, linkage.root, records.height, reused=False),
            # the charts that could not be drawn, with why
            **{name: error for name, error in charts.items() if not isinstance(error, Path)},
        })
        return model_row(trained, records.height)

    return _model


def _cluster_asset(source: SourceSpec) -> AssetsDefinition:
    """Scored pairs, clusters with stable person ids, and the id change log."""
    @multi_asset(
        name=f"cluster_{source.key}",
        ins={
            "records": AssetIn(key=linkage_key(source.key, "person_records"), dagster_type=StoredTable),
            "model": AssetIn(key=linkage_key(source.key, "model"), dagster_type=StoredTable),
        },
        outs={
            "clusters": AssetOut(
                key=linkage_key(source.key, "clusters"), group_name=linkage_group(source.key), metadata=_stored(source.key),
                kinds={"splink", "duckdb"},
                description=f"{source.key} record -> `{source.person_id_name}` at the chosen threshold.",
            ),
            "scored_pairs": AssetOut(
                key=linkage_key(source.key, "scored_pairs"), group_name=linkage_group(source.key),
                metadata=_stored(source.key), kinds={"splink", "duckdb"},
                description=f"{source.key} pairs scored by the model with match probability >= {KEEP_PAIRS_ABOVE}.",
            ),
            "id_changes": AssetOut(
                key=linkage_key(source.key, "id_changes"), group_name=linkage_group(source.key),
                metadata=_stored(source.key), kinds={"polars", "duckdb"},
                description=f"History of `{source.person_id_name}` changes between runs: merges, splits, "
                "records moved between persons, new and retired ids (old id, new id, kind, records, run).",
            ),
        },
        check_specs=[AssetCheckSpec(
            "every_record_clustered", asset=linkage_key(source.key, "clusters"), blocking=True,
            description="Every person record has exactly one person id.",
        ), AssetCheckSpec(
            "no_chained_clusters", asset=linkage_key(source.key, "clusters"),
            description=f"No person has more than {MAX_CLUSTER_RECORDS} records, and none of "
            f"{CHAIN_MIN_RECORDS}+ records has a link density under {CHAIN_MAX_DENSITY} (people chained together).",
        )],
    )
    def _cluster(context: AssetExecutionContext, records: StoredTable, model: StoredTable,
                 linkage: LinkageSettings, warehouse: Warehouse):
        _check_mode(linkage)
        fingerprint = inputs_fingerprint({"records": records, "model": model}, files=[linkage.labels_file(source.key)],
                                         settings=(linkage.thresholds.get(source.key), linkage.backend, linkage.seed,
                                                   linkage.predict_chunks, linkage.max_pairs_per_rule),
                                         memo=_recorded(context, source, person_records=records, model=model))
        if (kept := kept_if_unchanged(context, fingerprint, linkage.mode)) is not None:
            yield from kept
            return
        records, model = records.to_polars(), model.to_polars()
        trained = TrainedModel.from_json(json.loads(model["model_json"][0]))
        result, previous = link_dataset(source, records, trained, linkage, warehouse, log=context.log.info)
        context.log.info(f"{result.mode} link: {result.reason}")
        clusters = result.clusters_table(trained.version, source.person_id_name)
        rows = run_history_rows(result.changes, run_id=context.run_id, mode=result.mode)
        history, history_rows = history_output(context, warehouse, source.key, rows)
        first_run = previous.clusters is None or previous.clusters.is_empty()
        counts = run_change_counts(result.stats, clusters[source.person_id_name], first_run=first_run)
        # The change log goes first: the next run finds the ids it issued or retired even if
        # writing the clusters fails, so none is issued twice.
        yield Output(history, output_name="id_changes",
                     metadata={**_id_changes_metadata(result.changes, history_rows, counts, first_run),
                               FINGERPRINT: fingerprint})
        graph, digest = _graph_metrics(result, previous, linkage.root / "reports", source.key)
        validated = _validated_before(context, source) if result.mode == "incremental" else {}
        yield Output(_clusters_output(result, clusters, previous, validated), output_name="clusters",
                     metadata=_clusters_metadata(
            result, clusters, graph, source.person_id_name, trained.version,
            first_link=previous.clusters is None) | {FINGERPRINT: fingerprint})
        yield Output(_pairs_output(result, validated), output_name="scored_pairs", metadata={
            "pairs": result.stats["pairs"], "new_pairs": result.stats.get("new_pairs", result.stats["pairs"]),
            FINGERPRINT: fingerprint})
        yield from _cluster_checks(records, clusters, graph)
        # after every output is stored: the metrics describe the stored persons and links
        save_graph(linkage.root / "reports", source.key, digest, graph)

    return _cluster


def _cluster_checks(records: pl.DataFrame, clusters: pl.DataFrame, graph: pl.DataFrame):
    """The clusters asset's checks: every record has one person id; no person looks chained."""
    gaps = clustering_gaps(records, clusters)
    yield AssetCheckResult(check_name="every_record_clustered", passed=not any(gaps.values()), metadata=gaps)
    chained = chained_clusters(graph)
    yield AssetCheckResult(
        check_name="no_chained_clusters", passed=chained.is_empty(), severity=AssetCheckSeverity.WARN,
        metadata={"chained_clusters": chained.height,
                  "examples": MetadataValue.md(markdown_table(chained.head(10), "{:.3f}") if chained.height
                                               else "none")},
    )


def _validated_before(context: AssetExecutionContext, source: SourceSpec) -> dict[str, str | None]:
    """Per output written in place (clusters, scored_pairs): the content its last write validated
    whole (what a change in place needs stored), in one look-up of the asset index."""
    keys = {name: linkage_key(source.key, name) for name in ("clusters", "scored_pairs")}
    found = latest_metadata(context.instance, keys.values())
    return {name: getattr(v, "value", v) for name, key in keys.items()
            for v in [found[key].get(VALIDATED_CONTENT)]}


def _clusters_output(result: LinkResult, clusters: pl.DataFrame, previous: PreviousLink,
                     validated: dict[str, str | None]):
    """The clusters table as the IO manager writes it: after an incremental link that kept persons
    whole, as its change to the stored table (a kept person's rows are as stored: same records, hashes,
    id, model and threshold), found among the other persons' rows only; else whole."""
    if result.kept_persons is None or previous.clusters is None:
        return clusters
    pid = clusters.columns[1]  # the dataset's person id (``LinkResult.clusters_table``)
    kept = result.kept_persons.implode()
    before = (previous.clusters.rename({PERSON_ID: pid}).select(clusters.columns).cast(dict(clusters.schema))
              .filter(~pl.col(pid).is_in(kept)))
    now = clusters.filter(~pl.col(pid).is_in(kept))
    differ = now.join(before, on=clusters.columns, how="anti", nulls_equal=True)
    inserts = differ.join(before, on="record_id", how="anti").sort("record_id")
    last = previous.clusters.get_column("record_id").cast(pl.String).max()
    return ChangedRows(key=("record_id",), deletes=before.join(now, on="record_id", how="anti").select("record_id"),
                       updates=differ.join(before, on="record_id", how="semi"), inserts=inserts,
                       expected=clusters, rewrite=clusters, validated_before=validated.get("clusters"),
                       # appended rows keep the table in record order only when they sort after the rest;
                       # else it is sorted again (ids as text: "1000000" sorts before "999999")
                       appendable=inserts.is_empty() or last is None or inserts["record_id"].min() > last,
                       order=("record_id",))


def _pairs_output(result: LinkResult, validated: dict[str, str | None]):
    """The scored pairs as the IO manager writes them: an incremental link's as the change to the
    stored table (its pairs touching a new, changed or removed record deleted, the new pairs appended:
    the stored order of what a rewrite writes), else whole. The IO manager rewrites the table from
    ``result.pairs`` when the stored one is not what was last validated (``ChangedRows``)."""
    if result.pair_changes is None or not isinstance(result.pairs, pl.DataFrame):
        return result.pairs
    dropped, added = result.pair_changes
    return ChangedRows(key=("record_id_l", "record_id_r"), deletes=dropped, updates=result.pairs.head(0),
                       inserts=added, expected=result.pairs, rewrite=result.pairs,
                       validated_before=validated.get("scored_pairs"),
                       appendable=True)


def _graph_metrics(result: LinkResult, previous: PreviousLink, reports: Path, source: str) -> tuple[pl.DataFrame, str]:
    """Every person's link-graph metrics (``guard.cluster_graph_metrics``) and the digest to keep them
    under: an incremental link takes the rows of the persons it kept whole from those the previous
    run kept (``linkage/quality_parts.py``), when they were measured on the previous link as stored."""
    links = result.threshold_links()
    known = None
    if result.kept_persons is not None and previous.pairs is not None and previous.ids() is not None:
        before = float(previous.constant("match_threshold"))
        stored = load_graph(reports, source, graph_digest(
            previous.ids(), previous.pairs.filter(pl.col("match_probability") >= before),  # type: ignore[arg-type]
            before, code_version()))
        if stored is not None:
            known = stored.join(result.kept_persons.cast(pl.String).alias("cluster_id").to_frame(), on="cluster_id",
                                how="semi")
    graph = cluster_graph_metrics(result.ids, links, result.threshold, cluster_col=PERSON_ID, known=known)
    return graph, graph_digest(result.ids, links, result.threshold, code_version())


def _linked_changes(context: AssetExecutionContext, staged: StoredTable, clusters: StoredTable,
                    source: SourceSpec, dates: dict[str, str]) -> ChangedRows | None:
    """An incremental run's linked table as the rows that differ from the stored one, found among the
    records that can have changed (`records.linked_touched_sql`: those of the extract dates whose staged
    rows changed since the stored table was made, and those linkage gave another person id), computed
    again from their own staged rows: the cost follows the change, not the table. Falls back to
    comparing every row (`_linked_changes_whole`) when how the stored table was made is not known;
    None when none is stored."""
    table, key = source.person_table, context.asset_key
    linked = StoredTable(staged.database, f"linked_{source.key}", table.name)
    if not linked.exists():
        return None
    previous = {k: getattr(v, "value", v) for k, v in latest_metadata(context.instance, [key])[key].items()}
    before, validated = previous.get(STAGED_DATES), previous.get(VALIDATED_CONTENT)
    changed = changed_partitions(before["dates"], dates) if isinstance(before, dict) \
        and before.get("code") == code_version() else ["None"]
    if validated is None or "None" in changed:
        return _linked_changes_whole(staged, clusters, source, linked, validated)
    record, touched = quote_identifier(table.id_column), f"__touched_{secrets.token_hex(4)}"
    hit = f"cast(_t.{record} as varchar) in (select record_id from {touched})"
    with warehouse_cursor(staged.database) as conn:
        conn.execute(f"create temp table {touched} as " + linked_touched_sql(
            staged.select_sql(), linked.select_sql(), clusters.select_sql(), table.id_column, source.person_id_name,
            changed))
        try:
            rows = f"select * from ({staged.select_sql()}) _t where {hit}"
            recomputed = _frame(conn, person_ids_sql(rows, clusters.select_sql(), table.id_column,
                                                     source.person_id_name)).sort(table.id_column)
            stored_rows = _frame(conn, f"select * from ({linked.select_sql()}) _t where {hit}")
            if recomputed.schema != stored_rows.schema:
                return _linked_changes_whole(staged, clusters, source, linked, validated)
            # one pass over the stored table: its `content_sums`, last id and the sums of the rows replaced
            count, hashes, last, *gone = conn.execute(
                f"select count(*), {row_hash_sum()}, max(_t.{record}), count(*) filter (where {hit}), "
                f"{row_hash_sum(where=hit)} from ({linked.select_sql()}) _t").fetchall()[0]
            new = frame_sums(conn, recomputed)
        finally:
            conn.execute(f"drop table if exists {touched}")
    deletes, updates, inserts = records_change(recomputed, stored_rows, key=table.id_column)
    context.log.info(f"linked: extract dates changed {changed}: {recomputed.height:,} record(s) computed again "
                     f"of {count:,} stored")
    return ChangedRows(key=(table.id_column,), deletes=deletes, updates=updates, inserts=inserts, expected=None,
                       rewrite=_linked_sql(staged, clusters, source, ordered=True), validated_before=validated,
                       expected_sums=(count - gone[0] + new[0], hashes - gone[1] + new[1]),
                       # appended rows keep the table in id order only when they sort after the rest;
                       # else it is sorted again (ids as text: "1000000" sorts before "999999")
                       appendable=inserts.is_empty() or last is None or inserts[table.id_column].min() > last,
                       order=(table.id_column,))


def _linked_sql(staged: StoredTable, clusters: StoredTable, source: SourceSpec, ordered: bool = False) -> str:
    """The whole linked table as a DuckDB SELECT (`records.person_ids_sql`), in id order when `ordered`."""
    table = source.person_table
    sql = person_ids_sql(staged.select_sql(), clusters.select_sql(), table.id_column, source.person_id_name)
    return f"select * from ({sql}) _e order by {quote_identifier(table.id_column)}" if ordered else sql


def _linked_changes_whole(staged: StoredTable, clusters: StoredTable, source: SourceSpec, linked: StoredTable,
                          validated) -> ChangedRows:
    """The linked table's change found by comparing every row with the stored one, in DuckDB."""
    with warehouse_cursor(staged.database) as conn:
        return changes_to(conn, linked.name, _linked_sql(staged, clusters, source), [source.person_table.id_column],
                          getattr(validated, "value", validated))


def _linked_asset(source: SourceSpec) -> AssetsDefinition:
    """The staged person table with its per-dataset person id."""
    table = source.person_table

    @asset(
        key=AssetKey(["linked", source.key, table.name]),
        ins={
            "staged": AssetIn(key=staged_key(source.key, table.name), dagster_type=StoredTable),
            "clusters": AssetIn(key=linkage_key(source.key, "clusters"), dagster_type=StoredTable),
        },
        group_name="linked",
        metadata={"schema": f"linked_{source.key}"},
        kinds={"polars", "duckdb"},
        description=f"Staged `{table.name}` (latest version of each record) with `{source.person_id_name}`.",
    )
    def _linked(context: AssetExecutionContext, staged: StoredTable, clusters: StoredTable, linkage: LinkageSettings):
        with warehouse_cursor(staged.database) as conn:  # one pass: the fingerprint and each date's rows
            whole, parts = fingerprint_by_partition(conn, staged, PARTITION_COLUMN)
        # the clusters' as their write recorded it; staged is partitioned (no whole-table record): hashed
        memo = {**_recorded(context, source, clusters=clusters), (staged.database, staged.select_sql()): whole}
        fingerprint = inputs_fingerprint({"staged": staged, "clusters": clusters}, memo=memo)
        if (kept := kept_if_unchanged(context, fingerprint, linkage.mode)) is not None:
            return kept[-1]
        metadata = {FINGERPRINT: fingerprint, STAGED_DATES: MetadataValue.json({"code": code_version(), "dates": parts})}
        if linkage.mode != "full" and (changes := _linked_changes(context, staged, clusters, source, parts)) is not None:
            return Output(changes, metadata=metadata)  # only the records that changed
        linked = add_person_ids(staged.to_polars(), clusters.to_polars(), table.id_column, source.person_id_name)
        return Output(linked, metadata=metadata)

    return _linked


def build_dedupe_assets(source: SourceSpec) -> list[AssetsDefinition]:
    """One dataset's deduplication: person records -> model -> clusters -> linked table."""
    return [_person_records_asset(source), _model_asset(source), _cluster_asset(source), _linked_asset(source)]


def build_review_queue_asset(source: SourceSpec) -> AssetsDefinition:
    """Pairs for clerical review (see linkage.metrics.review_queue)."""

    @asset(
        key=linkage_key(source.key, "review_queue"),
        ins={
            "pairs": AssetIn(key=linkage_key(source.key, "scored_pairs"), dagster_type=StoredTable),
            "records": AssetIn(key=linkage_key(source.key, "person_records"), dagster_type=StoredTable),
            "clusters": AssetIn(key=linkage_key(source.key, "clusters"), dagster_type=StoredTable),
        },
        group_name=linkage_group(source.key),
        metadata=_stored(source.key),
        kinds={"polars", "duckdb"},
        description=f"{source.key} pairs for clerical review, not yet labelled, sampled evenly across match-weight "
        "bands around the threshold, both records side by side; copied to data/review/ to fill in "
        "`clerical_match_score` and save as data/labels/<source>.csv.",
    )
    def _review_queue(context: AssetExecutionContext, pairs: StoredTable, records: StoredTable,
                      clusters: StoredTable, linkage: LinkageSettings):
        labels = linkage.labels_file(source.key)
        fingerprint = inputs_fingerprint({"pairs": pairs, "records": records, "clusters": clusters}, files=[labels],
                                         settings=(linkage.review_pairs, linkage.seed),
                                         memo=_recorded(context, source, scored_pairs=pairs, person_records=records,
                                                        clusters=clusters))
        if (kept := kept_if_unchanged(context, fingerprint, linkage.mode)) is not None:
            return kept[-1]
        labelled = read_labels(labels) if labels.exists() else None
        threshold = _stored_threshold(clusters)
        # the pairs not yet labelled (`review_queue`'s first step, done where they are read)
        pairs_in, records_in = _review_inputs(pairs, records, threshold, linkage.review_pairs, labelled)
        queue = review_sample(pairs_in, records_in, threshold_match_probability=threshold, n=linkage.review_pairs,
                              seed=linkage.seed)
        path = write_review_sample(queue, linkage.root / "review" / f"{source.key}.csv")
        return Output(queue, metadata={"pairs": queue.height, "threshold_match_probability": threshold,
                                       "to_fill_in": MetadataValue.path(str(path)),
                                       "labels_file": MetadataValue.path(str(labels)), FINGERPRINT: fingerprint})

    return _review_queue


def _stored_threshold(clusters: StoredTable) -> float:
    """The threshold the stored clusters were cut at (0.5 when there are none), as their first row
    gives it, read without the clusters: one value per link."""
    with warehouse_cursor(clusters.database) as conn:
        found = conn.execute(f"select min(match_threshold), max(match_threshold), count(*) "
                             f"from ({clusters.select_sql(['match_threshold'])})").fetchall()[0]
    low, high, rows = found
    if not rows:
        return 0.5
    if low != high:  # several thresholds (not written by this pipeline): the first row's, as before
        return float(clusters.to_polars(["match_threshold"])["match_threshold"][0])
    return float(low)


def _review_inputs(pairs: StoredTable, records: StoredTable, threshold: float, n: int,
                   labelled: pl.DataFrame | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What `review_sample` draws the next queue from, and no more: the pairs not yet labelled
    (`unlabelled_pairs`) within its window of the threshold's weight (of every pair when fewer than
    `n` lie that near: it then takes the nearest, however far) and the person records of those pairs.
    The same sample as `review_queue` of every pair and record (its draw depends on each pair alone),
    without reading 2.1M pairs and 1.3M records into memory to keep 1,500 at 1M people."""
    w0 = match_probability_to_weight(threshold)
    with warehouse_cursor(pairs.database) as conn:
        if "match_weight" not in table_columns(conn, pairs.schema, pairs.table):
            return pairs.to_polars(), records.to_polars()  # `review_sample` says what is missing
        chosen = unlabelled_pairs(_frame(conn, f"select * from ({pairs.select_sql()}) _p where "
                                               f"abs(match_weight - {w0!r}::double) <= {REVIEW_WINDOW!r}::double"),
                                  labelled)
        if chosen.height < n:
            chosen = unlabelled_pairs(pairs.to_polars(), labelled)
        ids = pl.concat([chosen.get_column("record_id_l"), chosen.get_column("record_id_r")]).cast(pl.String).unique()
        wanted = f"_review_ids_{secrets.token_hex(4)}"
        conn.register(wanted, ids.to_frame("record_id").to_arrow())
        try:
            kept = _frame(conn, f"select * from ({records.select_sql()}) _r "
                                f"where cast(_r.record_id as varchar) in (select record_id from {wanted})")
        finally:
            conn.unregister(wanted)
    return chosen, kept


QUALITY = AssetKey(["linkage", "quality"])


def stored_blocking_lists(warehouse: Warehouse, root: Path, source: str, model_version: str) -> pl.DataFrame | None:
    """Which of the model's blocking rules compared each stored pair (names only, or other
    identifiers), run inside the warehouse: the evidence for the matches blocking never compared."""
    found = stored_blocking_source(warehouse, root, source, model_version)
    return found.compute(None) if found is not None else None


#: The pairs whose blocking lists are read again (registered on the warehouse cursor for the query)
_LIST_PAIRS = "_blocking_list_pairs"


def stored_blocking_source(warehouse: Warehouse, root: Path, source: str, model_version: str) -> BlockingSource | None:
    """:func:`stored_blocking_lists` as a `threshold.BlockingSource`: the lists of every stored pair,
    or of the pairs it is given (the assessment keeps the others' from the last one), read inside the
    warehouse against the stored person records. None without the model's file or two lists of rules."""
    model_file = root / "models" / source / f"{model_version}.json"
    if not model_file.exists():
        return None
    rules = prediction_rules(json.loads(model_file.read_text())["splink_model"])
    schema = _stored(source)["schema"]
    if blocking_lists_sql(rules) is None:
        return None

    def compute(pairs: pl.DataFrame | None) -> pl.DataFrame | None:
        with warehouse.cursor() as conn:
            if pairs is None:
                return pl.from_arrow(conn.sql(blocking_lists_sql(rules, f'{schema}."scored_pairs"',  # type: ignore[arg-type]
                                                                 f'{schema}."person_records"')).to_arrow_table())
            conn.register(_LIST_PAIRS, pairs.select("record_id_l", "record_id_r").to_arrow())
            try:
                return pl.from_arrow(conn.sql(blocking_lists_sql(rules, _LIST_PAIRS,  # type: ignore[arg-type]
                                                                 f'{schema}."person_records"')).to_arrow_table())
            finally:
                conn.unregister(_LIST_PAIRS)

    return BlockingSource(tuple(rules), compute)


def _assess_source(linkage: LinkageSettings, warehouse: Warehouse, source: str, clusters: pl.DataFrame,
                   pairs: pl.DataFrame, previous: KeptWork | None = None, fits: NoLabelFits | None = None,
                   run_id: str = "") -> tuple[dict, pl.DataFrame, KeptWork, NoLabelFits | None]:
    """One dataset's quality row, its five largest clusters, what its assessment keeps for the
    next one (`previous`: what the last one kept) and the no-label fits it used (`fits`: those the
    last one used, applied again when made for this model and code and little changed since)."""
    threshold = float(clusters["match_threshold"][0]) if clusters.height else 0.5
    model_version = str(clusters["model_version"][0]) if clusters.height else ""
    # read in the warehouse only for the pairs whose lists the last assessment did not keep
    blocking = stored_blocking_source(warehouse, linkage.root, source, model_version) \
        if clusters.height and pairs.height else None
    code = fitting_code()
    assessment = assess(pairs, labels_file=linkage.labels_file(source), record_ids=clusters["record_id"],
                        also=(threshold,), blocking=blocking,
                        records=stored_table(warehouse, source, "person_records", (*GUARD_COLUMNS, *WITNESS_COLUMNS))
                        if pairs.height else None, previous=previous,
                        fits=reusable_fits(fits, model_version, code), fit_as=(run_id, model_version, code))
    row = estimated_quality_row(
        source, records=clusters.height, persons=clusters[SOURCES[source].person_id_name].n_unique(),
        threshold=threshold, configured=source in linkage.thresholds, assessment=assessment)
    return row, largest_cluster_metrics(clusters, pairs, threshold, cluster_col=SOURCES[source].person_id_name,
                                        n=5), assessment.kept, assessment.fits


def _assessment_now(context: AssetExecutionContext, linkage: LinkageSettings, clusters: StoredTable,
                    pairs: StoredTable, person_records: StoredTable, source: str) -> tuple[Assessed, int, int]:
    """What an assessment of `source` today is made from (`quality_reuse.Assessed`; its rows: those of
    the clusters, scored pairs and person records), with today's record and person counts: counted
    in DuckDB, without reading the tables."""
    person = quote_identifier(SOURCES[source].person_id_name)
    with warehouse_cursor(clusters.database) as conn:
        records, persons, threshold, model_version = conn.execute(
            f"select count(*), count(distinct {person}), min(match_threshold), min(model_version) "
            f"from ({clusters.select_sql()}) _c").fetchall()[0]
        others = sum(conn.execute(f"select count(*) from ({t.select_sql()}) _t").fetchall()[0][0]
                     for t in (pairs, person_records) if table_columns(conn, t.schema, t.table))
    now = Assessed(run=context.run_id, at=time.time(), model_version=str(model_version or ""),
                   threshold=float(threshold) if threshold is not None else 0.5,
                   labels=labels_digest(linkage.labels_file(source)), configured=source in linkage.thresholds,
                   code=fitting_code(), rows=int(records) + int(others))
    return now, int(records), int(persons)


def _reused_estimates(context: AssetExecutionContext, linkage: LinkageSettings, reports: Path, source: str,
                      now: Assessed, records: int, persons: int) -> tuple[dict, pl.DataFrame, dict] | None:
    """The dataset's last row with today's counts, its largest clusters and what says so, when an
    incremental run keeps its estimates (`linkage/quality_reuse.py`); None when it must assess.
    Only for inputs the pipeline wrote (each write says how many rows it changed); the caller checks
    that each table is as its latest write recorded it."""
    stored = load_last_part(reports, source)
    assessed = Assessed.from_json(stored[2].get("assessed")) if stored is not None else None
    if assessed is None:
        return None
    changed = rows_changed_since(context.instance, [linkage_key(source, name) for name in
                                                    ("clusters", "scored_pairs", "person_records")], assessed.at)
    if not estimates_reusable(assessed, now=now, changed=changed, share=linkage.quality_refresh_share):
        return None
    row, largest, _ = stored  # type: ignore[misc]
    return ({**row, "records": records, "persons": persons}, largest,
            {"estimates_from_run": assessed.run, "rows_changed_since": changed, "rows_assessed": assessed.rows})


def _quality_part(context: AssetExecutionContext, linkage: LinkageSettings, warehouse: Warehouse,
                  read: dict, memo: dict, source: str, recorded: frozenset = frozenset()
                  ) -> tuple[dict, pl.DataFrame, dict | None, NoLabelFits | None, dict | None]:
    """One dataset's quality row and largest clusters, what its assessment computed (None: kept whole,
    its inputs as when last assessed), the no-label fits its estimates apply, and (estimates kept
    from an earlier run, `_reused_estimates`) what says so."""
    reports = linkage.root / "reports"
    clusters, pairs = read[linkage_key(source, "clusters")], read[linkage_key(source, "scored_pairs")]
    # a dataset whose inputs are as when it was last assessed keeps that row (linkage/quality_parts.py)
    fingerprint = inputs_fingerprint(
        {"clusters": clusters, "pairs": pairs, "records": read[linkage_key(source, "person_records")]},
        settings=(source, source in linkage.thresholds), files=[linkage.labels_file(source)], memo=memo)
    incremental = linkage.mode != "full"
    part = load_part(reports, source, fingerprint) if incremental else None
    if part is not None:
        return *part, None, load_fits(reports, source), None
    now, records, persons = _assessment_now(context, linkage, clusters, pairs,
                                            read[linkage_key(source, "person_records")], source)
    # tables as their latest writes recorded them (`recorded_fingerprints`): what changed since is counted there
    written = all((read[linkage_key(source, name)].database, read[linkage_key(source, name)].select_sql()) in recorded
                  for name in ("clusters", "scored_pairs", "person_records"))
    if incremental and written and (reused := _reused_estimates(context, linkage, reports, source, now, records,
                                                                persons)):
        return reused[0], reused[1], None, load_fits(reports, source), reused[2]
    # the local parts of the last assessment: recomputed only where pairs or records changed; its
    # no-label fits reused while the change is small (a full run, the weekly rebuild, fits them again)
    loaded = load_kept(reports, source) if incremental else None
    row, largest, kept_work, fits = _assess_source(
        linkage, warehouse, source, clusters.to_polars(), pairs.to_polars(), loaded,
        load_fits(reports, source) if incremental else None, run_id=context.run_id)
    save_part(reports, source, fingerprint, row, largest, kept=kept_work, fits=fits, loaded=loaded,
              assessed=now.to_json())
    return row, largest, kept_work.computed, fits, None


def _every_datasets_quality(context: AssetExecutionContext, linkage: LinkageSettings, warehouse: Warehouse) -> tuple:
    """Every dataset's quality row and largest clusters (`_quality_part`), with the datasets kept whole,
    what each assessment computed, where each dataset's no-label fits came from, and the datasets
    whose estimates were kept from an earlier run."""
    rows, largest, kept, computed, fitted = [], {}, [], {}, {}
    read = {linkage_key(s, name): linkage_table(warehouse.database, s, name)
            for s in SOURCES for name in ("clusters", "scored_pairs", "person_records")}
    # each table's write recorded its fingerprint: taken from there, not hashed again (every row of
    # every dataset's three tables, unchanged datasets' too, on every run)
    memo = recorded_fingerprints(context.instance, read)
    recorded, reused = frozenset(memo), {}
    for source in SOURCES:
        row, largest[source], work, fits, kept_estimates = _quality_part(context, linkage, warehouse, read, memo,
                                                                         source, recorded)
        rows.append(row)
        if kept_estimates is not None:
            reused[source] = kept_estimates
        elif work is None:
            kept.append(source)
        else:
            computed[source] = work
        if fits is not None:
            fitted[source] = fits.run
    return rows, largest, kept, computed, fitted, reused


@asset(
    key=QUALITY,
    # read by handle (`linkage_table`)
    deps=[linkage_key(s, name) for name in ("clusters", "scored_pairs", "person_records") for s in SOURCES],
    group_name="linkage",
    metadata={"schema": "linkage"},
    kinds={"polars"},
    description="Per dataset: the clustering threshold, where it came from (configured, clerical labels or the "
    "model's estimate) and the ESTIMATED pairwise and B-cubed precision / recall / F1 there; no truth is read. "
    "Report under data/reports/.",
    check_specs=[AssetCheckSpec(
        "accuracy_evidence", asset=QUALITY,
        description="Every dataset's accuracy rests on clerical labels, and its estimated B-cubed F1 meets the floor "
        "(0.97 criminal justice, 0.93 family and civil). Warns, naming what is missing, otherwise.",
    )],
)
def linkage_quality(context: AssetExecutionContext, linkage: LinkageSettings, warehouse: Warehouse):
    rows, largest, kept, computed, fitted, reused = _every_datasets_quality(context, linkage, warehouse)
    table = quality_table(rows)
    paths = write_quality_report(table, linkage.root / "reports", largest=largest_clusters_table(largest),
                                 fits=fitted, run_id=context.run_id, reused=reused)
    yield Output(table, metadata={
        "report": MetadataValue.url(file_url(paths["html"], linkage.root)),
        "summary": MetadataValue.md(quality_markdown(table)),
        "datasets_kept": ", ".join(kept) or "none",  # inputs unchanged: not assessed again
        # per dataset assessed: pairs whose transitivity flags were computed and names whose same-name
        # witness was counted (the rest kept from the last assessment)
        "computed": MetadataValue.json(computed),
        # per dataset without labels: the run whose fit of the whole dataset its estimates apply
        # (this run's id when it fitted them; see threshold.NoLabelFits)
        "fits_from_run": MetadataValue.json(fitted),
        # per dataset whose inputs changed a little: its estimates kept from the run that made them
        # (linkage/quality_reuse.py), with the rows changed since
        "estimates_kept": MetadataValue.json(reused),
    })
    problems = evidence_problems(table)
    yield AssetCheckResult(
        passed=not problems, severity=AssetCheckSeverity.WARN,
        metadata={"missing_evidence": MetadataValue.md(bullet_list(problems))},
    )


def linkage_assets() -> list[AssetsDefinition]:
    return [a for source in SOURCES.values() for a in build_dedupe_assets(source)] + [
        build_review_queue_asset(source) for source in SOURCES.values()] + [linkage_quality]
