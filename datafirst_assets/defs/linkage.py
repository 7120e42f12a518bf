"""Per-dataset deduplication assets, one set per source from the registry, and their quality.

linkage/<source>/person_records -> linkage/<source>/model -> linkage/<source>/clusters
                                                             linkage/<source>/scored_pairs
all clusters -> linkage/quality (report under data/reports/)

No `from __future__ import annotations`: Dagster inspects annotations at runtime.
"""

import json
from datetime import datetime, timezone
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
    MAX_CLUSTER_RECORDS,
    chained_clusters,
    cluster_graph_metrics,
    graph_summary,
    largest_clusters,
)
from datafirst_assets.linkage.incremental import (
    KEEP_PAIRS_ABOVE,
    MODES,
    PreviousLink,
    link_full,
    link_incremental,
    model_to_reuse,
)
from datafirst_assets.common.tables import markdown_table
from datafirst_assets.linkage.quality import (
    FLOORS,
    evaluate_sources,
    quality_markdown,
    write_quality_report,
)
from datafirst_assets.reporting import file_url
from datafirst_assets.linkage.records import add_person_ids, person_records
from datafirst_assets.linkage.settings import model_spec_for_records
from datafirst_assets.linkage.stable_ids import PERSON_ID, id_change_history
from datafirst_assets.linkage.threshold import choose_cluster_threshold
from datafirst_assets.linkage.train import (
    TrainedModel,
    TrainingConfig,
    save_charts,
    save_model,
    summary_table,
    train_model,
    u_pairs_for,
)
from datafirst_assets.sources.registry import SOURCES
from datafirst_assets.sources.spec import SourceSpec
from datafirst_assets.warehouse.io_manager import table_columns


class LinkageSettings(ConfigurableResource):
    """How deduplication runs: Splink backend, thresholds, where models, labels and truth live."""

    backend: str = "duckdb"  # or "spark" (pip install -e '.[spark]'); see README "Running at scale"
    # Spark only: "local[*]" runs on this machine; a cluster's master URL ("spark://host:7077",
    # "yarn", "k8s://...") runs there. The checkpoint folder must be storage the cluster shares.
    spark_master: str = "local[*]"
    spark_conf: dict[str, str] = {}
    spark_checkpoint_dir: str = ""
    data_dir: str = "data"
    # Match probability per source; unset sources choose theirs from labels (see threshold.py).
    thresholds: dict[str, float] = {}
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

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    def db_api(self):
        """Splink's backend as configured."""
        return configured_db_api(self.backend, spark_master=self.spark_master, spark_conf=self.spark_conf,
                                 spark_checkpoint_dir=self.spark_checkpoint_dir or None)

    def u_pairs_for(self, records: int) -> float:
        """Enough random pairs for stable u on rare agreement levels, without paying 1e7 on small data."""
        if self.u_max_pairs is not None:
            return self.u_max_pairs
        return u_pairs_for(records)

    def truth_for(self, source: str) -> pl.DataFrame | None:
        """The simulator's record -> person truth for one source (None for real data)."""
        path = self.root / "truth" / "person_records.parquet"
        if not path.exists():
            return None
        return (
            pl.read_parquet(path)
            .filter(pl.col("source") == source)
            .select(pl.col("record_id").cast(pl.String), pl.col("person_id").cast(pl.String))
        )


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


def stored_table(warehouse: Warehouse, source: str, name: str) -> pl.DataFrame | None:
    """The last materialisation of ``linkage/<source>/<name>`` in the warehouse, if any."""
    schema = _stored(source)["schema"]
    with warehouse.cursor() as conn:
        if not table_columns(conn, schema, name):
            return None
        return pl.from_arrow(conn.sql(f'select * from {schema}."{name}"').to_arrow_table())  # type: ignore[return-value]


def linkage_key(source: str, name: str) -> AssetKey:
    return AssetKey(["linkage", source, name])


def linkage_group(source: str) -> str:
    """One group per dataset's dedupe, so the lineage tells the seven `model`s and `clusters` apart
    (short enough that the graph shows the whole name: it truncates names over 17 characters)."""
    return f"dedup_{source}"


def _stored(source: str) -> dict:
    return {"schema": f"linkage_{source}"}


def _chart_links(folder: Path, version: str, root: Path) -> dict[str, MetadataValue]:
    """Links to a model version's Splink charts, opened in a browser from the asset page
    (`make ui` serves data/models)."""
    prefix = f"{version}_"
    return {chart.stem.removeprefix(prefix): MetadataValue.url(file_url(chart, root))
            for chart in sorted((folder / "charts").glob(f"{prefix}*.html"))}


def build_dedupe_assets(source: SourceSpec) -> list[AssetsDefinition]:
    table = source.person_table

    @asset(
        key=linkage_key(source.key, "person_records"),
        ins={"staged": AssetIn(key=staged_key(source.key, table.name))},
        group_name=linkage_group(source.key),
        metadata=_stored(source.key),
        kinds={"polars", "duckdb"},
        description=f"One row per {source.key} `{table.name}` record that identifies a person: "
        "standardised linkage fields only (latest version of each record).",
    )
    def _person_records(staged: pl.DataFrame) -> pl.DataFrame:
        return person_records(staged, source, table)

    @asset(
        key=linkage_key(source.key, "model"),
        ins={"records": AssetIn(key=linkage_key(source.key, "person_records"))},
        group_name=linkage_group(source.key),
        metadata=_stored(source.key),
        kinds={"splink", "duckdb"},
        description=f"Splink model for {source.key}, trained unsupervised (prior from deterministic rules, "
        "u by random sampling, m by EM); JSON versioned under data/models/.",
    )
    def _model(context: AssetExecutionContext, records: pl.DataFrame, linkage: LinkageSettings,
               warehouse: Warehouse) -> pl.DataFrame:
        _check_mode(linkage)
        folder = linkage.root / "models" / source.key
        why = "full run requested"
        if linkage.mode == "incremental":
            previous = stored_table(warehouse, source.key, "model")
            saved = previous is not None and previous.height == 1
            reused, why = model_to_reuse(
                json.loads(previous["model_json"][0]) if saved else None,
                int(previous["records"][0]) if saved else None,
                records, retrain_growth=linkage.retrain_growth,
            )
            if reused is not None:
                context.log.info(f"reusing the saved model: {why}")
                context.add_output_metadata({
                    "version": reused.version, "reused": True, "reason": why,
                    "model_json": MetadataValue.path(str(folder / f"{reused.version}.json")),
                    "records": records.height, "trained_on_records": int(previous["records"][0]),
                    "comparisons": MetadataValue.md(markdown_table(summary_table(reused.summary), "{:.4g}")),
                    **_chart_links(folder, reused.version, linkage.root),
                })
                return previous
            context.log.info(f"training: {why}")
        spec = model_spec_for_records(records)
        trained = train_model(
            records, spec, linkage.db_api(),
            TrainingConfig(u_max_pairs=linkage.u_pairs_for(records.height), seed=linkage.seed),
            progress=context.log.info,
        )
        path = save_model(trained, folder / f"{trained.version}.json")
        charts = save_charts(trained.linker, folder / "charts", prefix=f"{trained.version}_")
        context.add_output_metadata({
            "version": trained.version,
            "reused": False,
            "reason": why,
            "model_json": MetadataValue.path(str(path)),
            "records": records.height,
            "comparisons": MetadataValue.md(markdown_table(summary_table(trained.summary), "{:.4g}")),
            **{name: error for name, error in charts.items() if not isinstance(error, Path)},
            **_chart_links(folder, trained.version, linkage.root),
        })
        return pl.DataFrame({
            "version": [trained.version],
            "trained_at": [datetime.now(timezone.utc).isoformat(timespec="seconds")],
            "records": [records.height],
            "model_json": [json.dumps(trained.to_json())],
        })

    @multi_asset(
        name=f"cluster_{source.key}",
        ins={
            "records": AssetIn(key=linkage_key(source.key, "person_records")),
            "model": AssetIn(key=linkage_key(source.key, "model")),
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
    def _cluster(context: AssetExecutionContext, records: pl.DataFrame, model: pl.DataFrame,
                 linkage: LinkageSettings, warehouse: Warehouse):
        _check_mode(linkage)
        trained = TrainedModel.from_json(json.loads(model["model_json"][0]))
        stored = stored_table(warehouse, source.key, "clusters")
        previous = PreviousLink(
            clusters=stored.rename({source.person_id_name: PERSON_ID})
            if stored is not None and source.person_id_name in stored.columns else None,
            changes=stored_table(warehouse, source.key, "id_changes"),
        )
        db_api = linkage.db_api()
        configured = linkage.thresholds.get(source.key)
        problem = (previous.cannot_extend(trained.version, check_pairs=False) if linkage.mode == "incremental"
                   else "full run requested")
        if problem is None:
            previous.pairs = stored_table(warehouse, source.key, "scored_pairs")
            problem = previous.cannot_extend(trained.version)
        if problem is None:
            result = link_incremental(records, trained, db_api, previous, threshold=configured)
        else:
            def choose(pairs: pl.DataFrame) -> tuple[float, str]:
                choice = choose_cluster_threshold(
                    pairs, configured=configured, labels_file=linkage.root / "labels" / f"{source.key}.csv",
                    truth=linkage.truth_for(source.key))
                return choice.match_probability, choice.source

            result = link_full(records, trained, db_api, choose=choose, previous=previous, reason=problem)
        context.log.info(f"{result.mode} link: {result.reason}")
        clusters = result.clusters_table(trained.version, source.person_id_name)
        history = id_change_history(previous.changes, result.changes, run_id=context.run_id, mode=result.mode)
        counts = {k: v for k, v in result.stats.items() if k in ("merge", "split", "moved", "new", "retired")}
        first_run = previous.clusters is None or previous.clusters.is_empty()
        if first_run:  # every id is new; the log records no row per person on the first release
            counts["new"] = clusters[source.person_id_name].n_unique()
        # The change log goes first: the next run finds the ids it issued or retired even if
        # writing the clusters fails, so none is issued twice.
        yield Output(history, output_name="id_changes", metadata={
            **{f"this_run_{k}": v for k, v in counts.items()},
            "history_rows": history.height,
            "this_run": MetadataValue.md(
                markdown_table(result.changes.head(20)) if result.changes.height
                else f"First run: {counts['new']} person ids issued." if first_run
                else "No person id changed in this run."),
        })
        graph = cluster_graph_metrics(result.ids, result.pairs, result.threshold, cluster_col=PERSON_ID)
        yield Output(clusters, output_name="clusters", metadata={
            **graph_summary(graph),
            "clusters_split_by_dob_guard": result.stats.get("guard_clusters_split", 0),
            "largest_clusters": MetadataValue.md(markdown_table(largest_clusters(graph), "{:.3f}")),
            "mode": result.mode,
            "mode_reason": result.reason,
            "threshold_match_probability": None if result.threshold is None else float(f"{result.threshold:.4g}"),
            "threshold_source": result.threshold_source,
            "persons": clusters[source.person_id_name].n_unique(),
            "records": clusters.height,
            "records_reclustered": result.stats.get("reclustered"),
            "new_records": result.stats.get("new_records", clusters.height if previous.clusters is None else None),
            "highest_person_id": result.next_id - 1,
            "model_version": trained.version,
            "seconds": MetadataValue.md(markdown_table(pl.DataFrame(
                {"step": list(result.timings), "seconds": list(result.timings.values())}), "{:.2f}")),
        })
        yield Output(result.pairs, output_name="scored_pairs", metadata={
            "pairs": result.pairs.height, "new_pairs": result.stats.get("new_pairs", result.pairs.height)})
        missing = records.join(clusters, on="record_id", how="anti").height
        duplicated = clusters.height - clusters["record_id"].n_unique()
        yield AssetCheckResult(
            check_name="every_record_clustered", passed=missing == 0 and duplicated == 0,
            metadata={"records_without_id": missing, "records_with_several_ids": duplicated},
        )
        chained = chained_clusters(graph)
        yield AssetCheckResult(
            check_name="no_chained_clusters", passed=chained.is_empty(), severity=AssetCheckSeverity.WARN,
            metadata={"chained_clusters": chained.height,
                      "examples": MetadataValue.md(markdown_table(chained.head(10), "{:.3f}") if chained.height
                                                   else "none")},
        )

    @asset(
        key=AssetKey(["linked", source.key, table.name]),
        ins={
            "staged": AssetIn(key=staged_key(source.key, table.name)),
            "clusters": AssetIn(key=linkage_key(source.key, "clusters")),
        },
        group_name="linked",
        metadata={"schema": f"linked_{source.key}"},
        kinds={"polars", "duckdb"},
        description=f"Staged `{table.name}` (latest version of each record) with `{source.person_id_name}`.",
    )
    def _linked(staged: pl.DataFrame, clusters: pl.DataFrame) -> pl.DataFrame:
        return add_person_ids(staged, clusters, table.id_column, source.person_id_name)

    return [_person_records, _model, _cluster, _linked]


@asset(
    key=AssetKey(["linkage", "quality"]),
    ins={f"clusters_{s}": AssetIn(key=linkage_key(s, "clusters")) for s in SOURCES},
    group_name="linkage",
    metadata={"schema": "linkage"},
    kinds={"polars"},
    description="Pairwise and B-cubed precision / recall / F1 per dataset, overall and by subgroup, "
    "against the simulator's truth (or clerical labels); report under data/reports/.",
    check_specs=[AssetCheckSpec(
        "accuracy_floors", asset=AssetKey(["linkage", "quality"]),
        description="B-cubed F1 >= 0.97 for criminal-justice datasets and >= 0.93 for family and civil.",
    )],
)
def linkage_quality(context: AssetExecutionContext, linkage: LinkageSettings, **clusters: pl.DataFrame):
    truth_dir = linkage.root / "truth"
    by_source = {key.removeprefix("clusters_"): frame for key, frame in clusters.items()}
    table = evaluate_sources(by_source, truth_dir)
    paths = write_quality_report(table, linkage.root / "reports")
    yield Output(table, metadata={
        "report": MetadataValue.url(file_url(paths["html"], linkage.root)),
        "summary": MetadataValue.md(quality_markdown(table)),
    })
    if table.is_empty():
        yield AssetCheckResult(passed=True, metadata={"note": "no truth available: nothing to check"})
        return
    overall = table.filter(pl.col("subgroup") == "all")
    below = [
        f"{row['source']}: {row['bcubed_f1']:.4f} < {FLOORS[row['source']]}"
        for row in overall.iter_rows(named=True) if row["bcubed_f1"] < FLOORS[row["source"]]
    ]
    yield AssetCheckResult(
        passed=not below, severity=AssetCheckSeverity.WARN,
        metadata={"below_floor": MetadataValue.md("\n".join(f"- {b}" for b in below) or "none")},
    )


def linkage_assets() -> list[AssetsDefinition]:
    return [a for source in SOURCES.values() for a in build_dedupe_assets(source)] + [linkage_quality]
