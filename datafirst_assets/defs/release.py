"""Catalogues and the release on disk, for the de-identified and (when built) the synthetic tables.

<kind>/<dataset>/<table> (all datasets) -> catalogue/<dataset>            (kind "deidentified")
                                           catalogue/synthetic/<dataset>  (kind "synthetic")
                                        -> release/<kind>   data/releases/<release id>/ + manifest

No `from __future__ import annotations`: Dagster inspects annotations at runtime.
"""

import shutil
from pathlib import Path

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    MetadataValue,
    Output,
    asset,
)

from datafirst_assets.reporting import file_url
from datafirst_assets.catalogue.build import build_catalogue
from datafirst_assets.defs.linkage import LinkageSettings
from datafirst_assets.defs.resources import Warehouse
from datafirst_assets.deidentify.keys import key_is_development
from datafirst_assets.deidentify.release_spec import release_datasets
from datafirst_assets.release.publish import write_release
from datafirst_assets.sources.registry import SOURCES

RELEASE_GROUP = "release"


def release_group(kind: str) -> str:
    """Real and synthetic outputs in separate groups, so the lineage reads real release, then synthetic."""
    return RELEASE_GROUP if kind == "deidentified" else f"{kind}_{RELEASE_GROUP}"
SYNTHETIC_NOTE = "HOW_THIS_DIFFERS_FROM_THE_REAL_DATA.md"


def table_key(kind: str, dataset: str, table: str) -> AssetKey:
    """Key of a release table: <kind>/<dataset>/<table>, kind "deidentified" or "synthetic"."""
    return AssetKey([kind, dataset, table])


def catalogue_key(kind: str, dataset: str) -> AssetKey:
    return AssetKey(["catalogue", dataset] if kind == "deidentified" else ["catalogue", kind, dataset])


def catalogue_folder(root: Path, kind: str) -> Path:
    return root / "catalogues" / kind


def input_name(dataset: str, table: str) -> str:
    """Asset input name of a release table (Dagster input names cannot hold slashes)."""
    return f"{dataset}__{table}"


def build_catalogue_asset(kind: str, dataset: str) -> AssetsDefinition:
    specs = {spec.name: spec for spec in release_datasets()[dataset]}
    synthetic = kind == "synthetic"

    @asset(
        key=catalogue_key(kind, dataset),
        ins={name: AssetIn(key=table_key(kind, dataset, name)) for name in specs},
        group_name=release_group(kind),
        metadata={"schema": f"catalogue_{kind}"},
        kinds={"polars", "html"},
        description=f"Data catalogue of the {'SYNTHETIC ' if synthetic else ''}`{dataset}` release tables: every "
        "variable with type, description, % missing, distinct count and values (counts under 10 suppressed); "
        f"Markdown and HTML under data/catalogues/{kind}/.",
    )
    def _catalogue(context: AssetExecutionContext, linkage: LinkageSettings, **tables: pl.DataFrame) -> Output:
        catalogue = build_catalogue(dataset, tables, specs, synthetic=synthetic)
        paths = catalogue.write(catalogue_folder(linkage.root, kind))
        return Output(catalogue.frame, metadata={
            "catalogue_html": MetadataValue.url(file_url(paths["html"], linkage.root)),
            "catalogue_markdown": MetadataValue.path(str(paths["markdown"].resolve())),
            "tables": catalogue.tables.height,
            "variables": catalogue.frame.height,
            "preview": MetadataValue.md(catalogue.markdown[:8000]),
        })

    return _catalogue


def _extract_dates(warehouse: Warehouse) -> list[str]:
    with warehouse.cursor() as conn:
        rows = conn.execute(" union ".join(
            f"select distinct cast(extract_date as varchar) from staged_{s.key}.{s.person_table.name}"
            for s in SOURCES.values())).fetchall()
    return sorted({r[0] for r in rows})


def _model_versions(warehouse: Warehouse) -> dict[str, str]:
    versions = {}
    with warehouse.cursor() as conn:
        for source in SOURCES:
            try:
                versions[source] = conn.execute(f"select version from linkage_{source}.model").fetchone()[0]
            except Exception:  # a release of tables whose model was never stored (tests, partial graphs)
                continue
    return versions


def build_release_asset(kind: str, *, extra_ins: dict[str, AssetIn] | None = None,
                        extra_metadata=None) -> AssetsDefinition:
    datasets = release_datasets()
    synthetic = kind == "synthetic"
    ins = {
        input_name(dataset, spec.name): AssetIn(key=table_key(kind, dataset, spec.name))
        for dataset, specs in datasets.items() for spec in specs
    }
    # Depending on the catalogues puts the release after them in the graph (the UI shows the lineage).
    deps = [catalogue_key(kind, dataset) for dataset in datasets]
    if synthetic:  # the report writes the note on how synthetic data differs, which the release carries
        deps.append(AssetKey(["synthetic", "report"]))

    @asset(
        key=AssetKey(["release", kind]),
        ins={**ins, **(extra_ins or {})},
        deps=deps,
        group_name=release_group(kind),
        kinds={"parquet"},
        description=f"The {'SYNTHETIC ' if synthetic else ''}research release on disk: `data/releases/<release id>/` "
        "with Parquet per table, the catalogues, a README of the documented joins and a manifest (tables, rows, "
        "checksums, extract dates, model versions).",
        io_manager_key="io_manager",
        metadata={"schema": "release"},
    )
    def _release(context: AssetExecutionContext, linkage: LinkageSettings, warehouse: Warehouse,
                 **inputs: pl.DataFrame) -> Output:
        tables = {}
        for dataset, specs in datasets.items():
            for spec in specs:
                tables[(dataset, spec.name)] = inputs[input_name(dataset, spec.name)]
        catalogues = {
            dataset: build_catalogue(dataset, {s.name: tables[(dataset, s.name)] for s in specs},
                                     {s.name: s for s in specs}, synthetic=synthetic)
            for dataset, specs in datasets.items()
        }
        extra = extra_metadata(inputs) if extra_metadata else {}
        info = write_release(
            linkage.root / "releases", kind, tables, catalogues,
            extract_dates=_extract_dates(warehouse), model_versions=_model_versions(warehouse),
            key_is_development=key_is_development(), extra=extra,
        )
        manifest = info.manifest
        note = linkage.root / "synthetic" / "README.md"
        if synthetic and note.exists():
            shutil.copyfile(note, info.path / SYNTHETIC_NOTE)
        summary = pl.DataFrame([
            {"release_id": info.release_id, "source": t["source"], "table": t["table"], "path": t["path"],
             "rows": t["rows"], "sha256": t["sha256"]}
            for t in manifest["tables"]
        ])
        context.log.info(f"published {info.release_id} at {info.path}")
        return Output(summary, metadata={
            "release_id": info.release_id,
            "path": MetadataValue.path(str(info.path.resolve())),
            "readme": MetadataValue.url(file_url(info.path / "README.md", linkage.root)),
            "tables": len(manifest["tables"]),
            "rows": sum(t["rows"] for t in manifest["tables"]),
            "extract_dates": ", ".join(manifest["extract_dates"]),
            "pseudonymisation_key": manifest["pseudonymisation_key"],
            "synthetic": synthetic,
        })

    return _release


def release_assets(kind: str = "deidentified") -> list[AssetsDefinition]:
    return [build_catalogue_asset(kind, dataset) for dataset in release_datasets()] + [build_release_asset(kind)]
